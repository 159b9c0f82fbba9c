//! `network ...` and `port`.

use super::containers::{confirm, filters_json};
use super::format::{self, Template};
use super::Exit;
use crate::client::Client;
use anyhow::Result;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm {
        /// Do not error if the network does not exist
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove all unused networks
    Prune {
        #[arg(short, long)]
        force: bool,
        #[arg(long)]
        filter: Vec<String>,
    },
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect {
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    pub opt: Vec<String>,
    /// Enable or disable IPv6 networking
    #[arg(long)]
    pub ipv6: bool,
    pub name: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    #[arg(short, long)]
    pub filter: Vec<String>,
    #[arg(long)]
    pub format: Option<String>,
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(short, long)]
    pub verbose: bool,
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address
    #[arg(long)]
    pub ip: Option<String>,
    pub network: String,
    pub container: String,
}

fn kv_map(items: &[String]) -> serde_json::Map<String, Value> {
    items
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), json!(v))
        })
        .collect()
}

pub async fn network(c: &Client, cmd: NetworkCmd) -> Result<()> {
    match cmd {
        NetworkCmd::Create(a) => {
            let mut cfgs = Vec::new();
            for (i, s) in a.subnet.iter().enumerate() {
                let mut m = serde_json::Map::new();
                m.insert("Subnet".into(), json!(s));
                if let Some(g) = a.gateway.get(i) {
                    m.insert("Gateway".into(), json!(g));
                }
                if let Some(r) = a.ip_range.get(i) {
                    m.insert("IPRange".into(), json!(r));
                }
                cfgs.push(Value::Object(m));
            }
            if a.subnet.is_empty() && !a.gateway.is_empty() {
                anyhow::bail!("every ip-range or gateway must have a corresponding subnet");
            }
            let body = json!({
                "Name": a.name, "Driver": a.driver, "Internal": a.internal, "Attachable": a.attachable,
                "EnableIPv6": a.ipv6, "IPAM": {"Driver": "default", "Config": cfgs},
                "Options": kv_map(&a.opt), "Labels": kv_map(&a.label), "CheckDuplicate": true,
            });
            let v = c.post("/networks/create", Some(body)).await?;
            println!("{}", v["Id"].as_str().unwrap_or(""));
            Ok(())
        }
        NetworkCmd::Ls(a) => {
            let q = if a.filter.is_empty() { String::new() } else { format!("?filters={}", filters_json(&a.filter)?) };
            let v = c.get(&format!("/networks{q}")).await?;
            let rows: Vec<Value> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    let id = n["Id"].as_str().unwrap_or("");
                    json!({"ID": if a.no_trunc { id.to_string() } else { id.chars().take(12).collect() }, "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"],
                           "IPv6": n["EnableIPv6"].to_string(), "Internal": n["Internal"].to_string(), "CreatedAt": n["Created"], "Labels": ""})
                })
                .collect();
            if a.quiet {
                for r in &rows {
                    println!("{}", r["ID"].as_str().unwrap_or(""));
                }
                return Ok(());
            }
            if let Some(f) = &a.format {
                print!("{}", Template::parse(f)?.render_all(&rows)?);
                return Ok(());
            }
            let mut t = vec![vec!["NETWORK ID".to_string(), "NAME".into(), "DRIVER".into(), "SCOPE".into()]];
            for r in &rows {
                t.push(["ID", "Name", "Driver", "Scope"].iter().map(|k| r[*k].as_str().unwrap_or("").to_string()).collect());
            }
            print!("{}", format::table(&t));
            Ok(())
        }
        NetworkCmd::Inspect(a) => {
            let mut out = Vec::new();
            let mut failed = false;
            for n in &a.networks {
                match c.get(&format!("/networks/{n}")).await {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            match &a.format {
                Some(f) => {
                    let t = Template::parse(f)?;
                    for v in &out {
                        println!("{}", t.render(v)?);
                    }
                }
                None => println!("{}", serde_json::to_string_pretty(&out)?),
            }
            if failed {
                return Err(Exit(1).into());
            }
            Ok(())
        }
        NetworkCmd::Rm { force, networks } => {
            let mut failed = false;
            for n in &networks {
                match c.json(Method::DELETE, &format!("/networks/{n}"), None).await {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        if force && e.to_string().contains("not found") {
                            continue;
                        }
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
        NetworkCmd::Prune { force, filter } => {
            if !force && !confirm("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ")? {
                return Ok(());
            }
            let q = if filter.is_empty() { String::new() } else { format!("?filters={}", filters_json(&filter)?) };
            let v = c.post(&format!("/networks/prune{q}"), None).await?;
            let names: Vec<&str> = v["NetworksDeleted"].as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect();
            if !names.is_empty() {
                println!("Deleted Networks:");
                for n in names {
                    println!("{n}");
                }
            }
            Ok(())
        }
        NetworkCmd::Connect(a) => {
            let mut ep = json!({"Aliases": a.alias});
            if let Some(ip) = &a.ip {
                ep["IPAMConfig"] = json!({"IPv4Address": ip});
            }
            c.post(&format!("/networks/{}/connect", a.network), Some(json!({"Container": a.container, "EndpointConfig": ep}))).await?;
            Ok(())
        }
        NetworkCmd::Disconnect { force, network, container } => {
            c.post(&format!("/networks/{network}/disconnect"), Some(json!({"Container": container, "Force": force}))).await?;
            Ok(())
        }
    }
}

/// `port CONTAINER [PRIVATE_PORT[/PROTO]]`.
pub async fn port(c: &Client, container: &str, private: Option<&str>) -> Result<()> {
    let v = c.get(&format!("/containers/{container}/json")).await?;
    let ports = v["NetworkSettings"]["Ports"].as_object().cloned().unwrap_or_default();
    let want = private.map(|p| if p.contains('/') { p.to_string() } else { format!("{p}/tcp") });
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort_by_key(|k| k.split('/').next().and_then(|p| p.parse::<u32>().ok()).unwrap_or(0));
    let mut found = false;
    for k in keys {
        if want.as_ref().is_some_and(|w| w != k) {
            continue;
        }
        for b in ports[k].as_array().into_iter().flatten() {
            found = true;
            let ip = b["HostIp"].as_str().unwrap_or("0.0.0.0");
            let hp = b["HostPort"].as_str().unwrap_or("");
            if want.is_some() {
                println!("{ip}:{hp}");
            } else {
                println!("{k} -> {ip}:{hp}");
            }
        }
    }
    if let (Some(w), false) = (&want, found) {
        eprintln!("Error: No public port '{w}' published for {container}");
        return Err(Exit(1).into());
    }
    Ok(())
}
