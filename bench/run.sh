#!/usr/bin/env bash
# Container start latency, side by side in one run: `run --rm IMG /bin/true` with berth, Docker
# (Debian's docker.io, own dockerd) and Podman (--runtime runc), same busybox rootfs, alternating
# engines run by run (hyperfine). Prints medians and the berth/other ratios; also the idle daemon
# RSS and the shim RSS of a running container.
#   RUNS=30 bench/run.sh          (builds berth in release mode first)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
bash scripts/install-deps.sh
cargo build --release -p berth >/dev/null
B="$PWD/target/release/berth"
W=$(mktemp -d /tmp/berth-bench.XXXXXX)
cleanup() {
  set +e
  [ -n "${BPID:-}" ] && kill "$BPID" 2>/dev/null
  [ -n "${DPID:-}" ] && kill "$DPID" 2>/dev/null
  sleep 1
  pkill -9 -f "berth shim $W" 2>/dev/null
  ip link del bbench0 2>/dev/null; ip link del dbench0 2>/dev/null
  nft delete table ip berth-bench 2>/dev/null
  grep " $W" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  podman --root "$W/podman" --runroot "$W/podman-run" rmi -af >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT
bash scripts/mk-busybox-rootfs.sh "$W/bb.tar"

# berth
"$B" daemon --data-root "$W/berth" --exec-root "$W/berth-run" -H "unix://$W/berth.sock" \
  --bridge bbench0 --nft-table berth-bench --cgroup-parent berth-bench >"$W/berth.log" 2>&1 &
BPID=$!
export BERTH_HOST="unix://$W/berth.sock"
for _ in $(seq 100); do "$B" version >/dev/null 2>&1 && break; sleep 0.1; done
"$B" import "$W/bb.tar" bb:latest >/dev/null

# docker
have_docker=0
if command -v dockerd >/dev/null; then
  ip link add dbench0 type bridge 2>/dev/null || true
  ip addr add 10.199.0.1/24 dev dbench0 2>/dev/null || true
  dockerd --data-root "$W/docker" -H "unix://$W/docker.sock" --pidfile "$W/docker.pid" \
    --exec-root "$W/docker-exec" --bridge dbench0 --iptables=false >"$W/dockerd.log" 2>&1 &
  DPID=$!
  for _ in $(seq 100); do docker -H "unix://$W/docker.sock" version >/dev/null 2>&1 && { have_docker=1; break; }; sleep 0.2; done
  [ $have_docker = 1 ] && docker -H "unix://$W/docker.sock" import "$W/bb.tar" bb:latest >/dev/null
fi
have_podman=0
P="podman --root $W/podman --runroot $W/podman-run --runtime runc"
if command -v podman >/dev/null && $P import "$W/bb.tar" bb:latest >/dev/null 2>&1; then have_podman=1; fi

cmds=("$B run --rm bb /bin/true")
names=(berth)
[ $have_docker = 1 ] && { cmds+=("docker -H unix://$W/docker.sock run --rm bb /bin/true"); names+=(docker); }
[ $have_podman = 1 ] && { cmds+=("$P run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 bb /bin/true"); names+=(podman); }
echo "engines: ${names[*]}"
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$W/run.json" "${cmds[@]}" >/dev/null
python3 - "$W/run.json" "${names[@]}" <<'PY'
import json, sys, statistics
res = json.load(open(sys.argv[1]))["results"]; names = sys.argv[2:]
med = {n: statistics.median(r["times"]) for n, r in zip(names, res)}
spread = {n: (min(r["times"]), max(r["times"])) for n, r in zip(names, res)}
print("| engine | median run --rm /bin/true | min..max | other/berth |")
print("|---|---|---|---|")
for n in names:
    print(f"| {n} | {med[n]*1000:.1f} ms | {spread[n][0]*1000:.0f}..{spread[n][1]*1000:.0f} ms | {med[n]/med['berth']:.1f}x |")
PY

# published-port throughput: busybox httpd natively, behind berth -p, behind docker -p (wrk)
if command -v wrk >/dev/null; then
  mkdir -p "$W/www" && echo '<h1>hello</h1>' > "$W/www/index.html"
  busybox httpd -f -p 127.0.0.1:18901 -h "$W/www" & NPID=$!
  "$B" run -d --name web -p 127.0.0.1:18902:80 bb httpd -f -p 80 -h /var/www >/dev/null
  [ $have_docker = 1 ] && docker -H "unix://$W/docker.sock" run -d --name web -p 127.0.0.1:18903:80 bb httpd -f -p 80 -h /var/www >/dev/null
  sleep 1
  rps() { wrk -t2 -c10 -d5s "http://127.0.0.1:$1/" 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
  declare -A R=()
  for round in 1 2; do
    R[native]+="$(rps 18901) "; R[berth]+="$(rps 18902) "
    [ $have_docker = 1 ] && R[docker]+="$(rps 18903) "
  done
  # container to container: wrk runs inside a client container's network namespace
  "$B" run -d --name client bb sleep 1000 >/dev/null
  bip=$("$B" inspect -f '{{.NetworkSettings.IPAddress}}' web)
  bpid=$("$B" inspect -f '{{.State.Pid}}' client)
  if [ $have_docker = 1 ]; then
    D="docker -H unix://$W/docker.sock"
    $D run -d --name client bb sleep 1000 >/dev/null
    dip=$($D inspect -f '{{.NetworkSettings.IPAddress}}' web)
    dpid=$($D inspect -f '{{.State.Pid}}' client)
  fi
  c2c() { nsenter -t "$1" -n wrk -t2 -c10 -d5s "http://$2/" 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
  for round in 1 2; do
    R[berth_c2c]+="$(c2c "$bpid" "$bip") "
    [ $have_docker = 1 ] && [ -n "$dip" ] && R[docker_c2c]+="$(c2c "$dpid" "$dip") "
  done
  kill $NPID 2>/dev/null
  python3 - "${R[native]}" "${R[berth]}" "${R[docker]:-}" "${R[berth_c2c]:-}" "${R[docker_c2c]:-}" <<'PY'
import sys, statistics
vals = [[float(x) for x in a.split()] for a in sys.argv[1:]]
med = [statistics.median(v) if v else 0 for v in vals]
print("| published port (wrk -c10, busybox httpd) | req/s (median of 2) | vs native |")
print("|---|---|---|")
for name, m in zip(["native", "berth -p", "docker -p", "berth container to container", "docker container to container"], med):
    if m:
        print(f"| {name} | {m:.0f} | {m/med[0]*100:.0f}% |")
PY
  "$B" rm -f web client >/dev/null
  [ $have_docker = 1 ] && docker -H "unix://$W/docker.sock" rm -f web client >/dev/null
fi

# memory: idle daemon RSS (after 10 s without requests, for every engine) and the shim of one
# running container (after 2 s)
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
sleep 10
echo "berth daemon idle RSS: $(rss $BPID)"
"$B" run -d --name memtest bb sleep 1000 >/dev/null
sleep 2
shim=$(pgrep -f "shim $W/berth-run" | head -1)
[ -n "$shim" ] && echo "berth shim RSS (one running container): $(rss "$shim")"
"$B" rm -f memtest >/dev/null
if [ $have_docker = 1 ]; then
  c=$(pgrep -x containerd | head -1)
  echo "dockerd idle RSS: $(rss $DPID)${c:+, containerd: $(rss $c)}"
fi
