# `docker run` with the seed notes' flags, ps, inspect --format, logs, stop/start, rm, prune.
. "$COMPAT/lib.sh"
printf 'FROM_FILE=yes\n# a comment\nPORT=ignored-by-e\n\nEMPTY=\n' > "$WORK/.docker.env"
d container run --name "$P-mbti" -e PORT=3000 --env-file "$WORK/.docker.env" --rm -d busybox sh -c 'env | sort | grep -E "^(PORT|FROM_FILE|EMPTY)="; sleep 100' >/dev/null
wait_for sh -c "$DOCKER logs $P-mbti | grep -q FROM_FILE"
d logs "$P-mbti"
d container ls --format '{{.Names}} {{.Image}} {{.Command}} {{.Status}}' --filter "name=$P-mbti"
d container exec "$P-mbti" ls /bin/sh
d container exec "$P-mbti" sh -c 'echo $PORT; exit 7'
d container stop -t 1 "$P-mbti"
wait_for sh -c "[ -z \"\$($DOCKER ps -aq -f name=$P-mbti)\" ]"
d container ls -a --format '{{.Names}}' --filter "name=$P-mbti"
# exit codes
d run --rm busybox sh -c 'echo out; echo err >&2; exit 3'
# the runtime's wording differs between runc versions: keep the part every runtime prints
run bash -c "$DOCKER run --rm busybox /nonexistent 2>&1 | grep -o 'exec: \"/nonexistent\": stat /nonexistent: no such file or directory'; exit \${PIPESTATUS[0]}"
d run --rm busybox true
d run --rm --pull never "$P-missing:1" true
d run --name "$P-dup" busybox true
d run --name "$P-dup" busybox true
d rm "$P-dup"
# -w, -u, --hostname, --entrypoint, -v bind, -p
mkdir -p "$WORK/host"
echo "from host" > "$WORK/host/in.txt"
d run --rm --group-add 5 busybox id
d run --rm -u 1000 busybox id
d run --rm -w /work -u 1000:1000 --hostname "seed-host" -v "$WORK/host:/work" busybox sh -c 'pwd; id; hostname; cat in.txt'
d run --rm -v "$WORK/host:/work" busybox sh -c 'echo written > /work/out.txt'
run cat "$WORK/host/out.txt"
d run --rm --entrypoint /bin/echo busybox via entrypoint
d run -d --name "$P-web" -p 127.0.0.1:$PORT:80 busybox sh -c 'mkdir -p /www && echo seed-page > /www/index.html && httpd -f -p 80 -h /www' >/dev/null
d port "$P-web"
d inspect --format '{{.Name}} {{.State.Status}} {{.State.Running}} {{.HostConfig.NetworkMode}} {{json .HostConfig.PortBindings}} {{json .Config.ExposedPorts}}' "$P-web"
wait_for curl -sf "http://127.0.0.1:$PORT/index.html"
run curl -s "http://127.0.0.1:$PORT/index.html"
d stop -t 1 "$P-web"
d inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$P-web"
d start "$P-web"
d inspect --format '{{.State.Status}}' "$P-web"
d rm "$P-web"
d rm -f "$P-web"
d inspect --format '{{.Name}}' "$P-web"
# container prune removes stopped containers only
q run --name "$P-stopped" busybox true
q run -d --name "$P-running" busybox sleep 100
d container prune -f --filter "label=nothing-has-this"
d ps -a --format '{{.Names}} {{.State}}' --filter "name=$P-"
q container prune -f
d ps -a --format '{{.Names}}' --filter "name=$P-"
q rm -f "$P-running"
