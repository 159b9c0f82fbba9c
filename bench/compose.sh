#!/usr/bin/env bash
# Five-service compose up -d --wait to all healthy (tests/compose/five), berth compose vs
# docker-compose 1.29 on dockerd: the `compose` section of bench/all.sh (results in
# bench/results/partial/).
exec "$(dirname "$0")/all.sh" compose
