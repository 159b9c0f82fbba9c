//! The typed, normalised compose model (compose spec subset).
//!
//! Every field accepts the spellings the spec allows (list or map, short or long syntax,
//! numbers given as strings after interpolation) and stores one normalised form, which is
//! also what [`crate::Project::to_yaml`] prints. Unknown keys are rejected; `x-*`
//! extension keys are dropped before typing.

use std::collections::BTreeMap;

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "sequence",
        Value::Mapping(_) => "mapping",
        Value::Tagged(_) => "tagged value",
    }
}

fn want<E: serde::de::Error>(what: &str, v: &Value) -> E {
    E::custom(format!("invalid type: {}, expected {what}", type_name(v)))
}

/// `list ["K=V", "K"]` or map `{K: V, K: null}` → map with optional values.
pub(crate) fn list_or_map(
    v: &Value,
    sep: char,
) -> Result<BTreeMap<String, Option<String>>, String> {
    let mut out = BTreeMap::new();
    match v {
        Value::Null => {}
        Value::Sequence(items) => {
            for it in items {
                let s = scalar_string(it)
                    .ok_or_else(|| format!("invalid type: {}, expected string", type_name(it)))?;
                match s.split_once(sep) {
                    Some((k, val)) => out.insert(k.to_string(), Some(val.to_string())),
                    None => out.insert(s, None),
                };
            }
        }
        Value::Mapping(m) => {
            for (k, val) in m {
                let k = scalar_string(k).ok_or("invalid key type, expected string")?;
                let val = match val {
                    Value::Null => None,
                    other => Some(scalar_string(other).ok_or_else(|| {
                        format!(
                            "{k}: invalid type: {}, expected string, number or boolean",
                            type_name(other)
                        )
                    })?),
                };
                out.insert(k, val);
            }
        }
        other => {
            return Err(format!(
                "invalid type: {}, expected sequence or mapping",
                type_name(other)
            ))
        }
    }
    Ok(out)
}

fn de_list_or_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Option<String>>, D::Error> {
    let v = Value::deserialize(d)?;
    list_or_map(&v, '=').map_err(D::Error::custom)
}

fn de_labels<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(list_or_map(&v, '=')
        .map_err(D::Error::custom)?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

fn de_string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items
            .iter()
            .map(|i| scalar_string(i).ok_or_else(|| want("string", i)))
            .collect(),
        other => scalar_string(other)
            .map(|s| vec![s])
            .ok_or_else(|| want("string or sequence", other)),
    }
}

fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        other => scalar_string(other)
            .map(Some)
            .ok_or_else(|| want("string", other)),
    }
}

fn parse_num<T: std::str::FromStr, E: serde::de::Error>(v: &Value) -> Result<Option<T>, E> {
    match v {
        Value::Null => Ok(None),
        Value::Number(_) | Value::String(_) => {
            let s = scalar_string(v).unwrap_or_default();
            s.trim()
                .parse()
                .map(Some)
                .map_err(|_| E::custom(format!("invalid number {s:?}")))
        }
        other => Err(want("number", other)),
    }
}

fn de_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    parse_num(&Value::deserialize(d)?)
}

fn de_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(b)),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(Some(true)),
            "false" | "no" | "0" => Ok(Some(false)),
            _ => Err(D::Error::custom(format!("invalid boolean {s:?}"))),
        },
        other => Err(want("boolean", &other)),
    }
}

/// `command` / `entrypoint` / `healthcheck.test`: a shell string or an exec list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Sequence(_) => Ok(Command::Exec(
                de_string_or_list(v).map_err(D::Error::custom)?,
            )),
            other => scalar_string(other)
                .map(Command::Shell)
                .ok_or_else(|| want("string or sequence", other)),
        }
    }
}

impl Command {
    /// The argument vector the engine gets (`Cmd` / `Entrypoint`). A string is split
    /// with shell-word rules, not run through `sh -c`, as Docker Compose does:
    /// `httpd -f -p "8 0"` → `["httpd", "-f", "-p", "8 0"]`.
    pub fn to_argv(&self) -> Result<Vec<String>, String> {
        match self {
            Command::Exec(v) => Ok(v.clone()),
            Command::Shell(s) => split_shell_words(s),
        }
    }
}

/// Split a string into words like a POSIX shell would, without expansions.
pub fn split_shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(format!("unterminated single quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some('\n') => {}
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err(format!("unterminated double quote in {s:?}")),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(format!("unterminated double quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(x) => cur.push(x),
                    None => cur.push('\\'),
                }
            }
            x => {
                in_word = true;
                cur.push(x);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `build:` (a context string or the long form).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Build {
    pub context: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildLong {
    #[serde(default, deserialize_with = "de_opt_string")]
    context: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    dockerfile: Option<String>,
    #[serde(default, deserialize_with = "de_list_or_map")]
    args: BTreeMap<String, Option<String>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    target: Option<String>,
    #[serde(default, deserialize_with = "de_labels")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    network: Option<String>,
}

impl<'de> Deserialize<'de> for Build {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if let Some(s) = scalar_string(&v) {
            return Ok(Build {
                context: s,
                ..Default::default()
            });
        }
        let l: BuildLong = serde_yaml_ng::from_value(v).map_err(D::Error::custom)?;
        Ok(Build {
            context: l.context.unwrap_or_else(|| ".".into()),
            dockerfile: l.dockerfile,
            args: l.args,
            target: l.target,
            labels: l.labels,
            network: l.network,
        })
    }
}

/// One `ports:` entry in long form. Short syntax `[ip:][published:]target[/proto]` is
/// converted; a range `8000-8001:80-81` becomes one entry per port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub name: Option<String>,
    #[serde(deserialize_with = "de_port")]
    pub target: u16,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub published: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub host_ip: Option<String>,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default = "ingress")]
    pub mode: String,
}

fn tcp() -> String {
    "tcp".into()
}
fn ingress() -> String {
    "ingress".into()
}

fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    parse_num::<u16, D::Error>(&Value::deserialize(d)?)?
        .ok_or_else(|| D::Error::custom("missing port"))
}

fn port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid port {s:?}");
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (
                a.parse::<u16>().map_err(|_| bad())?,
                b.parse::<u16>().map_err(|_| bad())?,
            );
            if a > b {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let p = s.parse::<u16>().map_err(|_| bad())?;
            Ok((p, p))
        }
    }
}

/// Parse short port syntax into long entries.
pub fn parse_short_port(spec: &str) -> Result<Vec<Port>, String> {
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) if matches!(p, "tcp" | "udp" | "sctp") => (r, p.to_string()),
        Some(_) => return Err(format!("invalid port {spec:?}: bad protocol")),
        None => (spec, "tcp".to_string()),
    };
    // host_ip may be an IPv6 literal in brackets
    let (host_ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r
            .split_once(']')
            .ok_or_else(|| format!("invalid port {spec:?}"))?;
        (
            Some(ip.to_string()),
            after.strip_prefix(':').unwrap_or(after),
        )
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, rest),
            3 => (Some(parts[0].to_string()), &rest[parts[0].len() + 1..]),
            _ => return Err(format!("invalid port {spec:?}")),
        }
    };
    let (published, target) = match rest.split_once(':') {
        Some((p, t)) => (if p.is_empty() { None } else { Some(p) }, t),
        None => (None, rest),
    };
    let (t0, t1) = port_range(target)?;
    let pub_range = published.map(port_range).transpose()?;
    let mut out = Vec::new();
    for (i, t) in (t0..=t1).enumerate() {
        let published = match pub_range {
            None => None,
            Some((p0, p1)) if p1 - p0 == t1 - t0 => Some((p0 + i as u16).to_string()),
            // a host range for one container port: keep the range, the engine picks one
            Some((p0, p1)) if t0 == t1 => Some(if p0 == p1 {
                p0.to_string()
            } else {
                format!("{p0}-{p1}")
            }),
            Some(_) => return Err(format!("invalid port {spec:?}: ranges differ in size")),
        };
        out.push(Port {
            name: None,
            target: t,
            published,
            host_ip: host_ip.clone(),
            protocol: protocol.clone(),
            mode: "ingress".into(),
        });
    }
    Ok(out)
}

fn de_ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Port>, D::Error> {
    let v = Value::deserialize(d)?;
    let Value::Sequence(items) = v else {
        return Err(want("sequence", &v));
    };
    let mut out = Vec::new();
    for it in items {
        match &it {
            Value::Mapping(_) => {
                out.push(serde_yaml_ng::from_value::<Port>(it).map_err(D::Error::custom)?)
            }
            other => {
                let s =
                    scalar_string(other).ok_or_else(|| want("string, number or mapping", other))?;
                out.extend(parse_short_port(&s).map_err(D::Error::custom)?);
            }
        }
    }
    Ok(out)
}

/// One service `volumes:` entry in long form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceVolume {
    /// `volume`, `bind`, `tmpfs` (also `npipe`, `cluster`, `image` pass through).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "de_bool"
    )]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(de_opt_bool(d)?.unwrap_or(false))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_bool"
    )]
    pub create_host_path: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeOptions {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_bool"
    )]
    pub nocopy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub size: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_u64"
    )]
    pub mode: Option<u64>,
}

fn is_path_like(s: &str) -> bool {
    s.starts_with('.') || s.starts_with('/') || s.starts_with('~')
}

/// Parse short volume syntax `[source:]target[:mode]`.
pub fn parse_short_volume(spec: &str) -> Result<ServiceVolume, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] => (Some(*s), *t, None),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => return Err(format!("invalid volume {spec:?}")),
    };
    if target.is_empty() || source == Some("") {
        return Err(format!("invalid volume {spec:?}"));
    }
    let mut read_only = false;
    let mut bind = None;
    let mut volume = None;
    for opt in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => read_only = true,
            "rw" => {}
            "nocopy" => {
                volume = Some(VolumeOptions {
                    nocopy: Some(true),
                    subpath: None,
                })
            }
            "z" | "Z" => {
                bind = Some(BindOptions {
                    propagation: None,
                    create_host_path: Some(true),
                    selinux: Some(opt.into()),
                })
            }
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                bind = Some(BindOptions {
                    propagation: Some(opt.into()),
                    create_host_path: Some(true),
                    selinux: None,
                })
            }
            _ => return Err(format!("invalid volume {spec:?}: unknown mode {opt:?}")),
        }
    }
    let kind = match source {
        Some(s) if is_path_like(s) => {
            bind.get_or_insert(BindOptions {
                propagation: None,
                create_host_path: Some(true),
                selinux: None,
            });
            "bind"
        }
        _ => {
            bind = None;
            "volume"
        }
    };
    Ok(ServiceVolume {
        kind: kind.into(),
        source: source.map(str::to_string),
        target: target.into(),
        read_only,
        bind,
        volume,
        tmpfs: None,
        consistency: None,
    })
}

fn de_volumes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServiceVolume>, D::Error> {
    let v = Value::deserialize(d)?;
    let Value::Sequence(items) = v else {
        return Err(want("sequence", &v));
    };
    items
        .into_iter()
        .map(|it| match &it {
            Value::Mapping(_) => {
                serde_yaml_ng::from_value::<ServiceVolume>(it).map_err(D::Error::custom)
            }
            Value::String(s) => parse_short_volume(s).map_err(D::Error::custom),
            other => Err(want("string or mapping", other)),
        })
        .collect()
}

/// A service's attachment to one network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub aliases: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub ipv4_address: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub ipv6_address: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_u64"
    )]
    pub priority: Option<u64>,
}

fn de_service_networks<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Option<ServiceNetwork>>, D::Error> {
    let v = Value::deserialize(d)?;
    let mut out = BTreeMap::new();
    match v {
        Value::Sequence(items) => {
            for it in items {
                out.insert(scalar_string(&it).ok_or_else(|| want("string", &it))?, None);
            }
        }
        Value::Mapping(m) => {
            for (k, val) in m {
                let k = scalar_string(&k).ok_or_else(|| want("string", &k))?;
                let n = match val {
                    Value::Null => None,
                    other => Some(
                        serde_yaml_ng::from_value::<ServiceNetwork>(other)
                            .map_err(|e| D::Error::custom(format!("{k}: {e}")))?,
                    ),
                };
                out.insert(k, n);
            }
        }
        other => return Err(want("sequence or mapping", &other)),
    }
    Ok(out)
}

/// `depends_on` entry, long form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DependsOn {
    #[serde(default = "started")]
    pub condition: String,
    #[serde(default, deserialize_with = "de_bool")]
    pub restart: bool,
    #[serde(default = "yes", deserialize_with = "de_bool_true")]
    pub required: bool,
}

fn started() -> String {
    "service_started".into()
}
fn yes() -> bool {
    true
}
fn de_bool_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(de_opt_bool(d)?.unwrap_or(true))
}

fn de_depends_on<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, DependsOn>, D::Error> {
    let v = Value::deserialize(d)?;
    let mut out = BTreeMap::new();
    let dflt = || DependsOn {
        condition: started(),
        restart: false,
        required: true,
    };
    match v {
        Value::Sequence(items) => {
            for it in items {
                out.insert(
                    scalar_string(&it).ok_or_else(|| want("string", &it))?,
                    dflt(),
                );
            }
        }
        Value::Mapping(m) => {
            for (k, val) in m {
                let k = scalar_string(&k).ok_or_else(|| want("string", &k))?;
                let dep: DependsOn = match val {
                    Value::Null => dflt(),
                    other => serde_yaml_ng::from_value(other)
                        .map_err(|e| D::Error::custom(format!("{k}: {e}")))?,
                };
                if !matches!(
                    dep.condition.as_str(),
                    "service_started" | "service_healthy" | "service_completed_successfully"
                ) {
                    return Err(D::Error::custom(format!(
                        "{k}: invalid condition {:?}",
                        dep.condition
                    )));
                }
                out.insert(k, dep);
            }
        }
        other => return Err(want("sequence or mapping", &other)),
    }
    Ok(out)
}

/// `healthcheck:`; a string `test` becomes `["CMD-SHELL", test]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_health_test"
    )]
    pub test: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub interval: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub timeout: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_u64"
    )]
    pub retries: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub start_period: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub start_interval: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "de_bool"
    )]
    pub disable: bool,
}

fn de_health_test<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Command::deserialize(d)? {
        Command::Shell(s) => Ok(vec!["CMD-SHELL".into(), s]),
        Command::Exec(v) => Ok(v),
    }
}

/// `deploy:` (the parts a single engine honours).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_u64"
    )]
    pub replicas: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub mode: Option<String>,
    /// Swarm-only keys (`restart_policy`, `placement`, `update_config`, ...), kept verbatim.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<ResourceSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub cpus: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub memory: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_u64"
    )]
    pub pids: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Value>,
}

/// `extends:` — a service name, optionally in another file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extends {
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendsLong {
    service: String,
    #[serde(default)]
    file: Option<String>,
}

impl<'de> Deserialize<'de> for Extends {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Extends::from_value(&Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

impl Extends {
    pub(crate) fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::String(s) => Ok(Extends {
                service: s.clone(),
                file: None,
            }),
            other => {
                let l: ExtendsLong =
                    serde_yaml_ng::from_value(other.clone()).map_err(|e| e.to_string())?;
                Ok(Extends {
                    service: l.service,
                    file: l.file,
                })
            }
        }
    }
}

/// A service's reference to a top-level config or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_u64"
    )]
    pub mode: Option<u64>,
}

fn de_file_refs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FileRef>, D::Error> {
    let v = Value::deserialize(d)?;
    let Value::Sequence(items) = v else {
        return Err(want("sequence", &v));
    };
    items
        .into_iter()
        .map(|it| match &it {
            Value::String(s) => Ok(FileRef {
                source: s.clone(),
                target: None,
                uid: None,
                gid: None,
                mode: None,
            }),
            _ => serde_yaml_ng::from_value::<FileRef>(it).map_err(D::Error::custom),
        })
        .collect()
}

fn de_extra_hosts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Mapping(_) => Ok(list_or_map(&v, '=')
            .map_err(D::Error::custom)?
            .into_iter()
            .map(|(k, ip)| format!("{k}:{}", ip.unwrap_or_default()))
            .collect()),
        _ => de_string_or_list(v).map_err(D::Error::custom),
    }
}

/// One service of the project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub cap_add: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_file_refs"
    )]
    pub configs: Vec<FileRef>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub container_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de_depends_on"
    )]
    pub depends_on: BTreeMap<String, DependsOn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Command>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub env_file: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de_list_or_map"
    )]
    pub environment: BTreeMap<String, Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<Extends>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_extra_hosts"
    )]
    pub extra_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub hostname: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub image: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_bool"
    )]
    pub init: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de_labels"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub mem_limit: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub network_mode: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de_service_networks"
    )]
    pub networks: BTreeMap<String, Option<ServiceNetwork>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub platform: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_ports"
    )]
    pub ports: Vec<Port>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_bool"
    )]
    pub privileged: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub profiles: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub pull_policy: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_bool"
    )]
    pub read_only: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub restart: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_u64"
    )]
    pub scale: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_file_refs"
    )]
    pub secrets: Vec<FileRef>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_bool"
    )]
    pub stdin_open: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub stop_grace_period: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub stop_signal: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub tmpfs: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_bool"
    )]
    pub tty: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ulimits: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub user: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_volumes"
    )]
    pub volumes: Vec<ServiceVolume>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub working_dir: Option<String>,
    // Less common keys, typed loosely and passed through so real-world files load;
    // the engine layer decides what it honours.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub cgroup_parent: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub cpu_shares: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub cpus: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub cpuset: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub domainname: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub ipc: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub mac_address: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub mem_reservation: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub memswap_limit: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub oom_score_adj: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub pid: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub runtime: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub shm_size: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub userns_mode: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub dns_opt: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub dns_search: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub external_links: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub group_add: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub links: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub security_opt: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_string_or_list"
    )]
    pub volumes_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blkio_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub develop: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_cgroup_rules: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_opt: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de_labels"
    )]
    pub sysctls: BTreeMap<String, String>,
}

impl Service {
    /// Number of containers `up` starts: `deploy.replicas`, else `scale`, else 1.
    pub fn replicas(&self) -> u64 {
        self.deploy
            .as_ref()
            .and_then(|d| d.replicas)
            .or(self.scale)
            .unwrap_or(1)
    }
}

/// A top-level `networks:` / `volumes:` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// Engine-side name; normalised to `<project>_<key>` unless set or external.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub driver: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de_labels"
    )]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "de_bool"
    )]
    pub external: bool,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "de_bool"
    )]
    pub internal: bool,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "de_bool"
    )]
    pub attachable: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_bool"
    )]
    pub enable_ipv6: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de_labels"
    )]
    pub labels: BTreeMap<String, String>,
}

/// A top-level `configs:` / `secrets:` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileObject {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub file: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub environment: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub content: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "de_bool"
    )]
    pub external: bool,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de_labels"
    )]
    pub labels: BTreeMap<String, String>,
}

fn de_null_map<'de, D: Deserializer<'de>, T: Default + serde::de::DeserializeOwned>(
    d: D,
) -> Result<BTreeMap<String, T>, D::Error> {
    let v = Value::deserialize(d)?;
    let Value::Mapping(m) = v else {
        if v.is_null() {
            return Ok(BTreeMap::new());
        }
        return Err(want("mapping", &v));
    };
    let mut out = BTreeMap::new();
    for (k, val) in m {
        let k = scalar_string(&k).ok_or_else(|| want("string", &k))?;
        let t = if val.is_null() {
            T::default()
        } else {
            serde_yaml_ng::from_value(val).map_err(|e| D::Error::custom(format!("{k}: {e}")))?
        };
        out.insert(k, t);
    }
    Ok(out)
}

/// The whole file (or merged files), as typed before normalisation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeFile {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub name: Option<String>,
    /// Obsolete, accepted and ignored like Docker Compose does.
    #[serde(default, skip_serializing)]
    pub version: Option<Value>,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de_null_map"
    )]
    pub networks: BTreeMap<String, Resource>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de_null_map"
    )]
    pub volumes: BTreeMap<String, Resource>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de_null_map"
    )]
    pub configs: BTreeMap<String, FileObject>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de_null_map"
    )]
    pub secrets: BTreeMap<String, FileObject>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ports() {
        let p = parse_short_port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(p[0].published.as_deref(), Some("8080"));
        assert_eq!((p[0].target, p[0].protocol.as_str()), (80, "udp"));
        let p = parse_short_port("80").unwrap();
        assert_eq!((p[0].target, p[0].published.clone()), (80, None));
        let p = parse_short_port("8000-8001:80-81").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[1].target, p[1].published.as_deref()), (81, Some("8001")));
        let p = parse_short_port("[::1]:53:53").unwrap();
        assert_eq!(p[0].host_ip.as_deref(), Some("::1"));
        assert!(parse_short_port("8000-8002:80-81").is_err());
        assert!(parse_short_port("x:80").is_err());
        assert!(parse_short_port("80/foo").is_err());
    }

    #[test]
    fn shell_words() {
        let w = |s: &str| split_shell_words(s).unwrap();
        assert_eq!(w("httpd -f  -p 80"), ["httpd", "-f", "-p", "80"]);
        assert_eq!(
            w(r#"sh -c 'echo $A; x' "a \"b\" $c" d\ e ''"#),
            ["sh", "-c", "echo $A; x", "a \"b\" $c", "d e", ""]
        );
        assert_eq!(w("  "), Vec::<String>::new());
        assert!(split_shell_words("'open").is_err());
        assert!(split_shell_words("\"open").is_err());
        assert_eq!(
            Command::Exec(vec!["a b".into()]).to_argv().unwrap(),
            ["a b"]
        );
    }

    #[test]
    fn short_volumes() {
        let v = parse_short_volume("data:/var/lib:ro").unwrap();
        assert_eq!(
            (
                v.kind.as_str(),
                v.source.as_deref(),
                v.target.as_str(),
                v.read_only
            ),
            ("volume", Some("data"), "/var/lib", true)
        );
        let v = parse_short_volume("./src:/src").unwrap();
        assert_eq!(v.kind, "bind");
        let v = parse_short_volume("/anon").unwrap();
        assert_eq!((v.kind.as_str(), v.source.clone()), ("volume", None));
        assert!(parse_short_volume("a:b:c:d").is_err());
        assert!(parse_short_volume("a:/b:bogus").is_err());
    }
}
