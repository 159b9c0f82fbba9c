# docker cp in and out (the archive API: HEAD/GET/PUT with X-Docker-Container-Path-Stat).
. "$COMPAT/lib.sh"
q run -d --name "$P-files" busybox sh -c 'mkdir -p /srv/dir && echo a > /srv/dir/a && ln -s a /srv/dir/link && sleep 300'
mkdir -p "$WORK/in/sub"
echo one > "$WORK/in/one.txt"
echo two > "$WORK/in/sub/two.txt"
d cp "$WORK/in/one.txt" "$P-files:/srv/"
d cp "$WORK/in" "$P-files:/srv/copied"
d exec "$P-files" sh -c 'cd /srv && find . | sort && cat copied/sub/two.txt one.txt'
d cp "$P-files:/srv/dir" "$WORK/out"
run sh -c "cd $WORK/out && find . | sort && cat a && readlink link"
run sh -c "$DOCKER cp $P-files:/srv/dir/a - | tar -t"
# the tar headers: mode with the file type bits (as Docker writes them), owners
cat > "$WORK/tarls.py" <<'EOF'
import sys, tarfile
for m in tarfile.open(fileobj=sys.stdin.buffer, mode='r|'):
    print(m.name, oct(m.mode), m.uid, m.gid, repr(m.uname), repr(m.gname), m.linkname)
EOF
run sh -c "$DOCKER cp $P-files:/srv/dir - | python3 $WORK/tarls.py"
d cp "$P-files:/nothere" "$WORK/x"
# (docker 28 also logs its own "level=error" lines about the closed pipe: not compared)
run bash -c "set -o pipefail; $DOCKER cp $WORK/in/one.txt $P-files:/nothere/deep/ 2>&1 | grep -v level=error"
run sh -c "tar -C $WORK/in -c one.txt | $DOCKER cp - $P-files:/tmp && $DOCKER exec $P-files cat /tmp/one.txt"
d rm -f "$P-files"
