//! `berth volume create|ls|inspect|rm|prune`, printed the way the docker CLI prints them.

use super::containers::{confirm, filters_json};
use super::format::{self, Template};
use super::Exit;
use crate::client::Client;
use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    pub opt: Vec<String>,
    /// Specify volume name
    #[arg(long)]
    pub name: Option<String>,
    pub volume: Option<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long)]
    pub filter: Vec<String>,
}

fn kv_map(items: &[String]) -> serde_json::Map<String, Value> {
    items
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), json!(v))
        })
        .collect()
}

pub async fn run(c: &Client, cmd: VolumeCmd) -> Result<()> {
    match cmd {
        VolumeCmd::Create(a) => create(c, a).await,
        VolumeCmd::Ls(a) => ls(c, a).await,
        VolumeCmd::Inspect(a) => inspect(c, a).await,
        VolumeCmd::Rm(a) => rm(c, a).await,
        VolumeCmd::Prune(a) => prune(c, a).await,
    }
}

async fn create(c: &Client, a: CreateArgs) -> Result<()> {
    let name = match (&a.name, &a.volume) {
        (Some(n), Some(v)) if n != v => {
            return Err(anyhow!("conflicting options: cannot specify a volume-name through both --name and as a positional arg"))
        }
        (Some(n), _) | (None, Some(n)) => n.clone(),
        (None, None) => String::new(),
    };
    let body = json!({
        "Name": name,
        "Driver": a.driver,
        "DriverOpts": kv_map(&a.opt),
        "Labels": kv_map(&a.label),
    });
    let v = c.post("/volumes/create", Some(body)).await?;
    println!("{}", v["Name"].as_str().unwrap_or(""));
    Ok(())
}

async fn ls(c: &Client, a: LsArgs) -> Result<()> {
    let q = if a.filter.is_empty() { String::new() } else { format!("?filters={}", filters_json(&a.filter)?) };
    let v = c.get(&format!("/volumes{q}")).await?;
    let vols = v["Volumes"].as_array().cloned().unwrap_or_default();
    if a.quiet {
        for v in &vols {
            println!("{}", v["Name"].as_str().unwrap_or(""));
        }
        return Ok(());
    }
    if let Some(f) = a.format.as_deref().filter(|f| *f != "table") {
        if f == "json" {
            for v in &vols {
                println!("{}", serde_json::to_string(&ls_fields(v))?);
            }
            return Ok(());
        }
        let rows: Vec<Value> = vols.iter().map(ls_fields).collect();
        print!("{}", Template::parse(f)?.render_all(&rows)?);
        return Ok(());
    }
    let mut rows = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
    for v in &vols {
        rows.push(vec![v["Driver"].as_str().unwrap_or("").to_string(), v["Name"].as_str().unwrap_or("").to_string()]);
    }
    print!("{}", format::table(&rows));
    Ok(())
}

/// The fields `docker volume ls --format` offers.
fn ls_fields(v: &Value) -> Value {
    let labels = v["Labels"].as_object().map(|m| {
        let mut l: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
        l.sort();
        l.join(",")
    });
    json!({
        "Driver": v["Driver"],
        "Labels": labels.unwrap_or_default(),
        "Links": "N/A",
        "Mountpoint": v["Mountpoint"],
        "Name": v["Name"],
        "Scope": v["Scope"],
        "Size": "N/A",
        "Availability": "N/A",
        "Group": "N/A",
        "Status": "N/A",
    })
}

async fn inspect(c: &Client, a: InspectArgs) -> Result<()> {
    let mut out = Vec::new();
    let mut failed = false;
    for n in &a.volumes {
        match c.get(&format!("/volumes/{}", super::run::urlenc(n))).await {
            Ok(v) => out.push(v),
            Err(e) => {
                let m = e.to_string();
                if m.contains("no such volume") {
                    eprintln!("Error: No such volume: {n}");
                } else {
                    eprintln!("{m}");
                }
                failed = true;
            }
        }
    }
    match a.format.as_deref() {
        Some(f) if f != "json" => {
            let t = Template::parse(f)?;
            for v in &out {
                println!("{}", t.render(v)?);
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

async fn rm(c: &Client, a: RmArgs) -> Result<()> {
    let mut failed = false;
    for n in &a.volumes {
        let path = format!("/volumes/{}?force={}", super::run::urlenc(n), a.force as u8);
        match c.json(Method::DELETE, &path, None).await {
            Ok(_) => println!("{n}"),
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

async fn prune(c: &Client, a: PruneArgs) -> Result<()> {
    let warn = if a.all {
        "WARNING! This will remove all local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] "
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] "
    };
    if !a.force && !confirm(warn)? {
        return Ok(());
    }
    let mut f = a.filter.clone();
    if a.all {
        f.push("all=true".into());
    }
    let q = if f.is_empty() { String::new() } else { format!("?filters={}", filters_json(&f)?) };
    let v = c.post(&format!("/volumes/prune{q}"), None).await?;
    let names: Vec<&str> = v["VolumesDeleted"].as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect();
    if !names.is_empty() {
        println!("Deleted Volumes:");
        for n in names {
            println!("{n}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", format::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0)));
    Ok(())
}

/// `system df -v`'s volume table rows: name, links, size.
pub fn df_rows(vols: &[Value]) -> Vec<Vec<String>> {
    let mut rows = vec![vec!["VOLUME NAME".to_string(), "LINKS".to_string(), "SIZE".to_string()]];
    for v in vols {
        rows.push(vec![
            v["Name"].as_str().unwrap_or("").to_string(),
            v["UsageData"]["RefCount"].as_i64().unwrap_or(0).to_string(),
            format::human_size(v["UsageData"]["Size"].as_f64().unwrap_or(0.0)),
        ]);
    }
    rows
}

/// `system df`'s "Local Volumes" summary: total, active, size, reclaimable.
pub fn df_summary(vols: &[Value]) -> Value {
    let total: f64 = vols.iter().map(|v| v["UsageData"]["Size"].as_f64().unwrap_or(0.0)).sum();
    let active = vols.iter().filter(|v| v["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0).count();
    let reclaim: f64 = vols
        .iter()
        .filter(|v| v["UsageData"]["RefCount"].as_i64().unwrap_or(0) == 0)
        .map(|v| v["UsageData"]["Size"].as_f64().unwrap_or(0.0))
        .sum();
    let pct = if total > 0.0 { format!(" ({:.0}%)", reclaim / total * 100.0) } else { String::new() };
    json!({
        "Type": "Local Volumes",
        "TotalCount": vols.len().to_string(),
        "Active": active.to_string(),
        "Size": format::human_size(total),
        "Reclaimable": format!("{}{}", format::human_size(reclaim), pct),
    })
}
