//! berth's registry server with other clients: Debian's docker.io and podman (issue 7).

mod common;
use common::*;
use std::process::Command;

#[test]
fn docker_pushes_to_and_pulls_from_berth_registry() {
    let Some(dd) = DockerD::start() else { return };
    let reg = BerthRegistry::start("docker");
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
    let reg = BerthRegistry::start("podman");
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
