//! Real clients over real sockets: skopeo (push, inspect, list-tags, pull, delete)
//! against a hand-written OCI layout with a busybox layer, Basic auth, and TLS.
//! Each test skips with a message when a tool it needs is missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use berth_registry::names::Digest;
use berth_registry::{serve_on, Registry};
use serde_json::{json, Value};
use tokio::sync::oneshot;

fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP: {tool} not installed");
    }
    ok
}

fn tmpdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("berth-registry-{tag}-{}-", std::process::id()))
        .tempdir()
        .unwrap()
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    async fn start(reg: Registry, tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve_on(listener, Arc::new(reg), tls, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

fn write_blob(layout: &Path, data: &[u8]) -> (Digest, usize) {
    let d = Digest::of(data);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(d.hex()), data).unwrap();
    (d, data.len())
}

/// Writes an OCI image layout at `layout` with one gzip layer holding busybox (or a
/// small file when busybox is absent), tagged `v1`.
fn make_layout(layout: &Path, work: &Path) -> Digest {
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    if Path::new("/bin/busybox").exists() {
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    } else {
        std::fs::write(rootfs.join("bin/hello"), "hello\n").unwrap();
    }
    let tar = work.join("layer.tar");
    let st = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let raw = std::fs::read(&tar).unwrap();
    let diff_id = Digest::of(&raw);
    let st = Command::new("gzip")
        .args(["-n", "-f"])
        .arg(&tar)
        .status()
        .unwrap();
    assert!(st.success());
    let gz = std::fs::read(work.join("layer.tar.gz")).unwrap();
    let (ld, lsize) = write_blob(layout, &gz);
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/busybox", "sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string();
    let (cd, csize) = write_blob(layout, config.as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": lsize}],
    })
    .to_string();
    let (md, msize) = write_blob(layout, manifest.as_bytes());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": msize,
            "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    ld
}

async fn skopeo(args: Vec<String>) -> (bool, String) {
    let out = tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .args(&args)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_push_inspect_pull_delete() {
    if !have("skopeo") || !have("tar") || !have("gzip") {
        return;
    }
    let root = tmpdir("root");
    let work = tmpdir("work");
    let layout = work.path().join("layout");
    let layer = make_layout(&layout, work.path());
    let server = Server::start(Registry::open(root.path()).unwrap(), None).await;
    let base = format!("docker://{}", server.addr);

    let (ok, out) = skopeo(vec![
        "copy".into(),
        "--dest-tls-verify=false".into(),
        format!("oci:{}:v1", layout.display()),
        format!("{base}/test/busybox:v1"),
    ])
    .await;
    assert!(ok, "push failed: {out}");

    let (ok, out) = skopeo(vec![
        "inspect".into(),
        "--tls-verify=false".into(),
        format!("{base}/test/busybox:v1"),
    ])
    .await;
    assert!(ok, "inspect failed: {out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Layers"][0], layer.to_string());
    assert_eq!(v["Os"], "linux");

    let (ok, out) = skopeo(vec![
        "list-tags".into(),
        "--tls-verify=false".into(),
        format!("{base}/test/busybox"),
    ])
    .await;
    assert!(ok, "list-tags failed: {out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Tags"], json!(["v1"]));

    // Registry to registry (blob mounts / existence checks), converting to Docker v2s2.
    let (ok, out) = skopeo(vec![
        "copy".into(),
        "--src-tls-verify=false".into(),
        "--dest-tls-verify=false".into(),
        "--format".into(),
        "v2s2".into(),
        format!("{base}/test/busybox:v1"),
        format!("{base}/other/bb:v2"),
    ])
    .await;
    assert!(ok, "registry copy failed: {out}");
    let (ok, out) = skopeo(vec![
        "inspect".into(),
        "--raw".into(),
        "--tls-verify=false".into(),
        format!("{base}/other/bb:v2"),
    ])
    .await;
    assert!(ok, "{out}");
    let raw: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );

    // Pull back into a fresh layout.
    let back = work.path().join("back");
    let (ok, out) = skopeo(vec![
        "copy".into(),
        "--src-tls-verify=false".into(),
        format!("{base}/test/busybox:v1"),
        format!("oci:{}:v1", back.display()),
    ])
    .await;
    assert!(ok, "pull failed: {out}");
    assert_eq!(
        std::fs::read(back.join("blobs/sha256").join(layer.hex())).unwrap(),
        std::fs::read(layout.join("blobs/sha256").join(layer.hex())).unwrap()
    );

    let (ok, out) = skopeo(vec![
        "delete".into(),
        "--tls-verify=false".into(),
        format!("{base}/test/busybox:v1"),
    ])
    .await;
    assert!(ok, "delete failed: {out}");
    let (ok, _) = skopeo(vec![
        "inspect".into(),
        "--tls-verify=false".into(),
        format!("{base}/test/busybox:v1"),
    ])
    .await;
    assert!(!ok, "deleted image still inspectable");
    server.stop().await;

    // GC keeps what other/bb still uses (the layer), frees the deleted manifest.
    let report = berth_registry::gc(berth_registry::GcArgs {
        root: root.path().to_path_buf(),
        dry_run: false,
        grace_period: 0,
    })
    .await
    .unwrap();
    assert!(!report.deleted.is_empty(), "{report:?}");
    assert!(root
        .path()
        .join("blobs/sha256")
        .join(&layer.hex()[..2])
        .join(layer.hex())
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_with_basic_auth() {
    if !have("skopeo") || !have("tar") || !have("gzip") {
        return;
    }
    let root = tmpdir("authroot");
    let work = tmpdir("authwork");
    let layout = work.path().join("layout");
    make_layout(&layout, work.path());
    let htpasswd = work.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap()),
    )
    .unwrap();
    let args = berth_registry::ServeArgs {
        root: root.path().to_path_buf(),
        htpasswd: Some(htpasswd),
        ..Default::default()
    };
    let reg = berth_registry::registry_from_args(&args).unwrap();
    let server = Server::start(reg, None).await;
    let dest = format!("docker://{}/secure/img:v1", server.addr);
    let authfile = work.path().join("auth.json");
    std::fs::write(&authfile, "{}").unwrap();
    let auth = format!("--authfile={}", authfile.display());

    let (ok, _) = skopeo(vec![
        "copy".into(),
        auth.clone(),
        "--dest-tls-verify=false".into(),
        format!("oci:{}:v1", layout.display()),
        dest.clone(),
    ])
    .await;
    assert!(!ok, "push without credentials must fail");
    let (ok, out) = skopeo(vec![
        "copy".into(),
        auth.clone(),
        "--dest-tls-verify=false".into(),
        "--dest-creds=alice:pw".into(),
        format!("oci:{}:v1", layout.display()),
        dest.clone(),
    ])
    .await;
    assert!(ok, "authenticated push failed: {out}");
    let (ok, out) = skopeo(vec![
        "inspect".into(),
        auth.clone(),
        "--tls-verify=false".into(),
        "--creds=alice:wrong".into(),
        dest.clone(),
    ])
    .await;
    assert!(!ok, "{out}");
    let (ok, out) = skopeo(vec![
        "inspect".into(),
        auth,
        "--tls-verify=false".into(),
        "--creds=alice:pw".into(),
        dest,
    ])
    .await;
    assert!(ok, "{out}");
    server.stop().await;
}

fn make_cert(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .ok()?;
    st.status.success().then_some((cert, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serving() {
    if !have("openssl") || !have("curl") {
        return;
    }
    let root = tmpdir("tlsroot");
    let work = tmpdir("tlswork");
    let Some((cert, key)) = make_cert(work.path()) else {
        eprintln!("SKIP: openssl could not make a certificate");
        return;
    };
    let tls = berth_registry::load_tls(&cert, &key).unwrap();
    let server = Server::start(Registry::open(root.path()).unwrap(), Some(tls)).await;
    let url = format!("https://127.0.0.1:{}/v2/", server.addr.port());
    for proto in ["--http1.1", "--http2"] {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "-i", "--cacert"])
            .arg(&cert)
            .arg(proto)
            .arg(&url)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(" 200"), "{text}");
        assert!(
            text.contains("docker-distribution-api-version: registry/2.0"),
            "{text}"
        );
    }
    // Plain HTTP to a TLS port fails cleanly and the server keeps serving.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{}/v2/", server.addr.port()))
        .output()
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("{}"));
    if have("skopeo") && have("tar") && have("gzip") {
        let layout = work.path().join("layout");
        make_layout(&layout, work.path());
        let (ok, out) = skopeo(vec![
            "copy".into(),
            "--dest-cert-dir".into(),
            work.path().join("nocerts").display().to_string(),
            "--dest-tls-verify=false".into(),
            format!("oci:{}:v1", layout.display()),
            format!("docker://127.0.0.1:{}/tls/img:v1", server.addr.port()),
        ])
        .await;
        assert!(ok, "push over tls failed: {out}");
    }
    server.stop().await;
}

#[test]
fn bad_tls_files_are_reported() {
    let work = tmpdir("badtls");
    let cert = work.path().join("c.pem");
    std::fs::write(&cert, "not a cert").unwrap();
    let err = berth_registry::load_tls(&cert, &work.path().join("missing.pem")).unwrap_err();
    assert!(
        format!("{err:#}").contains("pem") || format!("{err:#}").contains("missing"),
        "{err:#}"
    );
}
