//! `berth build` end to end: a private daemon per test with busybox imported, contexts in
//! temporary directories, and checks on the built image's config and files.
//!
//! Run as root: `cargo test -p berth --test build`.

mod common;

use common::{Daemon, DockerD, Out};
use std::path::{Path, PathBuf};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
    };
}

/// A build context directory removed on drop.
struct Ctx(PathBuf);

impl Ctx {
    fn new(name: &str, files: &[(&str, &str)]) -> Ctx {
        let p = PathBuf::from(format!("/tmp/berth-bctx-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        let c = Ctx(p);
        for (f, body) in files {
            c.write(f, body);
        }
        c
    }
    fn write(&self, f: &str, body: &str) {
        let path = self.0.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn build(d: &Daemon, ctx: &Ctx, extra: &[&str]) -> Out {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.path());
    d.berth(&args)
}

fn inspect(d: &Daemon, image: &str, fmt: &str) -> String {
    d.berth(&["image", "inspect", image, "--format", fmt]).ok().stdout.trim().to_string()
}

/// Output of a container of `image`. `berth run` has been seen to lose all output of a
/// short-lived container under heavy load (an attach race outside the builder), so an empty
/// answer is retried a couple of times; every command used here prints something.
fn run(d: &Daemon, image: &str, cmd: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--network", "none", image];
    args.extend_from_slice(cmd);
    for _ in 0..3 {
        let out = d.berth(&args).ok().stdout;
        if !out.is_empty() {
            return out;
        }
    }
    String::new()
}

fn cached(o: &Out) -> usize {
    o.stdout.matches(" ---> Using cache").count()
}

#[test]
fn every_instruction() {
    need_root!();
    let d = Daemon::start("b-every");
    let ctx = Ctx::new(
        "every",
        &[
            (
                "Dockerfile",
                r#"# syntax=docker/dockerfile:1
FROM busybox AS base
LABEL maintainer.name="berth" version=1
MAINTAINER someone@example.com
ENV APP_HOME=/srv/app PATH=/usr/local/bin:/usr/bin:/bin
ARG GREETING=hello
WORKDIR $APP_HOME
COPY --chown=33:33 --chmod=640 a.txt ./
ADD b.tar.gz /unpacked/
COPY <<EOF /etc/inline.conf
greeting=${GREETING}
EOF
RUN echo "$GREETING from $APP_HOME" > /run.txt
RUN <<EOT
echo heredoc > /heredoc.txt
EOT
SHELL ["/bin/sh", "-ec"]
RUN echo shell-form > /shell.txt
EXPOSE 8080 53/udp
VOLUME ["/data"]
USER www-data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD true
ONBUILD RUN echo child
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /run.txt"]
"#,
            ),
            ("a.txt", "A\n"),
        ],
    );
    // a gzip tar for ADD to unpack
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cd {0} && mkdir -p t/sub && echo inner > t/sub/f && tar -C t -czf b.tar.gz . && rm -rf t", ctx.path()))
        .status()
        .unwrap();
    assert!(st.success());
    build(&d, &ctx, &["-t", "every:1"]).ok();
    assert_eq!(inspect(&d, "every:1", "{{json .Config.Cmd}}"), r#"["cat /run.txt"]"#);
    assert_eq!(inspect(&d, "every:1", "{{json .Config.Entrypoint}}"), r#"["/bin/sh","-c"]"#);
    assert_eq!(inspect(&d, "every:1", "{{.Config.WorkingDir}}"), "/srv/app");
    assert_eq!(inspect(&d, "every:1", "{{.Config.User}}"), "www-data");
    assert_eq!(inspect(&d, "every:1", "{{.Config.StopSignal}}"), "SIGINT");
    assert_eq!(inspect(&d, "every:1", "{{json .Config.Shell}}"), r#"["/bin/sh","-ec"]"#);
    assert_eq!(inspect(&d, "every:1", "{{json .Config.OnBuild}}"), r#"["RUN echo child"]"#);
    assert_eq!(inspect(&d, "every:1", "{{json .Config.ExposedPorts}}"), r#"{"53/udp":{},"8080/tcp":{}}"#);
    assert_eq!(inspect(&d, "every:1", "{{json .Config.Volumes}}"), r#"{"/data":{}}"#);
    assert_eq!(inspect(&d, "every:1", "{{index .Config.Labels \"version\"}}"), "1");
    assert_eq!(inspect(&d, "every:1", "{{.Author}}"), "someone@example.com");
    assert!(inspect(&d, "every:1", "{{json .Config.Healthcheck}}").contains(r#""Retries":2"#));
    assert!(inspect(&d, "every:1", "{{json .Config.Env}}").contains("APP_HOME=/srv/app"));
    let out = run(&d, "every:1", &["cat /run.txt /heredoc.txt /shell.txt /etc/inline.conf /unpacked/sub/f"]);
    assert_eq!(out, "hello from /srv/app\nheredoc\nshell-form\ngreeting=hello\ninner\n");
    let ls = run(&d, "every:1", &["ls -ln /srv/app/a.txt"]);
    assert!(ls.starts_with("-rw-r-----") && ls.contains(" 33 ") , "{ls}");
    // ONBUILD triggers run in a child build
    let child = Ctx::new("every-child", &[("Dockerfile", "FROM every:1\n")]);
    let o = build(&d, &child, &["-t", "child:1"]).ok();
    assert!(o.stdout.contains("child\n"), "{}", o.stdout);
    assert_eq!(inspect(&d, "child:1", "{{json .Config.OnBuild}}"), "null");
}

#[test]
fn node_style_arg_before_from() {
    need_root!();
    let d = Daemon::start("b-node");
    let ctx = Ctx::new(
        "node",
        &[
            (
                "Dockerfile",
                "ARG BASE_VERSION=latest\nFROM busybox:${BASE_VERSION}\nWORKDIR /usr/src/app\nCOPY package*.json ./\nRUN wc -c package.json > deps.txt\nCOPY . .\nEXPOSE 3000\nCMD [\"sh\", \"server.sh\"]\n",
            ),
            ("package.json", "{\"name\":\"app\"}\n"),
            ("package-lock.json", "{}\n"),
            ("server.sh", "echo listening on 3000\n"),
            (".dockerignore", "node_modules\n*.log\n"),
            ("node_modules/x/index.js", "junk\n"),
            ("debug.log", "junk\n"),
        ],
    );
    build(&d, &ctx, &["-t", "node:1", "--build-arg", "BASE_VERSION=latest"]).ok();
    assert_eq!(run(&d, "node:1", &[]), "listening on 3000\n");
    let ls = run(&d, "node:1", &["ls", "-a", "/usr/src/app"]);
    assert!(!ls.contains("node_modules") && !ls.contains("debug.log"), "{ls}");
    assert!(ls.contains("package-lock.json") && ls.contains("deps.txt"), "{ls}");
}

#[test]
fn multistage_target_and_copy_from() {
    need_root!();
    let d = Daemon::start("b-multi");
    let ctx = Ctx::new(
        "multi",
        &[(
            "Dockerfile",
            "FROM busybox AS build\nRUN mkdir /out && echo artifact > /out/app\n\nFROM busybox AS unused\nRUN exit 1\n\nFROM busybox AS test\nCOPY --from=build /out/app /app\nRUN grep artifact /app\n\nFROM scratch\nCOPY --from=build /out/ /\nCOPY --from=busybox /bin/busybox /bin/busybox\nCMD [\"/bin/busybox\", \"cat\", \"/app\"]\n",
        )],
    );
    // the last stage does not need `unused` (which would fail) nor `test`
    let o = build(&d, &ctx, &["-t", "multi:final"]).ok();
    assert!(!o.stdout.contains("exit 1"), "{}", o.stdout);
    assert_eq!(run(&d, "multi:final", &[]), "artifact\n");
    let o = build(&d, &ctx, &["--target", "test", "-t", "multi:test"]).ok();
    assert!(o.stdout.contains("grep artifact"), "{}", o.stdout);
    let o = build(&d, &ctx, &["--target", "nosuch"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("nosuch"), "{}", o.stderr);
}

#[test]
fn dockerignore_custom_file_wins() {
    need_root!();
    let d = Daemon::start("b-ignore");
    let ctx = Ctx::new(
        "ignore",
        &[
            ("build/app.Dockerfile", "FROM busybox\nCOPY . /ctx/\n"),
            ("build/app.Dockerfile.dockerignore", "secret*\n!secret-ok\n**/*.tmp\n"),
            (".dockerignore", "keep.txt\n"),
            ("keep.txt", "k\n"),
            ("secret-1", "s\n"),
            ("secret-ok", "ok\n"),
            ("deep/a/b.tmp", "t\n"),
            ("deep/a/c.txt", "c\n"),
        ],
    );
    build(&d, &ctx, &["-f", &format!("{}/build/app.Dockerfile", ctx.path()), "-t", "ign:1"]).ok();
    let ls = run(&d, "ign:1", &["find", "/ctx", "-type", "f"]);
    assert!(ls.contains("/ctx/keep.txt"), "{ls}");
    assert!(ls.contains("/ctx/secret-ok"), "{ls}");
    assert!(!ls.contains("secret-1"), "{ls}");
    assert!(!ls.contains("b.tmp") && ls.contains("c.txt"), "{ls}");
}

#[test]
fn cache_hits_and_partial_invalidation_and_restart() {
    need_root!();
    let mut d = Daemon::start("b-cache");
    let ctx = Ctx::new(
        "cache",
        &[
            ("Dockerfile", "FROM busybox\nRUN echo one > /1\nCOPY a.txt /a.txt\nRUN echo two > /2\nCOPY b.txt /b.txt\nRUN cat /b.txt > /3\n"),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
        ],
    );
    let first = build(&d, &ctx, &["-t", "c:1"]).ok();
    assert_eq!(cached(&first), 0);
    let id1 = inspect(&d, "c:1", "{{.Id}}");
    let second = build(&d, &ctx, &["-t", "c:2"]).ok();
    assert_eq!(cached(&second), 5, "{}", second.stdout);
    assert_eq!(inspect(&d, "c:2", "{{.Id}}"), id1, "a fully cached rebuild gives the same image");
    // touching a file without changing it keeps the cache (content, not mtime)
    std::thread::sleep(std::time::Duration::from_millis(10));
    ctx.write("a.txt", "a\n");
    assert_eq!(cached(&build(&d, &ctx, &[]).ok()), 5);
    // changing b.txt re-runs from its COPY on
    ctx.write("b.txt", "B\n");
    let third = build(&d, &ctx, &["-t", "c:3"]).ok();
    assert_eq!(cached(&third), 3, "{}", third.stdout);
    assert_eq!(run(&d, "c:3", &["cat", "/3"]), "B\n");
    // the cache survives a daemon restart
    d.kill9();
    d.spawn();
    let fourth = build(&d, &ctx, &[]).ok();
    assert_eq!(cached(&fourth), 5, "{}", fourth.stdout);
    // --no-cache runs everything
    assert_eq!(cached(&build(&d, &ctx, &["--no-cache"]).ok()), 0);
    // df accounts for the cache, prune empties it
    let df = d.berth(&["system", "df"]).ok().stdout;
    assert!(df.contains("Build Cache"), "{df}");
    d.berth(&["builder", "prune", "-f"]).ok();
    let after = build(&d, &ctx, &[]).ok();
    assert_eq!(cached(&after), 0, "{}", after.stdout);
}

#[test]
fn run_failure_names_file_line_and_exit_code() {
    need_root!();
    let d = Daemon::start("b-fail");
    let ctx = Ctx::new("fail", &[("Dockerfile", "FROM busybox\nRUN true\nRUN exit 3\n")]);
    let o = build(&d, &ctx, &[]);
    assert_eq!(o.code, 3, "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("Dockerfile:3: The command '/bin/sh -c exit 3' returned a non-zero code: 3"), "{}", o.stderr);
    let ctx2 = Ctx::new("fail2", &[("Dockerfile", "FROM busybox\nRUNN true\n")]);
    let o = build(&d, &ctx2, &[]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Dockerfile:2:") && o.stderr.contains("RUNN"), "{}", o.stderr);
}

/// HARDENING A5 #43-44: hostile contexts give clear errors and touch nothing outside.
#[test]
fn hostile_inputs_are_refused_or_contained() {
    need_root!();
    let d = Daemon::start("b-hostile");
    let pid = std::process::id();
    let sentinel_dir = PathBuf::from(format!("/tmp/berth-sentinel-{pid}"));
    let _ = std::fs::remove_dir_all(&sentinel_dir);
    std::fs::create_dir_all(&sentinel_dir).unwrap();
    std::fs::write(sentinel_dir.join("secret"), "TOP SECRET\n").unwrap();
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(sentinel_dir.clone());

    // COPY ../x
    let c1 = Ctx::new("h1", &[("Dockerfile", "FROM busybox\nCOPY ../x /x\n")]);
    let o = build(&d, &c1, &[]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Dockerfile:2: COPY failed: forbidden path outside the build context: ../x"), "{}", o.stderr);

    // a symlink in the context pointing outside it resolves inside the context
    let c2 = Ctx::new("h2", &[("Dockerfile", "FROM busybox\nCOPY link /got\n")]);
    std::os::unix::fs::symlink(sentinel_dir.join("secret"), c2.0.join("link")).unwrap();
    let o = build(&d, &c2, &["-t", "h2:1"]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert!(o.stderr.contains("not found"), "{}", o.stderr);
    // ... and inside a copied directory it stays a symlink, never followed
    let c3 = Ctx::new("h3", &[("Dockerfile", "FROM busybox\nCOPY dir /dir\n"), ("dir/ok", "ok\n")]);
    std::os::unix::fs::symlink(sentinel_dir.join("secret"), c3.0.join("dir/link")).unwrap();
    build(&d, &c3, &["-t", "h3:1"]).ok();
    let out = run(&d, "h3:1", &["sh", "-c", "readlink /dir/link; cat /dir/link || true"]);
    assert!(out.contains(&format!("{}/secret", sentinel_dir.display())) && !out.contains("TOP SECRET"), "{out}");

    // ADD of a tar with ../ and absolute entries stays inside the destination
    let c4 = Ctx::new("h4", &[("Dockerfile", "FROM busybox\nADD evil.tar /dst/\n")]);
    let tar = evil_tar(&sentinel_dir);
    std::fs::write(c4.0.join("evil.tar"), tar).unwrap();
    build(&d, &c4, &["-t", "h4:1"]).ok();
    assert_eq!(std::fs::read_to_string(sentinel_dir.join("secret")).unwrap(), "TOP SECRET\n");
    assert!(!sentinel_dir.join("pwned").exists());
    let ls = run(&d, "h4:1", &["find", "/dst"]);
    assert!(ls.contains("/dst/"), "{ls}");

    // cache mount ids with ..
    let c5 = Ctx::new("h5", &[("Dockerfile", "FROM busybox\nRUN --mount=type=cache,id=../../x,target=/c touch /c/pwned\n")]);
    let o = build(&d, &c5, &[]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Dockerfile:2:") && o.stderr.contains("cache mount id"), "{}", o.stderr);
    // bind mount sources with ..
    let c6 = Ctx::new("h6", &[("Dockerfile", "FROM busybox\nRUN --mount=type=bind,source=../../,target=/m ls /m\n")]);
    let o = build(&d, &c6, &[]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("must not contain"), "{}", o.stderr);
    assert!(!Path::new("/pwned").exists());
}

/// A tar whose entries try `../`, absolute paths and a symlink pointing outside.
fn evil_tar(outside: &Path) -> Vec<u8> {
    use berth_archive::{EntryType, Header, TarWriter};
    let mut w = TarWriter::new(Vec::new());
    let file = |name: &str, data: &[u8]| Header { name: name.as_bytes().to_vec(), mode: 0o644, size: data.len() as u64, ..Default::default() };
    let up = format!("../../../../../../..{}/pwned", outside.display());
    w.append(&file(&up, b"x"), &mut &b"x"[..]).unwrap();
    let abs = format!("{}/secret", outside.display());
    w.append(&file(&abs, b"overwritten"), &mut &b"overwritten"[..]).unwrap();
    let link = Header {
        name: b"esc".to_vec(),
        entry_type: EntryType::Symlink,
        link_name: outside.as_os_str().as_encoded_bytes().to_vec(),
        mode: 0o777,
        ..Default::default()
    };
    w.append(&link, &mut std::io::empty()).unwrap();
    w.append(&file("esc/secret", b"via link"), &mut &b"via link"[..]).unwrap();
    w.finish().unwrap()
}

#[test]
fn context_from_stdin_and_quiet_iidfile() {
    need_root!();
    let d = Daemon::start("b-stdin");
    let o = d.berth_stdin(&["build", "-q", "-t", "stdin:1", "-"], b"FROM busybox\nLABEL from=stdin\n").ok();
    let id = o.stdout.trim().to_string();
    assert!(id.starts_with("sha256:"), "{}", o.stdout);
    // -q hides RUN output too
    let o = d.berth_stdin(&["build", "-q", "-"], b"FROM busybox\nRUN echo noisy-step-output\n").ok();
    assert!(!o.stdout.contains("noisy") && o.stdout.trim().starts_with("sha256:"), "{}", o.stdout);
    assert_eq!(inspect(&d, "stdin:1", "{{.Id}}"), id);
    let ctx = Ctx::new("iid", &[("Dockerfile", "FROM busybox\nENV X=1\n")]);
    let iid = ctx.0.join("iid.txt");
    build(&d, &ctx, &["--iidfile", iid.to_str().unwrap(), "-t", "iid:1"]).ok();
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), inspect(&d, "iid:1", "{{.Id}}"));
    // -f - with a directory context
    let o = d.berth_stdin(&["build", "-q", "-f", "-", "-t", "dash-f:1", ctx.path()], b"FROM busybox\nLABEL via=dash-f\n").ok();
    assert!(o.stdout.trim().starts_with("sha256:"), "{}", o.stdout);
    assert_eq!(inspect(&d, "dash-f:1", "{{index .Config.Labels \"via\"}}"), "dash-f");
    // the tar transport (what remote daemons get) builds the same image
    let o = d
        .cmd(&["build", "-q", ctx.path()])
        .env("BERTH_BUILD_SEND_CONTEXT", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), inspect(&d, "iid:1", "{{.Id}}"));
}

/// The real Docker CLI (classic builder protocol) against berth.
#[test]
fn docker_cli_builds_against_berth() {
    need_root!();
    if !Path::new("/usr/bin/docker").exists() {
        eprintln!("skipping: /usr/bin/docker is not installed");
        return;
    }
    let d = Daemon::start("b-dcli");
    let ctx = Ctx::new("dcli", &[("Dockerfile", "FROM busybox\nCOPY f /f\nRUN cat /f\nCMD [\"cat\", \"/f\"]\n"), ("f", "from docker cli\n")]);
    let o = std::process::Command::new("/usr/bin/docker")
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
        .args(["build", "-t", "dcli:1", ctx.path()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out} {}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("Step 3/4 : RUN cat /f") && out.contains("Successfully tagged dcli:1"), "{out}");
    assert_eq!(run(&d, "dcli:1", &[]), "from docker cli\n");
}

/// The flattened file tree of a docker-archive (`save` output): path → description.
fn flatten(archive: &Path, work: &Path) -> std::collections::BTreeMap<String, String> {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt;
    let x = work.join("x");
    let root = work.join("root");
    std::fs::create_dir_all(&x).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let opts = berth_archive::ApplyOptions::default();
    berth_archive::apply_layer(&x, std::fs::File::open(archive).unwrap(), &opts).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(x.join("manifest.json")).unwrap()).unwrap();
    for l in manifest[0]["Layers"].as_array().unwrap() {
        let f = std::fs::File::open(x.join(l.as_str().unwrap())).unwrap();
        let rd = berth_archive::decompress(f, 1 << 34).unwrap();
        berth_archive::apply_layer(&root, rd, &opts).unwrap();
    }
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(&root).unwrap().display().to_string();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let what = if md.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if md.is_file() {
                format!("file sha256:{}", hex_sha(&sha2::Sha256::digest(std::fs::read(&p).unwrap())))
            } else {
                "other".to_string()
            };
            let mode = if md.file_type().is_symlink() { 0 } else { md.mode() & 0o7777 };
            out.insert(rel, format!("{what} mode={mode:o} owner={}:{}", md.uid(), md.gid()));
        }
    }
    out
}

fn hex_sha(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Config fields compared with Docker's, nulls and empty collections treated alike.
fn config_fields(inspect_json: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(inspect_json).unwrap();
    let cfg = &v[0]["Config"];
    let mut out = std::collections::BTreeMap::new();
    for k in ["Cmd", "Entrypoint", "Env", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels", "Healthcheck", "StopSignal", "Shell", "OnBuild"] {
        let x = cfg[k].clone();
        let empty = match &x {
            serde_json::Value::Null => true,
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::Object(o) => o.is_empty(),
            serde_json::Value::String(s) => s.is_empty(),
            _ => false,
        };
        out.insert(k.to_string(), if empty { serde_json::Value::Null } else { x });
    }
    out
}

/// Builds every Dockerfile of `tests/dockerfiles` with berth, and with Debian's docker.io
/// (classic builder) where dockerd can start, comparing configs and file trees.
#[test]
fn corpus_builds_and_matches_docker() {
    need_root!();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/dockerfiles");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&corpus).unwrap().flatten().map(|e| e.path()).filter(|p| p.join("Dockerfile").exists()).collect();
    cases.sort();
    assert!(cases.len() >= 30, "the corpus has {} Dockerfiles", cases.len());
    let d = Daemon::start("b-corpus");
    let work = PathBuf::from(format!("/tmp/berth-corpus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(work.clone());
    let docker = DockerD::start();
    if let Some(dd) = &docker {
        let img = work.join("busybox.tar");
        d.berth(&["save", "-o", img.to_str().unwrap(), "busybox:latest"]).ok();
        let o = dd.docker(&["load", "-i", img.to_str().unwrap()]);
        assert!(o.status.success(), "docker load: {}", String::from_utf8_lossy(&o.stderr));
    }
    let mut diffs: Vec<String> = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let tag = format!("corpus-{name}:1");
        let o = d.berth(&["build", "-q", "-t", &tag, case.to_str().unwrap()]);
        assert_eq!(o.code, 0, "berth build {name}: {}", o.stderr);
        let Some(dd) = &docker else { continue };
        if case.join("SKIP_LEGACY").exists() {
            continue;
        }
        let o = dd.docker(&["build", "-q", "--network", "host", "-t", &tag, case.to_str().unwrap()]);
        assert!(o.status.success(), "docker build {name}: {}", String::from_utf8_lossy(&o.stderr));
        let b_cfg = config_fields(&d.berth(&["image", "inspect", &tag]).ok().stdout);
        let d_cfg = config_fields(&String::from_utf8_lossy(&dd.docker(&["image", "inspect", &tag]).stdout));
        for (k, bv) in &b_cfg {
            if d_cfg.get(k) != Some(bv) {
                diffs.push(format!("{name}: Config.{k}: berth {bv} docker {}", d_cfg.get(k).cloned().unwrap_or_default()));
            }
        }
        let bt = work.join(format!("{name}-berth.tar"));
        let dt = work.join(format!("{name}-docker.tar"));
        d.berth(&["save", "-o", bt.to_str().unwrap(), &tag]).ok();
        assert!(dd.docker(&["save", "-o", dt.to_str().unwrap(), &tag]).status.success());
        let bf = flatten(&bt, &work.join(format!("{name}-b")));
        let df = flatten(&dt, &work.join(format!("{name}-d")));
        for (p, bv) in &bf {
            match df.get(p) {
                Some(dv) if dv == bv => {}
                Some(dv) => diffs.push(format!("{name}: /{p}: berth {bv}, docker {dv}")),
                None => diffs.push(format!("{name}: /{p}: only in berth ({bv})")),
            }
        }
        for (p, dv) in &df {
            if !bf.contains_key(p) {
                diffs.push(format!("{name}: /{p}: only in docker ({dv})"));
            }
        }
        let _ = std::fs::remove_dir_all(work.join(format!("{name}-b")));
        let _ = std::fs::remove_dir_all(work.join(format!("{name}-d")));
    }
    assert!(diffs.is_empty(), "{} differences from docker:\n{}", diffs.len(), diffs.join("\n"));
}

/// Independent stages build at the same time: each of two stages waits (bounded) for the
/// other to show up in a shared cache mount, which only works when they run in parallel.
#[test]
fn independent_stages_run_in_parallel() {
    need_root!();
    let d = Daemon::start("b-par");
    let wait = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous,target=/rv touch /rv/{me} && i=0; while [ ! -e /rv/{other} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; test -e /rv/{other} && echo {me} > /{me}"
        )
    };
    let df = format!(
        "FROM busybox AS a\n{}\n\nFROM busybox AS b\n{}\n\nFROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
        wait("a", "b"),
        wait("b", "a")
    );
    let ctx = Ctx::new("par", &[("Dockerfile", &df)]);
    let o = build(&d, &ctx, &["-t", "par:1"]);
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    assert_eq!(run(&d, "par:1", &["cat", "/a", "/b"]), "a\nb\n");
}

/// HARDENING A5 #46-47: no privileged RUN without an entitlement; huge, binary and escape-laden
/// output is clipped for the client with a notice while the full log stays on disk.
#[test]
fn insecure_run_refused_and_log_floods_clipped() {
    need_root!();
    let d = Daemon::start("b-flood");
    let c1 = Ctx::new("insecure", &[("Dockerfile", "FROM busybox\nRUN --security=insecure true\n")]);
    let o = build(&d, &c1, &[]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Dockerfile:2:") && o.stderr.contains("entitlement"), "{}", o.stderr);
    let c2 = Ctx::new(
        "flood",
        &[("Dockerfile", "FROM busybox\nRUN printf '\\377\\376\\033[2J\\n'; yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 8000000\n")],
    );
    let o = build(&d, &c2, &["-t", "flood:1"]).ok();
    assert!(o.stdout.len() < 3 << 20, "client saw {} bytes", o.stdout.len());
    assert!(o.stdout.contains("[output clipped, log limit 2 MiB reached; the full output is in "), "{}", &o.stdout[o.stdout.len() - 300..]);
    let logs: Vec<_> = std::fs::read_dir(d.data().join("build-logs")).unwrap().flatten().collect();
    assert_eq!(logs.len(), 1);
    assert!(logs[0].metadata().unwrap().len() > 8_000_000, "the full output is kept");
}

/// ADD of a URL (a loopback server here), with `--checksum`, bounded and verified.
#[test]
fn add_url_with_checksum() {
    need_root!();
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = b"remote content\n";
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(body);
        }
    });
    let d = Daemon::start("b-url");
    use sha2::Digest as _;
    let sum = hex_sha(&sha2::Sha256::digest(b"remote content\n"));
    let c1 = Ctx::new(
        "url",
        &[("Dockerfile", &format!("FROM busybox\nADD --checksum=sha256:{sum} http://127.0.0.1:{port}/files/data.txt /srv/\n"))],
    );
    build(&d, &c1, &["-t", "url:1"]).ok();
    assert_eq!(run(&d, "url:1", &["cat", "/srv/data.txt"]), "remote content\n");
    let bad = "0".repeat(64);
    let c2 = Ctx::new("url-bad", &[("Dockerfile", &format!("FROM busybox\nADD --checksum=sha256:{bad} http://127.0.0.1:{port}/x /x\n"))]);
    let o = build(&d, &c2, &[]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("digest mismatch"), "{}", o.stderr);
}

/// RUN --mount=type=bind exposes context files read-only; changing them invalidates the step.
#[test]
fn run_bind_mount_from_context_is_cached_by_content() {
    need_root!();
    let d = Daemon::start("b-bind");
    let ctx = Ctx::new(
        "bind",
        &[("Dockerfile", "FROM busybox\nRUN --mount=type=bind,source=src,target=/src cat /src/v > /v\n"), ("src/v", "1\n")],
    );
    build(&d, &ctx, &["-t", "bind:1"]).ok();
    assert_eq!(run(&d, "bind:1", &["cat", "/v"]), "1\n");
    assert_eq!(cached(&build(&d, &ctx, &[]).ok()), 1);
    ctx.write("src/v", "2\n");
    let o = build(&d, &ctx, &["-t", "bind:2"]).ok();
    assert_eq!(cached(&o), 0, "{}", o.stdout);
    // the mount point stub the runtime made for /src is not left in the image
    assert_eq!(run(&d, "bind:2", &["sh", "-c", "cat /v; test -e /src && echo stub || echo clean"]), "2\nclean\n");
}

/// `FROM` an image that is not present pulls it (berth's registry server on loopback).
#[test]
fn from_missing_image_pulls_it() {
    need_root!();
    let dir = PathBuf::from(format!("/tmp/berth-bpull-reg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    let reg = berth_registry::Registry::open(dir.join("root")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(l, berth_registry::router(std::sync::Arc::new(reg))).await;
        });
    });
    let d = Daemon::start("b-pull");
    let remote = format!("127.0.0.1:{port}/base/busybox:1");
    d.berth(&["tag", "busybox:latest", &remote]).ok();
    d.berth(&["push", &remote]).ok();
    d.berth(&["rmi", &remote]).ok();
    let ctx = Ctx::new("pull", &[("Dockerfile", &format!("FROM {remote}\nRUN echo pulled > /p\n"))]);
    build(&d, &ctx, &["-t", "pulled:1"]).ok();
    assert_eq!(run(&d, "pulled:1", &["cat", "/p"]), "pulled\n");
    // a base that exists nowhere is a clear error naming the line
    let ctx2 = Ctx::new("pull-missing", &[("Dockerfile", &format!("FROM 127.0.0.1:{port}/nosuch/image:1\n"))]);
    let o = build(&d, &ctx2, &[]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Dockerfile:1: FROM: failed to pull"), "{}", o.stderr);
}

/// A daemon killed in the middle of a RUN leaves a running step container and a work
/// snapshot; the next build cleans both up.
#[test]
fn crash_mid_run_is_cleaned_by_the_next_build() {
    need_root!();
    let mut d = Daemon::start("b-crash");
    let ctx = Ctx::new("crash", &[("Dockerfile", "FROM busybox\nRUN sleep 1000\n")]);
    let mut child = d.cmd(&["build", ctx.path()]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let builds = d.dir.join("run").join("build");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let running = |p: &Path| std::fs::read_dir(p).map(|r| r.flatten().any(|e| e.path().join("shim.sock").exists())).unwrap_or(false);
    while !running(&builds) {
        assert!(std::time::Instant::now() < deadline, "the RUN step never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    d.kill9();
    let _ = child.kill();
    let _ = child.wait();
    d.spawn();
    let ok = Ctx::new("crash-ok", &[("Dockerfile", "FROM busybox\nRUN true\n")]);
    build(&d, &ok, &[]).ok();
    let left: Vec<_> = std::fs::read_dir(&builds).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "leftover step containers: {left:?}");
    let needle = format!("shim\0{}", builds.display());
    let shims = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle)))
        .count();
    assert_eq!(shims, 0, "a step shim is still running");
}

/// RUN --mount=type=cache persists between builds (not in the image); `sharing=private`
/// gets a fresh directory; uid/gid/mode apply to a new cache directory.
#[test]
fn cache_mounts_persist_and_honour_options() {
    need_root!();
    let d = Daemon::start("b-cmount");
    let ctx = Ctx::new(
        "cmount",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=cache,id=c1,target=/c echo x >> /c/log && wc -l < /c/log > /shared\nRUN --mount=type=cache,id=c2,target=/p,sharing=private echo x >> /p/log && wc -l < /p/log > /private\nRUN --mount=type=cache,id=c3,target=/o,uid=33,gid=33,mode=0700,sharing=locked stat -c '%u:%g %a' /o > /owner\n",
        )],
    );
    build(&d, &ctx, &["-t", "cm:1"]).ok();
    build(&d, &ctx, &["--no-cache", "-t", "cm:2"]).ok();
    assert_eq!(run(&d, "cm:2", &["cat", "/shared", "/private", "/owner"]), "2\n1\n33:33 700\n");
    assert_eq!(run(&d, "cm:2", &["sh", "-c", "test -e /c && echo stub || echo clean"]), "clean\n");
}
