//! `RUN --mount=...` options.
//!
//! The option is a CSV list of `key=value` fields (and a few bare keys like `ro`),
//! BuildKit's format:
//! `--mount=type=cache,target=/root/.cache,id=pip,sharing=locked`.
//!
//! Values may reference build variables (`id=$PROJECT`). The parser stores such
//! values literally, skips validating typed fields that contain `$`, and sets
//! [`Mount::needs_expansion`]; the builder then calls [`Mount::parse`] again with an
//! expander, which is BuildKit's two-pass behaviour.
//!
//! ```
//! use berth_dockerfile::{Mount, MountType, CacheSharing};
//! let m = Mount::parse("type=cache,target=/c,sharing=locked", None).unwrap();
//! assert_eq!(m.kind, MountType::Cache);
//! assert_eq!(m.sharing, Some(CacheSharing::Locked));
//! assert!(!m.readonly);
//! ```

use crate::error::{invalid_flag, ParseError};
use crate::suggest::did_you_mean;
use crate::ExpandError;

/// Expands one word (builder-time second pass of [`Mount::parse`]).
pub type Expander<'a> = &'a dyn Fn(&str) -> Result<String, ExpandError>;

/// Kind of `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// Bind a directory of the context or another stage/image (default).
    Bind,
    /// Persistent cache directory.
    Cache,
    /// Empty tmpfs.
    Tmpfs,
    /// A secret file or environment variable.
    Secret,
    /// An SSH agent socket.
    Ssh,
}

impl MountType {
    /// Name as written in a Dockerfile.
    pub fn as_str(&self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    /// Several writers at once (default).
    Shared,
    /// A new cache instance per concurrent writer.
    Private,
    /// One writer at a time; others wait.
    Locked,
}

/// One parsed `--mount` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The option text as written, for re-parsing with an expander.
    pub spec: String,
    /// `type=`.
    pub kind: MountType,
    /// `from=`: stage or image providing the source.
    pub from: Option<String>,
    /// `source=`/`src=`.
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`.
    pub target: Option<String>,
    /// Read-only; defaults to true except for cache and tmpfs.
    pub readonly: bool,
    /// `size=` of a tmpfs, in bytes.
    pub size_limit: Option<u64>,
    /// `id=` of a cache or secret.
    pub id: Option<String>,
    /// `sharing=` of a cache.
    pub sharing: Option<CacheSharing>,
    /// `required` for secret and ssh.
    pub required: bool,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// Some value contains `$` and was not expanded or validated yet.
    pub needs_expansion: bool,
}

const ALL_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

impl Mount {
    /// Parses one `--mount` value. With `expander`, every value is expanded first
    /// (builder time); without, values are literal and fields containing `$` are
    /// deferred (parse time).
    pub fn parse(spec: &str, expander: Option<Expander<'_>>) -> Result<Mount, ParseError> {
        let fields = csv_fields(spec)
            .map_err(|e| invalid_flag(format!("failed to parse csv mounts: {e}")))?;
        let mut m = Mount {
            spec: spec.to_string(),
            kind: MountType::Bind,
            from: None,
            source: None,
            target: None,
            readonly: false,
            size_limit: None,
            id: None,
            sharing: None,
            required: false,
            env: None,
            mode: None,
            uid: None,
            gid: None,
            needs_expansion: false,
        };
        let mut ro_auto = true;
        let err = |s: String| invalid_flag(s);
        for field in &fields {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
                None => (field.to_ascii_lowercase(), None),
            };
            let Some(value) = value else {
                match key.as_str() {
                    "readonly" | "ro" => {
                        m.readonly = true;
                        ro_auto = false;
                    }
                    "readwrite" | "rw" => {
                        m.readonly = false;
                        ro_auto = false;
                    }
                    "required" => {
                        if matches!(m.kind, MountType::Secret | MountType::Ssh) {
                            m.required = true;
                        } else {
                            return Err(err(format!(
                                "unexpected key '{key}' for mount type '{}'",
                                m.kind.as_str()
                            )));
                        }
                    }
                    _ => {
                        return Err(err(format!(
                            "invalid field '{field}' must be a key=value pair"
                        )))
                    }
                }
                continue;
            };
            let value: String = match expander {
                Some(exp) => exp(value).map_err(|e| invalid_flag(e.to_string()))?,
                None => {
                    if key == "from" {
                        if let Some(i) = value.find('$') {
                            if i != value.len() - 1 {
                                return Err(err(format!(
                                    "'{key}' doesn't support variable expansion, define alias stage instead"
                                )));
                            }
                        }
                    }
                    value.to_string()
                }
            };
            let deferred = expander.is_none() && value.contains('$');
            let bad_value = |v: &str| err(format!("invalid value for {key}: {v}"));
            match key.as_str() {
                "from" => m.from = Some(value),
                "source" | "src" => m.source = Some(value),
                "target" | "dst" | "destination" => m.target = Some(value),
                "id" => m.id = Some(value),
                "env" => m.env = Some(value),
                _ if deferred => {
                    if !ALL_KEYS.contains(&key.as_str()) {
                        return Err(unexpected_key(&key, field));
                    }
                    m.needs_expansion = true;
                    if matches!(key.as_str(), "readonly" | "ro" | "readwrite" | "rw") {
                        ro_auto = false;
                    }
                }
                "type" => {
                    m.kind = match value.to_ascii_lowercase().as_str() {
                        "bind" => MountType::Bind,
                        "cache" => MountType::Cache,
                        "tmpfs" => MountType::Tmpfs,
                        "secret" => MountType::Secret,
                        "ssh" => MountType::Ssh,
                        _ => {
                            let msg = format!("unsupported mount type {value:?}");
                            return Err(err(did_you_mean(
                                msg,
                                &value,
                                &["bind", "cache", "tmpfs", "secret", "ssh"],
                                true,
                            )));
                        }
                    }
                }
                "readonly" | "ro" => {
                    m.readonly = parse_go_bool(&value).ok_or_else(|| bad_value(&value))?;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = !parse_go_bool(&value).ok_or_else(|| bad_value(&value))?;
                    ro_auto = false;
                }
                "required" => {
                    if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                        return Err(err(format!(
                            "unexpected key '{key}' for mount type '{}'",
                            m.kind.as_str()
                        )));
                    }
                    m.required = parse_go_bool(&value).ok_or_else(|| bad_value(&value))?;
                }
                "size" => {
                    if m.kind != MountType::Tmpfs {
                        return Err(err(format!(
                            "unexpected key '{key}' for mount type '{}'",
                            m.kind.as_str()
                        )));
                    }
                    m.size_limit = Some(ram_in_bytes(&value).ok_or_else(|| bad_value(&value))?);
                }
                "sharing" => {
                    m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                        "shared" => CacheSharing::Shared,
                        "private" => CacheSharing::Private,
                        "locked" => CacheSharing::Locked,
                        _ => {
                            let msg = format!("unsupported sharing value {value:?}");
                            return Err(err(did_you_mean(
                                msg,
                                &value,
                                &["shared", "private", "locked"],
                                true,
                            )));
                        }
                    })
                }
                "mode" => {
                    m.mode = Some(
                        u32::from_str_radix(&value, 8)
                            .map_err(|_| err(format!("invalid value {value} for mode")))?,
                    )
                }
                "uid" => {
                    m.uid = Some(
                        value
                            .parse::<u32>()
                            .map_err(|_| err(format!("invalid value {value} for uid")))?,
                    )
                }
                "gid" => {
                    m.gid = Some(
                        value
                            .parse::<u32>()
                            .map_err(|_| err(format!("invalid value {value} for gid")))?,
                    )
                }
                _ => return Err(unexpected_key(&key, field)),
            }
        }

        if m.needs_expansion {
            // Cross-field checks wait for the builder's second pass.
            if ro_auto {
                m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
            }
            return Ok(m);
        }
        let file_info_allowed = matches!(
            m.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        );
        if !file_info_allowed {
            for (name, set) in [
                ("mode", m.mode.is_some()),
                ("uid", m.uid.is_some()),
                ("gid", m.gid.is_some()),
            ] {
                if set {
                    return Err(err(format!(
                        "{name} not allowed for {:?} type mounts",
                        m.kind.as_str()
                    )));
                }
            }
        }
        if ro_auto {
            m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }
        if m.kind == MountType::Secret {
            if m.from.is_some() {
                return Err(err("secret mount should not have a from".into()));
            }
            if m.sharing.is_some() {
                return Err(err("secret mount should not define sharing".into()));
            }
            if m.source.is_none() && m.target.is_none() && m.id.is_none() {
                return Err(err(
                    "invalid secret mount. one of source, target required".into()
                ));
            }
            if m.source.is_some() && m.id.is_some() {
                return Err(err("both source and id can't be set".into()));
            }
        }
        if m.sharing.is_some() && m.kind != MountType::Cache {
            return Err(err(format!(
                "invalid cache sharing set for {} mount",
                m.kind.as_str()
            )));
        }
        Ok(m)
    }
}

fn unexpected_key(key: &str, field: &str) -> ParseError {
    invalid_flag(did_you_mean(
        format!("unexpected key '{key}' in '{field}'"),
        key,
        ALL_KEYS,
        true,
    ))
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: `512`, `64k`, `1.5g`, `10MiB` (binary multiples).
pub(crate) fn ram_in_bytes(s: &str) -> Option<u64> {
    let num_end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(s.len(), |(i, _)| i);
    let (num, rest) = s.split_at(num_end);
    if num.is_empty() || !num.as_bytes()[0].is_ascii_digit() || num.ends_with('.') {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let mul: f64 = match chars.peek().map(|c| c.to_ascii_lowercase()) {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            chars.next();
            let exp = match c {
                'k' => 1,
                'm' => 2,
                'g' => 3,
                't' => 4,
                _ => 5,
            };
            1024f64.powi(exp)
        }
        _ => 1.0,
    };
    if matches!(chars.peek(), Some('i' | 'I')) {
        chars.next();
    }
    if matches!(chars.peek(), Some('b' | 'B')) {
        chars.next();
    }
    if chars.next().is_some() {
        return None;
    }
    let bytes = value * mul;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}

/// Splits one CSV record (Go `encoding/csv` rules, comma separated, no trimming).
pub(crate) fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("extraneous or missing \" in quoted-field".into()),
                    Some('"') => match chars.peek() {
                        Some('"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some(',') | None => break,
                        Some(_) => return Err("extraneous or missing \" in quoted-field".into()),
                    },
                    Some(c) => field.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err("bare \" in non-quoted-field".into());
                }
                field.push(c);
                chars.next();
            }
        }
        out.push(field);
        match chars.next() {
            Some(',') => continue,
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Mount, String> {
        Mount::parse(s, None).map_err(|e| e.message)
    }

    #[test]
    fn defaults_per_type() {
        let m = parse("target=/x").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.readonly);
        let m = parse("type=cache,target=/x").unwrap();
        assert!(!m.readonly);
        let m = parse("type=tmpfs,target=/x,size=64m").unwrap();
        assert!(!m.readonly);
        assert_eq!(m.size_limit, Some(64 << 20));
        let m = parse("type=bind,rw,source=a,target=/b,from=build").unwrap();
        assert!(!m.readonly);
        assert_eq!(m.from.as_deref(), Some("build"));
        let m = parse("type=secret,id=tok,env=TOKEN,required").unwrap();
        assert!(m.required && m.readonly);
        assert_eq!(m.env.as_deref(), Some("TOKEN"));
        let m = parse("type=ssh,mode=0600,uid=1000,gid=1000,required=false").unwrap();
        assert_eq!(
            (m.mode, m.uid, m.gid),
            (Some(0o600), Some(1000), Some(1000))
        );
        let m = parse("type=cache,target=/c,sharing=private,id=x,ro=true").unwrap();
        assert!(m.readonly);
        assert_eq!(m.sharing, Some(CacheSharing::Private));
        let m = parse("TYPE=Cache,DST=/c,readwrite=false").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert!(m.readonly);
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str)] = &[
            (
                "type=cach",
                "unsupported mount type \"cach\" (did you mean cache?)",
            ),
            ("type=volume", "unsupported mount type \"volume\""),
            ("target", "invalid field 'target' must be a key=value pair"),
            (
                "required",
                "unexpected key 'required' for mount type 'bind'",
            ),
            (
                "type=bind,size=1m",
                "unexpected key 'size' for mount type 'bind'",
            ),
            ("type=tmpfs,size=lots", "invalid value for size: lots"),
            (
                "type=bind,mode=0600",
                "mode not allowed for \"bind\" type mounts",
            ),
            ("type=cache,mode=9", "invalid value 9 for mode"),
            ("type=cache,uid=-1", "invalid value -1 for uid"),
            (
                "type=cache,sharing=lockd",
                "unsupported sharing value \"lockd\" (did you mean locked?)",
            ),
            (
                "type=bind,sharing=locked",
                "invalid cache sharing set for bind mount",
            ),
            (
                "type=secret",
                "invalid secret mount. one of source, target required",
            ),
            ("type=secret,id=a,src=b", "both source and id can't be set"),
            (
                "type=secret,id=a,from=x",
                "secret mount should not have a from",
            ),
            (
                "targt=/x",
                "unexpected key 'targt' in 'targt=/x' (did you mean target?)",
            ),
            ("ro=maybe", "invalid value for ro: maybe"),
            (
                "from=$STAGE",
                "'from' doesn't support variable expansion, define alias stage instead",
            ),
            (
                "a\"b",
                "failed to parse csv mounts: bare \" in non-quoted-field",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(parse(spec).unwrap_err(), *want, "spec {spec}");
        }
    }

    #[test]
    fn deferred_expansion() {
        let m = parse("type=cache,id=$PROJECT,target=/c,sharing=$SHARING").unwrap();
        assert!(m.needs_expansion);
        assert_eq!(m.id.as_deref(), Some("$PROJECT"));
        let exp = |w: &str| -> Result<String, ExpandError> {
            crate::expand(
                w,
                &|k| match k {
                    "PROJECT" => Some("p".into()),
                    "SHARING" => Some("locked".into()),
                    _ => None,
                },
                '\\',
            )
        };
        let m2 = Mount::parse(&m.spec, Some(&exp)).unwrap();
        assert!(!m2.needs_expansion);
        assert_eq!(m2.id.as_deref(), Some("p"));
        assert_eq!(m2.sharing, Some(CacheSharing::Locked));
    }

    #[test]
    fn csv_and_sizes() {
        assert_eq!(
            csv_fields("a,\"b,c\",\"d\"\"e\",").unwrap(),
            vec!["a", "b,c", "d\"e", ""]
        );
        assert!(csv_fields("\"a\"b").is_err());
        assert_eq!(ram_in_bytes("512"), Some(512));
        assert_eq!(ram_in_bytes("1.5k"), Some(1536));
        assert_eq!(ram_in_bytes("2 GiB"), Some(2 << 30));
        assert_eq!(ram_in_bytes("1mb"), Some(1 << 20));
        assert_eq!(ram_in_bytes("1x"), None);
        assert_eq!(ram_in_bytes(""), None);
        assert_eq!(ram_in_bytes("k"), None);
    }
}
