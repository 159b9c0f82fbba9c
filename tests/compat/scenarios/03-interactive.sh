# exec -it and run -it on a terminal, attach/stdin pipes, logs -f, docker wait.
. "$COMPAT/lib.sh"
q run -d --name "$P-box" busybox sleep 300
tty 'echo inside; tty' 'exit 4' -- "$DOCKER" exec -it "$P-box" sh
tty 'echo running-it; tty' 'exit 5' -- "$DOCKER" run --rm -it --name "$P-it" busybox sh
run sh -c "echo piped-in | $DOCKER exec -i $P-box cat"
run sh -c "printf 'a\nb\n' | $DOCKER run --rm -i busybox wc -l"
d exec "$P-box" sh -c 'test -t 0 && echo tty || echo notty'
d exec -u 1000 -w /tmp -e X=1 "$P-box" sh -c 'id -u; pwd; echo $X'
d exec "$P-box" /nonexistent
d exec "$P-nothere" true
# logs -f follows until the container exits
q run -d --name "$P-talk" busybox sh -c 'for i in 1 2 3; do echo line $i; sleep 0.2; done; echo to-stderr >&2'
d logs -f "$P-talk"
d wait "$P-talk"
d logs --tail 1 "$P-talk"
d logs --tail 2 -t "$P-talk"
q run -d --name "$P-exit" busybox sh -c 'exit 9'
d wait "$P-exit"
d start -a "$P-exit"
d rm -f "$P-box" "$P-talk" "$P-exit"
