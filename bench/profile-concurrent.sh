#!/usr/bin/env bash
# Why 20 concurrent `berth run --rm` take longer than 20 in a row: times 20 concurrent runs of
# variants that each leave out one part of the path (attach, network, removal), on berth alone,
# then the same 20 in a row.
#   bench/profile-concurrent.sh            (uses target/release/berth)
set -euo pipefail
cd "$(dirname "$0")/.."
ONLY_BERTH=1
RES=/dev/null
. bench/lib.sh
start_engines
set +e
conc() { local t0=$EPOCHREALTIME; seq 20 | xargs -P20 -I{} bash "$W/er.sh" berth "$@" >/dev/null 2>&1; awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%6.2f s", b-a}'; }
seqr() { local t0=$EPOCHREALTIME; for _ in $(seq 20); do er berth "$@" >/dev/null 2>&1; done; awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%6.2f s", b-a}'; }
for v in "run --rm bb /bin/true" "run --rm --network none bb /bin/true" "run -d bb /bin/true" "run -d --network none bb /bin/true" "create bb /bin/true"; do
  printf '%-42s 20 concurrent %s   20 in a row %s\n' "$v" "$(conc $v)" "$(seqr $v)"
  b rm -f $(b ps -aq) >/dev/null 2>&1
done
