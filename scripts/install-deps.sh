#!/usr/bin/env bash
# Installs everything berth's build, demo and tests need on a fresh Debian 12 machine.
# Idempotent: packages already present are skipped quickly.
set -euo pipefail
PKGS=(busybox-static libseccomp-dev pkg-config nftables iproute2 e2fsprogs
      docker.io podman runc skopeo umoci docker-registry docker-compose
      python3-docker wrk hyperfine apache2-utils tini golang-go openssl curl zstd procps bsdutils faketime)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Never let package scripts start services (dockerd etc.) on install.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
# Fuzzing (scripts/fuzz.sh): the nightly toolchain and cargo-fuzz.
if command -v rustup >/dev/null 2>&1; then
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
fi
