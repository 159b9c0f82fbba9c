#!/usr/bin/env bash
# Make expected/ from the last run's dockerd transcripts (target/tmp/compat/), after reading
# them: <scenario>.out from docker 20.10's, <scenario>@28.out only where docker 28's differs.
# Usage: tests/compat/bless.sh [scenario-substring]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../../target/tmp/compat"
for f in "$out"/*"${1:-}"*@20.dockerd.out; do
    [ -e "$f" ] || continue
    name=$(basename "$f" @20.dockerd.out)
    cp "$f" "$here/expected/$name.out"
    if [ -e "$out/$name@28.dockerd.out" ] && ! cmp -s "$f" "$out/$name@28.dockerd.out"; then
        cp "$out/$name@28.dockerd.out" "$here/expected/$name@28.out"
    else
        rm -f "$here/expected/$name@28.out"
    fi
    echo "blessed $name"
done
