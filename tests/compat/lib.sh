# Helpers sourced by every scenario script. A scenario prints a transcript: each command, its
# combined output and its exit code. The driver (crates/berth/tests/compat.rs) runs the same
# script against berth and against a real dockerd, normalises both transcripts (ids, times,
# sizes, addresses masked) and compares them with each other and with expected/<scenario>.out.
#
# Environment set by the driver:
#   DOCKER       the docker client binary (/usr/bin/docker 20.10 or /usr/local/bin/docker 28.2)
#   DOCKER_HOST  the engine under test
#   P            a prefix for every name a scenario creates (unique per run)
#   WORK         a scratch directory for this run
#   REG          host:port of a local registry (berth registry serve)
#   PORT         a free TCP port on 127.0.0.1 for published ports
#   BUSYBOX_TAR  the busybox rootfs tar (busybox:latest is already imported)
#   ENGINE       berth or dockerd (for the rare documented difference)
#   COMPAT       this directory
set -u
export DOCKER_BUILDKIT=0
# 28.x clients print a deprecation banner for the classic builder; keep transcripts stable.
export DOCKER_CLI_HINTS=false

# run CMD...: print "$ CMD", its stdout, its stderr (lines prefixed "! "; after stdout, so the
# transcript does not depend on how the two interleave), then "[exit N]". Killed after 60 s.
run() {
    echo "\$ $*"
    local err rc
    err=$(mktemp)
    timeout -k 5 60 "$@" 2>"$err"
    rc=$?
    sed 's/^/! /' "$err"
    rm -f "$err"
    echo "[exit $rc]"
}

# d ARGS...: `run` the docker client.
d() {
    run "$DOCKER" "$@"
}

# q ARGS...: the docker client with its output hidden (setup and cleanup steps).
q() {
    timeout -k 5 60 "$DOCKER" "$@" >/dev/null 2>&1
}

# tty SEND... -- CMD...: run CMD on a pseudo-terminal, typing each SEND line after a prompt.
tty() {
    local args=()
    while [ "$1" != "--" ]; do args+=(--send "$1"); shift; done
    shift
    echo "\$ (tty) $*"
    timeout -k 5 60 python3 "$COMPAT/ptyrun.py" "${args[@]}" -- "$@"
    echo "[exit $?]"
}

# wait_for CMD...: retry CMD (quietly) until it succeeds, up to ~10 s.
wait_for() {
    local i
    for i in $(seq 100); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "wait_for timed out: $*"
    return 1
}
