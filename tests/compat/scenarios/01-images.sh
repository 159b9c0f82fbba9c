# Images from the seed notes: import, images, tag, inspect, history, save/load, rmi, prune.
. "$COMPAT/lib.sh"
d import --change 'CMD ["sh"]' --change 'ENV APP=seed' "$BUSYBOX_TAR" "$P-img:v1" >/dev/null
echo "imported"
d images --format '{{.Repository}}:{{.Tag}}' "$P-img"
d tag "$P-img:v1" "$P-img:latest"
d tag "$P-img:v1" "$P-other/img:1.0"
d images --format '{{.Repository}}:{{.Tag}}' "$P-img"
d image inspect --format '{{.Os}}/{{.Architecture}} {{json .Config.Cmd}} {{json .Config.Env}} {{len .RootFS.Layers}} {{.RootFS.Type}}' "$P-img:v1"
d image inspect --format '{{json .RepoTags}}' "$P-img:v1"
d image history --format '{{.CreatedBy}}|{{.Comment}}' "$P-img:v1"
d image history -q "$P-img:v1"
d image save -o "$WORK/img.tar" "$P-img:v1" "$P-img:latest"
run tar -tf "$WORK/img.tar" manifest.json repositories
d image rm "$P-img:v1" "$P-img:latest"
d images -q "$P-img"
d image load -i "$WORK/img.tar"
d images --format '{{.Repository}}:{{.Tag}}' "$P-img"
d image load -q -i "$WORK/img.tar"
run sh -c "$DOCKER save $P-img:v1 | $DOCKER load"
d rmi "$P-nothere:v1"
d image inspect "$P-nothere"
d rmi "$P-img:v1" "$P-img:latest"
d rmi "$P-other/img:1.0"
# dangling images: untag a committed image, then prune
q run --name "$P-c" busybox touch /made
d commit "$P-c" "$P-dangle:1" >/dev/null
q rm "$P-c"
q tag busybox "$P-dangle:1"
d images -f dangling=true -q
d image prune -f
d images -f dangling=true -q
q rmi "$P-dangle:1"
