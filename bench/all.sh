#!/usr/bin/env bash
# bench/all.sh — berth beside Docker and Podman, same machine, same images, one run.
#
#   bench/all.sh                  # everything (~15 min on the project's 2-core machine)
#   QUICK=1 bench/all.sh          # fewer runs and sizes, for development
#   bench/all.sh run memory       # only some sections: run memory scale pull build network registry compose
#
# Builds berth in release mode, starts berth, a private Debian docker.io dockerd (own data root,
# socket, bridge, no iptables) and podman (--runtime runc, private storage) once, gives all three
# the same busybox-static images, runs the sections (engines alternate run by run: each round
# rotates which engine goes first), appends JSON lines to bench/results/latest.jsonl and renders
# bench/results/latest.md plus SVG plots with bench/report. Nothing here has a time limit or a
# pass/fail: it is measurement. Figures an engine cannot produce are "not available".
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${QUICK:-0}
SECTIONS=${*:-run memory pull build network registry compose scale}
if [ "$QUICK" = 1 ]; then
  N_RUN=5; ROUNDS=1; N_PULL=1; N_BUILD=1; N_COMPOSE=2; SIZES="10 100"; N_Q=5; NET_SECS=3
else
  N_RUN=15; ROUNDS=2; N_PULL=3; N_BUILD=3; N_COMPOSE=5; SIZES="10 100 1000"; N_Q=10; NET_SECS=5
fi
[ "${SKIP_DEPS:-0}" = 1 ] || bash scripts/install-deps.sh >/dev/null
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "building berth, the registry examples and bench/report (release) ..." >&2
  cargo build --release -p berth --bins
  cargo build --release -p berth-registry --example serve --example bench
  # other crates have an example called bench too: keep the registry's under its own name
  cp target/release/examples/bench target/release/examples/berth-registry-bench
  cargo build --release --manifest-path bench/report/Cargo.toml --target-dir target/bench-report
fi
# all sections: bench/results/ (committed); some sections: bench/results/partial/ (ignored)
OUT=${OUT:-bench/results}
[ $# -gt 0 ] && OUT=${OUT_PARTIAL:-bench/results/partial}
mkdir -p "$OUT"
RES=$(realpath "$OUT")/latest.jsonl
: >"$RES"
START=$EPOCHREALTIME
. bench/lib.sh
{ python3 - <<'PY'
import json, os, platform, subprocess, sys
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return ""
m = {"meta": {
    "date": sh("date -u '+%Y-%m-%d %H:%M UTC'"),
    "cpu": sh("lscpu | sed -n 's/^Model name: *//p'"), "cores": os.cpu_count(),
    "memory": sh("free -h | awk '/Mem:/ {print $2}'"), "kernel": platform.release(),
    "os": sh(". /etc/os-release; echo $PRETTY_NAME"),
    "load_start": sh("cut -d' ' -f1-3 /proc/loadavg"),
    "berth": sh("git -C . log -1 --format='%h %cs'"),
    "docker": sh("dockerd --version"), "containerd": sh("containerd --version | cut -d' ' -f1-3"),
    "podman": sh("podman --version"), "runc": sh("runc --version | head -1"),
    "quick": os.environ.get("QUICK", "0") == "1"}}
print(json.dumps(m))
PY
} >>"$RES"
start_engines
set +e  # a failing step leaves its figure "not available" instead of ending the run

# ---------------------------------------------------------------------------------------------
sec_run() {
  local S="1. container lifecycle" i eng t
  log "run --rm latency ($N_RUN runs per engine, alternating)"
  for eng in $(ENGINES); do er "$eng" run --rm bb /bin/true >/dev/null 2>&1 || true; done # warm-up
  declare -A T=()
  for ((i = 0; i < N_RUN; i++)); do
    for eng in $(order $i); do T[$eng]+="$(secs er "$eng" run --rm bb /bin/true) "; done
  done
  for eng in $(ENGINES); do emit "$S" "run --rm IMG /bin/true" s lower "$eng" ${T[$eng]}; done
  [ $HAVE_DOCKER = 1 ] || emit "$S" "run --rm IMG /bin/true" s lower docker "na:dockerd did not start"

  log "run -d x50 then rm -f x50 ($ROUNDS rounds)"
  declare -A RD=() RM=()
  local r names
  for ((r = 0; r < ROUNDS; r++)); do
    for eng in $(order $r); do
      names=()
      for i in $(seq 50); do names+=("l$r-$i"); done
      t=$(now)
      for i in $(seq 50); do er "$eng" run -d --name "l$r-$i" bb sleep 100000 >/dev/null; done
      RD[$eng]+="$(awk -v a="$t" -v b="$(now)" 'BEGIN{print b-a}') "
      if [ $r = $((ROUNDS - 1)) ] && [[ " $SECTIONS " == *" memory "* ]]; then mem_running "$eng"; fi
      # podman's rm -f stops with a 10 s grace period first; -t 0 kills at once like the others
      if [ $eng = podman ]; then RM[$eng]+="$(secs p rm -f -t 0 "${names[@]}") "; else RM[$eng]+="$(secs e "$eng" rm -f "${names[@]}") "; fi
    done
  done
  for eng in $(ENGINES); do
    emit "$S" "run -d of 50 containers in a row (total)" s lower "$eng" ${RD[$eng]}
    emit "$S" "rm -f of those 50, one command (podman: rm -f -t 0)" s lower "$eng" ${RM[$eng]}
  done

  log "20 concurrent run --rm ($ROUNDS rounds)"
  declare -A C=()
  for ((r = 0; r < ROUNDS; r++)); do
    for eng in $(order $r); do
      C[$eng]+="$(secs bash -c "seq 20 | xargs -P20 -I{} bash $W/er.sh $eng run --rm bb /bin/true") "
    done
  done
  for eng in $(ENGINES); do emit "$S" "20 concurrent run --rm (all done)" s lower "$eng" ${C[$eng]}; done
}

# memory with 50 running containers of ENGINE (called from sec_run), after ~10 s idle
mem_running() {
  local S="2. memory" eng=$1 sh n dm
  sleep 12
  sh=($(shim_pids "$eng"))
  n=${#sh[@]}
  [ "$n" -gt 0 ] || { emit "$S" "per-container process RSS, mean of 50 running (berth-shim / containerd-shim / conmon)" MiB lower "$eng" "na:no shim processes found"; return; }
  local name=shim; case $eng in docker) name=containerd-shim-runc-v2 ;; podman) name=conmon ;; esac
  emit "$S" "per-container process RSS, mean of 50 running (berth-shim / containerd-shim / conmon)" MiB lower "$eng" "$(kib2mib $(($(memsum rss "${sh[@]}") / n)))"
  emit "$S" "per-container process PSS, mean of 50 running" MiB lower "$eng" "$(kib2mib $(($(memsum pss "${sh[@]}") / n)))"
  case $eng in
    berth) dm=$(memsum rss "$BPID") ;;
    docker) dm=$(memsum rss "$DPID" "$(containerd_pid)") ;;
    podman) dm=0 ;;
  esac
  if [ "$eng" = podman ]; then
    emit "$S" "daemon RSS with 50 running (dockerd + containerd)" MiB lower podman "na:podman has no daemon"
  else
    emit "$S" "daemon RSS with 50 running (dockerd + containerd)" MiB lower "$eng" "$(kib2mib "$dm")"
  fi
  emit "$S" "total RSS with 50 running (daemon + 50 per-container processes)" MiB lower "$eng" "$(kib2mib $((dm + $(memsum rss "${sh[@]}"))))"
  log "  $eng: $n $name, $(kib2mib $(memsum rss "${sh[@]}")) MiB total"
}

sec_memory() {
  local S="2. memory"
  log "idle daemon memory (after 12 s without requests)"
  sleep 12
  emit "$S" "idle daemon RSS (dockerd + containerd)" MiB lower berth "$(kib2mib "$(mem "$BPID" rss)")"
  emit "$S" "idle daemon PSS (dockerd + containerd)" MiB lower berth "$(kib2mib "$(mem "$BPID" pss)")"
  emit "$S" "idle daemon anonymous memory (dockerd + containerd)" MiB lower berth "$(kib2mib "$(mem "$BPID" anon)")"
  if [ $HAVE_DOCKER = 1 ]; then
    local c; c=$(containerd_pid)
    emit "$S" "idle daemon RSS (dockerd + containerd)" MiB lower docker "$(kib2mib "$(memsum rss "$DPID" $c)")"
    emit "$S" "idle daemon PSS (dockerd + containerd)" MiB lower docker "$(kib2mib "$(memsum pss "$DPID" $c)")"
    emit "$S" "idle daemon anonymous memory (dockerd + containerd)" MiB lower docker "$(kib2mib "$(memsum anon "$DPID" $c)")"
  fi
  for k in RSS PSS "anonymous memory"; do emit "$S" "idle daemon $k (dockerd + containerd)" MiB lower podman "na:podman has no daemon"; done
}

# ---------------------------------------------------------------------------------------------
sec_scale() {
  local S="3. cost as the work grows" n have=0 eng i
  for n in $SIZES; do
    log "creating containers up to $n"
    for eng in $(ENGINES); do
      local t; t=$(now)
      seq $((have + 1)) "$n" | xargs -P4 -I{} bash "$W/er.sh" "$eng" create --name s{} bb true >/dev/null || log "create failed on $eng"
      X=$n PLOT=create emit "$S" "create (xargs -P4), time per container while growing to $n" s lower "$eng" "$(awk -v a="$t" -v b="$(now)" -v k=$((n - have)) 'BEGIN{print (b-a)/k}')"
    done
    have=$n
    declare -A PS=() IN=()
    for ((i = 0; i < N_Q; i++)); do
      for eng in $(order $i); do
        PS[$eng]+="$(secs e "$eng" ps -a) "
        IN[$eng]+="$(secs e "$eng" inspect s1) "
      done
    done
    for eng in $(ENGINES); do
      X=$n PLOT=ps emit "$S" "ps -a with $n containers" s lower "$eng" ${PS[$eng]}
      X=$n PLOT=inspect emit "$S" "inspect with $n containers" s lower "$eng" ${IN[$eng]}
    done
    unset PS IN
  done
}

# ---------------------------------------------------------------------------------------------
sec_pull() {
  local S="4. pull, save, load" port reg img eng i
  port=$(free_port)
  cat >"$W/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $W/registry}}
http: {addr: 127.0.0.1:$port}
EOF
  docker-registry serve "$W/registry.yml" >"$W/registry.log" 2>&1 &
  PIDS+=($!)
  wait_for "curl -sf http://127.0.0.1:$port/v2/"
  reg=127.0.0.1:$port
  log "generating a 200 MB layer and a 20,000-file image"
  mkdir -p "$W/ctx-big" "$W/ctx-small"
  head -c 200M /dev/urandom >"$W/ctx-big/big"
  python3 - "$W/ctx-small" 20000 <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(os.urandom(512) + b"x" * 512)
PY
  for img in big small; do
    tar -C "$W/ctx-$img" -cf "$W/$img.tar" .
    rm -rf "$W/ctx-$img"
    b import "$W/$img.tar" "$reg/bench/$img:1" >/dev/null
    b push -q "$reg/bench/$img:1" >/dev/null
    b rmi "$reg/bench/$img:1" >/dev/null
    rm -f "$W/$img.tar"
  done
  pull() { # eng ref
    case $1 in
      podman) p pull -q --tls-verify=false "$2" ;;
      *) e "$1" pull -q "$2" ;;
    esac
  }
  for img in big small; do
    local ref="$reg/bench/$img:1" label
    label=$([ $img = big ] && echo "pull a 200 MB single-layer image" || echo "pull a 20,000-small-file image")
    log "$label ($N_PULL runs, cold each time)"
    declare -A T=()
    for ((i = 0; i < N_PULL; i++)); do
      for eng in $(order $i); do
        e "$eng" rmi -f "$ref" >/dev/null 2>&1 || true
        sync
        T[$eng]+="$(secs pull "$eng" "$ref") "
      done
    done
    for eng in $(ENGINES); do PLOT=pull emit "$S" "$label from a local registry" s lower "$eng" ${T[$eng]}; done
    unset T
  done
  log "save / load of the 200 MB image ($N_PULL runs)"
  local ref="$reg/bench/big:1"
  declare -A SV=() LD=()
  for ((i = 0; i < N_PULL; i++)); do
    for eng in $(order $i); do
      rm -f "$W/save-$eng.tar"
      SV[$eng]+="$(secs e "$eng" save -o "$W/save-$eng.tar" "$ref") "
      e "$eng" rmi -f "$ref" >/dev/null 2>&1
      sync
      LD[$eng]+="$(secs e "$eng" load -q -i "$W/save-$eng.tar") "
    done
  done
  for eng in $(ENGINES); do
    PLOT=pull emit "$S" "save the 200 MB image to a file" s lower "$eng" ${SV[$eng]}
    PLOT=pull emit "$S" "load the 200 MB image from that file" s lower "$eng" ${LD[$eng]}
    rm -f "$W/save-$eng.tar"
    e "$eng" rmi -f "$reg/bench/big:1" "$reg/bench/small:1" >/dev/null 2>&1 || true
  done
}

# ---------------------------------------------------------------------------------------------
sec_build() {
  local S="5. build" i eng ctx=$W/bctx
  mkdir -p "$ctx"
  python3 - "$ctx/src" 1000 <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%02d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%04d.txt" % i), "w") as f:
        f.write(("line %d\n" % i) * 20)
PY
  echo "debug=false" >"$ctx/config.txt"
  cat >"$ctx/Dockerfile" <<'EOF'
FROM busybox
ENV APP=/app
WORKDIR /app
COPY src/ /app/src/
RUN find /app/src -type f | wc -l > /count
COPY config.txt /app/
RUN cat /app/config.txt > /cfg
LABEL bench=build
EXPOSE 8080
CMD ["cat", "/count"]
EOF
  bld() { # eng nocache?
    case $1 in
      berth) b build -q $2 -t bench:1 "$ctx" ;;
      docker) DOCKER_BUILDKIT=0 d build -q $2 --network host -t bench:1 "$ctx" ;;
      podman) p build -q $2 --network host --layers -t bench:1 "$ctx" ;;
    esac
  }
  log "build: cold and fully cached ($N_BUILD runs)"
  for eng in $(ENGINES); do bld "$eng" "" >/dev/null 2>&1 || true; done # base image warm-up
  declare -A CO=() CA=()
  for ((i = 0; i < N_BUILD; i++)); do
    for eng in $(order $i); do
      CO[$eng]+="$(secs bld "$eng" --no-cache) "
      CA[$eng]+="$(secs bld "$eng" "") "
    done
  done
  for eng in $(ENGINES); do
    emit "$S" "cold build (--no-cache), 10 steps, 1000-file context" s lower "$eng" ${CO[$eng]}
    emit "$S" "fully cached rebuild of the same" s lower "$eng" ${CA[$eng]}
  done
}

# ---------------------------------------------------------------------------------------------
sec_network() {
  local S="6. network" eng r port
  command -v wrk >/dev/null || { log "no wrk"; return; }
  log "published-port and container-to-container throughput (wrk -t2 -c10 -d${NET_SECS}s, busybox httpd)"
  declare -A PORT=() IP=() CPID=() PUB=() C2C=()
  for eng in berth docker; do
    [ $eng = docker ] && [ $HAVE_DOCKER = 0 ] && continue
    PORT[$eng]=$(free_port)
    e $eng run -d --name web -p "127.0.0.1:${PORT[$eng]}:80" bb sh -c 'mkdir -p /w && echo "<h1>hello</h1>" > /w/index.html && exec httpd -f -p 80 -h /w' >/dev/null
    e $eng run -d --name client bb sleep 100000 >/dev/null
    IP[$eng]=$(e $eng inspect -f '{{.NetworkSettings.IPAddress}}' web)
    CPID[$eng]=$(e $eng inspect -f '{{.State.Pid}}' client)
  done
  sleep 1
  rps() { wrk -t2 -c10 -d"${NET_SECS}s" "$1" 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
  for ((r = 0; r < 2; r++)); do
    for eng in berth docker; do
      [ -n "${PORT[$eng]:-}" ] || continue
      PUB[$eng]+="$(rps "http://127.0.0.1:${PORT[$eng]}/") "
      C2C[$eng]+="$(nsenter -t "${CPID[$eng]}" -n wrk -t2 -c10 -d"${NET_SECS}s" "http://${IP[$eng]}/" 2>/dev/null | awk '/Requests\/sec/ {print $2}') "
    done
  done
  for eng in berth docker; do
    [ -n "${PORT[$eng]:-}" ] || continue
    emit "$S" "published port -p 127.0.0.1:P:80, wrk requests/s" req/s higher $eng ${PUB[$eng]}
    emit "$S" "container to container over the bridge, wrk requests/s" req/s higher $eng ${C2C[$eng]}
    e $eng rm -f web client >/dev/null
  done
  emit "$S" "published port -p 127.0.0.1:P:80, wrk requests/s" req/s higher podman "na:podman's network stack (netavark) is not set up for private roots here"
  emit "$S" "container to container over the bridge, wrk requests/s" req/s higher podman "na:podman's network stack (netavark) is not set up for private roots here"
}

# ---------------------------------------------------------------------------------------------
sec_registry() {
  local S="7. registry server" r bp dp out k
  local BENCH=target/release/examples/berth-registry-bench
  bp=$(free_port); dp=$(free_port)
  target/release/examples/serve --root "$W/breg" --addr "127.0.0.1:$bp" >"$W/breg.log" 2>&1 &
  PIDS+=($!)
  cat >"$W/dreg.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $W/dreg}}
http: {addr: 127.0.0.1:$dp}
EOF
  docker-registry serve "$W/dreg.yml" >"$W/dreg.log" 2>&1 &
  PIDS+=($!)
  wait_for "curl -sf http://127.0.0.1:$bp/v2/"; wait_for "curl -sf http://127.0.0.1:$dp/v2/"
  log "registry server: berth-registry vs distribution (docker-registry), 200 MiB blob, 5000 requests x16"
  declare -A R=()
  for ((r = 0; r < 2; r++)); do
    for k in berth docker; do
      local port=$bp; [ $k = docker ] && port=$dp
      out=$($BENCH "http://127.0.0.1:$port" 200 5000 16 2>&1 | tail -1)
      R[$k,push]+="$(echo "$out" | sed -n 's/.*push \([0-9.]*\) MiB.*/\1/p') "
      R[$k,pull]+="$(echo "$out" | sed -n 's/.*pull \([0-9.]*\) MiB.*/\1/p') "
      R[$k,head]+="$(echo "$out" | sed -n 's/.*HEAD blob \([0-9.]*\) req.*/\1/p') "
      R[$k,get]+="$(echo "$out" | sed -n 's/.*GET manifest \([0-9.]*\) req.*/\1/p') "
    done
  done
  for k in berth docker; do
    emit "$S" "push one 200 MiB blob (docker column: distribution registry 2.8)" MiB/s higher $k ${R[$k,push]}
    emit "$S" "pull it back" MiB/s higher $k ${R[$k,pull]}
    emit "$S" "HEAD blob, 16 concurrent" req/s higher $k ${R[$k,head]}
    emit "$S" "GET manifest, 16 concurrent" req/s higher $k ${R[$k,get]}
  done
  for k in "push one 200 MiB blob (docker column: distribution registry 2.8)" "pull it back" "HEAD blob, 16 concurrent" "GET manifest, 16 concurrent"; do
    emit "$S" "$k" x higher podman "na:podman has no registry server"
  done
}

# ---------------------------------------------------------------------------------------------
sec_compose() {
  local S="8. compose" i k proj=$ROOT/tests/compose/five/compose.yaml pn="five$ID"
  cat >"$W/wait-healthy.py" <<'PY'
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
  up() { # kind
    case $1 in
      berth) b compose -p "$pn" -f "$proj" up -d --wait ;;
      docker) DOCKER_HOST="unix://$W/docker.sock" docker-compose -p "$pn" -f "$proj" up -d && python3 "$W/wait-healthy.py" "$W/docker.sock" "$pn" 5 ;;
    esac
  }
  down() {
    case $1 in
      berth) b compose -p "$pn" -f "$proj" down -v -t 0 ;;
      docker) DOCKER_HOST="unix://$W/docker.sock" docker-compose -p "$pn" -f "$proj" down -v -t 0 ;;
    esac
  }
  local kinds=(berth)
  [ $HAVE_DOCKER = 1 ] && command -v docker-compose >/dev/null && kinds+=(docker)
  log "compose up -d --wait of a five-service project ($N_COMPOSE runs)"
  declare -A T=()
  for ((i = 0; i < N_COMPOSE; i++)); do
    local ks=("${kinds[@]}")
    [ $((i % 2)) = 1 ] && ks=($(printf '%s\n' "${kinds[@]}" | tac))
    for k in "${ks[@]}"; do T[$k]+="$(secs up $k) "; down $k >/dev/null 2>&1; done
  done
  emit "$S" "five-service up -d --wait to all healthy (docker: docker-compose 1.29 + poll)" s lower berth ${T[berth]}
  emit "$S" "five-service up -d --wait to all healthy (docker: docker-compose 1.29 + poll)" s lower docker ${T[docker]:-na:docker-compose or dockerd missing}
  emit "$S" "five-service up -d --wait to all healthy (docker: docker-compose 1.29 + poll)" s lower podman "na:podman-compose is not installed"
}

for s in $SECTIONS; do
  case $s in
    run | memory | scale | pull | build | network | registry | compose) ;;
    *) echo "unknown section $s" >&2; exit 2 ;;
  esac
done
# memory's 50-running figures are taken inside the run section's run -d rounds
for s in $SECTIONS; do
  [ $s = memory ] && [[ " $SECTIONS " != *" run "* ]] && N_RUN=3 && ROUNDS=1 && sec_run
  "sec_$s"
done
python3 - "$START" >>"$RES" <<'PY'
import json, sys, time
print(json.dumps({"meta": {"load_end": " ".join(open("/proc/loadavg").read().split()[:3]), "elapsed_s": round(time.time() - float(sys.argv[1]))}}))
PY
cleanup
target/bench-report/release/bench-report "$RES" "$OUT"
cat "$OUT/latest.md"
echo "wrote $OUT/latest.md and the plots beside it" >&2
