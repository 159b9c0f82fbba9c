# system-level calls: version, info, system df, events with filters, prune.
. "$COMPAT/lib.sh"
d version --format '{{.Server.Os}} {{.Server.Arch}}'
d info --format '{{.OSType}} {{.Driver}} {{.DockerRootDir | printf "%.0s"}}ok'
d system df --format '{{.Type}}'
since=$(date +%s)
q run --name "$P-ev" --label seed=yes busybox true
q rm "$P-ev"
until=$(( $(date +%s) + 1 ))
# (run by hand: the times are not part of the transcript)
echo '$ docker events --since T --until T+ --filter container=$P-ev'
"$DOCKER" events --since "$since" --until "$until" --filter "container=$P-ev" --format '{{.Type}} {{.Action}} {{.Actor.Attributes.name}}'
echo '$ docker events --since T --until T+ --filter type=container --filter event=die --filter label=seed=yes'
"$DOCKER" events --since "$since" --until "$until" --filter type=container --filter event=die --filter "label=seed=yes" --format '{{.Action}} exit={{.Actor.Attributes.exitCode}} {{.Actor.Attributes.seed}}'
echo '$ docker events --since T --until T+ --format {{json .}} (keys of a die event)'
"$DOCKER" events --since "$since" --until "$until" --filter event=die --filter "container=$P-ev" --format '{{.Type}} {{.Status}} {{.From}} {{len .ID}} {{if .TimeNano}}timeNano{{end}} {{.Scope}}'
d system prune -f --filter "label=nothing-has-this"
