# bench/lib.sh — sourced by bench/all.sh: starts berth, a private dockerd (Debian docker.io) and
# podman (runc, private storage) once, side by side, gives them the same busybox images, and
# records results as JSON lines for bench/report. Everything lives under $W and is removed on
# exit, even on failure (daemons, shims, bridges, nft table, mounts, podman storage).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B="${BERTH:-$ROOT/target/release/berth}"
W=$(mktemp -d /tmp/berth-bench.XXXXXX)
ID=$$
BBR="bbn$ID"; DBR="dbn$ID"; NFT="berth-bench-$ID"
RES="${RES:-$ROOT/bench/results/latest.jsonl}"
PIDS=()
HAVE_DOCKER=0; HAVE_PODMAN=0

log() { printf '[%s] %s\n' "$(date -u +%T)" "$*" >&2; }
now() { echo "$EPOCHREALTIME"; }
# secs CMD...: runs CMD (output discarded), prints elapsed seconds; fails if CMD fails
secs() { local t0=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || { log "FAILED: $*"; return 0; }; awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.6f\n", b-a}'; }
wait_for() { for _ in $(seq 1 300); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; log "timeout waiting for: $1"; return 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# emit SECTION ROW UNIT BETTER ENGINE VALUES... (VALUES empty or "na:<why>" = not available)
# Optional env: PLOT=<plot id> X=<x value> for the report's charts.
emit() {
  local sec=$1 row=$2 unit=$3 better=$4 eng=$5; shift 5
  python3 - "$sec" "$row" "$unit" "$better" "$eng" "${PLOT:-}" "${X:-}" "$@" >>"$RES" <<'PY'
import json, sys
sec, row, unit, better, eng, plot, x, *vals = sys.argv[1:]
d = {"section": sec, "row": row, "unit": unit, "better": better, "engine": eng}
if vals and vals[0].startswith("na:"):
    d["na"] = vals[0][3:]
elif not vals:
    d["na"] = "no result"
else:
    d["values"] = [float(v) for v in vals]
if plot: d["plot"] = plot
if x: d["x"] = float(x)
print(json.dumps(d))
PY
}

# Engine CLIs. e ENGINE ARGS... runs the engine's CLI.
b() { "$B" -H "unix://$W/berth.sock" "$@"; }
d() { docker -H "unix://$W/docker.sock" "$@"; }
PODMAN=(podman --root "$W/podman" --runroot "$W/podman-run" --runtime runc --storage-driver overlay --cgroup-manager cgroupfs)
p() { "${PODMAN[@]}" "$@"; }
# Flags podman needs on this machine for `run`/`create` (no CNI/netavark set up for private roots).
PRUN=(--network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
e() { local eng=$1; shift; case $eng in berth) b "$@" ;; docker) d "$@" ;; podman) p "$@" ;; esac; }
# er ENGINE run|create ARGS...: run/create with the engine's required extra flags
er() { local eng=$1 verb=$2; shift 2; if [ "$eng" = podman ]; then p "$verb" "${PRUN[@]}" "$@"; else e "$eng" "$verb" "$@"; fi; }
ENGINES() { echo berth; [ $HAVE_DOCKER = 1 ] && echo docker; [ $HAVE_PODMAN = 1 ] && echo podman; true; }
# order I: the engines rotated by I, so each engine goes first, second, third in turn
order() { local all=($(ENGINES)); local n=${#all[@]} i; for ((i = 0; i < n; i++)); do echo "${all[$(((i + $1) % n))]}"; done; }

# memory of a process: rss|pss|anon in KiB (smaps_rollup)
mem() { awk -v k="$2" 'k=="rss" && /^Rss:/ {print $2} k=="pss" && /^Pss:/ {print $2} k=="anon" && /^Anonymous:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
memsum() { local k=$1 s=0 x; shift; for x in "$@"; do s=$((s + $(mem "$x" "$k"))); done; echo "$s"; }
kib2mib() { awk -v k="$1" 'BEGIN{printf "%.2f\n", k/1024}'; }

cleanup() {
  set +e
  trap - EXIT INT TERM
  log "cleaning up $W"
  [ $HAVE_PODMAN = 1 ] && { p rm -af -t 0 >/dev/null 2>&1; p pod rm -af >/dev/null 2>&1; }
  for x in "${PIDS[@]}"; do kill "$x" 2>/dev/null; done
  sleep 2
  for x in "${PIDS[@]}"; do kill -9 "$x" 2>/dev/null; done
  # shims and conmons of ours (found by our private paths), by pid
  for x in $(pgrep -f "$W/" 2>/dev/null); do [ "$x" != $$ ] && kill -9 "$x" 2>/dev/null; done
  sleep 0.5
  grep " $W" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  ip link del "$BBR" 2>/dev/null; ip link del "$DBR" 2>/dev/null
  nft delete table ip "$NFT" 2>/dev/null
  for cg in /sys/fs/cgroup/berth-bench-$ID /sys/fs/cgroup/*/berth-bench-$ID; do
    [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf "$W"
}

start_engines() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  bash "$ROOT/scripts/mk-busybox-rootfs.sh" "$W/bb.tar" >/dev/null
  # berth
  "$B" daemon --data-root "$W/berth" --exec-root "$W/berth-run" -H "unix://$W/berth.sock" \
    --bridge "$BBR" --nft-table "$NFT" --cgroup-parent "berth-bench-$ID" >"$W/berth.log" 2>&1 &
  BPID=$!; PIDS+=($BPID)
  wait_for "b version" || { tail -5 "$W/berth.log" >&2; exit 1; }
  b import --change 'CMD ["sh"]' "$W/bb.tar" bb:latest >/dev/null
  b tag bb:latest busybox:latest
  b save -o "$W/bb-image.tar" bb:latest busybox:latest
  # docker: own bridge on a free private /24, no iptables (ONLY_BERTH=1: berth alone, for profiles)
  if [ "${ONLY_BERTH:-0}" != 1 ] && command -v dockerd >/dev/null && command -v docker >/dev/null; then
    local net
    for net in $(seq 180 199); do ip route | grep -q "^10.$net.77." || break; done
    ip link add "$DBR" type bridge && ip addr add "10.$net.77.1/24" dev "$DBR" && ip link set "$DBR" up
    dockerd --data-root "$W/docker" -H "unix://$W/docker.sock" --pidfile "$W/docker.pid" \
      --exec-root "$W/docker-run" --bridge "$DBR" --iptables=false --ip6tables=false >"$W/dockerd.log" 2>&1 &
    DPID=$!; PIDS+=($DPID)
    if wait_for "d version"; then
      HAVE_DOCKER=1
      d load -q -i "$W/bb-image.tar" >/dev/null
    else
      log "dockerd did not start: docker figures will be 'not available'"; tail -5 "$W/dockerd.log" >&2
    fi
  fi
  if [ "${ONLY_BERTH:-0}" = 1 ]; then
    :
  elif command -v podman >/dev/null && p load -q -i "$W/bb-image.tar" >/dev/null 2>&1; then
    HAVE_PODMAN=1
  else
    log "podman cannot load images here: podman figures will be 'not available'"
  fi
  { declare -p B W PODMAN PRUN; declare -f b d p e er; echo 'er "$@"'; } >"$W/er.sh"
  log "engines: $(ENGINES | tr '\n' ' ')(work dir $W)"
}

# containerd of our dockerd (its child), for memory figures
containerd_pid() { pgrep -P "$DPID" containerd | head -1; }
# per-container processes: berth-shim, containerd-shim-runc-v2 (ours), conmon (ours)
shim_pids() {
  case $1 in
    berth) pgrep -f "berth-shim shim $W/" ;;
    docker) pgrep -f "containerd-shim.*$W/" ;;
    podman) pgrep -f "conmon.*$W/" ;;
  esac
}
