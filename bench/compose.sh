#!/usr/bin/env bash
# `compose up -d --wait` to all healthy, side by side in one run: a five-service project
# (tests/compose/five: depends_on service_healthy chains, 200ms healthchecks, a named volume)
# with berth compose on berth, Debian's docker-compose 1.29 on its own dockerd (1.29 has no
# --wait: `up -d`, then poll the Engine API every 50ms until five containers are healthy), and
# docker-compose 1.29 on berth's socket. `down -v` between runs (not timed). Prints medians and
# the ratios; "not available" for a tool that is missing.
#   RUNS=10 bench/compose.sh          (builds berth in release mode first)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
bash scripts/install-deps.sh
cargo build --release -p berth >/dev/null
B="$PWD/target/release/berth"
PROJ="$PWD/tests/compose/five/compose.yaml"
W=$(mktemp -d /tmp/berth-cbench.XXXXXX)
cleanup() {
  set +e
  [ -n "${BPID:-}" ] && "$B" -H "unix://$W/berth.sock" compose -p five -f "$PROJ" down -v -t 0 >/dev/null 2>&1
  [ -n "${DPID:-}" ] && DOCKER_HOST="unix://$W/docker.sock" docker-compose -p five -f "$PROJ" down -v -t 0 >/dev/null 2>&1
  [ -n "${BPID:-}" ] && kill "$BPID" 2>/dev/null
  [ -n "${DPID:-}" ] && kill "$DPID" 2>/dev/null
  sleep 1
  pkill -9 -f "berth shim $W" 2>/dev/null
  ip link del bcbench0 2>/dev/null; ip link del dcbench0 2>/dev/null
  nft delete table ip berth-cbench 2>/dev/null
  grep " $W" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
bash scripts/mk-busybox-rootfs.sh "$W/bb.tar"

# Poll an Engine API socket until N containers of a project are healthy.
cat > "$W/wait-healthy.py" <<'PY'
import http.client, json, socket, sys, time, urllib.parse
sock, project, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(sock)
f = urllib.parse.quote(json.dumps({"label": [f"com.docker.compose.project={project}"], "health": ["healthy"]}))
deadline = time.time() + 120
while time.time() < deadline:
    c = C("localhost"); c.request("GET", f"/containers/json?filters={f}")
    n = len(json.loads(c.getresponse().read())); c.close()
    if n >= want: sys.exit(0)
    time.sleep(0.05)
sys.exit("timeout waiting for healthy containers")
PY
cat > "$W/dc-up.sh" <<EOF
#!/bin/sh
set -e
DOCKER_HOST=unix://\$1 docker-compose -p five -f "$PROJ" up -d >/dev/null 2>&1
python3 "$W/wait-healthy.py" "\$1" five 5
EOF
chmod +x "$W/dc-up.sh"

# berth
"$B" daemon --data-root "$W/berth" --exec-root "$W/berth-run" -H "unix://$W/berth.sock" \
  --bridge bcbench0 --nft-table berth-cbench --cgroup-parent berth-cbench >"$W/berth.log" 2>&1 &
BPID=$!
for _ in $(seq 100); do "$B" -H "unix://$W/berth.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
"$B" -H "unix://$W/berth.sock" import --change 'CMD ["sh"]' "$W/bb.tar" busybox:latest >/dev/null

# docker
have_docker=0
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
  ip link add dcbench0 type bridge 2>/dev/null || true
  ip addr add 10.198.0.1/24 dev dcbench0 2>/dev/null || true
  dockerd --data-root "$W/docker" -H "unix://$W/docker.sock" --pidfile "$W/docker.pid" \
    --exec-root "$W/docker-exec" --bridge dcbench0 --iptables=false >"$W/dockerd.log" 2>&1 &
  DPID=$!
  for _ in $(seq 100); do docker -H "unix://$W/docker.sock" version >/dev/null 2>&1 && { have_docker=1; break; }; sleep 0.2; done
  [ $have_docker = 1 ] && docker -H "unix://$W/docker.sock" import --change 'CMD ["sh"]' "$W/bb.tar" busybox:latest >/dev/null
fi
have_dc=0
command -v docker-compose >/dev/null && have_dc=1

cmds=("$B -H unix://$W/berth.sock compose -p five -f $PROJ up -d --wait")
prep=("$B -H unix://$W/berth.sock compose -p five -f $PROJ down -v -t 0")
names=("berth compose on berth")
if [ $have_docker = 1 ] && [ $have_dc = 1 ]; then
  cmds+=("$W/dc-up.sh $W/docker.sock")
  prep+=("env DOCKER_HOST=unix://$W/docker.sock docker-compose -p five -f $PROJ down -v -t 0")
  names+=("docker-compose 1.29 on dockerd")
fi
if [ $have_dc = 1 ]; then
  cmds+=("$W/dc-up.sh $W/berth.sock")
  prep+=("env DOCKER_HOST=unix://$W/berth.sock docker-compose -p five -f $PROJ down -v -t 0")
  names+=("docker-compose 1.29 on berth")
fi
args=()
for i in "${!cmds[@]}"; do args+=(--prepare "${prep[$i]}" "${cmds[$i]}"); done
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$W/compose.json" "${args[@]}" >/dev/null
python3 - "$W/compose.json" "$have_docker$have_dc" "${names[@]}" <<'PY'
import json, sys, statistics
res = json.load(open(sys.argv[1]))["results"]; avail = sys.argv[2]; names = sys.argv[3:]
med = {n: statistics.median(r["times"]) for n, r in zip(names, res)}
spread = {n: (min(r["times"]), max(r["times"])) for n, r in zip(names, res)}
b = med[names[0]]
print("| five-service project, up -d to all healthy | median | min..max | vs berth compose |")
print("|---|---|---|---|")
for n in ["berth compose on berth", "docker-compose 1.29 on dockerd", "docker-compose 1.29 on berth"]:
    if n in med:
        print(f"| {n} | {med[n]*1000:.0f} ms | {spread[n][0]*1000:.0f}..{spread[n][1]*1000:.0f} ms | {med[n]/b:.2f}x |")
    else:
        print(f"| {n} | not available | | |")
d = med.get("docker-compose 1.29 on dockerd")
if d:
    print(f"\nratio: docker-compose 1.29 on dockerd / berth compose on berth = {d/b:.2f}x")
else:
    print("\nratio: not available (dockerd or docker-compose missing)")
PY
