//! Image commands and the system view (`info`, `version`, `system df/prune`).

use super::containers::{confirm, filters_json};
use super::format::{self, Template};
use super::{Exit, FormatArg};
use crate::client::{for_each_chunk, for_each_json, reader_body, Client};
use anyhow::{anyhow, bail, Result};
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};
use std::io::Write;

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Repository[:tag] to list
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
    #[arg(long)]
    pub platform: Option<String>,
    /// file (tar, tar.gz, ...) or - for stdin
    pub file: String,
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    /// Archive format: docker (default) or oci
    #[arg(long, default_value = "docker")]
    pub format: String,
    #[arg(long)]
    pub platform: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short, long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub platform: Option<String>,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    #[arg(long)]
    pub filter: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct SystemPruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
    #[arg(long)]
    pub filter: Vec<String>,
}

fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

pub async fn images(c: &Client, a: ImagesArgs) -> Result<()> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let mut q = format!("?all={}", a.all as u8);
    if !filters.is_empty() {
        q.push_str(&format!("&filters={}", filters_json(&filters)?));
    }
    let list = c.get(&format!("/images/json{q}")).await?;
    let mut rows_v = Vec::new();
    for img in list.as_array().into_iter().flatten() {
        let id = img["Id"].as_str().unwrap_or("");
        let tags: Vec<String> = img["RepoTags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(String::from)).collect();
        let digests: Vec<String> = img["RepoDigests"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(String::from)).collect();
        let created = img["Created"].as_i64().unwrap_or(0);
        let entries: Vec<(String, String)> = if tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            tags.iter()
                .map(|t| match t.rsplit_once(':') {
                    Some((r, tg)) if !tg.contains('/') => (r.to_string(), tg.to_string()),
                    _ => (t.clone(), "<none>".into()),
                })
                .collect()
        };
        for (repo, tag) in entries {
            let digest = digests.iter().find(|d| d.starts_with(&format!("{repo}@"))).and_then(|d| d.split_once('@')).map(|(_, d)| d.to_string()).unwrap_or_else(|| "<none>".into());
            rows_v.push(json!({
                "ID": short_id(id, a.no_trunc),
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "CreatedSince": format::ago_unix(created),
                "CreatedAt": chrono::DateTime::from_timestamp(created, 0).map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S %z %Z").to_string()).unwrap_or_default(),
                "Size": format::human_size(img["Size"].as_f64().unwrap_or(0.0)),
                "Containers": img["Containers"].as_i64().map(|n| if n < 0 { "N/A".to_string() } else { n.to_string() }).unwrap_or_default(),
            }));
        }
    }
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows_v {
            let id = r["ID"].as_str().unwrap_or("");
            if seen.insert(id.to_string()) {
                println!("{id}");
            }
        }
        return Ok(());
    }
    if let Some(f) = a.format.as_deref().filter(|f| *f != "table") {
        if f == "json" {
            for r in &rows_v {
                println!("{r}");
            }
            return Ok(());
        }
        print!("{}", Template::parse(f)?.render_all(&rows_v)?);
        return Ok(());
    }
    let mut head = vec!["REPOSITORY", "TAG"];
    if a.digests {
        head.push("DIGEST");
    }
    head.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let mut rows = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
    for r in &rows_v {
        let mut keys = vec!["Repository", "Tag"];
        if a.digests {
            keys.push("Digest");
        }
        keys.extend(["ID", "CreatedSince", "Size"]);
        rows.push(keys.iter().map(|k| r[*k].as_str().unwrap_or("").to_string()).collect());
    }
    print!("{}", format::table(&rows));
    Ok(())
}

pub async fn rmi(c: &Client, a: RmiArgs) -> Result<()> {
    let mut failed = false;
    for n in &a.images {
        match c.json(Method::DELETE, &format!("/images/{n}?force={}&noprune={}", a.force as u8, a.no_prune as u8), None).await {
            Ok(v) => {
                for item in v.as_array().into_iter().flatten() {
                    if let Some(u) = item["Untagged"].as_str() {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = item["Deleted"].as_str() {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

pub async fn tag(c: &Client, source: &str, target: &str) -> Result<()> {
    let (repo, tag) = match target.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (target.to_string(), "latest".to_string()),
    };
    c.post(&format!("/images/{source}/tag?repo={}&tag={}", super::run::urlenc(&repo), super::run::urlenc(&tag)), None).await?;
    Ok(())
}

pub async fn history(c: &Client, a: HistoryArgs) -> Result<()> {
    let v = c.get(&format!("/images/{}/history", a.image)).await?;
    let mut rows_v = Vec::new();
    for h in v.as_array().into_iter().flatten() {
        let id = h["Id"].as_str().unwrap_or("");
        let by = h["CreatedBy"].as_str().unwrap_or("");
        let created = h["Created"].as_i64().unwrap_or(0);
        rows_v.push(json!({
            "ID": if id == "<missing>" { id.to_string() } else { short_id(id, a.no_trunc) },
            "CreatedSince": if a.human { format::ago_unix(created) } else { chrono::DateTime::from_timestamp(created, 0).map(|t| t.to_rfc3339()).unwrap_or_default() },
            "CreatedAt": chrono::DateTime::from_timestamp(created, 0).map(|t| t.to_rfc3339()).unwrap_or_default(),
            "CreatedBy": if a.no_trunc { by.to_string() } else { format::ellipsis(by, 45) },
            "Size": if a.human { format::human_size(h["Size"].as_f64().unwrap_or(0.0)) } else { h["Size"].to_string() },
            "Comment": h["Comment"],
        }));
    }
    if a.quiet {
        for r in &rows_v {
            println!("{}", r["ID"].as_str().unwrap_or(""));
        }
        return Ok(());
    }
    if let Some(f) = &a.format {
        print!("{}", Template::parse(f)?.render_all(&rows_v)?);
        return Ok(());
    }
    let mut rows = vec![["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"].iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    for r in &rows_v {
        rows.push(["ID", "CreatedSince", "CreatedBy", "Size", "Comment"].iter().map(|k| r[*k].as_str().unwrap_or("").to_string()).collect());
    }
    print!("{}", format::table(&rows));
    Ok(())
}

fn open_input(path: &str) -> Result<Box<dyn std::io::Read + Send>> {
    if path == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    Ok(Box::new(std::fs::File::open(path).map_err(|e| anyhow!("open {path}: {e}"))?))
}

pub async fn import(c: &Client, a: ImportArgs) -> Result<()> {
    let mut q = String::from("?fromSrc=-");
    if let Some(r) = &a.reference {
        let (repo, tag) = match r.rsplit_once(':') {
            Some((rp, t)) if !t.contains('/') => (rp.to_string(), t.to_string()),
            _ => (r.clone(), String::new()),
        };
        q.push_str(&format!("&repo={}", super::run::urlenc(&repo)));
        if !tag.is_empty() {
            q.push_str(&format!("&tag={}", super::run::urlenc(&tag)));
        }
    }
    for ch in &a.change {
        q.push_str(&format!("&changes={}", super::run::urlenc(ch)));
    }
    if let Some(m) = &a.message {
        q.push_str(&format!("&message={}", super::run::urlenc(m)));
    }
    let body = reader_body(open_input(&a.file)?);
    let resp = c.request(Method::POST, &format!("/images/create{q}"), body, Some("application/x-tar")).await?;
    let mut err = None;
    for_each_json(resp, |v| {
        if let Some(e) = v["error"].as_str().or(v["errorDetail"]["message"].as_str()) {
            err = Some(e.to_string());
        } else if let Some(s) = v["status"].as_str() {
            println!("{s}");
        }
        Ok(())
    })
    .await?;
    if let Some(e) = err {
        bail!("{e}");
    }
    Ok(())
}

pub async fn save(c: &Client, a: SaveArgs) -> Result<()> {
    if a.output.is_none() && nix::unistd::isatty(std::io::stdout()).unwrap_or(false) {
        eprintln!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
        return Err(Exit(1).into());
    }
    let names: Vec<String> = a.images.iter().map(|n| format!("names={}", super::run::urlenc(n))).collect();
    let fmt = match a.format.as_str() {
        "docker" => "",
        "oci" => "&format=oci",
        other => bail!("invalid --format {other:?}: expected docker or oci"),
    };
    let resp = c.request(Method::GET, &format!("/images/get?{}{fmt}", names.join("&")), crate::client::empty(), None).await?;
    let (mut out, tmp): (Box<dyn Write>, Option<(String, String)>) = match &a.output {
        Some(p) => {
            let tmp = format!("{p}.tmp{}", std::process::id());
            (Box::new(std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| anyhow!("failed to save image: invalid output path: {e}"))?)), Some((tmp, p.clone())))
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    let r = for_each_chunk(resp, |d| Ok(out.write_all(d)?)).await;
    out.flush()?;
    drop(out);
    match (r, tmp) {
        (Ok(()), Some((t, p))) => std::fs::rename(t, p)?,
        (Err(e), Some((t, _))) => {
            let _ = std::fs::remove_file(t);
            return Err(e);
        }
        (r, None) => r?,
    }
    Ok(())
}

pub async fn load(c: &Client, a: LoadArgs) -> Result<()> {
    let input = match &a.input {
        Some(p) => open_input(p)?,
        None => {
            if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
                bail!("requested load from stdin, but stdin is empty");
            }
            open_input("-")?
        }
    };
    let resp = c.request(Method::POST, &format!("/images/load?quiet={}", a.quiet as u8), reader_body(input), Some("application/x-tar")).await?;
    let mut err = None;
    for_each_json(resp, |v| {
        if let Some(e) = v["error"].as_str() {
            err = Some(e.to_string());
        } else if let Some(s) = v["stream"].as_str() {
            print!("{s}");
        }
        Ok(())
    })
    .await?;
    if let Some(e) = err {
        bail!("{e}");
    }
    Ok(())
}

pub async fn prune(c: &Client, a: PruneArgs) -> Result<()> {
    let warn = if a.all {
        "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue? [y/N] "
    } else {
        "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
    };
    if !a.force && !confirm(warn)? {
        return Ok(());
    }
    let mut f = a.filter.clone();
    if a.all {
        f.push("dangling=false".into());
    }
    let q = if f.is_empty() { String::new() } else { format!("?filters={}", filters_json(&f)?) };
    let v = c.post(&format!("/images/prune{q}"), None).await?;
    let items = v["ImagesDeleted"].as_array().cloned().unwrap_or_default();
    if !items.is_empty() {
        println!("Deleted Images:");
        for it in items {
            if let Some(u) = it["Untagged"].as_str() {
                println!("untagged: {u}");
            }
            if let Some(d) = it["Deleted"].as_str() {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    println!("Total reclaimed space: {}", format::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0)));
    Ok(())
}

pub async fn df(c: &Client, a: DfArgs) -> Result<()> {
    let v = c.get("/system/df").await?;
    let images = v["Images"].as_array().cloned().unwrap_or_default();
    let containers = v["Containers"].as_array().cloned().unwrap_or_default();
    let vols = v["Volumes"].as_array().cloned().unwrap_or_default();
    let img_total: f64 = v["LayersSize"].as_f64().unwrap_or(0.0);
    let active_imgs = images.iter().filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0).count();
    let img_reclaim: f64 = images.iter().filter(|i| i["Containers"].as_i64().unwrap_or(0) == 0).map(|i| i["Size"].as_f64().unwrap_or(0.0)).sum::<f64>().min(img_total);
    let ctr_total: f64 = containers.iter().map(|c| c["SizeRw"].as_f64().unwrap_or(0.0)).sum();
    let active_c = containers.iter().filter(|c| c["State"] == "running").count();
    let ctr_reclaim: f64 = containers.iter().filter(|c| c["State"] != "running").map(|c| c["SizeRw"].as_f64().unwrap_or(0.0)).sum();
    let pct = |r: f64, t: f64| if t > 0.0 { format!(" ({:.0}%)", r / t * 100.0) } else { String::new() };
    let rows_v = vec![
        json!({"Type": "Images", "TotalCount": images.len().to_string(), "Active": active_imgs.to_string(), "Size": format::human_size(img_total), "Reclaimable": format!("{}{}", format::human_size(img_reclaim), pct(img_reclaim, img_total))}),
        json!({"Type": "Containers", "TotalCount": containers.len().to_string(), "Active": active_c.to_string(), "Size": format::human_size(ctr_total), "Reclaimable": format!("{}{}", format::human_size(ctr_reclaim), pct(ctr_reclaim, ctr_total))}),
        super::volumes::df_summary(&vols),
        json!({"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"}),
    ];
    if let Some(f) = &a.format {
        print!("{}", Template::parse(f)?.render_all(&rows_v)?);
        return Ok(());
    }
    if a.verbose {
        println!("Images space usage:\n");
        let mut rows = vec![["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"].iter().map(|s| s.to_string()).collect::<Vec<_>>()];
        for i in &images {
            let tags: Vec<String> = i["RepoTags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(String::from)).collect();
            let (r, t) = tags.first().and_then(|t| t.rsplit_once(':')).map(|(r, t)| (r.to_string(), t.to_string())).unwrap_or(("<none>".into(), "<none>".into()));
            let size = format::human_size(i["Size"].as_f64().unwrap_or(0.0));
            rows.push(vec![r, t, short_id(i["Id"].as_str().unwrap_or(""), false), format::ago_unix(i["Created"].as_i64().unwrap_or(0)), size.clone(), "0B".into(), size, i["Containers"].to_string()]);
        }
        print!("{}", format::table(&rows));
        println!("\nContainers space usage:\n");
        let mut rows = vec![["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"].iter().map(|s| s.to_string()).collect::<Vec<_>>()];
        for ct in &containers {
            rows.push(vec![
                ct["Id"].as_str().unwrap_or("").chars().take(12).collect(),
                ct["Image"].as_str().unwrap_or("").to_string(),
                format!("\"{}\"", format::ellipsis(ct["Command"].as_str().unwrap_or(""), 20)),
                ct["Mounts"].as_array().map(|m| m.iter().filter(|x| x["Type"] == "volume").count()).unwrap_or(0).to_string(),
                format::human_size(ct["SizeRw"].as_f64().unwrap_or(0.0)),
                format::ago_unix(ct["Created"].as_i64().unwrap_or(0)),
                ct["Status"].as_str().unwrap_or("").to_string(),
                ct["Names"][0].as_str().unwrap_or("").trim_start_matches('/').to_string(),
            ]);
        }
        print!("{}", format::table(&rows));
        println!("\nLocal Volumes space usage:\n");
        print!("{}", format::table(&super::volumes::df_rows(&vols)));
        println!("\nBuild cache usage: 0B\n");
        return Ok(());
    }
    let mut rows = vec![["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"].iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    for r in &rows_v {
        rows.push(["Type", "TotalCount", "Active", "Size", "Reclaimable"].iter().map(|k| r[*k].as_str().unwrap_or("").to_string()).collect());
    }
    print!("{}", format::table(&rows));
    Ok(())
}

pub async fn system_prune(c: &Client, a: SystemPruneArgs) -> Result<()> {
    if !a.force {
        let mut w = String::from("WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n");
        if a.volumes {
            w.push_str("  - all anonymous volumes not used by at least one container\n");
        }
        w.push_str(if a.all { "  - all images without at least one container associated to them\n" } else { "  - all dangling images\n" });
        w.push_str("  - unused build cache\n\nAre you sure you want to continue? [y/N] ");
        if !confirm(&w)? {
            return Ok(());
        }
    }
    let q = if a.filter.is_empty() { String::new() } else { format!("?filters={}", filters_json(&a.filter)?) };
    let cv = c.post(&format!("/containers/prune{q}"), None).await?;
    let mut total = cv["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    let ids: Vec<&str> = cv["ContainersDeleted"].as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect();
    if !ids.is_empty() {
        println!("Deleted Containers:");
        for i in ids {
            println!("{i}");
        }
        println!();
    }
    if a.volumes {
        let vv = c.post("/volumes/prune", None).await?;
        total += vv["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    }
    c.post("/networks/prune", None).await?;
    let mut f = a.filter.clone();
    if a.all {
        f.push("dangling=false".into());
    }
    let iq = if f.is_empty() { String::new() } else { format!("?filters={}", filters_json(&f)?) };
    let iv = c.post(&format!("/images/prune{iq}"), None).await?;
    total += iv["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    let items = iv["ImagesDeleted"].as_array().cloned().unwrap_or_default();
    if !items.is_empty() {
        println!("Deleted Images:");
        for it in items {
            if let Some(u) = it["Untagged"].as_str() {
                println!("untagged: {u}");
            }
            if let Some(d) = it["Deleted"].as_str() {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    let bv = c.post("/build/prune", None).await?;
    total += bv["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    println!("Total reclaimed space: {}", format::human_size(total));
    Ok(())
}

pub async fn info(c: &Client, f: FormatArg) -> Result<()> {
    let v = c.get("/info").await?;
    if let Some(fmt) = &f.format {
        if fmt == "json" {
            println!("{v}");
        } else {
            println!("{}", Template::parse(fmt)?.render(&v)?);
        }
        return Ok(());
    }
    let s = |k: &str| -> String {
        match &v[k] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    };
    println!("Client:\n Version:    {}\n Context:    default\n Debug Mode: false\n", env!("CARGO_PKG_VERSION"));
    println!("Server:");
    println!(" Containers: {}", s("Containers"));
    println!("  Running: {}", s("ContainersRunning"));
    println!("  Paused: {}", s("ContainersPaused"));
    println!("  Stopped: {}", s("ContainersStopped"));
    println!(" Images: {}", s("Images"));
    println!(" Server Version: {}", s("ServerVersion"));
    println!(" Storage Driver: {}", s("Driver"));
    println!(" Logging Driver: {}", s("LoggingDriver"));
    println!(" Cgroup Driver: {}", s("CgroupDriver"));
    println!(" Cgroup Version: {}", s("CgroupVersion"));
    println!(" Runtimes: {}", v["Runtimes"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>().join(" ")).unwrap_or_default());
    println!(" Default Runtime: {}", s("DefaultRuntime"));
    println!(" Kernel Version: {}", s("KernelVersion"));
    println!(" Operating System: {}", s("OperatingSystem"));
    println!(" OSType: {}", s("OSType"));
    println!(" Architecture: {}", s("Architecture"));
    println!(" CPUs: {}", s("NCPU"));
    println!(" Total Memory: {}", format::bytes_size(v["MemTotal"].as_f64().unwrap_or(0.0)));
    println!(" Name: {}", s("Name"));
    println!(" ID: {}", s("ID"));
    println!(" Docker Root Dir: {}", s("DockerRootDir"));
    println!(" Debug Mode: false");
    println!(" Experimental: false");
    println!(" Live Restore Enabled: {}", s("LiveRestoreEnabled"));
    Ok(())
}

pub async fn version(host: Option<&str>, f: FormatArg) -> Result<()> {
    let client = json!({
        "Platform": {"Name": "berth"},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": crate::api::API_VERSION,
        "GoVersion": "n/a (rust)",
        "Os": "linux",
        "Arch": berth_engine::image::host_arch(),
    });
    let server = match super::connect(host).await {
        Ok(c) => c.get("/version").await.ok(),
        Err(_) => None,
    };
    let all = json!({"Client": client, "Server": server});
    if let Some(fmt) = &f.format {
        if fmt == "json" {
            println!("{all}");
        } else {
            println!("{}", Template::parse(fmt)?.render(&all)?);
        }
        return Ok(());
    }
    println!("Client:\n Version:           {}\n API version:       {}\n OS/Arch:           linux/{}", env!("CARGO_PKG_VERSION"), crate::api::API_VERSION, berth_engine::image::host_arch());
    match server {
        Some(s) => {
            println!("\nServer: berth\n Engine:\n  Version:          {}\n  API version:      {} (minimum version {})\n  OS/Arch:          {}/{}\n  Kernel:           {}",
                s["Components"][0]["Version"].as_str().unwrap_or(""), s["ApiVersion"].as_str().unwrap_or(""), s["MinAPIVersion"].as_str().unwrap_or(""),
                s["Os"].as_str().unwrap_or(""), s["Arch"].as_str().unwrap_or(""), s["KernelVersion"].as_str().unwrap_or(""));
        }
        None => {
            eprintln!("Cannot connect to the berth daemon. Is the berth daemon running?");
            return Err(Exit(1).into());
        }
    }
    Ok(())
}
