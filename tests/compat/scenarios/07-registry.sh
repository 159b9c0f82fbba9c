# push / pull through a local registry (the seed notes' docker push/pull, with a 127.0.0.1 registry).
. "$COMPAT/lib.sh"
q tag busybox "$REG/$P/busybox:1.0"
run sh -c "$DOCKER push $REG/$P/busybox:1.0 | grep -E '^(The push refers|1.0: digest)' | sed 's/ size: [0-9]*//'"
d rmi "$REG/$P/busybox:1.0"
run sh -c "$DOCKER pull $REG/$P/busybox:1.0 | grep -vE '(Pulling fs layer|Waiting|Downloading|Verifying|Download complete|Extracting|Pull complete|Already exists)'"
d run --rm "$REG/$P/busybox:1.0" echo pulled
d image inspect --format '{{len .RepoDigests}}' "$REG/$P/busybox:1.0"
d pull -q "$REG/$P/busybox:1.0"
run sh -c "$DOCKER pull $REG/$P/busybox@\$($DOCKER image inspect --format '{{index .RepoDigests 0}}' $REG/$P/busybox:1.0 | cut -d@ -f2) | tail -1"
d pull "$REG/$P/nothere:1"
d rmi "$REG/$P/busybox:1.0" >/dev/null
q rmi -f $($DOCKER images -q "$REG/$P/busybox" | sort -u)
q image prune -f
