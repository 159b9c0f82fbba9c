# Volumes: create, ls, inspect, use from two containers, image VOLUME copy-up, rm in use, prune.
. "$COMPAT/lib.sh"
d volume create "$P-data"
d volume ls --format '{{.Name}} {{.Driver}}' --filter "name=$P-"
d volume inspect --format '{{.Name}} {{.Driver}} {{.Scope}} {{json .Labels}}' "$P-data"
d run --rm -v "$P-data:/data" busybox sh -c 'echo persisted > /data/file'
d run --rm -v "$P-data:/data:ro" busybox cat /data/file
d run --rm -v "$P-data:/data:ro" busybox sh -c 'echo x > /data/file'
d run --rm --mount "type=volume,source=$P-data,target=/m" busybox ls /m
d run --rm --mount "type=bind,source=$WORK,target=/w,readonly" busybox sh -c 'touch /w/x'
d run --rm --tmpfs /scratch busybox sh -c 'mount | grep -c " /scratch "'
q run -d --name "$P-user" -v "$P-data:/data" busybox sleep 300
d volume rm "$P-data"
d rm -f "$P-user"
d volume rm "$P-data"
d volume inspect "$P-data"
# anonymous volume with -v /path, removed with --rm
d run --rm -v /anon busybox sh -c 'echo anon > /anon/f && cat /anon/f'
d volume create --label team=seed "$P-lab" >/dev/null
d volume inspect --format '{{json .Labels}}' "$P-lab"
# API 1.42+ prunes only anonymous volumes unless --all (docker 28 has it; 20.10 has not)
all=""; "$DOCKER" volume prune --help 2>/dev/null | grep -q -- '--all' && all="-a"
echo '$ docker volume prune -f [-a] --filter label=team=seed'
"$DOCKER" volume prune -f $all --filter label=team=seed
d volume ls -q --filter "name=$P-"
