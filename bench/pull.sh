#!/usr/bin/env bash
# bench/pull.sh — pull speed from a local registry: `berth pull` vs `docker pull` vs `skopeo copy`.
#
# Two images are generated and pushed to a private CNCF registry (Debian's docker-registry) on
# 127.0.0.1: one 200 MB single-layer image (incompressible data) and one with 20,000 small files.
# Every run is cold (the image is removed first); the median of $RUNS runs is reported with the
# ratios to berth. berth and (when no dockerd is running) dockerd run with private roots, so
# nothing of the host's own setup is touched.
#
#   RUNS=3 BERTH=target/release/berth bench/pull.sh
#
# Use a release build of berth: a debug build hashes and inflates 10x slower.
#
# Results on the shared 2-core dev VM (2026-11-23, RUNS=5, release build, medians; other jobs
# were compiling at the same time, so the small-file numbers are noisy):
#   200 MB, 1 layer        berth 0.85 s   docker 2.45 s   skopeo copy (no unpack) 1.32 s  -> 2.9x faster than docker
#   20000 small files      berth 5.93 s   docker 7.22 s   skopeo copy (no unpack) 0.14 s  -> 1.2x faster than docker
#   (a plain `tar -xf` of the 20k-file layer takes 6-9 s on this disk: file creation is the floor)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
BERTH=${BERTH:-target/release/berth}
[ -x "$BERTH" ] || BERTH=target/debug/berth
[ -x "$BERTH" ] || { echo "build berth first (cargo build --release -p berth)" >&2; exit 1; }
BERTH=$(realpath "$BERTH")
BIG_MB=${BIG_MB:-200}
SMALL_FILES=${SMALL_FILES:-20000}

WORK=$(mktemp -d /tmp/berth-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  grep " $WORK" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  ip link del "bbench$$" 2>/dev/null || true
  nft delete table ip "berth-bench-$$" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 1 200); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "timeout waiting for: $1" >&2; return 1; }
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) printf "%.3f\n", a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# --- registry ------------------------------------------------------------------------------
PORT=$(free_port)
cat > "$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
PIDS+=($!); disown $!
wait_for "curl -sf http://127.0.0.1:$PORT/v2/"
REG=127.0.0.1:$PORT

# --- berth daemon --------------------------------------------------------------------------
BSOCK=$WORK/berth.sock
NETARGS=()
if "$BERTH" daemon --help 2>/dev/null | grep -q -- '--bridge'; then
  NETARGS=(--bridge "bbench$$" --nft-table "berth-bench-$$")
fi
"$BERTH" daemon --data-root "$WORK/berth-data" --exec-root "$WORK/berth-run" --cgroup-parent "berth-bench-$$" \
  -H "unix://$BSOCK" "${NETARGS[@]}" > "$WORK/berth.log" 2>&1 &
PIDS+=($!); disown $!
wait_for "test -S $BSOCK" || { tail -5 "$WORK/berth.log" >&2; exit 1; }
b() { BERTH_HOST="unix://$BSOCK" "$BERTH" "$@"; }

# --- images --------------------------------------------------------------------------------
echo "generating images in $WORK ..." >&2
mkdir -p "$WORK/ctx-big" "$WORK/ctx-small"
head -c "${BIG_MB}M" /dev/urandom > "$WORK/ctx-big/big"
python3 - "$WORK/ctx-small" "$SMALL_FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(os.urandom(512) + b"x" * 512)
EOF
tar -C "$WORK/ctx-big" -cf "$WORK/big.tar" .
tar -C "$WORK/ctx-small" -cf "$WORK/small.tar" .
rm -rf "$WORK/ctx-big" "$WORK/ctx-small"
for img in big small; do
  b import "$WORK/$img.tar" "$REG/bench/$img:1" >/dev/null
  b push -q "$REG/bench/$img:1" >/dev/null
  b rmi "$REG/bench/$img:1" >/dev/null
  rm -f "$WORK/$img.tar"
done

# --- dockerd (optional) --------------------------------------------------------------------
DOCKER=()
if command -v docker >/dev/null; then
  if docker info >/dev/null 2>&1; then
    DOCKER=(docker)
  elif command -v dockerd >/dev/null; then
    dockerd --data-root "$WORK/docker-data" --exec-root "$WORK/docker-run" -H "unix://$WORK/docker.sock" \
      --pidfile "$WORK/docker.pid" --bridge=none --iptables=false --ip6tables=false \
      > "$WORK/dockerd.log" 2>&1 &
    PIDS+=($!); disown $!
    if wait_for "docker -H unix://$WORK/docker.sock info"; then
      DOCKER=(docker -H "unix://$WORK/docker.sock")
    else
      echo "dockerd did not start (see below); skipping docker" >&2
      tail -5 "$WORK/dockerd.log" >&2 || true
    fi
  fi
fi

# --- runs ----------------------------------------------------------------------------------
declare -A RES
for img in big small; do
  ref="$REG/bench/$img:1"
  for tool in berth docker skopeo; do
    : > "$WORK/times"
    for _ in $(seq 1 "$RUNS"); do
      case $tool in
        berth)
          b rmi -f "$ref" >/dev/null 2>&1 || true
          t0=$(now); b pull -q "$ref" >/dev/null; t1=$(now) ;;
        docker)
          [ ${#DOCKER[@]} -gt 0 ] || break
          "${DOCKER[@]}" rmi -f "$ref" >/dev/null 2>&1 || true
          t0=$(now); "${DOCKER[@]}" pull -q "$ref" >/dev/null; t1=$(now) ;;
        skopeo)
          command -v skopeo >/dev/null || break
          rm -rf "$WORK/skopeo"
          t0=$(now); skopeo copy -q --src-tls-verify=false "docker://$ref" "dir:$WORK/skopeo" >/dev/null; t1=$(now) ;;
      esac
      echo "$t1 - $t0" | bc -l >> "$WORK/times"
    done
    RES[$img,$tool]=$(median < "$WORK/times")
    echo "$img $tool: $(tr '\n' ' ' < "$WORK/times")" >&2
  done
done

ratio() { if [ "$1" = "-" ] || [ "$2" = "-" ]; then echo "-"; else printf "%.2fx" "$(echo "$1 / $2" | bc -l)"; fi; }
printf "\n%-28s %9s %9s %9s %14s %14s\n" "image (median of $RUNS, s)" berth docker skopeo "docker/berth" "skopeo/berth"
for img in big small; do
  label=$([ $img = big ] && echo "${BIG_MB} MB, 1 layer" || echo "$SMALL_FILES small files")
  printf "%-28s %9s %9s %9s %14s %14s\n" "$label" "${RES[$img,berth]}" "${RES[$img,docker]}" "${RES[$img,skopeo]}" \
    "$(ratio "${RES[$img,docker]}" "${RES[$img,berth]}")" "$(ratio "${RES[$img,skopeo]}" "${RES[$img,berth]}")"
done
echo "(skopeo copies to a directory: download and verify only, no unpack)"
