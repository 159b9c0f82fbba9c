//! `berth compose` end to end, on the test project in `tests/compose/` (a reverse proxy
//! built from a static Go program, two busybox httpd replicas, a stateful service with a
//! healthcheck and a named volume), and the same project driven by Debian's
//! docker-compose 1.29 through berth's socket.

mod common;
use common::Daemon;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.0 GET; the body, or None when nothing answered.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    if !out.starts_with("HTTP/1.") || !out.contains(" 200 ") {
        return None;
    }
    out.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_string())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// The test project copied under `dir`, with the proxy binary built; None (test skipped)
/// when Go is not installed.
fn project(dir: &Path) -> Option<PathBuf> {
    if Command::new("go").arg("version").output().is_err() {
        eprintln!("skipping: go is not installed (needed to build the test project's proxy)");
        return None;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compose");
    let proj = dir.join("webstack");
    copy_dir(&src, &proj);
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gocache");
    let st = Command::new("go")
        .args(["build", "-o", "proxy", "main.go"])
        .current_dir(proj.join("proxy"))
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", &cache)
        .env("HOME", dir)
        .status()
        .expect("run go build");
    assert!(st.success(), "go build of the proxy failed");
    Some(proj)
}

/// `berth compose ...` in `dir` with extra environment.
fn compose(d: &Daemon, dir: &Path, env: &[(&str, &str)], args: &[&str]) -> common::Out {
    let mut c = d.cmd(&["compose"]);
    c.args(args).current_dir(dir).stdin(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run berth compose");
    common::Out { code: o.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
}

/// Requests through the proxy until both replicas have answered (or 40 tries).
fn replica_answers(port: u16) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        if let Some(b) = http_get(port, "/") {
            seen.insert(b);
        }
        if seen.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    seen
}

fn ids(d: &Daemon, service: &str) -> Vec<String> {
    let out = d.berth(&["ps", "-aq", "--no-trunc", "--filter", &format!("label=com.docker.compose.service={service}")]).ok().stdout;
    let mut v: Vec<String> = out.split_whitespace().map(String::from).collect();
    v.sort();
    v
}

/// Nothing of the project is left: no container, no network, no volume.
fn assert_clean(d: &Daemon, project: &str) {
    let ps = d.berth(&["ps", "-a", "--format", "{{.Names}}"]).ok().stdout;
    assert!(ps.trim().is_empty(), "containers left: {ps}");
    let nets = d.berth(&["network", "ls", "--format", "{{.Name}}"]).ok().stdout;
    assert!(!nets.contains(project), "networks left: {nets}");
    let vols = d.berth(&["volume", "ls", "-q"]).ok().stdout;
    assert!(vols.trim().is_empty(), "volumes left: {vols}");
}

/// Removes the project even when an assertion fails.
struct Down<'a>(&'a Daemon, PathBuf, Vec<(&'static str, String)>, &'static str);
impl Drop for Down<'_> {
    fn drop(&mut self) {
        let env: Vec<(&str, &str)> = self.2.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let _ = compose(self.0, &self.1, &env, &["-p", self.3, "down", "-v", "-t", "1"]);
    }
}

#[test]
fn webstack_up_wait_proxy_scale_recreate_down() {
    let d = Daemon::start("compose");
    let Some(proj) = project(&d.dir) else { return };
    let port = free_port().to_string();
    let env = [("PROXY_PORT", port.as_str())];
    let _down = Down(&d, proj.clone(), vec![("PROXY_PORT", port.clone())], "webstack");
    let port: u16 = port.parse().unwrap();

    // config renders the normalised model; names follow Compose v2
    let cfg = compose(&d, &proj, &env, &["-p", "webstack", "config", "--services"]).ok().stdout;
    assert_eq!(cfg, "app\ndb\nproxy\n");

    let up = compose(&d, &proj, &env, &["-p", "webstack", "up", "-d", "--wait"]).ok();
    assert!(up.stderr.contains("Network webstack_default  Created"), "{}", up.stderr);
    assert!(up.stderr.contains("Volume webstack_dbdata  Created"), "{}", up.stderr);
    let ps = compose(&d, &proj, &env, &["-p", "webstack", "ps"]).ok().stdout;
    for n in ["webstack-app-1", "webstack-app-2", "webstack-db-1", "webstack-proxy-1"] {
        assert!(ps.contains(n), "{n} missing from ps: {ps}");
    }
    assert_eq!(ps.matches("(healthy)").count(), 4, "all healthy after --wait: {ps}");
    let labels = d.berth(&["inspect", "-f", "{{json .Config.Labels}}", "webstack-app-2"]).ok().stdout;
    for l in [r#""com.docker.compose.project":"webstack""#, r#""com.docker.compose.service":"app""#, r#""com.docker.compose.container-number":"2""#, r#""com.docker.compose.oneoff":"False""#] {
        assert!(labels.contains(l), "{l} not in {labels}");
    }

    // requests through the proxy reach both replicas (each answers with its host name)
    let seen = replica_answers(port);
    let apps = ids(&d, "app");
    assert_eq!(seen.len(), 2, "both replicas answer: {seen:?}");
    for s in &seen {
        assert!(apps.iter().any(|id| id.starts_with(s)), "{s} is not an app container: {apps:?}");
    }

    // logs with a prefix; exec and run in the project
    let logs = compose(&d, &proj, &env, &["-p", "webstack", "logs", "proxy"]).ok().stdout;
    assert!(logs.contains("webstack-proxy-1 | ") && logs.contains("proxy :8080 -> app:80"), "{logs}");
    let boots = compose(&d, &proj, &env, &["-p", "webstack", "exec", "-T", "db", "cat", "/data/boots"]).ok().stdout;
    assert_eq!(boots.trim(), "boot");
    let run = compose(&d, &proj, &env, &["-p", "webstack", "run", "--rm", "--no-deps", "app", "sh", "-c", "echo one-off; exit 3"]);
    assert_eq!(run.code, 3, "run passes the exit code: {:?}", run.stderr);
    assert!(run.stdout.contains("one-off"));

    // up again changes nothing; a changed service (db's environment) is the only one recreated
    let (app0, db0, proxy0) = (ids(&d, "app"), ids(&d, "db"), ids(&d, "proxy"));
    compose(&d, &proj, &env, &["-p", "webstack", "up", "-d", "--wait"]).ok();
    assert_eq!((ids(&d, "app"), ids(&d, "db"), ids(&d, "proxy")), (app0.clone(), db0.clone(), proxy0.clone()));
    let env2 = [("PROXY_PORT", env[0].1), ("DB_MODE", "replica")];
    compose(&d, &proj, &env2, &["-p", "webstack", "up", "-d", "--wait"]).ok();
    assert_eq!(ids(&d, "app"), app0);
    assert_eq!(ids(&d, "proxy"), proxy0);
    assert_ne!(ids(&d, "db"), db0, "db recreated");
    let dbenv = d.berth(&["inspect", "-f", "{{json .Config.Env}}", "webstack-db-1"]).ok().stdout;
    assert!(dbenv.contains("DB_MODE=replica"), "{dbenv}");

    // --scale: down to one replica, then back up to two
    compose(&d, &proj, &env2, &["-p", "webstack", "up", "-d", "--wait", "--scale", "app=1"]).ok();
    assert_eq!(ids(&d, "app").len(), 1);
    compose(&d, &proj, &env2, &["-p", "webstack", "up", "-d", "--wait"]).ok();
    assert_eq!(ids(&d, "app").len(), 2);
    assert_eq!(replica_answers(port).len(), 2);

    // stop / start / restart keep the containers
    compose(&d, &proj, &env2, &["-p", "webstack", "stop", "-t", "1"]).ok();
    assert!(compose(&d, &proj, &env2, &["-p", "webstack", "ps", "-q"]).ok().stdout.trim().is_empty());
    compose(&d, &proj, &env2, &["-p", "webstack", "start"]).ok();
    compose(&d, &proj, &env2, &["-p", "webstack", "restart", "-t", "1", "app"]).ok();
    compose(&d, &proj, &env2, &["-p", "webstack", "up", "-d", "--wait"]).ok();
    assert_eq!(replica_answers(port).len(), 2);

    // the named volume outlives down (without -v); the db booted once per start
    compose(&d, &proj, &env2, &["-p", "webstack", "down", "-t", "1"]).ok();
    assert!(d.berth(&["ps", "-aq"]).ok().stdout.trim().is_empty());
    assert!(d.berth(&["volume", "ls", "-q"]).ok().stdout.contains("webstack_dbdata"));
    compose(&d, &proj, &env2, &["-p", "webstack", "up", "-d", "--wait"]).ok();
    let boots = compose(&d, &proj, &env2, &["-p", "webstack", "exec", "-T", "db", "cat", "/data/boots"]).ok().stdout;
    assert_eq!(boots.lines().count(), 4, "boots: {boots}");

    // down -v leaves nothing behind
    compose(&d, &proj, &env2, &["-p", "webstack", "down", "-v", "-t", "1"]).ok();
    assert_clean(&d, "webstack");
}

#[test]
fn docker_compose_129_runs_the_same_project() {
    if !Path::new("/usr/bin/docker-compose").exists() {
        eprintln!("skipping: docker-compose (1.29) is not installed");
        return;
    }
    let d = Daemon::start("compose129");
    let Some(proj) = project(&d.dir) else { return };
    let port = free_port();
    let dc = |args: &[&str]| {
        let o = Command::new("/usr/bin/docker-compose")
            .args(["-p", "dc129"])
            .args(args)
            .current_dir(&proj)
            .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
            .env("PROXY_PORT", port.to_string())
            // the Python SDK's build path, so the build goes through berth's /build API
            .env("COMPOSE_DOCKER_CLI_BUILD", "0")
            .env("DOCKER_BUILDKIT", "0")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run docker-compose");
        common::Out { code: o.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
    };
    struct DcDown<'a>(&'a dyn Fn(&[&str]) -> common::Out);
    impl Drop for DcDown<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["down", "-v", "-t", "1"]);
        }
    }
    let _down = DcDown(&dc);
    // 1.29 has no --wait: up -d returns once the depends_on conditions held, then poll
    dc(&["up", "-d"]).ok();
    let mut ps = String::new();
    for _ in 0..600 {
        ps = d.berth(&["ps", "--format", "{{.Names}} {{.Status}}"]).ok().stdout;
        if ps.matches("(healthy)").count() == 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ps.matches("(healthy)").count(), 4, "{ps}");
    for n in ["dc129_app_1", "dc129_app_2", "dc129_db_1", "dc129_proxy_1"] {
        assert!(ps.contains(n), "{n} missing: {ps}");
    }
    assert_eq!(replica_answers(port).len(), 2);
    let logs = dc(&["logs", "--no-color", "proxy"]).ok().stdout;
    assert!(logs.contains("proxy :8080 -> app:80"), "{logs}");
    // berth compose sees the same project by its labels
    let bps = compose(&d, &proj, &[("PROXY_PORT", &port.to_string())], &["-p", "dc129", "ps", "--services"]).ok().stdout;
    assert_eq!(bps, "app\ndb\nproxy\n");
    dc(&["down", "-v", "-t", "1"]).ok();
    assert_clean(&d, "dc129");
}

/// A one-file project in a fresh directory.
fn write_project(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("compose.yaml"), yaml).unwrap();
    p
}

#[test]
fn bad_compose_files_get_clear_errors() {
    // HARDENING.md A5 #48: no daemon needed, `config` loads and validates only
    let dir = std::env::temp_dir().join(format!("berth-compose-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |name: &str, yaml: &str, env: &[(&str, &str)]| -> common::Out {
        let p = write_project(&dir, name, yaml);
        let mut c = Command::new(common::BERTH);
        c.args(["compose", "config"]).current_dir(&p).env("BERTH_HOST", "unix:///nonexistent.sock");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        common::Out { code: o.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("unknown", "services:\n  web:\n    image: busybox\n    imagee: x\n".into(), vec!["compose.yaml:4", "services.web", "imagee"]),
        ("badtype", "services:\n  web:\n    image: busybox\n    ports: 80\n".into(), vec!["compose.yaml:4", "services.web.ports", "invalid type"]),
        ("cycle", "services:\n  a:\n    image: busybox\n    depends_on: [b]\n  b:\n    image: busybox\n    depends_on: [a]\n".into(), vec!["compose.yaml:4: services.a.depends_on: dependency cycle detected: a -> b -> a"]),
        ("required", "services:\n  web:\n    image: busybox\n    environment:\n      - X=${NEEDED:?set NEEDED first}\n".into(), vec!["compose.yaml", "NEEDED", "set NEEDED first"]),
        (
            "laughs",
            "x-a: &a [l, l, l, l, l, l, l, l, l]\nx-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nx-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nx-d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\nx-e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nx-f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\nx-g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nx-h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\nservices:\n  web:\n    image: busybox\n    command: *h\n".into(),
            vec!["compose.yaml", "repetition limit"],
        ),
        ("huge", format!("services:\n  web:\n    image: busybox\n# {}\n", "x".repeat(11 << 20)), vec!["compose.yaml", "larger than"]),
        ("nested", format!("services:\n  web:\n    image: \"{}busybox{}\"\n", "${A:-".repeat(200), "}".repeat(200)), vec!["compose.yaml", "services.web.image"]),
    ];
    // interpolation is one pass (as in Docker Compose): `.env` variables naming each other
    // cannot loop
    let p = write_project(&dir, "loop", "services:\n  s:\n    image: busybox\n    environment:\n      A: ${A}\n      B: ${B}\n");
    std::fs::write(p.join(".env"), "A=${B}\nB=${A}x\n").unwrap();
    let o = run("loop", "services:\n  s:\n    image: busybox\n    environment:\n      A: ${A}\n      B: ${B}\n", &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("A: ''") && o.stdout.contains("B: x"), "{}", o.stdout);
    for (name, yaml, want) in cases {
        let o = run(name, &yaml, &[]);
        assert_eq!(o.code, 1, "{name}: exit code; stderr={}", o.stderr);
        assert!(o.stdout.is_empty(), "{name}: nothing on stdout: {}", o.stdout);
        for w in want {
            assert!(o.stderr.contains(w), "{name}: {w:?} not in {:?}", o.stderr);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_profiles_env_orphans_and_oneoff_commands() {
    let d = Daemon::start("compose-cmds");
    let p = write_project(
        &d.dir,
        "cmds",
        "services:\n  base:\n    image: busybox\n    command: sleep 600\n    stop_signal: SIGKILL\n    labels: ['tier=${TIER:-none}']\n  web:\n    extends: base\n    ports: ['127.0.0.1::80']\n    command: httpd -f -p 80\n    volumes: [/keep]\n  debug:\n    extends: base\n    profiles: [debug]\n",
    );
    std::fs::write(p.join("compose.override.yaml"), "services:\n  web:\n    environment: [FROM_OVERRIDE=1]\n").unwrap();
    std::fs::write(p.join("other.env"), "TIER=gold\n").unwrap();
    let c = |args: &[&str]| compose(&d, &p, &[], args);
    let _down = Down(&d, p.clone(), vec![], "cmds");
    c(&["-p", "cmds", "--env-file", "other.env", "up", "-d"]).ok();
    let names = d.berth(&["ps", "--format", "{{.Names}}"]).ok().stdout;
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["cmds-base-1", "cmds-web-1"], "the debug profile is off");
    assert_eq!(d.berth(&["inspect", "-f", "{{index .Config.Labels \"tier\"}}", "cmds-web-1"]).ok().stdout.trim(), "gold");
    let env = d.berth(&["inspect", "-f", "{{json .Config.Env}}", "cmds-web-1"]).ok().stdout;
    assert!(env.contains("FROM_OVERRIDE=1"), "override file merged: {env}");
    let port = c(&["-p", "cmds", "port", "web", "80"]).ok().stdout;
    assert!(port.trim().starts_with("127.0.0.1:"), "{port}");
    // a profile's service starts when named or with --profile
    c(&["-p", "cmds", "--profile", "debug", "up", "-d", "debug"]).ok();
    assert!(d.berth(&["ps", "--format", "{{.Names}}"]).ok().stdout.contains("cmds-debug-1"));
    // -f with only the base file: web has no override env any more, so it is recreated,
    // keeping its anonymous volume
    c(&["-p", "cmds", "exec", "-T", "web", "sh", "-c", "echo kept > /keep/f"]).ok();
    let before = ids(&d, "web");
    c(&["-p", "cmds", "-f", "compose.yaml", "up", "-d", "web"]).ok();
    assert_ne!(ids(&d, "web"), before);
    assert_eq!(c(&["-p", "cmds", "exec", "-T", "web", "cat", "/keep/f"]).ok().stdout, "kept\n");
    // top, images, kill, rm
    assert!(c(&["-p", "cmds", "top", "base"]).ok().stdout.contains("sleep 600"));
    assert!(c(&["-p", "cmds", "images"]).ok().stdout.contains("busybox"));
    c(&["-p", "cmds", "kill", "base"]).ok();
    c(&["-p", "cmds", "rm", "-f", "base"]).ok();
    assert!(ids(&d, "base").is_empty());
    // orphans: a file without `debug` and `base` warns, --remove-orphans removes them
    std::fs::write(p.join("small.yaml"), "services:\n  web:\n    image: busybox\n    command: httpd -f -p 80\n").unwrap();
    let up = c(&["-p", "cmds", "-f", "small.yaml", "up", "-d"]).ok();
    assert!(up.stderr.contains("Found orphan containers") && up.stderr.contains("cmds-debug-1"), "{}", up.stderr);
    c(&["-p", "cmds", "-f", "small.yaml", "up", "-d", "--remove-orphans"]).ok();
    assert!(ids(&d, "debug").is_empty());
    // run: one-off container with the oneoff label, removed with --rm
    let out = c(&["-p", "cmds", "-f", "small.yaml", "run", "-d", "web", "sleep", "30"]).ok().stdout;
    assert!(out.trim().starts_with("cmds-web-run-"), "{out}");
    let oneoff = d.berth(&["inspect", "-f", "{{index .Config.Labels \"com.docker.compose.oneoff\"}}", out.trim()]).ok().stdout;
    assert_eq!(oneoff.trim(), "True");
    c(&["-p", "cmds", "-f", "small.yaml", "down", "-v", "-t", "1"]).ok();
    assert_clean(&d, "cmds");
}

#[test]
fn service_keys_reach_the_container() {
    let d = Daemon::start("compose-keys");
    let p = write_project(
        &d.dir,
        "keys",
        r#"services:
  init:
    image: busybox
    command: sh -c "echo migrated > /shared/migrated"
    volumes: [shared:/shared]
  app:
    image: busybox
    entrypoint: ["sh", "-c"]
    command: ["cat /run/secrets/token /etc/app.conf /site/index.html /shared/migrated; exec sleep 1000"]
    hostname: apphost
    user: "1000:1000"
    working_dir: /tmp
    init: true
    env_file: [app.env]
    extra_hosts: ["db.local:10.1.2.3"]
    tmpfs: [/scratch]
    restart: unless-stopped
    stop_grace_period: 1s
    volumes:
      - ./site:/site:ro
      - shared:/shared
      - type: tmpfs
        target: /fast
        tmpfs: {size: 1m}
    secrets: [token]
    configs:
      - source: appconf
        target: /etc/app.conf
    networks:
      front:
        aliases: [api]
      back: {}
    depends_on:
      init: {condition: service_completed_successfully}
  probe:
    image: busybox
    command: sleep 1000
    stop_signal: SIGKILL
    networks: [front]
networks:
  front: {}
  back:
    internal: true
volumes:
  shared:
secrets:
  token: {file: ./token.txt}
configs:
  appconf: {file: ./app.conf}
"#,
    );
    std::fs::write(p.join("token.txt"), "secret-value\n").unwrap();
    std::fs::write(p.join("app.conf"), "cfg: 1\n").unwrap();
    std::fs::write(p.join("app.env"), "FROM_FILE=yes\n").unwrap();
    std::fs::create_dir_all(p.join("site")).unwrap();
    std::fs::write(p.join("site/index.html"), "bound\n").unwrap();
    // run from a subdirectory: the file is found in the parent, the project is named after it
    let sub = p.join("site");
    let c = |args: &[&str]| compose(&d, &sub, &[], args);
    let _down = Down(&d, sub.clone(), vec![], "keys");
    c(&["up", "-d", "--wait"]).ok();
    // the one-shot init ran to completion before app started
    let logs = c(&["logs", "--no-log-prefix", "app"]).ok().stdout;
    assert_eq!(logs, "secret-value\ncfg: 1\nbound\nmigrated\n");
    let info = d
        .berth(&["inspect", "-f", "{{.Config.Hostname}} {{.Config.User}} {{.Config.WorkingDir}} {{.HostConfig.Init}} {{.HostConfig.RestartPolicy.Name}}", "keys-app-1"])
        .ok()
        .stdout;
    assert_eq!(info.trim(), "apphost 1000:1000 /tmp true unless-stopped");
    let inside = c(&["exec", "-T", "app", "sh", "-c", "id -u; pwd; grep db.local /etc/hosts; mount | grep -c -E ' /(scratch|fast) type tmpfs'; echo $FROM_FILE"]).ok().stdout;
    let lines: Vec<&str> = inside.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "/tmp");
    assert!(lines[2].starts_with("10.1.2.3"), "{inside}");
    assert_eq!(lines[3], "2", "{inside}");
    assert_eq!(lines[4], "yes");
    // network aliases: another service finds app by its alias and by service name
    for name in ["api", "app", "keys-app-1"] {
        let out = c(&["exec", "-T", "probe", "nslookup", name]).stdout;
        assert!(out.contains("Address: 172.") || out.contains("Address: 10."), "{name}: {out}");
    }
    c(&["down", "-v", "-t", "1"]).ok();
    assert_clean(&d, "keys");
}

#[test]
fn recreated_dependency_restarts_dependents_with_restart_true() {
    let d = Daemon::start("compose-restart");
    let p = write_project(
        &d.dir,
        "rs",
        "services:\n  db:\n    image: busybox\n    command: sleep 1000\n    stop_signal: SIGKILL\n    environment: ['V=${V:-1}']\n  app:\n    image: busybox\n    command: sleep 1000\n    stop_signal: SIGKILL\n    depends_on:\n      db: {condition: service_started, restart: true}\n  other:\n    image: busybox\n    command: sleep 1000\n    stop_signal: SIGKILL\n    depends_on: [db]\n",
    );
    let _down = Down(&d, p.clone(), vec![], "rs");
    compose(&d, &p, &[], &["up", "-d"]).ok();
    let started = |n: &str| d.berth(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", n]).ok().stdout;
    let (app0, other0) = (started("rs-app-1"), started("rs-other-1"));
    let up = compose(&d, &p, &[("V", "2")], &["up", "-d"]).ok();
    assert!(up.stderr.contains("Container rs-db-1  Recreated") && up.stderr.contains("Container rs-app-1  Restarting"), "{}", up.stderr);
    let (app1, other1) = (started("rs-app-1"), started("rs-other-1"));
    assert_eq!(app0.split(' ').next(), app1.split(' ').next(), "app is restarted, not recreated");
    assert_ne!(app0, app1, "app restarted");
    assert_eq!(other0, other1, "other (no restart: true) untouched");
    compose(&d, &p, &[], &["down", "-t", "1"]).ok();
    assert_clean(&d, "rs");
}
