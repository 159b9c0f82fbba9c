//! Container lifecycle against a real daemon, real kernel (issue 2).

mod common;
use common::*;
use std::time::Duration;

#[test]
fn run_rm_exit_code_is_propagated() {
    let d = Daemon::start("exitcode");
    let o = d.berth(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    let o = d.berth(&["run", "--rm", "busybox", "echo", "hello"]).ok();
    assert_eq!(o.stdout, "hello\n");
    assert_eq!(d.berth(&["ps", "-aq"]).ok().stdout, "", "--rm left a container");
}

#[test]
fn unknown_command_is_127() {
    let d = Daemon::start("e127");
    let o = d.berth(&["run", "--rm", "busybox", "nosuchcommand"]);
    assert_eq!(o.code, 127, "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("executable file not found"), "{}", o.stderr);
}

#[test]
fn writable_layer_goes_away_with_the_container() {
    let d = Daemon::start("rwlayer");
    d.berth(&["run", "--name", "w1", "busybox", "sh", "-c", "echo data > /written"]).ok();
    let diff = d.berth(&["diff", "w1"]).ok().stdout;
    assert_eq!(diff, "A /written\n", "only the container's own change shows, not berth's mount points");
    d.berth(&["rm", "w1"]).ok();
    let o = d.berth(&["run", "--rm", "busybox", "cat", "/written"]);
    assert_ne!(o.code, 0, "file leaked into the image: {}", o.stdout);
}

#[test]
fn detached_named_env_exec_logs_stop_rm() {
    let d = Daemon::start("seedflow");
    let id = d
        .berth(&["run", "-d", "--name", "app", "-e", "GREETING=hi", "busybox", "sh", "-c", "echo $GREETING; while true; do sleep 1; done"])
        .ok()
        .stdout;
    assert_eq!(id.trim().len(), 64);
    let ps = d.berth(&["ps"]).ok().stdout;
    assert!(ps.contains("app") && ps.contains("Up"), "{ps}");
    let o = d.berth(&["exec", "app", "sh", "-c", "echo $GREETING from exec"]).ok();
    assert_eq!(o.stdout, "hi from exec\n");
    assert_eq!(d.berth(&["exec", "app", "sh", "-c", "exit 5"]).code, 5);
    let mut logs = String::new();
    for _ in 0..100 {
        logs = d.berth(&["logs", "app"]).ok().stdout;
        if !logs.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(logs, "hi\n");
    d.berth(&["stop", "-t", "1", "app"]).ok();
    let st = d.berth(&["inspect", "-f", "{{.State.Status}} {{.State.Running}}", "app"]).ok().stdout;
    assert_eq!(st.trim(), "exited false");
    let ps = d.berth(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]).ok().stdout;
    assert_eq!(ps.trim(), "app exited");
    d.berth(&["rm", "app"]).ok();
    assert_eq!(d.berth(&["ps", "-aq"]).ok().stdout, "");
}

#[test]
fn docker_style_errors() {
    let d = Daemon::start("errors");
    let o = d.berth(&["run", "--rm", "nosuchimage:v1", "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("Unable to find image 'nosuchimage:v1' locally"), "{}", o.stderr);
    d.berth(&["run", "-d", "--name", "dup", "busybox", "sleep", "100"]).ok();
    let o = d.berth(&["run", "-d", "--name", "dup", "busybox", "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("is already in use by container"), "{}", o.stderr);
    let o = d.berth(&["rm", "dup"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("container is running: stop the container before removing or force remove"), "{}", o.stderr);
    let o = d.berth(&["run", "--rm", "--memory", "lots", "busybox", "true"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    let o = d.berth(&["run", "--rm", "--memory", "1k", "busybox", "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("Minimum memory limit allowed is 6MB"), "{}", o.stderr);
    d.berth(&["rm", "-f", "dup"]).ok();
    let o = d.berth(&["rm", "nosuch"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("No such container: nosuch"), "{}", o.stderr);
    let o = d.berth(&["inspect", "nosuch"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("No such object: nosuch"), "{}", o.stderr);
}

#[test]
fn memory_limit_oom_kills() {
    let d = Daemon::start("oom");
    let o = d.berth(&["run", "--name", "hog", "--memory", "32m", "--memory-swap", "32m", "busybox", "sh", "-c", "head -c 200m /dev/zero | tail > /dev/null"]);
    assert_eq!(o.code, 137, "{} {}", o.stdout, o.stderr);
    let st = d.berth(&["inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", "hog"]).ok().stdout;
    assert_eq!(st.trim(), "true 137");
}

#[test]
fn tty_run_gets_a_pty() {
    let d = Daemon::start("tty");
    // `script` gives the CLI a terminal of its own.
    let cmd = format!("BERTH_HOST=unix://{} {} run --rm -it busybox sh -c 'tty; exit 4'", d.sock.display(), BERTH);
    let o = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(std::process::Stdio::null()).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("/dev/pts/"), "{out}");
    assert_eq!(o.status.code(), Some(4), "{out}");
}

#[test]
fn stdin_is_forwarded_with_i() {
    let d = Daemon::start("stdin");
    let o = d.berth_stdin(&["run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z"], b"hello stdin\n").ok();
    assert_eq!(o.stdout, "HELLO STDIN\n");
}

#[test]
fn daemon_sigkill_keeps_containers() {
    let mut d = Daemon::start("restart");
    d.berth(&["run", "-d", "--name", "long", "busybox", "sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"]).ok();
    d.berth(&["run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 1; exit 7"]).ok();
    d.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    d.spawn();
    let st = d.berth(&["inspect", "-f", "{{.State.Running}}", "long"]).ok().stdout;
    assert_eq!(st.trim(), "true");
    let code = d.berth(&["wait", "short"]).ok().stdout;
    assert_eq!(code.trim(), "7", "exit code of a container that died while the daemon was down");
    let n1 = d.berth(&["logs", "long"]).ok().stdout.lines().count();
    std::thread::sleep(Duration::from_millis(600));
    let n2 = d.berth(&["logs", "long"]).ok().stdout.lines().count();
    assert!(n2 > n1 && n1 >= 7, "logs keep flowing: {n1} then {n2}");
    d.berth(&["rm", "-f", "long", "short"]).ok();
}

#[test]
fn pause_unpause_kill_restart() {
    let d = Daemon::start("pause");
    d.berth(&["run", "-d", "--name", "pz", "busybox", "sleep", "1000"]).ok();
    d.berth(&["pause", "pz"]).ok();
    assert_eq!(d.berth(&["inspect", "-f", "{{.State.Status}}", "pz"]).ok().stdout.trim(), "paused");
    assert!(d.berth(&["ps"]).ok().stdout.contains("(Paused)"));
    d.berth(&["unpause", "pz"]).ok();
    assert_eq!(d.berth(&["inspect", "-f", "{{.State.Status}}", "pz"]).ok().stdout.trim(), "running");
    d.berth(&["restart", "-t", "0", "pz"]).ok();
    assert_eq!(d.berth(&["inspect", "-f", "{{.State.Running}}", "pz"]).ok().stdout.trim(), "true");
    d.berth(&["kill", "pz"]).ok();
    assert_eq!(d.berth(&["wait", "pz"]).ok().stdout.trim(), "137");
}

#[test]
fn restart_policy_on_failure() {
    let d = Daemon::start("policy");
    d.berth(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1"]).ok();
    let mut count = String::new();
    for _ in 0..100 {
        count = d.berth(&["inspect", "-f", "{{.RestartCount}} {{.State.Running}}", "flaky"]).ok().stdout;
        if count.trim() == "2 false" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count.trim(), "2 false");
}

#[test]
fn images_inspect_tag_rmi_history() {
    let d = Daemon::start("images");
    let id = d.berth(&["image", "inspect", "-f", "{{.Id}}", "busybox"]).ok().stdout;
    assert!(id.starts_with("sha256:"));
    let cfg = d.berth(&["image", "inspect", "-f", "{{json .Config.Cmd}}", "busybox"]).ok().stdout;
    assert_eq!(cfg.trim(), "[\"sh\"]");
    d.berth(&["tag", "busybox", "mine/bb:v1"]).ok();
    let ls = d.berth(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).ok().stdout;
    assert!(ls.contains("busybox:latest") && ls.contains("mine/bb:v1"), "{ls}");
    assert!(d.berth(&["history", "busybox"]).ok().stdout.contains("Imported from -"));
    d.berth(&["run", "--name", "user", "busybox", "true"]).ok();
    let o = d.berth(&["rmi", &id.trim()[7..19]]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("must be forced") || o.stderr.contains("is using its referenced image"), "{}", o.stderr);
    let o = d.berth(&["rmi", "mine/bb:v1"]).ok();
    assert_eq!(o.stdout.trim(), "Untagged: mine/bb:v1");
    d.berth(&["rm", "user"]).ok();
    let o = d.berth(&["rmi", "busybox"]).ok();
    assert!(o.stdout.contains("Deleted: sha256:"), "{}", o.stdout);
    assert_eq!(d.berth(&["images", "-q"]).ok().stdout, "");
}

#[test]
fn save_load_roundtrip_between_daemons() {
    let a = Daemon::start("savea");
    let b = Daemon::start_bare("saveb");
    let tar = a.dir.join("img.tar");
    a.berth(&["save", "-o", tar.to_str().unwrap(), "busybox"]).ok();
    let o = b.berth(&["load", "-i", tar.to_str().unwrap()]).ok();
    assert_eq!(o.stdout.trim(), "Loaded image: busybox:latest");
    let ida = a.berth(&["image", "inspect", "-f", "{{.Id}}", "busybox"]).ok().stdout;
    let idb = b.berth(&["image", "inspect", "-f", "{{.Id}}", "busybox"]).ok().stdout;
    assert_eq!(ida, idb);
    assert_eq!(b.berth(&["run", "--rm", "busybox", "echo", "ok"]).ok().stdout, "ok\n");
}

#[test]
fn import_refuses_hostile_archives() {
    let d = Daemon::start_bare("hostile");
    let sentinel = d.dir.join("sentinel");
    std::fs::write(&sentinel, "keep").unwrap();
    // A tar with an entry climbing out of the root, built with python's tarfile.
    let tar = d.dir.join("evil.tar");
    let script = format!(
        "import tarfile,io\nt=tarfile.open('{}','w')\nfor n in ['../../../../{}','/{}']:\n  i=tarfile.TarInfo(n); d=b'pwned'; i.size=len(d); t.addfile(i,io.BytesIO(d))\ni=tarfile.TarInfo('link'); i.type=tarfile.SYMTYPE; i.linkname='{}'; t.addfile(i)\ni=tarfile.TarInfo('link'); i.size=5; t.addfile(i,io.BytesIO(b'pwned'))\nt.close()\n",
        tar.display(),
        sentinel.display(),
        sentinel.display(),
        sentinel.display()
    );
    let st = std::process::Command::new("python3").arg("-c").arg(script).status().unwrap();
    assert!(st.success());
    let _ = d.berth(&["import", tar.to_str().unwrap(), "evil:1"]);
    assert_eq!(std::fs::read_to_string(&sentinel).unwrap(), "keep");
    let _ = d.berth(&["rmi", "-f", "evil:1"]);
    let garbage = d.dir.join("garbage.tar");
    std::fs::write(&garbage, vec![0x41u8; 10_000]).unwrap();
    let o = d.berth(&["load", "-i", garbage.to_str().unwrap()]);
    assert_ne!(o.code, 0);
    assert_eq!(d.berth(&["images", "-q"]).ok().stdout, "", "nothing half-stored");
}

#[test]
fn health_checks_run_and_show_in_ps_and_inspect() {
    let d = Daemon::start("health");
    d.berth(&[
        "run", "-d", "--name", "hc", "--health-cmd", "test -e /tmp/ok", "--health-interval", "200ms",
        "--health-retries", "2", "busybox", "sh", "-c", "sleep 1000",
    ])
    .ok();
    let mut st = String::new();
    for _ in 0..100 {
        st = d.berth(&["inspect", "-f", "{{.State.Health.Status}}", "hc"]).ok().stdout;
        if st.trim() == "unhealthy" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(st.trim(), "unhealthy");
    d.berth(&["exec", "hc", "touch", "/tmp/ok"]).ok();
    for _ in 0..100 {
        st = d.berth(&["inspect", "-f", "{{.State.Health.Status}}", "hc"]).ok().stdout;
        if st.trim() == "healthy" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(st.trim(), "healthy");
    assert!(d.berth(&["ps"]).ok().stdout.contains("(healthy)"));
    let f = d.berth(&["ps", "-q", "--filter", "health=healthy"]).ok().stdout;
    assert_eq!(f.lines().count(), 1);
    // each change of status is a health_status event, as Docker sends them
    let now = chrono_now_secs().to_string();
    let ev = d
        .berth(&["events", "--since", "0", "--until", &now, "--filter", "event=health_status", "--format", "{{.Action}} {{.Actor.Attributes.name}}"])
        .ok()
        .stdout;
    assert_eq!(ev, "health_status: unhealthy hc\nhealth_status: healthy hc\n");
}

fn chrono_now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1
}

#[test]
fn cp_diff_commit_export() {
    let d = Daemon::start("fsops");
    d.berth(&["run", "-d", "--name", "fs", "busybox", "sh", "-c", "echo data > /tmp/f; rm /etc/group; sleep 1000"]).ok();
    let mut diff = String::new();
    for _ in 0..100 {
        diff = d.berth(&["diff", "fs"]).ok().stdout;
        if diff.contains("/etc/group") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(diff, "C /etc\nD /etc/group\nC /tmp\nA /tmp/f\n");
    let out = d.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    d.berth(&["cp", "fs:/tmp/f", out.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "data\n");
    let src = d.dir.join("in.txt");
    std::fs::write(&src, "local\n").unwrap();
    d.berth(&["cp", src.to_str().unwrap(), "fs:/root/"]).ok();
    assert_eq!(d.berth(&["exec", "fs", "cat", "/root/in.txt"]).ok().stdout, "local\n");
    let id = d.berth(&["commit", "-m", "msg", "-c", "ENV FOO=bar", "fs", "snap:v1"]).ok().stdout;
    assert!(id.starts_with("sha256:"));
    let o = d.berth(&["run", "--rm", "snap:v1", "sh", "-c", "cat /tmp/f; echo $FOO; test -e /etc/group || echo gone"]).ok();
    assert_eq!(o.stdout, "data\nbar\ngone\n");
    let tar = d.dir.join("exp.tar");
    let f = std::fs::File::create(&tar).unwrap();
    let st = d.cmd(&["export", "fs"]).stdout(f).status().unwrap();
    assert!(st.success());
    let list = std::process::Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.lines().any(|l| l == "tmp/f"), "export has the container's files");
}

#[test]
fn save_load_interoperates_with_docker() {
    let Some(dd) = DockerD::start() else { return };
    let d = Daemon::start("dockerio");
    // berth save -> docker load -> docker run
    let tar = d.dir.join("from-berth.tar");
    d.berth(&["save", "-o", tar.to_str().unwrap(), "busybox"]).ok();
    let o = dd.docker(&["load", "-i", tar.to_str().unwrap()]);
    assert!(o.status.success(), "docker load: {}", String::from_utf8_lossy(&o.stderr));
    let o = dd.docker(&["run", "--rm", "--network", "none", "busybox", "echo", "berth image in docker"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "berth image in docker\n", "{}", String::from_utf8_lossy(&o.stderr));
    // docker save -> berth load -> berth run
    let o = dd.docker(&["tag", "busybox", "fromdocker:v1"]);
    assert!(o.status.success());
    let tar2 = d.dir.join("from-docker.tar");
    let o = dd.docker(&["save", "-o", tar2.to_str().unwrap(), "fromdocker:v1"]);
    assert!(o.status.success(), "docker save: {}", String::from_utf8_lossy(&o.stderr));
    let o = d.berth(&["load", "-i", tar2.to_str().unwrap()]).ok();
    assert_eq!(o.stdout.trim(), "Loaded image: fromdocker:v1");
    assert_eq!(d.berth(&["run", "--rm", "fromdocker:v1", "echo", "docker image in berth"]).ok().stdout, "docker image in berth\n");
}

#[test]
fn closed_stdout_ends_quietly() {
    // `berth images | head`: the reader goes away; berth stops without a panic, like docker
    let d = Daemon::start("epipe");
    let mut child = d.cmd(&["images"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(matches!(o.status.code(), Some(0) | Some(141)), "{:?} {err}", o.status);
}
