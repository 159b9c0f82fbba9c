#!/usr/bin/env bash
# Cold and fully cached 10-step build with a 1000-file context, berth vs docker (classic) vs podman:
# the `build` section of bench/all.sh (results in bench/results/partial/).
exec "$(dirname "$0")/all.sh" build
