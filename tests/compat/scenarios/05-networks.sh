# Networks from the seed notes: ls, create, run --network, name resolution, inspect, connect, rm.
. "$COMPAT/lib.sh"
d network ls --format '{{.Name}} {{.Driver}} {{.Scope}}' --filter name=bridge --filter name=host --filter name=none
d network create "$P-mynetwork" >/dev/null
d network ls --format '{{.Name}} {{.Driver}}' --filter "name=$P-"
d network inspect --format '{{.Name}} {{.Driver}} {{.Scope}} {{.Internal}} {{.Attachable}} {{len .IPAM.Config}}' "$P-mynetwork"
d network create "$P-mynetwork"
q run -d --name "$P-mbti" --network "$P-mynetwork" --network-alias api busybox sh -c 'mkdir /www && echo ok-from-mbti > /www/index.html && httpd -f -p 3000 -h /www'
d inspect --format '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.Aliases}}{{end}}' "$P-mbti" 
d run --rm --network "$P-mynetwork" busybox sh -c "nslookup $P-mbti 127.0.0.11 >/dev/null && echo resolved"
wait_for sh -c "$DOCKER exec $P-mbti netstat -ltn | grep -q :3000"
d run --rm --network "$P-mynetwork" busybox sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 api 3000 | tail -1"
d run --rm --network none busybox ip -o link show
d run --rm --network host busybox sh -c 'test "$(hostname)" = "$(cat /proc/sys/kernel/hostname)" && echo host-uts'
q run -d --name "$P-other" busybox sleep 300
d network connect "$P-mynetwork" "$P-other"
d exec "$P-other" sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 $P-mbti 3000 | tail -1"
d network disconnect "$P-mynetwork" "$P-other"
d network rm "$P-mynetwork"
d rm -f "$P-mbti" "$P-other"
d network rm "$P-mynetwork"
d network inspect "$P-mynetwork"
d network create --driver bridge --subnet 10.252.7.0/24 --label team=seed "$P-lab" >/dev/null
d network inspect --format '{{json .IPAM.Config}} {{json .Labels}}' "$P-lab"
d network prune -f --filter label=team=seed
d network ls -q --filter "name=$P-"
