//! Loading a project: find files, read (bounded), parse, interpolate, validate, merge,
//! resolve `extends`, normalise, filter profiles.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_yaml_ng::{Mapping, Value};

use crate::error::{ComposeError, InterpError};
use crate::interp::{interpolate, parse_dotenv};
use crate::model::{self, ComposeFile, FileObject, Resource, Service};

/// Largest compose, `.env` or `env_file` file read.
pub const MAX_FILE_BYTES: u64 = 10 << 20;
/// Deepest `extends` chain.
pub const MAX_EXTENDS_DEPTH: usize = 10;

/// File names looked for, in order, in the working directory and its parents.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// Inputs of [`load`], mirroring `docker compose` global flags.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files, merged in order. Empty: look for [`DEFAULT_FILES`] from `cwd` upwards.
    pub files: Vec<PathBuf>,
    /// `--project-directory`; default: the directory of the first file.
    pub project_directory: Option<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--env-file` (replaces the default `<project dir>/.env`).
    pub env_files: Vec<PathBuf>,
    /// `--profile`.
    pub profiles: Vec<String>,
    /// The process environment (pass `std::env::vars().collect()`); wins over `.env`.
    pub environ: BTreeMap<String, String>,
    /// Working directory used to find files and resolve relative `-f` paths.
    pub cwd: PathBuf,
}

/// A loaded, merged, interpolated and normalised project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Project {
    pub name: String,
    /// Services enabled by the active profiles.
    pub services: BTreeMap<String, Service>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Resource>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Resource>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, FileObject>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, FileObject>,
    /// Services left out by profiles.
    #[serde(skip)]
    pub disabled_services: BTreeMap<String, Service>,
    /// Absolute project directory.
    #[serde(skip)]
    pub working_dir: PathBuf,
    /// Compose files used, absolute.
    #[serde(skip)]
    pub files: Vec<PathBuf>,
    /// Variables used for interpolation (`.env` overlaid with the environment).
    #[serde(skip)]
    pub variables: BTreeMap<String, String>,
}

impl Project {
    /// Services in dependency order (see [`crate::graph::start_order`]).
    pub fn start_order(&self) -> Result<Vec<String>, ComposeError> {
        crate::graph::start_order(&self.services)
    }

    /// The normalised model as YAML, like `docker compose config`. A literal `$` is
    /// written `$$`, so the output loads again to the same model.
    pub fn to_yaml(&self) -> Result<String, ComposeError> {
        let render = |e: serde_yaml_ng::Error| ComposeError::Invalid(format!("render config: {e}"));
        let mut v = serde_yaml_ng::to_value(self).map_err(render)?;
        escape_dollars(&mut v);
        serde_yaml_ng::to_string(&v).map_err(render)
    }

    /// Enable services by name even when their profiles are not active (as
    /// `docker compose up SERVICE` does), together with the disabled services they
    /// depend on. Unknown names are an error.
    pub fn enable_services(&mut self, names: &[String]) -> Result<(), ComposeError> {
        let mut todo: Vec<String> = names.to_vec();
        while let Some(n) = todo.pop() {
            if self.services.contains_key(&n) {
                continue;
            }
            match self.disabled_services.remove(&n) {
                Some(svc) => {
                    todo.extend(svc.depends_on.keys().cloned());
                    self.services.insert(n, svc);
                }
                None if names.contains(&n) => {
                    return Err(ComposeError::Invalid(format!("no such service: {n}")))
                }
                None => {}
            }
        }
        self.start_order().map(|_| ())
    }

    /// `names` and everything they depend on (transitively), in start order; all
    /// services when `names` is empty. This is what `up SERVICE...` starts.
    pub fn with_dependencies(&self, names: &[String]) -> Result<Vec<String>, ComposeError> {
        let order = self.start_order()?;
        if names.is_empty() {
            return Ok(order);
        }
        let mut want: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let mut todo: Vec<String> = names.to_vec();
        while let Some(n) = todo.pop() {
            let svc = self
                .services
                .get(&n)
                .ok_or_else(|| ComposeError::Invalid(format!("no such service: {n}")))?;
            if want.insert(n) {
                todo.extend(
                    svc.depends_on
                        .keys()
                        .filter(|d| self.services.contains_key(*d))
                        .cloned(),
                );
            }
        }
        Ok(order.into_iter().filter(|n| want.contains(n)).collect())
    }
}

fn escape_dollars(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
        Value::Sequence(items) => items.iter_mut().for_each(escape_dollars),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, x)| escape_dollars(x)),
        _ => {}
    }
}

/// Find the first of [`DEFAULT_FILES`] in `dir` or its parents.
pub fn find_compose_file(dir: &Path) -> Result<PathBuf, ComposeError> {
    for d in dir.ancestors() {
        for f in DEFAULT_FILES {
            let p = d.join(f);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(ComposeError::NotFound(dir.to_path_buf()))
}

/// The override file Docker Compose loads next to a default file found by itself:
/// `compose.override.yaml` / `docker-compose.override.yml` (either extension).
pub fn override_file(main: &Path) -> Option<PathBuf> {
    let dir = main.parent()?;
    let stem = main.file_stem()?.to_str()?;
    ["yaml", "yml"]
        .iter()
        .map(|ext| dir.join(format!("{stem}.override.{ext}")))
        .find(|p| p.is_file())
}

/// Normalise a directory name into a project name like Docker Compose: lowercase, keep
/// `[a-z0-9_-]`, strip leading `_`/`-`.
pub fn normalize_project_name(s: &str) -> String {
    let s: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    s.trim_start_matches(['_', '-']).to_string()
}

/// Check an explicit project name (`-p`, `name:`, `COMPOSE_PROJECT_NAME`).
pub fn validate_project_name(s: &str) -> Result<(), ComposeError> {
    let ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ComposeError::Invalid(format!(
            "invalid project name {s:?}: must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number"
        )))
    }
}

/// Read at most [`MAX_FILE_BYTES`] of a file as UTF-8.
pub fn read_bounded(path: &Path) -> Result<String, ComposeError> {
    let io = |source| ComposeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(ComposeError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(buf).map_err(|_| ComposeError::Syntax {
        path: path.to_path_buf(),
        message: "file is not valid UTF-8".into(),
    })
}

/// 1-based line of the key at `path` (`services.web.ports[0]`) in `text`, found by
/// following indentation. Best effort: `None` when the key cannot be located.
pub fn find_line(text: &str, path: &str) -> Option<usize> {
    let segs: Vec<&str> = path
        .split(['.', '['])
        .filter(|s| !s.is_empty() && !s.ends_with(']'))
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut min_indent: Option<usize> = None;
    let mut found = None;
    let flow = |l: &str, seg: &str| {
        ["{", ", ", "{ "]
            .iter()
            .any(|p| l.contains(&format!("{p}{seg}:")))
    };
    for seg in segs {
        let mut hit = None;
        // flow style: `web: {image: x, imagee: y}` has the next key on the same line
        if let Some(prev) = found {
            if lines.get(prev - 1).is_some_and(|l: &&str| flow(l, seg)) {
                continue;
            }
        }
        for (i, l) in lines.iter().enumerate().skip(from) {
            let t = l.trim_start().trim_start_matches("- ");
            let indent = l.len() - t.len();
            if min_indent.is_some_and(|m| indent <= m)
                && !t.is_empty()
                && !t.starts_with('#')
                && found.is_some()
                && !l.trim_start().starts_with("- ")
            {
                break;
            }
            let key = t.trim_start_matches(['"', '\'']);
            let block = key.starts_with(seg)
                && key[seg.len()..]
                    .trim_start_matches(['"', '\''])
                    .trim_start()
                    .starts_with(':');
            if block || flow(l, seg) {
                hit = Some((i, indent));
                break;
            }
        }
        let (i, indent) = hit?;
        found = Some(i + 1);
        from = i + 1;
        min_indent = Some(indent);
    }
    found
}

/// Variables for interpolation: `.env` (or `--env-file`s) overlaid with `environ`.
pub fn load_variables(
    opts: &LoadOptions,
    project_dir: &Path,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut vars = BTreeMap::new();
    let files: Vec<PathBuf> = if opts.env_files.is_empty() {
        let p = project_dir.join(".env");
        if p.is_file() {
            vec![p]
        } else {
            vec![]
        }
    } else {
        opts.env_files.iter().map(|f| opts.cwd.join(f)).collect()
    };
    for f in files {
        let text = read_bounded(&f)?;
        let prior = vars.clone();
        let look = |k: &str| {
            opts.environ
                .get(k)
                .cloned()
                .or_else(|| prior.get(k).cloned())
        };
        let parsed =
            parse_dotenv(&text, &look).map_err(|(line, message)| ComposeError::Schema {
                path: f.clone(),
                line: Some(line),
                key: "env".into(),
                message,
            })?;
        vars.extend(parsed);
    }
    vars.extend(opts.environ.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(vars)
}

fn syntax(path: &Path, e: serde_yaml_ng::Error) -> ComposeError {
    ComposeError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Parse one file's text: YAML (alias expansion bounded by the parser), `<<` merge keys,
/// `x-*` extensions dropped, interpolated, then checked against the typed model.
pub fn parse_file(
    path: &Path,
    text: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Value, ComposeError> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ComposeError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    check_flow_depth(text).map_err(|message| ComposeError::Syntax {
        path: path.to_path_buf(),
        message,
    })?;
    let mut v: Value = if text.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| syntax(path, e))?
    };
    v.apply_merge().map_err(|e| syntax(path, e))?;
    if !v.is_mapping() {
        return Err(ComposeError::Schema {
            path: path.to_path_buf(),
            line: Some(1),
            key: "(root)".into(),
            message: "top-level object must be a mapping".into(),
        });
    }
    strip_extensions(&mut v);
    legacy_external(&mut v);
    let look = |k: &str| vars.get(k).cloned();
    interpolate_value(&mut v, &look, "", path, text)?;
    check_schema(path, text, &v)?;
    Ok(v)
}

/// Deepest `[`/`{` nesting accepted. The YAML parser's own recursion limit (128) would
/// reject deeper documents too, but only after scanning them in quadratic time, so a
/// 10 MB file of `[` would stall the loader; this linear pre-scan refuses it first.
/// Brackets inside quoted strings are counted as well: a false positive needs hundreds
/// of unbalanced brackets in one string.
pub const MAX_FLOW_DEPTH: usize = 256;

fn check_flow_depth(text: &str) -> Result<(), String> {
    let mut depth: usize = 0;
    let mut line = 1;
    for b in text.bytes() {
        match b {
            b'\n' => line += 1,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(format!(
                        "nesting deeper than {MAX_FLOW_DEPTH} levels at line {line}"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn check_schema(path: &Path, text: &str, v: &Value) -> Result<(), ComposeError> {
    match serde_path_to_error::deserialize::<_, ComposeFile>(v.clone()) {
        Ok(_) => Ok(()),
        Err(e) => {
            let mut key = e.path().to_string();
            let mut message = e.inner().to_string();
            if let Some(rest) = message.strip_prefix("unknown field `") {
                if let Some(field) = rest.split('`').next() {
                    let field = field.to_string();
                    if key == "." {
                        key = field.clone();
                    } else if !key.ends_with(&format!(".{field}")) {
                        key = format!("{key}.{field}");
                    }
                    message = format!("unknown field `{field}`");
                }
            }
            let line = find_line(text, &key);
            Err(ComposeError::Schema {
                path: path.to_path_buf(),
                line,
                key,
                message,
            })
        }
    }
}

/// Compose file format 2/3 wrote `external: {name: x}`; turn it into
/// `external: true` + `name: x` as Docker Compose still accepts it.
fn legacy_external(v: &mut Value) {
    for section in ["networks", "volumes", "configs", "secrets"] {
        if let Some(Value::Mapping(m)) = v.get_mut(section) {
            for (_, item) in m.iter_mut() {
                let Some(Value::Mapping(ext)) = item.get("external").cloned() else {
                    continue;
                };
                if let Value::Mapping(im) = item {
                    im.insert("external".into(), Value::Bool(true));
                    if let Some(n) = ext.get("name") {
                        im.insert("name".into(), n.clone());
                    }
                }
            }
        }
    }
}

fn strip_x(v: &mut Value) {
    if let Value::Mapping(m) = v {
        m.retain(|k, _| !k.as_str().is_some_and(|s| s.starts_with("x-")));
    }
}

fn strip_extensions(v: &mut Value) {
    strip_x(v);
    for section in ["services", "networks", "volumes", "configs", "secrets"] {
        if let Some(Value::Mapping(m)) = v.get_mut(section) {
            for (_, item) in m.iter_mut() {
                strip_x(item);
                if section == "services" {
                    for sub in ["build", "deploy", "healthcheck"] {
                        if let Some(s) = item.get_mut(sub) {
                            strip_x(s);
                        }
                    }
                }
            }
        }
    }
}

fn interpolate_value(
    v: &mut Value,
    look: &dyn Fn(&str) -> Option<String>,
    key: &str,
    path: &Path,
    text: &str,
) -> Result<(), ComposeError> {
    match v {
        Value::String(s) => {
            *s = interpolate(s, look).map_err(|e| {
                let message = match &e {
                    InterpError::Required { .. } => e.to_string(),
                    InterpError::Format(_) => e.to_string(),
                };
                let line = find_line(text, key);
                ComposeError::Interpolation {
                    path: path.to_path_buf(),
                    key: match line {
                        Some(l) => format!("{key} (line {l})"),
                        None => key.to_string(),
                    },
                    message,
                }
            })?;
        }
        Value::Sequence(items) => {
            for (i, it) in items.iter_mut().enumerate() {
                interpolate_value(it, look, &format!("{key}[{i}]"), path, text)?;
            }
        }
        Value::Mapping(m) => {
            for (k, it) in m.iter_mut() {
                let k = k
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{k:?}"));
                let sub = if key.is_empty() {
                    k
                } else {
                    format!("{key}.{k}")
                };
                interpolate_value(it, look, &sub, path, text)?;
            }
        }
        Value::Tagged(t) => interpolate_value(&mut t.value, look, key, path, text)?,
        _ => {}
    }
    Ok(())
}

/// Keys of a service whose override replaces rather than merges.
const REPLACE_KEYS: [&str; 3] = ["command", "entrypoint", "test"];
/// Service keys that are list-or-map `K=V` and merge by key.
const KV_KEYS: [&str; 5] = ["environment", "labels", "args", "sysctls", "extra_hosts"];

fn kv_to_map(v: &Value, key: &str) -> Option<Mapping> {
    let sep = if key == "extra_hosts" { ':' } else { '=' };
    let m = model::list_or_map(v, sep).ok()?;
    let mut out = Mapping::new();
    for (k, val) in m {
        out.insert(
            Value::String(k),
            val.map(Value::String).unwrap_or(Value::Null),
        );
    }
    Some(out)
}

fn seq_key(key: &str, v: &Value) -> Option<String> {
    // identity of an element for the "unique resource" merge rule
    match key {
        "volumes" => match v {
            Value::String(s) => model::parse_short_volume(s).ok().map(|x| x.target),
            Value::Mapping(_) => v.get("target").and_then(Value::as_str).map(str::to_string),
            _ => None,
        },
        "secrets" | "configs" => match v {
            Value::String(s) => Some(s.clone()),
            Value::Mapping(_) => v
                .get("target")
                .or_else(|| v.get("source"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        },
        _ => None,
    }
}

/// Merge `over` into `base` following the compose spec: mappings merge recursively,
/// `command`/`entrypoint`/`healthcheck.test` are replaced, `environment`/`labels`/
/// `build.args`/`extra_hosts` merge by key, `volumes`/`secrets`/`configs` merge by target,
/// other sequences are appended without duplicates, scalars are replaced.
pub fn merge(base: &mut Value, over: Value, key: &str) {
    if REPLACE_KEYS.contains(&key) {
        *base = over;
        return;
    }
    if KV_KEYS.contains(&key) {
        if let (Some(mut b), Some(o)) = (kv_to_map(base, key), kv_to_map(&over, key)) {
            for (k, v) in o {
                b.insert(k, v);
            }
            *base = Value::Mapping(b);
            return;
        }
    }
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                let name = k.as_str().unwrap_or("").to_string();
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v, &name),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Sequence(b), Value::Sequence(o)) => {
            for item in o {
                if let Some(id) = seq_key(key, &item) {
                    if let Some(pos) = b
                        .iter()
                        .position(|x| seq_key(key, x).as_deref() == Some(id.as_str()))
                    {
                        b[pos] = item;
                        continue;
                    }
                }
                if !b.contains(&item) {
                    b.push(item);
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn services_of(v: &Value) -> Option<&Mapping> {
    v.get("services").and_then(Value::as_mapping)
}

/// Resolve `extends` of service `name` in `doc` (file `path`), recursively.
fn resolve_extends(
    name: &str,
    doc: &Value,
    path: &Path,
    vars: &BTreeMap<String, String>,
    depth: usize,
    chain: &mut Vec<String>,
) -> Result<Value, ComposeError> {
    let svc = services_of(doc)
        .and_then(|m| m.get(name))
        .cloned()
        .ok_or_else(|| {
            ComposeError::Dependency(format!(
                "{}: extends: service {name:?} not found",
                path.display()
            ))
        })?;
    let Some(ext) = svc.get("extends") else {
        return Ok(svc);
    };
    let link = format!("{}:{name}", path.display());
    if chain.contains(&link) || depth >= MAX_EXTENDS_DEPTH {
        chain.push(link);
        return Err(ComposeError::Dependency(format!(
            "extends cycle or chain too deep: {}",
            chain.join(" -> ")
        )));
    }
    chain.push(link);
    let ext = model::Extends::from_value(ext).map_err(|message| ComposeError::Schema {
        path: path.to_path_buf(),
        line: None,
        key: format!("services.{name}.extends"),
        message,
    })?;
    let mut base = match &ext.file {
        Some(f) => {
            let p = path.parent().unwrap_or(Path::new(".")).join(f);
            let text = read_bounded(&p)?;
            let other = parse_file(&p, &text, vars)?;
            resolve_extends(&ext.service, &other, &p, vars, depth + 1, chain)?
        }
        None => resolve_extends(&ext.service, doc, path, vars, depth + 1, chain)?,
    };
    chain.pop();
    // depends_on is not inherited (compose spec)
    if let Value::Mapping(m) = &mut base {
        m.remove("depends_on");
    }
    let mut own = svc;
    if let Value::Mapping(m) = &mut own {
        m.remove("extends");
    }
    merge(&mut base, own, "");
    Ok(base)
}

fn abs(dir: &Path, p: &str) -> String {
    if let Some(rest) = p.strip_prefix("~/") {
        return match std::env::var_os("HOME") {
            Some(h) => Path::new(&h).join(rest).to_string_lossy().into_owned(),
            None => p.to_string(),
        };
    }
    if Path::new(p).is_absolute() {
        return p.to_string();
    }
    // lexical clean of `.` and `..` components
    let mut out = PathBuf::new();
    for c in dir.join(p).components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.to_string_lossy().into_owned()
}

/// Load a project: see [`LoadOptions`].
pub fn load(opts: &LoadOptions) -> Result<Project, ComposeError> {
    let from_env: Vec<PathBuf> = opts
        .environ
        .get("COMPOSE_FILE")
        .map(|v| {
            v.split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let files: Vec<PathBuf> = if !opts.files.is_empty() {
        opts.files.iter().map(|f| opts.cwd.join(f)).collect()
    } else if !from_env.is_empty() {
        from_env.iter().map(|f| opts.cwd.join(f)).collect()
    } else {
        let main = find_compose_file(&opts.cwd)?;
        let mut v = vec![main.clone()];
        if let Some(o) = override_file(&main) {
            v.push(o);
        }
        v
    };
    let first_dir = files[0]
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| opts.cwd.clone());
    let working_dir = match &opts.project_directory {
        Some(d) => opts.cwd.join(d),
        None => first_dir,
    };
    let vars = load_variables(opts, &working_dir)?;
    let mut merged = Value::Mapping(Mapping::new());
    let mut docs = Vec::new();
    for f in &files {
        tracing::debug!(file = %f.display(), "loading compose file");
        let text = read_bounded(f)?;
        let v = parse_file(f, &text, &vars)?;
        docs.push((f.clone(), v.clone()));
        merge(&mut merged, v, "");
    }
    // extends: resolved against the merged document; `file:` is relative to the last file
    // that defines the service
    if let Some(names) = services_of(&merged).map(|m| {
        m.keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect::<Vec<_>>()
    }) {
        for name in names {
            let has = services_of(&merged)
                .and_then(|m| m.get(name.as_str()))
                .and_then(|s| s.get("extends"))
                .is_some();
            if !has {
                continue;
            }
            let src = docs
                .iter()
                .rev()
                .find(|(_, d)| services_of(d).is_some_and(|m| m.contains_key(name.as_str())))
                .map(|(p, _)| p.clone())
                .unwrap_or_else(|| files[0].clone());
            let resolved = resolve_extends(&name, &merged, &src, &vars, 0, &mut Vec::new())?;
            if let Some(Value::Mapping(m)) = merged.get_mut("services") {
                m.insert(Value::String(name), resolved);
            }
        }
    }
    let last = files.last().cloned().unwrap_or_default();
    let model: ComposeFile =
        serde_path_to_error::deserialize(merged).map_err(|e| ComposeError::Schema {
            path: last.clone(),
            line: None,
            key: e.path().to_string(),
            message: e.inner().to_string(),
        })?;

    let name = project_name(opts, &vars, model.name.as_deref(), &working_dir)?;
    let mut project = Project {
        name,
        working_dir,
        files,
        variables: vars,
        networks: model.networks,
        volumes: model.volumes,
        configs: model.configs,
        secrets: model.secrets,
        ..Default::default()
    };
    // `--profile` plus `COMPOSE_PROFILES=a,b`
    let mut profiles = opts.profiles.clone();
    if let Some(v) = opts.environ.get("COMPOSE_PROFILES") {
        profiles.extend(
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    for (sname, svc) in model.services {
        if sname.is_empty()
            || !sname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(ComposeError::Schema {
                path: last.clone(),
                line: None,
                key: format!("services.{sname}"),
                message: "invalid service name: only [a-zA-Z0-9._-] allowed".into(),
            });
        }
        let active = svc.profiles.is_empty()
            || svc
                .profiles
                .iter()
                .any(|p| profiles.contains(p) || profiles.iter().any(|x| x == "*"));
        let svc = normalize_service(&project, &sname, svc)?;
        if active {
            project.services.insert(sname, svc);
        } else {
            project.disabled_services.insert(sname, svc);
        }
    }
    normalize_resources(&mut project)?;
    project
        .start_order()
        .map_err(|e| locate_dependency_error(&project, e))?;
    Ok(project)
}

/// Point a `depends_on` error (cycle, undefined service) at the file and line of the
/// first service it names: `compose.yaml:7: services.a.depends_on: dependency cycle ...`.
fn locate_dependency_error(p: &Project, e: ComposeError) -> ComposeError {
    let ComposeError::Dependency(msg) = &e else {
        return e;
    };
    let svc = match msg.split_once("detected: ") {
        Some((_, rest)) => rest.split(" -> ").next().map(str::to_string),
        None => msg
            .strip_prefix("service \"")
            .and_then(|r| r.split_once('"'))
            .map(|(s, _)| s.to_string()),
    };
    let Some(svc) = svc else { return e };
    let key = format!("services.{svc}.depends_on");
    for f in p.files.iter().rev() {
        if let Some(line) = read_bounded(f).ok().and_then(|t| find_line(&t, &key)) {
            return ComposeError::Dependency(format!("{}:{line}: {key}: {msg}", f.display()));
        }
    }
    e
}

fn project_name(
    opts: &LoadOptions,
    vars: &BTreeMap<String, String>,
    from_file: Option<&str>,
    dir: &Path,
) -> Result<String, ComposeError> {
    let explicit = opts
        .project_name
        .clone()
        .or_else(|| {
            vars.get("COMPOSE_PROJECT_NAME")
                .filter(|s| !s.is_empty())
                .cloned()
        })
        .or_else(|| from_file.map(str::to_string));
    if let Some(n) = explicit {
        validate_project_name(&n)?;
        return Ok(n);
    }
    let base = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = normalize_project_name(&base);
    if n.is_empty() {
        return Err(ComposeError::Invalid(format!(
            "project name derived from {} is empty; use -p or name:",
            dir.display()
        )));
    }
    Ok(n)
}

fn normalize_service(p: &Project, name: &str, mut svc: Service) -> Result<Service, ComposeError> {
    let dir = &p.working_dir;
    if svc.image.is_none() && svc.build.is_none() {
        return Err(ComposeError::Schema {
            path: p.files.last().cloned().unwrap_or_default(),
            line: None,
            key: format!("services.{name}"),
            message: "service has neither an image nor a build context specified".into(),
        });
    }
    if let Some(b) = &mut svc.build {
        if !b.context.contains("://") && !b.context.starts_with("git@") {
            b.context = abs(dir, &b.context);
        }
        if b.dockerfile.is_none() {
            b.dockerfile = Some("Dockerfile".into());
        }
    }
    for v in &mut svc.volumes {
        if v.kind == "bind" {
            if let Some(s) = &v.source {
                v.source = Some(abs(dir, s));
            }
        }
    }
    // env_file contents go into environment; explicit environment wins
    let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
    for f in std::mem::take(&mut svc.env_file) {
        let path = PathBuf::from(abs(dir, &f));
        let text = read_bounded(&path)?;
        let vars = &p.variables;
        let parsed =
            parse_dotenv(&text, &|k: &str| vars.get(k).cloned()).map_err(|(line, message)| {
                ComposeError::Schema {
                    path: path.clone(),
                    line: Some(line),
                    key: format!("services.{name}.env_file"),
                    message,
                }
            })?;
        env.extend(parsed.into_iter().map(|(k, v)| (k, Some(v))));
    }
    for (k, v) in std::mem::take(&mut svc.environment) {
        // `FOO` without a value takes it from the environment, stays unset otherwise
        let v = v.or_else(|| p.variables.get(&k).cloned());
        env.insert(k, v);
    }
    svc.environment = env;
    if svc.networks.is_empty() && svc.network_mode.is_none() {
        svc.networks.insert("default".into(), None);
    }
    for n in svc.networks.keys() {
        if n != "default" && !p.networks.contains_key(n) {
            return Err(ComposeError::Schema {
                path: p.files.last().cloned().unwrap_or_default(),
                line: None,
                key: format!("services.{name}.networks.{n}"),
                message: format!("service {name:?} refers to undefined network {n:?}"),
            });
        }
    }
    for v in &svc.volumes {
        if let (true, Some(src)) = (v.kind == "volume", &v.source) {
            if !p.volumes.contains_key(src) {
                return Err(ComposeError::Schema {
                    path: p.files.last().cloned().unwrap_or_default(),
                    line: None,
                    key: format!("services.{name}.volumes"),
                    message: format!("service {name:?} refers to undefined volume {src:?}"),
                });
            }
        }
    }
    Ok(svc)
}

fn normalize_resources(p: &mut Project) -> Result<(), ComposeError> {
    let uses_default = p
        .services
        .values()
        .any(|s| s.networks.contains_key("default"));
    if uses_default && !p.networks.contains_key("default") {
        p.networks.insert("default".into(), Resource::default());
    }
    let proj = p.name.clone();
    for (k, r) in p.networks.iter_mut().chain(p.volumes.iter_mut()) {
        if r.name.is_none() {
            r.name = Some(if r.external {
                k.clone()
            } else {
                format!("{proj}_{k}")
            });
        }
    }
    let dir = p.working_dir.clone();
    for (k, o) in p.configs.iter_mut().chain(p.secrets.iter_mut()) {
        if let Some(f) = &o.file {
            o.file = Some(abs(&dir, f));
        }
        if o.name.is_none() {
            o.name = Some(if o.external {
                k.clone()
            } else {
                format!("{proj}_{k}")
            });
        }
        if !o.external && o.file.is_none() && o.environment.is_none() && o.content.is_none() {
            return Err(ComposeError::Invalid(format!(
                "{k}: needs one of file, environment, content or external"
            )));
        }
    }
    Ok(())
}
