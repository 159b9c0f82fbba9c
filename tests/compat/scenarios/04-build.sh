# docker build (classic builder) with the seed notes' flags: -t twice, --build-arg, -f, context.
. "$COMPAT/lib.sh"
mkdir -p "$WORK/ctx/app"
cat > "$WORK/ctx/Dockerfile.seed" <<'DF'
ARG BASE=busybox
FROM ${BASE}
ARG NODE_VERSION=0
ENV NODE_VERSION=${NODE_VERSION} PORT=3000
WORKDIR /app
COPY app/ ./
RUN echo "built with $NODE_VERSION" > /app/version.txt && ls /app
EXPOSE 3000
LABEL org.example.seed=yes
CMD ["sh", "-c", "cat /app/version.txt /app/hello.txt; echo port=$PORT"]
DF
echo "hello from the context" > "$WORK/ctx/app/hello.txt"
echo "ignored.txt" > "$WORK/ctx/.dockerignore"
echo "secret" > "$WORK/ctx/app/ignored.txt"
d build -q -t "$P-mbti:embedded-db" -t "$P-mbti" --build-arg NODE_VERSION=20.15.1 -f "$WORK/ctx/Dockerfile.seed" "$WORK/ctx" >/dev/null
d images --format '{{.Repository}}:{{.Tag}}' "$P-mbti"
d run --rm "$P-mbti"
d run --rm "$P-mbti:embedded-db" ls /app
d image inspect --format '{{json .Config.Env}} {{.Config.WorkingDir}} {{json .Config.ExposedPorts}} {{json .Config.Labels}} {{json .Config.Cmd}}' "$P-mbti"
d history -q "$P-mbti" >/dev/null
# a failing step: its exit code and the build's
printf 'FROM busybox\nRUN echo failing; exit 3\n' > "$WORK/ctx/Dockerfile.fail"
run sh -c "$DOCKER build -q -f $WORK/ctx/Dockerfile.fail $WORK/ctx 2>&1 | grep -o 'returned a non-zero code: 3'"
# build from stdin without context
run sh -c "printf 'FROM busybox\nRUN echo stdin-build > /f\n' | $DOCKER build -q -t $P-stdin - >/dev/null && $DOCKER run --rm $P-stdin cat /f"
d rmi "$P-mbti" "$P-mbti:embedded-db" "$P-stdin" >/dev/null
q image prune -f
q builder prune -af
