//! HARDENING B12: the on-disk state of every released format is read by this berth
//! (`tests/fixtures/state/format-N.tar.gz`, made by `tests/fixtures/state/make.sh` with the
//! berth of that format), and a data root from a newer format is refused before anything in it
//! is touched.
mod common;
use common::{Daemon, BERTH};
use std::path::Path;

fn fixtures() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/state");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no state fixtures");
    v
}

#[test]
fn state_of_every_format_is_read() {
    for fx in fixtures() {
        let format = fx.file_name().unwrap().to_string_lossy().trim_start_matches("format-").trim_end_matches(".tar.gz").to_string();
        let mut d = Daemon::start_bare(&format!("upgrade{format}"));
        d.kill9();
        let data = d.data();
        std::fs::remove_dir_all(&data).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        let st = std::process::Command::new("tar")
            .args(["-C", data.to_str().unwrap(), "--xattrs", "--xattrs-include=*", "-xzf", fx.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
        d.spawn();
        let ctx = format!("fixture {}", fx.display());

        let imgs = d.berth(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]).ok().stdout;
        let mut lines: Vec<&str> = imgs.lines().collect();
        lines.sort();
        assert_eq!(lines.len(), 2, "{ctx}: {imgs}");
        assert!(lines[0].starts_with("fixture/app:1 ") && lines[1].starts_with("fixture/app:latest "), "{ctx}: {imgs}");
        assert_eq!(lines[0].split(' ').nth(1), lines[1].split(' ').nth(1), "{ctx}: one image, two tags");
        let cfg = d.berth(&["image", "inspect", "--format", "{{.Config.Env}} {{.Config.Labels}} {{.Config.Cmd}}", "fixture/app:1"]).ok().stdout;
        assert!(cfg.contains("A=1") && cfg.contains("l:v") && cfg.contains("/bin/sh"), "{ctx}: {cfg}");

        let ps = d.berth(&["ps", "-a", "--format", "{{.Names}} {{.Image}} {{.Status}}"]).ok().stdout;
        assert_eq!(ps.trim(), "fixctr fixture/app:1 Created", "{ctx}");
        let ins = d
            .berth(&["inspect", "--format", "{{.Config.Env}} {{.Config.Labels}} {{.HostConfig.RestartPolicy.Name}} {{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", "fixctr"])
            .ok()
            .stdout;
        assert!(ins.contains("X=y") && ins.contains("k:v") && ins.contains("unless-stopped") && ins.contains("fixnet"), "{ctx}: {ins}");
        let out = d.dir.join("out");
        for (path, want) in [("/upper.txt", "upper layer\n".to_string()), ("/hello.txt", format!("hello from format {format}\n"))] {
            let _ = std::fs::remove_file(&out);
            d.berth(&["cp", &format!("fixctr:{path}"), out.to_str().unwrap()]).ok();
            assert_eq!(std::fs::read_to_string(&out).unwrap(), want, "{ctx}: {path}");
        }

        let vols = d.berth(&["volume", "ls", "--format", "{{.Name}} {{.Labels}}"]).ok().stdout;
        assert_eq!(vols.trim(), "fixvol k=v", "{ctx}");
        let net = d.berth(&["network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "fixnet"]).ok().stdout;
        assert_eq!(net.trim(), "10.213.7.0/24", "{ctx}");

        // the state is usable, not just listed: a new container on the old volume and network
        d.berth(&["import", "--change", "CMD [\"sh\"]", common::busybox_tar().to_str().unwrap(), "busybox:latest"]).ok();
        let o = d.berth(&["run", "--rm", "-v", "fixvol:/data", "--network", "fixnet", "busybox", "sh", "-c", "cat /data/f; ip -4 -o addr show eth0"]).ok();
        assert!(o.stdout.starts_with("volume data\n") && o.stdout.contains("10.213.7."), "{ctx}: {}", o.stdout);
        // and everything in it can be removed
        d.berth(&["rm", "fixctr"]).ok();
        d.berth(&["rmi", "fixture/app:1", "fixture/app:latest"]).ok();
        d.berth(&["volume", "rm", "fixvol"]).ok();
        d.berth(&["network", "rm", "fixnet"]).ok();
    }
}

#[test]
fn a_newer_format_is_refused_untouched() {
    let mut d = Daemon::start("downgrade");
    d.berth(&["create", "--name", "c1", "busybox", "true"]).ok();
    d.kill9();
    let data = d.data();
    std::fs::write(data.join("format"), "999\n").unwrap();
    let listing = |p: &Path| {
        let o = std::process::Command::new("sh").arg("-c").arg(format!("cd {} && find . -printf '%p %s %T@\\n' | sort", p.display())).output().unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let before = listing(&data);
    let o = std::process::Command::new(BERTH)
        .args(["daemon", "--data-root", data.to_str().unwrap(), "--exec-root"])
        .arg(d.dir.join("run"))
        .arg("-H")
        .arg(format!("unix://{}", d.dir.join("other.sock").display()))
        .args(["--bridge", &d.bridge(), "--nft-table", &format!("berth-t-{}", d.name)])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("was written by a newer berth (on-disk format 999"), "{err}");
    assert_eq!(listing(&data), before, "nothing in the data root changed");
    // the same data root opens again with the right format
    std::fs::write(data.join("format"), "1\n").unwrap();
    d.spawn();
    assert_eq!(d.berth(&["ps", "-a", "--format", "{{.Names}}"]).ok().stdout.trim(), "c1");
}
