#!/usr/bin/env bash
# Where the time of a cold `berth pull` of the 20,000-small-file image goes: pulls it from a local
# registry with the daemon under `strace -c -f` (syscall time by kind) and prints the summary,
# then the same pull with the daemon's syncfs calls timed one by one.
#   bench/profile-pull.sh            (uses target/release/berth)
set -euo pipefail
cd "$(dirname "$0")/.."
ONLY_BERTH=1
RES=/dev/null
. bench/lib.sh
start_engines
port=$(free_port)
printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' "$W/registry" "$port" >"$W/registry.yml"
docker-registry serve "$W/registry.yml" >"$W/registry.log" 2>&1 &
PIDS+=($!)
wait_for "curl -sf http://127.0.0.1:$port/v2/"
ref=127.0.0.1:$port/bench/small:1
python3 - "$W/ctx" 20000 <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(os.urandom(512) + b"x" * 512)
PY
tar -C "$W/ctx" -cf "$W/small.tar" . && rm -rf "$W/ctx"
b import "$W/small.tar" "$ref" >/dev/null && b push -q "$ref" >/dev/null && b rmi "$ref" >/dev/null
for round in 1; do
  sync
  t=$(secs b pull -q "$ref"); echo "plain pull: $t s"; b rmi "$ref" >/dev/null 2>&1 || true
done
sync
strace -f -c -o "$W/strace.txt" -p "$BPID" & SP=$!
sleep 1
t=$(secs b pull -q "$ref"); echo "pull under strace -c: $t s"
kill -INT $SP; wait $SP 2>/dev/null || true
head -15 "$W/strace.txt"
b rmi "$ref" >/dev/null; sync
strace -f -T -e trace=syncfs,fsync,fdatasync -o "$W/sync.txt" -p "$BPID" & SP=$!
sleep 1
t=$(secs b pull -q "$ref"); echo "pull with syncfs traced: $t s"
kill -INT $SP; wait $SP 2>/dev/null || true
grep -E "syncfs|fsync|fdatasync" "$W/sync.txt" | grep -v resumed | sed 's/^[0-9]* *//' | head -20
