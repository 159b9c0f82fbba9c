#!/usr/bin/env bash
# Writes a busybox root filesystem tar (from Debian's busybox-static) to $1 (default: stdout).
# Used by the demo, the tests and the benchmarks as the base image everyone shares.
set -euo pipefail
out=${1:--}
bb=/bin/busybox
[ -x "$bb" ] || { echo "mk-busybox-rootfs: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
dir=$(mktemp -d /tmp/berth-rootfs.XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home,proc,sys,dev,var/www,var/log,run}
chmod 1777 "$dir/tmp"
cp "$bb" "$dir/bin/busybox"
for app in $("$bb" --list-full); do
  [ "$app" = bin/busybox ] && continue
  mkdir -p "$dir/$(dirname "$app")"
  ln -sf /bin/busybox "$dir/$app"
done
cat > "$dir/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
P
cat > "$dir/etc/group" <<'G'
root:x:0:
daemon:x:1:
tty:x:5:
www-data:x:33:
nogroup:x:65534:
G
echo 'hosts: files dns' > "$dir/etc/nsswitch.conf"
echo '<h1>hello from berth</h1>' > "$dir/var/www/index.html"
if [ "$out" = - ]; then
  tar --numeric-owner -C "$dir" -cf - .
else
  tar --numeric-owner -C "$dir" -cf "$out" .
fi
