//! Real clients against berth (issue 10): the black-box scenarios of `tests/compat`.
//!
//! Every scenario (a shell script driving the `docker` CLI or docker-compose, or a Python
//! script using the Docker SDK) runs against one shared berth daemon and, when Debian's
//! docker.io is installed, against one shared real dockerd, with every docker client found
//! (`/usr/bin/docker` 20.10 and `/usr/local/bin/docker` 28.x). Each transcript is normalised
//! (ids, times, sizes and addresses masked) and must equal `tests/compat/expected/<scenario>.out`
//! on both engines, so berth and Docker are measured against the same reference.
//!
//! `COMPAT_ONLY=sub1,sub2` runs only the scenarios whose file name contains one of them. Raw and normalised transcripts of
//! the last run are kept under `target/tmp/compat/` (that is how expected files are made: from
//! dockerd's transcript, after reading it).

mod common;
use common::*;
use regex::Regex;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat").canonicalize().expect("tests/compat exists")
}

/// A real dockerd with its own bridge (so the default network behaves as on a normal Docker
/// host), no iptables, and its own data/exec roots; stopped and cleaned up on drop.
struct RefDockerd {
    dir: PathBuf,
    sock: PathBuf,
    bridge: String,
    /// `10.N.` : the address pool of this dockerd's user networks (one per test process)
    pool: String,
    child: Child,
}

impl RefDockerd {
    fn start() -> Option<RefDockerd> {
        if !Path::new("/usr/sbin/dockerd").exists() {
            eprintln!("compat: skipping the dockerd half: /usr/sbin/dockerd is not installed (Debian's docker.io)");
            return None;
        }
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/berth-compat-dd-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let bridge = format!("bcd{:x}", pid);
        let net = 20 + pid % 200;
        let sh = |c: &str| Command::new("sh").arg("-c").arg(c).status().map(|s| s.success()).unwrap_or(false);
        let _ = Command::new("ip").args(["link", "del", &bridge]).stderr(Stdio::null()).status();
        if !sh(&format!("ip link add {bridge} type bridge && ip addr add 10.213.{net}.1/24 dev {bridge} && ip link set {bridge} up")) {
            eprintln!("compat: skipping the dockerd half: cannot create bridge {bridge}");
            return None;
        }
        let sock = dir.join("docker.sock");
        let pool = format!("10.{}.", 20 + pid % 90);
        let log = std::fs::File::create(dir.join("dockerd.log")).ok()?;
        let child = Command::new("/usr/sbin/dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("run"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["--bridge", &bridge, "--iptables=false", "--ip6tables=false"])
            .arg("--default-address-pool")
            .arg(format!("base={pool}0.0/16,size=24"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().ok()?)
            .stderr(log)
            .spawn()
            .ok()?;
        let dd = RefDockerd { dir, sock, bridge, pool, child };
        for _ in 0..300 {
            let ok = Command::new("/usr/bin/docker")
                .env("DOCKER_HOST", dd.host())
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Some(dd);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!(
            "compat: skipping the dockerd half: dockerd did not start: {}",
            std::fs::read_to_string(dd.dir.join("dockerd.log")).unwrap_or_default().lines().last().unwrap_or("")
        );
        None
    }

    fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }
}

impl Drop for RefDockerd {
    fn drop(&mut self) {
        // containers first, so no shim/containerd-shim outlives the daemon
        let _ = Command::new("sh")
            .arg("-c")
            .arg("ids=$(docker ps -aq); [ -z \"$ids\" ] || docker rm -f $ids")
            .env("DOCKER_HOST", self.host())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        for _ in 0..150 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        common::unmount_under(&self.dir);
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).stderr(Stdio::null()).status();
        // user networks made by scenarios that failed half-way
        if let Ok(o) = Command::new("ip").args(["-o", "addr", "show"]).output() {
            let mark = format!(" inet {}", self.pool);
            for line in String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.contains(&mark)) {
                if let Some(dev) = line.split_whitespace().nth(1) {
                    if dev.starts_with("br-") {
                        let _ = Command::new("ip").args(["link", "del", dev]).stderr(Stdio::null()).status();
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One engine under test.
struct Engine {
    /// `berth` or `dockerd`: the tag of its transcripts.
    name: &'static str,
    host: String,
}

/// Masks what legitimately differs between runs and engines: names prefix, scratch paths,
/// registry address, ids and digests, times, sizes, addresses; and table padding.
fn normalise(raw: &str, subst: &[(&str, &str)]) -> String {
    static RES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let res = RES.get_or_init(|| {
        [
            (r"sha256:[0-9a-f]{64}", "sha256:<DIGEST>"),
            (r"\b[0-9a-f]{64}\b", "<ID>"),
            (r"\b[0-9a-f]{12}\b", "<ID>"),
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", "<TIME>"),
            (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} [A-Z]+", "<TIME>"),
            (r"(About an? |Less than a |\d+ )(second|minute|hour)s? ago", "<AGO>"),
            (r"Up (About an? |Less than a |\d+ )(second|minute|hour)s?", "Up <DUR>"),
            (r"\b\d+(\.\d+)?\s?(B|kB|KB|MB|GB)\b", "<SIZE>"),
            (r"\b([0-9a-f]{2}:){5}[0-9a-f]{2}\b", "<MAC>"),
            (r"\b(1\d\d|2[0-4]\d|25[0-5]|[1-9]?\d)(\.(1?\d?\d|2[0-4]\d|25[0-5])){3}\b", "<IP>"),
        ]
        .into_iter()
        .map(|(r, s)| (Regex::new(r).expect("valid regex"), s))
        .collect()
    });
    let mut s = raw.replace('\r', "");
    for (from, to) in subst {
        if !from.is_empty() {
            s = s.replace(from, to);
        }
    }
    // loopback and wildcard addresses are part of the output that matters
    let s = s.replace("127.0.0.1", "LOOPBACK4").replace("0.0.0.0", "ANYADDR4");
    let mut s = s;
    for (re, to) in res {
        s = re.replace_all(&s, *to).into_owned();
    }
    let s = s.replace("LOOPBACK4", "127.0.0.1").replace("ANYADDR4", "0.0.0.0");
    let pad = Regex::new(r" {2,}").expect("valid regex");
    s.lines().map(|l| pad.replace_all(l.trim_end(), "  ").into_owned()).collect::<Vec<_>>().join("\n") + "\n"
}

/// Apply `tests/compat/known-differences.tsv` to an engine's normalised transcript: each line
/// `engine<TAB>scenario-prefix<TAB>that engine's text<TAB>berth's text<TAB>why` replaces the
/// first text by the second, so a documented difference does not hide any other one.
fn known_differences(norm: &str, engine: &str, scenario: &str) -> String {
    let table = std::fs::read_to_string(compat_dir().join("known-differences.tsv")).unwrap_or_default();
    let mut s = norm.to_string();
    for line in table.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(f.len() >= 4, "known-differences.tsv: bad line {line:?}");
        if f[0] == engine && scenario.starts_with(f[1]) {
            s = s.replace(f[2], f[3]);
        }
    }
    s
}

/// Run one scenario file; returns the raw transcript.
fn run_scenario(file: &Path, engine: &Engine, client: &str, prefix: &str, work: &Path, reg: &str, port: u16) -> String {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work.join("config")).unwrap();
    let is_py = file.extension().is_some_and(|e| e == "py");
    let mut c = if is_py {
        let mut c = Command::new("timeout");
        c.args(["-k", "5", "300", "python3", "-u"]).arg(file);
        c
    } else {
        let mut c = Command::new("timeout");
        c.args(["-k", "5", "300", "bash", "-c", "exec 2>&1; . \"$0\""]).arg(file);
        c
    };
    let o = c
        .current_dir(work)
        .env("DOCKER", client)
        .env("DOCKER_HOST", &engine.host)
        .env("DOCKER_CONFIG", work.join("config"))
        .env("ENGINE", engine.name)
        .env("P", prefix)
        .env("WORK", work)
        .env("REG", reg)
        .env("PORT", port.to_string())
        .env("BUSYBOX_TAR", busybox_tar())
        .env("COMPAT", compat_dir())
        .env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", Path::new(client).parent().unwrap().display()))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run scenario");
    let mut out = String::from_utf8_lossy(&o.stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(&o.stderr));
    if !o.status.success() {
        out.push_str(&format!("[scenario exit {}]\n", o.status.code().unwrap_or(-1)));
    }
    out
}

fn diff(expected: &Path, actual: &Path) -> String {
    let o = Command::new("diff").arg("-u").arg(expected).arg(actual).output().expect("run diff");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn compat_scenarios() {
    let root = compat_dir();
    let only = std::env::var("COMPAT_ONLY").unwrap_or_default();
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(root.join("scenarios"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh" || e == "py"))
        .filter(|p| only.split(',').any(|o| p.file_name().unwrap().to_string_lossy().contains(o)))
        .collect();
    scenarios.sort();
    let clients: Vec<(&str, &str)> =
        [("/usr/bin/docker", "20"), ("/usr/local/bin/docker", "28")].into_iter().filter(|(p, _)| Path::new(p).exists()).collect();
    if clients.is_empty() {
        eprintln!("compat: skipping: no docker client installed (/usr/bin/docker or /usr/local/bin/docker)");
        return;
    }

    let berth = Daemon::start_bare("compat");
    let dockerd = RefDockerd::start();
    let reg = BerthRegistry::start("compat");
    let mut engines = vec![Engine { name: "berth", host: format!("unix://{}", berth.sock.display()) }];
    if let Some(dd) = &dockerd {
        engines.push(Engine { name: "dockerd", host: dd.host() });
    }
    // the test image, made the way the seed notes' readers would: `docker import`
    let tar = busybox_tar();
    for e in &engines {
        let st = Command::new(clients[0].0)
            .env("DOCKER_HOST", &e.host)
            .args(["import", "--change", "CMD [\"sh\"]"])
            .arg(&tar)
            .arg("busybox:latest")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "docker import into {}", e.name);
    }

    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compat");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    let pid = std::process::id();
    let mut failures = Vec::new();
    let mut ran = 0;
    let started = Instant::now();
    for file in &scenarios {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).unwrap();
        // SDK and compose scenarios do not use the docker CLI: one client is enough
        let per_client = !text.contains("# compat: once");
        let these: Vec<(&str, &str)> = if per_client { clients.clone() } else { vec![clients[0]] };
        for (client, cv) in &these {
            let t0 = Instant::now();
            let results: Vec<(String, String)> = std::thread::scope(|s| {
                let handles: Vec<_> = engines
                    .iter()
                    .map(|e| {
                        let file = file.clone();
                        let out_dir = out_dir.clone();
                        let reg = reg.addr.clone();
                        let name = name.clone();
                        s.spawn(move || {
                            let prefix = format!("ct{}{}{}", &e.name[..1], cv, pid % 1000);
                            let work = PathBuf::from(format!("/tmp/berth-compat-w-{pid}-{}", e.name));
                            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
                            let raw = run_scenario(&file, e, client, &prefix, &work, &reg, port);
                            let _ = std::fs::remove_dir_all(&work);
                            let (port, qport) = (format!(":{port}"), format!("\"{port}\""));
                            let compat = compat_dir();
                            let subst = [
                                (*client, "docker"),
                                (compat.to_str().unwrap(), "$COMPAT"),
                                (work.to_str().unwrap(), "$WORK"),
                                (&reg, "$REG"),
                                (&prefix, "$P"),
                                (&port, ":$PORT"),
                                (&qport, "\"$PORT\""),
                            ];
                            let norm = known_differences(&normalise(&raw, &subst), e.name, &name);
                            std::fs::write(out_dir.join(format!("{name}@{cv}.{}.raw", e.name)), &raw).unwrap();
                            std::fs::write(out_dir.join(format!("{name}@{cv}.{}.out", e.name)), &norm).unwrap();
                            (e.name.to_string(), norm)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("scenario thread")).collect()
            });
            ran += 1;
            eprintln!("compat: {name} with docker {cv}: {:.1}s", t0.elapsed().as_secs_f64());
            for (engine, _) in &results {
                // expected/<name>[@<client>][.dockerd].out, most specific first
                let candidates = [
                    format!("{name}@{cv}.{engine}.out"),
                    format!("{name}.{engine}.out"),
                    format!("{name}@{cv}.out"),
                    format!("{name}.out"),
                ];
                let Some(exp) = candidates.iter().map(|c| root.join("expected").join(c)).find(|p| p.exists()) else {
                    failures.push(format!("{name} (docker {cv}, {engine}): no expected file; transcript in {}", out_dir.display()));
                    continue;
                };
                let actual = out_dir.join(format!("{name}@{cv}.{engine}.out"));
                let d = diff(&exp, &actual);
                if !d.is_empty() {
                    failures.push(format!("{name} (docker {cv}, {engine}) differs from {}:\n{d}", exp.display()));
                }
            }
        }
    }
    eprintln!("compat: {ran} scenario runs on {} engine(s) in {:.1}s", engines.len(), started.elapsed().as_secs_f64());
    drop(reg);
    drop(dockerd);
    if !failures.is_empty() {
        eprintln!("berth daemon log tail:\n{}", berth.log().lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    assert!(failures.is_empty(), "{} compat failure(s):\n{}", failures.len(), failures.join("\n"));
}

/// docker-compose 1.29's `run -T` without the docker CLI (`COMPOSE_INTERACTIVE_NO_CLI`, the way
/// 11-compose runs it) goes through dockerpty, which opens its attach sockets only after the
/// start, then starts the container again if it has exited by then (that is how dockerd gets the
/// output of a short command to it: the second run). An attach that came after the process
/// exit but before berth recorded it used to end at once: the output was lost in about half
/// the runs. Here the real dockerpty, 20 times in a row.
#[test]
fn dockerpty_run_attach_after_start_gets_the_output() {
    let py = "/usr/bin/python3";
    let have = Command::new(py).args(["-c", "import docker, dockerpty"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !have {
        eprintln!("skipping: python3-docker or dockerpty (Debian's docker-compose) is not installed");
        return;
    }
    let d = Daemon::start("compat-pty");
    let out = d.dir.join("pty.out");
    let script = r#"
import sys, docker, dockerpty
host, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = docker.APIClient(base_url=host, version='auto')
bad = []
for i in range(n):
    cid = c.create_container('busybox', ['echo', 'one-off'], stdin_open=True)['Id']
    with open(out, 'wb') as f:
        op = dockerpty.RunOperation(c, cid, interactive=False, logs=False, stdout=f)
        pty = dockerpty.PseudoTerminal(c, op)
        sockets = pty.sockets()  # a lazy map: the sockets open in pty.start, after the start
        c.start(cid)
        pty.start(sockets)
        code = c.wait(cid, timeout=30)['StatusCode']
    got = open(out, 'rb').read()
    if got != b'one-off\n' or code != 0:
        bad.append((i, got, code))
    c.remove_container(cid, force=True)
print('bad', bad)
"#;
    let o = Command::new("timeout")
        .args(["-k", "5", "300", py, "-c", script])
        .arg(format!("unix://{}", d.sock.display()))
        .arg(&out)
        .arg("20")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && stdout.trim() == "bad []", "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
}
