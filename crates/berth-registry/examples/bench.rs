//! Throughput and request-rate benchmark for any v2 registry on loopback:
//! `cargo run --release -p berth-registry --example bench -- http://127.0.0.1:5000 [MiB] [requests] [concurrency]`
//!
//! Pushes one blob of MiB mebibytes (POST, one streamed PATCH, PUT), pulls it back,
//! then measures HEAD-blob and GET-manifest request rates. Bounded in count; it only
//! talks to the URL given.

use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::Digest as _;

type C = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn call(
    c: &C,
    m: Method,
    url: &str,
    body: Bytes,
    ct: Option<&str>,
) -> anyhow::Result<(http::StatusCode, http::HeaderMap, usize)> {
    let mut b = Request::builder().method(m.clone()).uri(url);
    if let Some(ct) = ct {
        // A media type doubles as Accept for reads and Content-Type for writes.
        b = b.header(
            if m == Method::GET {
                "Accept"
            } else {
                "Content-Type"
            },
            ct,
        );
    }
    let resp = c.request(b.body(Full::new(body))?).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let mut n = 0;
    while let Some(f) = body.frame().await {
        if let Ok(d) = f?.into_data() {
            n += d.len();
        }
    }
    Ok((status, headers, n))
}

fn abs(base: &str, loc: &str) -> String {
    if loc.starts_with("http") {
        loc.to_string()
    } else {
        format!("{base}{loc}")
    }
}

async fn push(c: &C, base: &str, repo: &str, data: Bytes) -> anyhow::Result<String> {
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data)));
    let (s, h, _) = call(
        c,
        Method::POST,
        &format!("{base}/v2/{repo}/blobs/uploads/"),
        Bytes::new(),
        None,
    )
    .await?;
    anyhow::ensure!(s == 202, "POST {s}");
    let loc = abs(base, h["location"].to_str()?);
    let (s, h, _) = call(
        c,
        Method::PATCH,
        &loc,
        data,
        Some("application/octet-stream"),
    )
    .await?;
    anyhow::ensure!(s == 202, "PATCH {s}");
    let loc = abs(base, h["location"].to_str()?);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let (s, _, _) = call(
        c,
        Method::PUT,
        &format!("{loc}{sep}digest={digest}"),
        Bytes::new(),
        None,
    )
    .await?;
    anyhow::ensure!(s == 201, "PUT {s}");
    Ok(digest)
}

async fn rate(
    c: &C,
    url: String,
    method: Method,
    n: usize,
    conc: usize,
    accept: Option<&'static str>,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..conc {
        let c = c.clone();
        let url = url.clone();
        let method = method.clone();
        tasks.push(tokio::spawn(async move {
            for _ in (w..n).step_by(conc) {
                let (s, _, _) = call(&c, method.clone(), &url, Bytes::new(), accept).await?;
                anyhow::ensure!(s == 200, "{s}");
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or("http://127.0.0.1:5000".into());
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(256);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let conc: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(16);
    let c: C = Client::builder(TokioExecutor::new()).build_http();

    let mut data = vec![0u8; mib << 20];
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let data = Bytes::from(data);
    let repo = format!("bench/r{}", std::process::id());
    let t = Instant::now();
    let digest = push(&c, &base, &repo, data.clone()).await?;
    let up = mib as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (s, _, len) = call(
        &c,
        Method::GET,
        &format!("{base}/v2/{repo}/blobs/{digest}"),
        Bytes::new(),
        None,
    )
    .await?;
    anyhow::ensure!(s == 200 && len == data.len(), "GET {s} {len}");
    let down = mib as f64 / t.elapsed().as_secs_f64();

    let cfg = Bytes::from_static(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}");
    let cd = push(&c, &base, &repo, cfg.clone()).await?;
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":{}}}]}}"#,
        cfg.len(),
        data.len()
    );
    let (s, _, _) = call(
        &c,
        Method::PUT,
        &format!("{base}/v2/{repo}/manifests/latest"),
        Bytes::from(m),
        Some(mt),
    )
    .await?;
    anyhow::ensure!(s == 201, "PUT manifest {s}");
    let head = rate(
        &c,
        format!("{base}/v2/{repo}/blobs/{digest}"),
        Method::HEAD,
        n,
        conc,
        None,
    )
    .await?;
    let get_m = rate(
        &c,
        format!("{base}/v2/{repo}/manifests/latest"),
        Method::GET,
        n,
        conc,
        Some(mt),
    )
    .await?;
    println!("push {up:.0} MiB/s, pull {down:.0} MiB/s, HEAD blob {head:.0} req/s, GET manifest {get_m:.0} req/s");
    Ok(())
}
