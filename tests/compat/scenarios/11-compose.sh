# compat: once
# docker-compose 1.29 (Debian, on the Python SDK) on a three-service project.
. "$COMPAT/lib.sh"
export WEB_PORT=$PORT GREETING=bonjour COMPOSE_INTERACTIVE_NO_CLI=1
dc() { run docker-compose -p "$P" -f "$COMPAT/compose/docker-compose.yml" "$@"; }
# compose's progress lines go to stderr in an order of its own: compare the outcome instead
run sh -c "docker-compose -p $P -f $COMPAT/compose/docker-compose.yml up -d >/dev/null 2>&1"
dc ps --services
d ps --format '{{.Names}} {{.Label "com.docker.compose.service"}} {{.Label "seed.role"}}' --filter "label=com.docker.compose.project=$P"
d network ls --format '{{.Name}}' --filter "label=com.docker.compose.project=$P"
d volume ls --format '{{.Name}}' --filter "label=com.docker.compose.project=$P"
wait_for sh -c "docker-compose -p $P -f $COMPAT/compose/docker-compose.yml logs app | grep -q bonjour"
run sh -c "docker-compose -p $P -f $COMPAT/compose/docker-compose.yml logs --no-color app | grep -o 'bonjour from app'"
wait_for curl -sf "http://127.0.0.1:$PORT/index.html"
run curl -s "http://127.0.0.1:$PORT/index.html"
dc exec -T app sh -c 'echo $TARGET; printf "GET /index.html HTTP/1.0\r\n\r\n" | nc -w 2 web 8080 | tail -1'
dc exec -T app sh -c 'exit 4'
# dockerpty (COMPOSE_INTERACTIVE_NO_CLI) attaches after the start, and starts again what has exited by then
dc run --rm -T app echo one-off
dc port web 8080
dc stop app
d ps -a --format '{{.Names}} {{.State}}' --filter "label=com.docker.compose.service=app" --filter "label=com.docker.compose.project=$P"
dc start app
dc restart -t 1 web
d ps --format '{{.Names}}' --filter "label=com.docker.compose.project=$P"
run sh -c "docker-compose -p $P -f $COMPAT/compose/docker-compose.yml down -v -t 1 >/dev/null 2>&1"
d ps -a -q --filter "label=com.docker.compose.project=$P"
d network ls -q --filter "label=com.docker.compose.project=$P"
d volume ls -q --filter "label=com.docker.compose.project=$P"
