#!/usr/bin/env bash
# berth's main job on a fresh Debian 12 machine (as root), no registry needed: install what is
# needed, build berth, start its daemon, make a base image from Debian's busybox-static, and walk
# the seed notes' flow with `berth` where they type `docker`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release -p berth
B="$PWD/target/release/berth"
export BERTH_HOST=unix:///run/berth/berth.sock

step() { printf '\n\033[1m$ berth %s\033[0m\n' "$*"; "$B" "$@"; }

# The CLI starts the daemon on first use when none answers; start it explicitly here so its
# log is in a known place.
if ! "$B" version >/dev/null 2>&1; then
  mkdir -p /var/lib/berth
  setsid "$B" daemon >>/var/lib/berth/daemon.log 2>&1 < /dev/null &
  for _ in $(seq 1 100); do "$B" version >/dev/null 2>&1 && break; sleep 0.1; done
fi

tar=$(mktemp /tmp/berth-busybox.XXXXXX.tar)
trap 'rm -f "$tar"' EXIT
bash scripts/mk-busybox-rootfs.sh "$tar"
for c in mbti web client; do "$B" rm -f "$c" >/dev/null 2>&1 || true; done
"$B" network rm demo-net >/dev/null 2>&1 || true

step import --change 'CMD ["sh"]' "$tar" busybox:latest
step images
step image history busybox
step run --rm busybox echo "hello from a container"
step run -d --name mbti -e MBTI=INTJ -p 127.0.0.1:8080:80 busybox \
     sh -c 'echo "starting, MBTI=$MBTI"; httpd -f -p 80 -h /var/www'
step ps
step exec mbti sh -c 'echo "inside: $(hostname), MBTI=$MBTI"; ls /var/www'
printf '\n\033[1m$ curl http://127.0.0.1:8080/\033[0m\n'
for _ in $(seq 1 50); do curl -fsS http://127.0.0.1:8080/ && break; sleep 0.1; done
step logs mbti
step container inspect -f '{{.State.Status}} {{.NetworkSettings.IPAddress}}' mbti
step network create demo-net
step run -d --name web --network demo-net --network-alias www busybox httpd -f -p 80 -h /var/www
step run --rm --network demo-net busybox sh -c 'printf "GET / HTTP/1.0\r\n\r\n" | nc www 80 | tail -1'
step stop mbti web
step ps -a
step rm mbti web
step network rm demo-net
step container prune -f
step system df
