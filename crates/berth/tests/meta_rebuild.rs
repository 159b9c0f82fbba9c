//! HARDENING B4, second half: a metadata database that fails its integrity check (a corrupt
//! page, garbage, truncation) does not stop the daemon: it keeps the bad file aside,
//! rebuilds the records from the state files (`meta.d/`) and serves the same images,
//! containers, volumes and networks, running containers included.
mod common;
use common::Daemon;

fn listing(d: &Daemon) -> Vec<String> {
    [
        vec!["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
        vec!["ps", "-a", "--format", "{{.Names}} {{.ID}} {{.Image}} {{.State}}"],
        vec!["volume", "ls", "--format", "{{.Name}} {{.Labels}}"],
        vec!["network", "ls", "--format", "{{.Name}} {{.ID}} {{.Driver}}"],
        vec!["inspect", "--format", "{{.Name}} {{.HostConfig.RestartPolicy.Name}} {{json .Mounts}}", "keep"],
    ]
    .iter()
    .map(|args| {
        let mut lines: Vec<String> = d.berth(args).ok().stdout.lines().map(str::to_string).collect();
        lines.sort();
        lines.join("\n")
    })
    .collect()
}

#[test]
fn corrupt_metadata_is_rebuilt_from_state_files() {
    let mut d = Daemon::start("metarebuild");
    d.berth(&["tag", "busybox:latest", "mine:v1"]).ok();
    d.berth(&["volume", "create", "--label", "k=v", "vol1"]).ok();
    d.berth(&["network", "create", "net1"]).ok();
    d.berth(&["run", "-d", "--name", "keep", "--restart", "unless-stopped", "-v", "vol1:/data", "--network", "net1", "mine:v1", "sleep", "1000"])
        .ok();
    d.berth(&["exec", "keep", "sh", "-c", "echo kept > /data/f; echo upper > /u"]).ok();
    d.berth(&["create", "--name", "idle", "busybox", "cat", "/etc/hostname"]).ok();
    let before = listing(&d);

    d.kill9();
    let db = d.data().join("meta.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    // every page after the first (which holds the header and both commit slots) is garbage
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i as u8).wrapping_mul(151) ^ 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();

    d.spawn();
    assert!(d.log().contains("rebuilding it from"), "daemon log: {}", d.log());
    let kept: Vec<_> = std::fs::read_dir(d.data())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("meta.redb.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "the corrupt file is kept aside");
    assert_eq!(listing(&d), before);

    // the running container is still managed, its layer and volume are intact
    let o = d.berth(&["exec", "keep", "cat", "/data/f", "/u"]).ok();
    assert_eq!(o.stdout, "kept\nupper\n");
    let o = d.berth(&["start", "-a", "idle"]).ok();
    assert_eq!(o.stdout.trim().len(), 12, "hostname is the short id: {:?}", o.stdout);
    // and everything can be removed
    d.berth(&["rm", "-f", "keep", "idle"]).ok();
    d.berth(&["rmi", "mine:v1"]).ok();
    d.berth(&["volume", "rm", "vol1"]).ok();
    d.berth(&["network", "rm", "net1"]).ok();
    d.berth(&["run", "--rm", "busybox", "true"]).ok();
}
