#!/usr/bin/env bash
# Pull of a 200 MB layer and a 20,000-file image from a local registry, save/load of the 200 MB
# image: the `pull` section of bench/all.sh (results in bench/results/partial/).
exec "$(dirname "$0")/all.sh" pull
