#!/usr/bin/env bash
# run --rm latency, run -d x50 / rm -f, 20 concurrent runs, daemon and shim memory, published-port
# and container-to-container throughput: the `run memory network` sections of bench/all.sh
# (one setup of berth, dockerd and podman; results in bench/results/partial/).
exec "$(dirname "$0")/all.sh" run memory network
