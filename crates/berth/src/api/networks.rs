//! `/networks/...` endpoints.

use super::*;
use axum::extract::{Path as UrlPath, State};
use berth_engine::network::NetworkRecord;
use serde_json::json;

fn inspect_json(eng: &Engine, n: &NetworkRecord) -> serde_json::Value {
    let mut containers = serde_json::Map::new();
    for (c, ep) in eng.network_containers(&n.id) {
        containers.insert(
            c.id.clone(),
            json!({"Name": c.name, "EndpointID": "", "MacAddress": ep.mac, "IPv4Address": format!("{}/{}", ep.ip, ep.prefix_len), "IPv6Address": ""}),
        );
    }
    let ipam_cfg: Vec<serde_json::Value> = match &n.spec {
        Some(s) => {
            let mut c = serde_json::Map::new();
            if let Some(sub) = s.subnet {
                c.insert("Subnet".into(), json!(sub.to_string()));
            }
            if let Some(gw) = s.gateway {
                c.insert("Gateway".into(), json!(gw.to_string()));
            }
            if let Some(r) = s.ip_range {
                c.insert("IPRange".into(), json!(r.to_string()));
            }
            vec![serde_json::Value::Object(c)]
        }
        None => vec![],
    };
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": ipam_cfg},
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": n.options,
        "Labels": n.labels,
    })
}

fn matches(n: &NetworkRecord, f: &HashMap<String, Vec<String>>) -> bool {
    for (k, vals) in f {
        if vals.is_empty() {
            continue;
        }
        let ok = match k.as_str() {
            "name" => vals.iter().any(|v| n.name.contains(v.as_str())),
            "id" => vals.iter().any(|v| n.id.starts_with(v.as_str())),
            "driver" => vals.iter().any(|v| v == &n.driver),
            "type" => vals.iter().any(|v| (v == "builtin") == n.is_predefined()),
            "scope" => vals.iter().any(|v| v == "local"),
            "label" => vals.iter().all(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                n.labels.get(k).is_some_and(|x| v.is_empty() || x == v)
            }),
            "dangling" => true,
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

pub async fn list(State(eng): State<AppState>, q: Query) -> ApiResult {
    let f = filters(&q)?;
    let v = blocking(move || {
        let all = eng.list_networks()?;
        let dangling = f.get("dangling").map(|v| v.iter().any(|x| x == "true" || x == "1"));
        Ok(all
            .iter()
            .filter(|n| matches(n, &f))
            .filter(|n| match dangling {
                Some(d) => d == (!n.is_predefined() && eng.network_containers(&n.id).is_empty()),
                None => true,
            })
            .map(|n| inspect_json(&eng, n))
            .collect::<Vec<_>>())
    })
    .await?;
    ok_json(&v)
}

pub async fn inspect(State(eng): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult {
    let v = blocking(move || {
        let n = eng.get_network(&id)?;
        Ok(inspect_json(&eng, &n))
    })
    .await?;
    ok_json(&v)
}

pub async fn create(State(eng): State<AppState>, body: axum::body::Bytes) -> ApiResult {
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid JSON: {e}")))?;
    let name = v["Name"].as_str().unwrap_or("").to_string();
    let driver = v["Driver"].as_str().unwrap_or("bridge").to_string();
    let internal = v["Internal"].as_bool().unwrap_or(false);
    let attachable = v["Attachable"].as_bool().unwrap_or(false);
    if v["EnableIPv6"].as_bool().unwrap_or(false) {
        return Err(bad_request("IPv6 networks are not supported by berth yet"));
    }
    let ipam: Vec<serde_json::Value> = v["IPAM"]["Config"].as_array().cloned().unwrap_or_default();
    let to_map = |x: &serde_json::Value| -> HashMap<String, String> {
        x.as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect()).unwrap_or_default()
    };
    let options = to_map(&v["Options"]);
    let labels = to_map(&v["Labels"]);
    let rec = blocking(move || eng.create_network(&name, &driver, internal, attachable, &ipam, options, labels)).await?;
    Ok(json_response(StatusCode::CREATED, &json!({"Id": rec.id, "Warning": ""})))
}

pub async fn remove(State(eng): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult {
    blocking(move || eng.remove_network(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn connect(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, body: axum::body::Bytes) -> ApiResult {
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid JSON: {e}")))?;
    let c = v["Container"].as_str().unwrap_or("").to_string();
    let cfg = v["EndpointConfig"].clone();
    blocking(move || eng.connect_network(&id, &c, cfg)).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn disconnect(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, body: axum::body::Bytes) -> ApiResult {
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid JSON: {e}")))?;
    let c = v["Container"].as_str().unwrap_or("").to_string();
    let force = v["Force"].as_bool().unwrap_or(false);
    blocking(move || eng.disconnect_network(&id, &c, force)).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn prune(State(eng): State<AppState>) -> ApiResult {
    let v = blocking(move || {
        let mut deleted = Vec::new();
        for n in eng.list_networks()? {
            if n.is_predefined() {
                continue;
            }
            let used = eng.all_containers().iter().any(|c| c.networks.contains_key(&n.name));
            if !used && eng.remove_network(&n.id).is_ok() {
                deleted.push(n.name);
            }
        }
        Ok(json!({"NetworksDeleted": if deleted.is_empty() { serde_json::Value::Null } else { json!(deleted) }}))
    })
    .await?;
    ok_json(&v)
}
