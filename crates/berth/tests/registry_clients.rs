//! berth's registry server with other clients: Debian's docker.io and podman (issue 7).

mod common;
use common::*;
use std::process::{Child, Command, Stdio};

struct Registry {
    child: Child,
    dir: std::path::PathBuf,
    addr: String,
}

impl Registry {
    fn start(name: &str) -> Registry {
        let dir = std::path::PathBuf::from(format!("/tmp/berth-reg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(BERTH)
            .args(["registry", "serve", "--addr", &addr, "--root"])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Registry { child, dir, addr }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn docker_pushes_to_and_pulls_from_berth_registry() {
    let Some(dd) = DockerD::start() else { return };
    let reg = Registry::start("docker");
    let d = Daemon::start("regdocker");
    let tar = d.dir.join("bb.tar");
    d.berth(&["save", "-o", tar.to_str().unwrap(), "busybox"]).ok();
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{} {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    ok(dd.docker(&["load", "-i", tar.to_str().unwrap()]));
    let name = format!("{}/team/bb:v1", reg.addr);
    ok(dd.docker(&["tag", "busybox", &name]));
    ok(dd.docker(&["push", &name]));
    ok(dd.docker(&["rmi", &name, "busybox"]));
    ok(dd.docker(&["pull", &name]));
    let out = ok(dd.docker(&["run", "--rm", "--network", "none", &name, "echo", "pulled by docker"]));
    assert_eq!(out, "pulled by docker\n");
    // and berth's own client reads what docker pushed
    d.berth(&["pull", &name]).ok();
    assert_eq!(d.berth(&["run", "--rm", &name, "echo", "pulled by berth"]).ok().stdout, "pulled by berth\n");
}

#[test]
fn podman_pushes_to_and_pulls_from_berth_registry() {
    if Command::new("podman").arg("--version").output().is_err() {
        eprintln!("skipping: podman not installed");
        return;
    }
    let reg = Registry::start("podman");
    let d = Daemon::start("regpodman");
    let tar = d.dir.join("bb.tar");
    d.berth(&["save", "-o", tar.to_str().unwrap(), "busybox"]).ok();
    let root = d.dir.join("podman");
    let podman = |args: &[&str]| {
        Command::new("podman")
            .arg("--root")
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("run"))
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{} {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    };
    ok(podman(&["load", "-i", tar.to_str().unwrap()]));
    let name = format!("{}/team/pbb:v1", reg.addr);
    ok(podman(&["tag", "busybox", &name]));
    ok(podman(&["push", "--tls-verify=false", &name]));
    ok(podman(&["rmi", &name]));
    ok(podman(&["pull", "--tls-verify=false", &name]));
    let _ = podman(&["rmi", "-af"]);
    d.berth(&["pull", &name]).ok();
    assert_eq!(d.berth(&["run", "--rm", &name, "echo", "podman pushed"]).ok().stdout, "podman pushed\n");
}
