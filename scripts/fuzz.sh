#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 10), seeding the corpora
# from the repository's own fixtures. Needs the nightly toolchain and cargo-fuzz
# (scripts/install-deps.sh installs both). A crash fails the script and leaves the input in
# fuzz/artifacts/<target>/. `scripts/fuzz.sh 3600` is a long run.
# FUZZ_BUILD: cargo-fuzz build flags; default "--dev -s none" (debug assertions and overflow
# checks, libFuzzer coverage, no sanitizer: all seven targets build in minutes). Set it to ""
# for cargo-fuzz's optimised AddressSanitizer build, or "-O -s none" for the fastest runs.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${1:-10}
FEATURES=${FUZZ_FEATURES-engine}
BUILD=${FUZZ_BUILD---dev -s none}
TARGETS=${FUZZ_TARGETS:-"dockerfile reference manifest image_config tar_apply compose api_body"}
seed() { # target, files...
  local dir=corpus/$1; shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp -f "$f" "$dir/$(sha256sum "$f" | cut -c1-16)"; done
  return 0
}
seed dockerfile ../tests/dockerfiles/*/Dockerfile || true
seed compose $(find ../tests/compose -name "*.y*ml" 2>/dev/null) || true
mkdir -p corpus/reference corpus/manifest corpus/image_config corpus/api_body corpus/tar_apply
printf 'busybox' > corpus/reference/a; printf 'docker.io/library/busybox:1.36@sha256:%064d' 0 > corpus/reference/b
printf 'localhost:5000/a/b-c_d.e:tag' > corpus/reference/c
printf 'application/vnd.oci.image.manifest.v1+json\n{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%064d","size":2},"layers":[]}' 0 > corpus/manifest/a
printf '\n{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%064d","size":2,"platform":{"os":"linux","architecture":"amd64"}}]}' 0 > corpus/manifest/b
printf '{"architecture":"amd64","os":"linux","config":{"Env":["A=b"],"WorkingDir":"/proc/self/fd/7","User":"../../x","Volumes":{"/../../etc":{}}},"rootfs":{"type":"layers","diff_ids":[]}}' > corpus/image_config/a
printf 'ENV A=b\nWORKDIR /x\nCMD ["sh"]\nEXPOSE 80/tcp\nUSER 1:1\n' > corpus/image_config/b
printf '{"Image":"busybox","Cmd":["sh"],"Env":["A=1"],"HostConfig":{"Memory":-1,"NanoCpus":1,"Binds":["/a:/b:ro"]}}' > corpus/api_body/a
printf '512m' > corpus/api_body/b
if [ -z "$(ls corpus/tar_apply)" ]; then
  t=$(mktemp -d); mkdir -p "$t/src/d"; echo hi > "$t/src/d/f"; ln -s /etc "$t/src/l"; ln "$t/src/d/f" "$t/src/h"
  tar -C "$t/src" -cf corpus/tar_apply/a . ; gzip -c corpus/tar_apply/a > corpus/tar_apply/b; rm -rf "$t"
fi
start=$(date +%s)
for t in $TARGETS; do
  echo "fuzz: $t for ${SECONDS_EACH}s" >&2
  cargo +nightly fuzz run $BUILD ${FEATURES:+--features "$FEATURES"} "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -timeout=30 -print_final_stats=0 2>&1 \
    | grep -E "^(#[0-9]+ *DONE|==|SUMMARY|thread|panicked|Done)|ERROR|crash" || true
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz: $t found a crash (fuzz/artifacts/$t)" >&2; exit 1; }
done
echo "fuzz: all targets ran ${SECONDS_EACH}s each without a crash ($(( $(date +%s) - start ))s total)" >&2
