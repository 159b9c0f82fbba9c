//! Volumes and mounts against a real daemon with real mounts (issue 4).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// busybox plus extra entries (appended with python's tarfile), imported as `name`.
/// `entries` is python code run with `t` (the open tarfile), `tarfile` and `io` in scope.
fn import_custom(d: &Daemon, name: &str, entries: &str, changes: &[&str]) {
    let tar = d.dir.join(format!("{}.tar", name.replace([':', '/'], "_")));
    std::fs::copy(busybox_tar(), &tar).expect("copy busybox tar");
    let script = format!(
        "import tarfile,io\nt=tarfile.open('{}','a')\ndef f(n,data=b'',uid=0,gid=0,mode=0o644):\n  i=tarfile.TarInfo(n); i.size=len(data); i.uid=uid; i.gid=gid; i.mode=mode; t.addfile(i,io.BytesIO(data))\ndef d(n,uid=0,gid=0,mode=0o755):\n  i=tarfile.TarInfo(n); i.type=tarfile.DIRTYPE; i.uid=uid; i.gid=gid; i.mode=mode; t.addfile(i)\ndef l(n,target):\n  i=tarfile.TarInfo(n); i.type=tarfile.SYMTYPE; i.linkname=target; t.addfile(i)\n{entries}\nt.close()\n",
        tar.display()
    );
    let st = Command::new("python3").arg("-c").arg(script).status().expect("python3");
    assert!(st.success(), "building the test image tar failed");
    // One change only: `import` keeps just the last `--change` today.
    let mut args = vec!["import".to_string()];
    for c in changes {
        args.push("--change".into());
        args.push(c.to_string());
    }
    args.push(tar.display().to_string());
    args.push(name.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    d.berth(&args).ok();
}

/// `run --rm` through create/start/wait/logs/rm -v: the output comes from the container's
/// log, so an attach that connects late on a loaded machine cannot lose it.
fn run(d: &Daemon, args: &[&str]) -> Out {
    let mut c = vec!["create"];
    c.extend_from_slice(args);
    let created = d.berth(&c);
    if created.code != 0 {
        return created;
    }
    let id = created.stdout.trim().to_string();
    d.berth(&["start", &id]).ok();
    let code: i32 = d.berth(&["wait", &id]).ok().stdout.trim().parse().expect("exit code");
    let logs = d.berth(&["logs", &id]).ok();
    d.berth(&["rm", "-v", &id]).ok();
    Out { code, stdout: logs.stdout, stderr: logs.stderr }
}

fn volumes(d: &Daemon) -> Vec<String> {
    d.berth(&["volume", "ls", "-q"]).ok().stdout.split_whitespace().map(String::from).collect()
}

#[test]
fn named_volume_outlives_containers_and_daemon_restart() {
    let mut d = Daemon::start("vnamed");
    // Created on first use by -v, written by one container, read by the next.
    d.berth(&["run", "--name", "writer", "-v", "data:/data", "busybox", "sh", "-c", "echo persisted > /data/f"]).ok();
    assert_eq!(volumes(&d), vec!["data"]);
    d.berth(&["rm", "writer"]).ok();
    assert_eq!(volumes(&d), vec!["data"], "rm without -v keeps named volumes");
    let o = run(&d, &["-v", "data:/data", "busybox", "cat", "/data/f"]).ok();
    assert_eq!(o.stdout, "persisted\n");

    // :ro really refuses writes.
    let o = run(&d, &["-v", "data:/data:ro", "busybox", "sh", "-c", "echo x > /data/g"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Read-only file system"), "{}", o.stderr);
    assert!(!d.data().join("volumes/data/_data/g").exists());

    // In use: refused with Docker's message, even with -f.
    let id = d.berth(&["create", "--name", "user", "-v", "data:/data", "busybox", "true"]).ok().stdout;
    let id = id.trim();
    let o = d.berth(&["volume", "rm", "data"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains(&format!("Error response from daemon: remove data: volume is in use - [{id}]")), "{}", o.stderr);
    let o = d.berth(&["volume", "rm", "-f", "data"]);
    assert_eq!(o.code, 1, "-f does not remove a volume in use");

    // Survives a daemon SIGKILL + restart and a container prune.
    d.kill9();
    // What a crash during copy-up leaves behind is swept by the next daemon.
    let leftover = d.data().join("volumes/.copyup-leftover");
    std::fs::create_dir_all(&leftover).unwrap();
    d.spawn();
    let o = run(&d, &["-v", "data:/data", "busybox", "cat", "/data/f"]).ok();
    assert_eq!(o.stdout, "persisted\n");
    assert!(!leftover.exists());
    d.berth(&["container", "prune", "-f"]).ok();
    assert_eq!(d.berth(&["ps", "-aq"]).ok().stdout, "");
    let o = run(&d, &["-v", "data:/data", "busybox", "cat", "/data/f"]).ok();
    assert_eq!(o.stdout, "persisted\n");

    // Unused now: removable; -f of a missing one is fine, without -f it is an error.
    d.berth(&["volume", "rm", "data"]).ok();
    assert!(!d.data().join("volumes/data").exists());
    d.berth(&["volume", "rm", "-f", "data"]).ok();
    let o = d.berth(&["volume", "rm", "data"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("no such volume"), "{}", o.stderr);
}

#[test]
fn anonymous_volumes_rm_v_and_prune() {
    let d = Daemon::start("vanon");
    import_custom(&d, "withvol:1", "d('srv'); f('srv/seed', b'seeded\\n')", &["VOLUME /srv"]);
    d.berth(&["run", "-d", "--name", "anon1", "-v", "/anon", "-v", "keep:/keep", "withvol:1", "sleep", "1000"]).ok();
    let vs = volumes(&d);
    assert_eq!(vs.len(), 3, "{vs:?}");
    let anon: Vec<&String> = vs.iter().filter(|v| v.as_str() != "keep").collect();
    for v in &anon {
        assert_eq!(v.len(), 64, "anonymous volume names are 64 hex: {v}");
        let l = d.berth(&["volume", "inspect", "-f", "{{json .Labels}}", v]).ok().stdout;
        assert_eq!(l.trim(), r#"{"com.docker.volume.anonymous":""}"#);
    }
    // The image's VOLUME got the image's content (copy-up).
    assert_eq!(d.berth(&["exec", "anon1", "cat", "/srv/seed"]).ok().stdout, "seeded\n");
    let dangling = d.berth(&["volume", "ls", "-q", "--filter", "dangling=true"]).ok().stdout;
    assert_eq!(dangling, "", "all in use");
    d.berth(&["rm", "-f", "-v", "anon1"]).ok();
    assert_eq!(volumes(&d), vec!["keep"], "rm -v removes anonymous volumes only");

    // --rm removes anonymous volumes too.
    d.berth(&["run", "--rm", "-v", "/x", "withvol:1", "true"]).ok();
    assert_eq!(volumes(&d), vec!["keep"]);

    // prune: anonymous unused only; -a: all unused.
    d.berth(&["create", "--name", "bb", "-v", "/anon2", "busybox", "true"]).ok();
    d.berth(&["rm", "bb"]).ok();
    assert_eq!(volumes(&d).len(), 2);
    let o = d.berth(&["volume", "prune", "-f"]).ok();
    assert!(o.stdout.contains("Deleted Volumes:") && o.stdout.contains("Total reclaimed space:"), "{}", o.stdout);
    assert_eq!(volumes(&d), vec!["keep"]);
    d.berth(&["volume", "prune", "-f", "-a"]).ok();
    assert!(volumes(&d).is_empty());
}

#[test]
fn copy_up_keeps_content_and_ownership() {
    let d = Daemon::start("vcopy");
    import_custom(
        &d,
        "owned:1",
        "d('opt/app', uid=1234, gid=5678, mode=0o750)\nf('opt/app/conf', b'conf\\n', uid=1234, gid=5678, mode=0o640)\nd('opt/app/sub', uid=33, gid=33)\nl('opt/app/link', 'conf')",
        &[],
    );
    let script = "stat -c '%u:%g %a %n' /opt/app /opt/app/conf /opt/app/sub; readlink /opt/app/link; cat /opt/app/conf";
    let o = run(&d, &["-v", "cu:/opt/app", "owned:1", "sh", "-c", script]).ok();
    assert_eq!(o.stdout, "1234:5678 750 /opt/app\n1234:5678 640 /opt/app/conf\n33:33 755 /opt/app/sub\nconf\nconf\n");
    // Ownership also on the host side.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(d.data().join("volumes/cu/_data/conf")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1234, 5678, 0o640));
    // A volume that is not empty is not copied into again.
    run(&d, &["-v", "cu:/opt/app", "owned:1", "rm", "/opt/app/conf"]).ok();
    let o = run(&d, &["-v", "cu:/opt/app", "owned:1", "ls", "/opt/app"]).ok();
    assert_eq!(o.stdout.split_whitespace().collect::<Vec<_>>(), vec!["link", "sub"]);
    // nocopy: a new volume stays empty.
    let o = run(&d, &["-v", "nc:/opt/app:nocopy", "owned:1", "ls", "-A", "/opt/app"]).ok();
    assert_eq!(o.stdout, "");
    let o = run(&d, &["--mount", "type=volume,source=nc2,target=/opt/app,volume-nocopy", "owned:1", "ls", "-A", "/opt/app"]).ok();
    assert_eq!(o.stdout, "");
    let o = run(&d, &["--mount", "type=volume,source=mc,target=/opt/app", "owned:1", "cat", "/opt/app/conf"]).ok();
    assert_eq!(o.stdout, "conf\n");
    // --mount volume: readonly, a label and local driver options for a volume made on first use.
    let o = run(&d, &["--mount", "type=volume,source=mo,target=/m,readonly,volume-label=l=1,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=1m", "busybox", "sh", "-c", "df -k /m | tail -1; touch /m/x"]);
    assert!(o.stdout.starts_with("tmpfs") && o.stdout.contains(" 1024 "), "{}", o.stdout);
    assert_ne!(o.code, 0, "readonly");
    let v = d.berth(&["volume", "inspect", "-f", "{{json .Labels}} {{json .Options}}", "mo"]).ok().stdout;
    assert_eq!(v.trim(), r#"{"l":"1"} {"device":"tmpfs","o":"size=1m","type":"tmpfs"}"#);
}

#[test]
fn binds_tmpfs_read_only_and_mount_flags() {
    let d = Daemon::start("vbind");
    let host = d.dir.join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("h"), "from host\n").unwrap();
    let hs = host.display().to_string();
    // -v bind rw and ro.
    let o = run(&d, &["-v", &format!("{hs}:/h"), "busybox", "sh", "-c", "cat /h/h; echo back > /h/w"]).ok();
    assert_eq!(o.stdout, "from host\n");
    assert_eq!(std::fs::read_to_string(host.join("w")).unwrap(), "back\n");
    let o = run(&d, &["-v", &format!("{hs}:/h:ro"), "busybox", "sh", "-c", "echo x > /h/ro"]);
    assert_ne!(o.code, 0);
    assert!(!host.join("ro").exists());
    // -v creates a missing host directory; --mount type=bind does not.
    let missing = d.dir.join("made-by-v");
    run(&d, &["-v", &format!("{}:/m", missing.display()), "busybox", "touch", "/m/x"]).ok();
    assert!(missing.join("x").exists());
    let o = run(&d, &["--mount", &format!("type=bind,source={}/nope,target=/m", d.dir.display()), "busybox", "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("bind source path does not exist"), "{}", o.stderr);
    assert!(!d.dir.join("nope").exists());
    // --mount bind readonly.
    let o = run(&d, &["--mount", &format!("type=bind,source={hs},target=/h,readonly"), "busybox", "sh", "-c", "cat /h/h; touch /h/z"]);
    assert_eq!(o.stdout, "from host\n");
    assert_ne!(o.code, 0);
    assert!(!host.join("z").exists());
    // --read-only with --tmpfs /tmp.
    let o = run(&d, &["--read-only", "--tmpfs", "/tmp", "busybox", "sh", "-c", "echo t > /tmp/x && cat /tmp/x && touch /y"]);
    assert_eq!(o.stdout, "t\n");
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Read-only file system"), "{}", o.stderr);
    // tmpfs sizes: --tmpfs options and --mount tmpfs-size.
    let o = run(&d, &["--tmpfs", "/t:size=2m", "busybox", "sh", "-c", "df -k /t | tail -1"]).ok();
    assert!(o.stdout.starts_with("tmpfs") && o.stdout.contains(" 2048 "), "{}", o.stdout);
    let o = run(&d, &["--mount", "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770", "busybox", "sh", "-c", "df -k /t | tail -1; stat -c %a /t"]).ok();
    assert!(o.stdout.contains(" 1024 ") && o.stdout.ends_with("1770\n"), "{}", o.stdout);
    // Duplicate destinations are refused like Docker.
    let o = run(&d, &["-v", "a1:/d", "-v", "a2:/d", "busybox", "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("Duplicate mount point: /d"), "{}", o.stderr);
    // Invalid names.
    let o = d.berth(&["volume", "create", "bad/name"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("includes invalid characters for a local volume name"), "{}", o.stderr);
}

#[test]
fn volumes_from_and_inspect_mounts() {
    let d = Daemon::start("vfrom");
    let host = d.dir.join("hb");
    std::fs::create_dir_all(&host).unwrap();
    let hs = host.display().to_string();
    d.berth(&["create", "--name", "src", "-v", "shared:/shared", "-v", "/anon", "-v", &format!("{hs}:/hb:ro"), "busybox", "true"]).ok();
    let mounts = d.berth(&["inspect", "-f", "{{json .Mounts}}", "src"]).ok().stdout;
    let m: serde_json::Value = serde_json::from_str(&mounts).unwrap();
    let arr = m.as_array().unwrap();
    assert_eq!(arr.len(), 3, "{mounts}");
    let by = |dst: &str| arr.iter().find(|x| x["Destination"] == dst).cloned().unwrap();
    let anon = by("/anon");
    let anon_name = anon["Name"].as_str().unwrap().to_string();
    assert_eq!(
        anon,
        serde_json::json!({"Type": "volume", "Name": anon_name, "Source": format!("{}/volumes/{anon_name}/_data", d.data().display()),
                           "Destination": "/anon", "Driver": "local", "Mode": "", "RW": true, "Propagation": ""})
    );
    assert_eq!(
        by("/shared"),
        serde_json::json!({"Type": "volume", "Name": "shared", "Source": format!("{}/volumes/shared/_data", d.data().display()),
                           "Destination": "/shared", "Driver": "local", "Mode": "z", "RW": true, "Propagation": ""})
    );
    assert_eq!(
        by("/hb"),
        serde_json::json!({"Type": "bind", "Source": hs, "Destination": "/hb", "Mode": "ro", "RW": false, "Propagation": "rprivate"})
    );
    run(&d, &["--volumes-from", "src", "busybox", "sh", "-c", "echo one > /shared/f; echo two > /anon/f"]).ok();
    let o = run(&d, &["--volumes-from", "src:ro", "busybox", "sh", "-c", "cat /shared/f /anon/f; touch /shared/x"]);
    assert_eq!(o.stdout, "one\ntwo\n");
    assert_ne!(o.code, 0, "volumes-from :ro refuses writes");
    // The anonymous volume is shared: rm -v of the source keeps it while another user exists.
    d.berth(&["create", "--name", "other", "--volumes-from", "src", "busybox", "true"]).ok();
    d.berth(&["rm", "-v", "src"]).ok();
    assert!(volumes(&d).contains(&anon_name));
    d.berth(&["rm", "-v", "other"]).ok();
    assert!(!volumes(&d).contains(&anon_name));
}

#[test]
fn ls_filters_inspect_and_df() {
    let d = Daemon::start("vls");
    d.berth(&["volume", "create", "--label", "team=a", "--label", "x", "la"]).ok();
    d.berth(&["volume", "create", "lb"]).ok();
    let anon = d.berth(&["volume", "create"]).ok().stdout.trim().to_string();
    assert_eq!(anon.len(), 64);
    let ls = d.berth(&["volume", "ls"]).ok().stdout;
    assert!(ls.starts_with("DRIVER    VOLUME NAME\n") && ls.contains("local     la\n"), "{ls}");
    let q = |f: &str| d.berth(&["volume", "ls", "-q", "--filter", f]).ok().stdout;
    assert_eq!(q("label=team=a"), "la\n");
    assert_eq!(q("label=x"), "la\n");
    assert_eq!(q("name=lb"), "lb\n");
    assert_eq!(q("driver=local").lines().count(), 3);
    d.berth(&["create", "--name", "user1", "-v", "lb:/d", "busybox", "true"]).ok();
    let dangling = q("dangling=true");
    assert!(dangling.contains("la") && !dangling.contains("lb"), "{dangling}");
    assert_eq!(q("dangling=false"), "lb\n");
    assert_eq!(d.berth(&["volume", "ls", "--filter", "bogus=1"]).code, 1);
    let j = d.berth(&["volume", "inspect", "la"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    let v = &v[0];
    assert_eq!(v["Labels"], serde_json::json!({"team": "a", "x": ""}));
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Options"], serde_json::Value::Null);
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'));
    let o = d.berth(&["volume", "inspect", "nosuch"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("No such volume: nosuch"), "{}", o.stderr);
    // df -v counts volume sizes (file sizes, hard links once).
    run(&d, &["-v", "la:/d", "busybox", "sh", "-c", "head -c 3000000 /dev/zero > /d/big; ln /d/big /d/big2"]).ok();
    let df = d.berth(&["system", "df", "-v"]).ok().stdout;
    let line = df.lines().find(|l| l.starts_with("la ")).unwrap_or_default().to_string();
    assert!(line.contains("3MB"), "{df}");
    let ctr = df.lines().find(|l| l.ends_with(" user1")).unwrap_or_default().to_string();
    assert_eq!(ctr.split_whitespace().nth(3), Some("1"), "LOCAL VOLUMES of user1: {df}");
    let line = df.lines().find(|l| l.starts_with("lb ")).unwrap_or_default().to_string();
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), vec!["lb", "1", "0B"], "{df}");
    let sum = d.berth(&["system", "df"]).ok().stdout;
    assert!(sum.lines().any(|l| l.starts_with("Local Volumes") && l.contains("3MB")), "{sum}");
}

#[test]
fn local_driver_options_tmpfs_and_bind() {
    let d = Daemon::start("vopts");
    d.berth(&["volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", "tv"]).ok();
    let o = run(&d, &["-v", "tv:/t", "busybox", "sh", "-c", "df -k /t | tail -1; echo in-tmpfs > /t/f"]).ok();
    assert!(o.stdout.starts_with("tmpfs") && o.stdout.contains(" 1024 "), "{}", o.stdout);
    assert_eq!(run(&d, &["-v", "tv:/t", "busybox", "cat", "/t/f"]).ok().stdout, "in-tmpfs\n");
    let opts = d.berth(&["volume", "inspect", "-f", "{{json .Options}}", "tv"]).ok().stdout;
    assert_eq!(opts.trim(), r#"{"device":"tmpfs","o":"size=1m","type":"tmpfs"}"#);
    d.berth(&["volume", "rm", "tv"]).ok();
    assert!(!d.data().join("volumes/tv").exists());

    let dev = d.dir.join("bind-device");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("pre"), "pre\n").unwrap();
    d.berth(&["volume", "create", "-o", "o=bind", "-o", "type=none", "-o", &format!("device={}", dev.display()), "bv"]).ok();
    run(&d, &["-v", "bv:/b", "busybox", "sh", "-c", "cat /b/pre > /b/post"]).ok();
    assert_eq!(std::fs::read_to_string(dev.join("post")).unwrap(), "pre\n");
    d.berth(&["volume", "rm", "bv"]).ok();
    assert!(dev.join("pre").exists(), "removing a bind volume keeps the device's data");
    let o = d.berth(&["volume", "create", "-o", "bogus=1", "xv"]);
    assert_eq!(o.code, 1);
}

/// A path on the host that must never be written through a container's mount destination.
fn sentinel_dir(d: &Daemon) -> PathBuf {
    let s = d.dir.join("host-sentinel");
    std::fs::create_dir_all(&s).unwrap();
    std::fs::write(s.join("keep"), "keep\n").unwrap();
    s
}

fn assert_sentinel_intact(s: &Path) {
    let names: Vec<String> = std::fs::read_dir(s).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(names, vec!["keep"], "host sentinel directory changed");
    assert_eq!(std::fs::read_to_string(s.join("keep")).unwrap(), "keep\n");
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mi.lines().any(|l| l.split(' ').nth(4) == Some(s.to_str().unwrap())), "something was mounted on the host sentinel");
}

/// HARDENING A4 #27/#31: image symlinks as mount targets resolve inside the root.
#[test]
fn symlinked_targets_stay_inside_the_root() {
    let d = Daemon::start("vsym");
    let s = sentinel_dir(&d);
    let rel = format!("{}{}", "../".repeat(12), s.display().to_string().trim_start_matches('/'));
    import_custom(
        &d,
        "evil:1",
        &format!("l('rel', '{rel}')\nl('abs', '{}')\nl('etcvol', '../../../../etc')", s.display()),
        &["VOLUME /etcvol/../../escape"],
    );
    for target in ["/rel", "/abs", "/rel/sub", "/abs/deeper/x"] {
        let o = run(&d, &["-v", &format!("sv:{target}"), "evil:1", "sh", "-c", &format!("echo pwned > {target}/pwned && ls {target}")]).ok();
        assert_eq!(o.stdout, "pwned\n");
        let o = run(&d, &["--tmpfs", target, "evil:1", "sh", "-c", &format!("touch {target}/t")]).ok();
        assert_eq!(o.code, 0);
        d.berth(&["volume", "rm", "sv"]).ok();
    }
    // The image's hostile VOLUME path is cleaned and mounted inside the root.
    d.berth(&["create", "--name", "esc", "evil:1", "sh", "-c", "touch /escape/x"]).ok();
    let mounts = d.berth(&["inspect", "-f", "{{json .Mounts}}", "esc"]).ok().stdout;
    assert!(mounts.contains(r#""Destination":"/escape""#), "{mounts}");
    let o = d.berth(&["start", "-a", "esc"]);
    assert_eq!(o.code, 0, "{} {mounts}", o.stderr);
    d.berth(&["rm", "-v", "esc"]).ok();
    assert_sentinel_intact(&s);
    assert!(std::fs::read_to_string("/etc/hostname").is_ok());
}

/// HARDENING A4 #31 with a race: a running container flips a symlink in a shared volume
/// between a directory and a pointer to the host sentinel while other containers are created
/// and started with mounts below that path.
#[test]
fn racing_symlink_flipper_never_reaches_the_host() {
    let d = Daemon::start("vrace");
    let s = sentinel_dir(&d);
    let target = s.display().to_string();
    let flip = format!(
        "mkdir -p /v/real; while true; do rm -rf /v/x; mkdir -p /v/x; rm -rf /v/x; ln -s {target} /v/x; rm -f /v/x; ln -s ../../../../../../../../{} /v/x; done",
        target.trim_start_matches('/')
    );
    d.berth(&["run", "-d", "--name", "flipper", "-v", "race:/v", "busybox", "sh", "-c", &flip]).ok();
    let host = d.dir.join("payload");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("payload"), "x").unwrap();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut runs = 0;
    while Instant::now() < deadline || runs < 3 {
        // Mount destinations below the flipping path: a bind, a tmpfs and a volume.
        let _ = d.berth(&[
            "run", "--rm", "-v", "race:/v", "-v", &format!("{}:/v/x/bind", host.display()), "--tmpfs", "/v/x/tmp",
            "busybox", "sh", "-c", "touch /v/x/bind/touched /v/x/tmp/t 2>/dev/null; true",
        ]);
        runs += 1;
        assert_sentinel_intact(&s);
    }
    d.berth(&["rm", "-f", "flipper"]).ok();
    assert_sentinel_intact(&s);
}

fn docker_bins() -> Vec<&'static str> {
    let mut v = Vec::new();
    for b in ["/usr/bin/docker", "/usr/local/bin/docker"] {
        if Path::new(b).exists() {
            v.push(b);
        } else {
            println!("skipping {b}: not installed");
        }
    }
    v
}

fn docker(d: &Daemon, bin: &str, args: &[&str]) -> Out {
    // `timeout -s KILL`: an attached docker CLI forwards SIGTERM instead of dying.
    let o = Command::new("timeout")
        .args(["-s", "KILL", "60", bin])
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run docker");
    Out { code: o.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
}

/// The docker CLI (20.10 and 28) pointed at berth gives the same results as berth's CLI.
#[test]
fn docker_cli_volume_commands_match() {
    let bins = docker_bins();
    if bins.is_empty() {
        println!("skipping: no docker CLI");
        return;
    }
    let d = Daemon::start("vdocker");
    for bin in bins {
        let tag = if bin.contains("local") { "n" } else { "o" };
        let name = format!("dk-{tag}");
        assert_eq!(docker(&d, bin, &["volume", "create", "--label", "k=v", &name]).ok().stdout, format!("{name}\n"));
        assert_eq!(docker(&d, bin, &["volume", "ls"]).ok().stdout, d.berth(&["volume", "ls"]).ok().stdout);
        assert_eq!(
            docker(&d, bin, &["volume", "ls", "-q", "--filter", "label=k=v"]).ok().stdout,
            d.berth(&["volume", "ls", "-q", "--filter", "label=k=v"]).ok().stdout
        );
        let dj: serde_json::Value = serde_json::from_str(&docker(&d, bin, &["volume", "inspect", &name]).ok().stdout).unwrap();
        let bj: serde_json::Value = serde_json::from_str(&d.berth(&["volume", "inspect", &name]).ok().stdout).unwrap();
        assert_eq!(dj, bj);
        // -v through the docker CLI (create/start/wait: the same requests `run` makes).
        let ctr = format!("dkc-{tag}");
        docker(&d, bin, &["create", "--name", &ctr, "-v", &format!("{name}:/d"), "-v", "/anon", "busybox", "sh", "-c", "echo via-docker > /d/f"]).ok();
        docker(&d, bin, &["start", &ctr]).ok();
        assert_eq!(docker(&d, bin, &["wait", &ctr]).ok().stdout.trim(), "0");
        let dm: serde_json::Value = serde_json::from_str(&docker(&d, bin, &["inspect", "-f", "{{json .Mounts}}", &ctr]).ok().stdout).unwrap();
        let bm: serde_json::Value = serde_json::from_str(&d.berth(&["inspect", "-f", "{{json .Mounts}}", &ctr]).ok().stdout).unwrap();
        assert_eq!(dm, bm);
        assert_eq!(run(&d, &["-v", &format!("{name}:/d"), "busybox", "cat", "/d/f"]).ok().stdout, "via-docker\n");
        let o = docker(&d, bin, &["volume", "rm", &name]);
        assert_eq!(o.code, 1);
        assert!(o.stderr.contains(&format!("remove {name}: volume is in use")), "{}", o.stderr);
        docker(&d, bin, &["rm", "-v", &ctr]).ok();
        assert_eq!(docker(&d, bin, &["volume", "rm", &name]).ok().stdout, format!("{name}\n"));
        assert!(volumes(&d).is_empty(), "{:?}", volumes(&d));
        // prune: docker < 23 (API < 1.42) removes every unused volume, newer ones only
        // anonymous volumes unless `-a`.
        d.berth(&["volume", "create", "unused-named"]).ok();
        docker(&d, bin, &["volume", "prune", "-f"]).ok();
        if tag == "o" {
            assert!(volumes(&d).is_empty(), "{:?}", volumes(&d));
        } else {
            assert_eq!(volumes(&d), vec!["unused-named"]);
            docker(&d, bin, &["volume", "prune", "-f", "-a"]).ok();
            assert!(volumes(&d).is_empty(), "{:?}", volumes(&d));
        }
    }
}
