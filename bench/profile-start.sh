#!/usr/bin/env bash
# Where the time of `berth run --rm IMG /bin/true` goes: runs it N times with BERTH_TIMING
# marks on (CLI, daemon, shim and runtime helpers on one monotonic clock) and prints the
# median time from the CLI's start to each mark.
#   N=20 bench/profile-start.sh [extra run flags...]     (uses target/release/berth)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
B=${BERTH_BIN:-$PWD/target/release/berth}
[ -x "$B" ] || cargo build --release -p berth >/dev/null
W=$(mktemp -d /tmp/berth-prof.XXXXXX)
X=/run/berth-prof-$$
cleanup() {
  set +e
  [ -n "${BPID:-}" ] && kill "$BPID" 2>/dev/null && wait "$BPID" 2>/dev/null
  ip link del bprof0 2>/dev/null; nft delete table ip berth-prof 2>/dev/null
  grep -E " ($W|$X)" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$W" "$X"
}
trap cleanup EXIT
bash scripts/mk-busybox-rootfs.sh "$W/bb.tar" >/dev/null
BERTH_TIMING="$W/marks" "$B" daemon --data-root "$W/data" --exec-root "$X" -H "unix://$W/s.sock" \
  --bridge bprof0 --nft-table berth-prof --cgroup-parent berth-prof >"$W/daemon.log" 2>&1 &
BPID=$!
export BERTH_HOST="unix://$W/s.sock"
for _ in $(seq 100); do "$B" version >/dev/null 2>&1 && break; sleep 0.1; done
"$B" import "$W/bb.tar" bb:latest >/dev/null
for _ in 1 2 3; do "$B" run --rm "$@" bb /bin/true; done
: >"$W/marks"
for i in $(seq "$N"); do
  echo "RUN $i" >>"$W/marks"
  BERTH_TIMING="$W/marks" "$B" run --rm "$@" bb /bin/true
  sleep 0.2
done
python3 - "$W/marks" <<'PY'
import sys, statistics, collections
runs, cur = [], None
for line in open(sys.argv[1]):
    if line.startswith("RUN"):
        cur = []; runs.append(cur); continue
    if cur is None:
        continue
    t, pid, label = line.rstrip("\n").split(" ", 2)
    cur.append((int(t), label))
at = collections.defaultdict(list); order = {}
for r in runs:
    t0 = r[0][0]; seen = collections.Counter()
    for t, label in sorted(r):
        seen[label] += 1
        key = label if seen[label] == 1 else f"{label} #{seen[label]}"
        at[key].append((t - t0) / 1000)
        order.setdefault(key, len(order))
keys = sorted(at, key=lambda k: statistics.median(at[k]))
prev = 0.0
print(f"{'mark':34} {'median ms':>10} {'step':>8}   (N={len(runs)})")
for k in keys:
    m = statistics.median(at[k])
    print(f"{k:34} {m:10.1f} {m-prev:8.1f}")
    prev = m
PY
