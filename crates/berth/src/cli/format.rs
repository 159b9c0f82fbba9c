//! Output the way the docker CLI prints it: tab-aligned tables, human sizes and durations, and
//! `--format` Go templates (gtmpl) with Docker's extra functions (`json`, `table`, `join`, ...).

use anyhow::{anyhow, Result};
use gtmpl_value::{FuncError, Value};
use std::collections::HashMap;

/// Docker's `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`: columns padded by 3, min width 10.
pub fn table(rows: &[Vec<String>]) -> String {
    let ncol = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; ncol];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let w = (widths[i] + 3).max(10);
                line.push_str(c);
                for _ in c.chars().count()..w {
                    line.push(' ');
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `units.HumanSizeWithPrecision(size, 3)`: decimal units.
pub fn human_size(n: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", fmt_g3(v), units[i])
}

/// Go's `%.3g`.
fn fmt_g3(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = v.abs().log10().floor() as i32 + 1;
    let decimals = (3 - digits).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `units.BytesSize`: binary units (`docker stats`).
pub fn bytes_size(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{}{}", fmt_g3(v), units[i])
}

pub fn ago_unix(ts: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    format!("{} ago", crate::api::human_duration_pub(now - ts))
}


/// Truncate with Docker's ellipsis.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub fn to_gtmpl(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_gtmpl).collect()),
        serde_json::Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), to_gtmpl(v))).collect::<HashMap<_, _>>()),
    }
}

fn from_gtmpl(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::json!(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::json!(u)
            } else {
                serde_json::json!(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(from_gtmpl).collect()),
        Value::Object(o) | Value::Map(o) => {
            let m: std::collections::BTreeMap<String, serde_json::Value> = o.iter().map(|(k, v)| (k.clone(), from_gtmpl(v))).collect();
            serde_json::to_value(m).unwrap_or_default()
        }
    }
}

/// Go's `%v` for what a template action prints: slices as `[a b]`, maps as `map[k:v]` with
/// sorted keys (gtmpl would print Rust's debug form). Scalars are returned unchanged.
fn f_print_v(a: &[Value]) -> Result<Value, FuncError> {
    let v = a.first().ok_or(FuncError::ExactlyXArgs("print".into(), 1))?;
    Ok(match v {
        Value::Array(_) | Value::Object(_) | Value::Map(_) => Value::String(go_print(v)),
        other => other.clone(),
    })
}

fn go_print(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(o) | Value::Map(o) => {
            let mut kv: Vec<(&String, &Value)> = o.iter().collect();
            kv.sort_by(|x, y| x.0.cmp(y.0));
            format!("map[{}]", kv.iter().map(|(k, v)| format!("{k}:{}", go_print(v))).collect::<Vec<_>>().join(" "))
        }
        Value::Nil | Value::NoValue => "<nil>".into(),
        other => other.to_string(),
    }
}

/// The name `add_print` pipes every printing action through.
const PRINT_FN: &str = "berthPrintV";

/// Append `| berthPrintV` to every action of a template that prints its value (not to
/// control actions, variable declarations or comments), so slices and maps print the way Go
/// prints them.
fn add_print(body: &str) -> String {
    const KEYWORDS: [&str; 10] = ["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"];
    let mut out = String::with_capacity(body.len() + 32);
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // find the closing braces outside string literals
        let bytes = after.as_bytes();
        let (mut i, mut quote) = (0usize, None::<u8>);
        let mut close = None;
        while i < bytes.len() {
            let c = bytes[i];
            match quote {
                Some(q) => {
                    if c == b'\\' && q != b'`' {
                        i += 1;
                    } else if c == q {
                        quote = None;
                    }
                }
                None => {
                    if c == b'"' || c == b'`' || c == b'\'' {
                        quote = Some(c);
                    } else if after[i..].starts_with("}}") {
                        close = Some(i);
                        break;
                    }
                }
            }
            i += 1;
        }
        let Some(close) = close else {
            // unterminated: leave it to the parser to report
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..close];
        let (lead, core) = match inner.strip_prefix('-') {
            Some(c) if c.starts_with(char::is_whitespace) => ("-", c),
            _ => ("", inner),
        };
        let (core, trail) = match core.strip_suffix('-') {
            Some(c) if c.ends_with(char::is_whitespace) => (c, "-"),
            _ => (core, ""),
        };
        let trimmed = core.trim();
        let first = trimmed.split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("");
        let declares = trimmed.contains(":=")
            || (trimmed.starts_with('$') && trimmed.split_once('=').is_some_and(|(l, r)| !l.contains(['(', '"', '|']) && !r.starts_with('=')));
        out.push_str("{{");
        if trimmed.is_empty() || trimmed.starts_with("/*") || KEYWORDS.contains(&first) || declares {
            out.push_str(inner);
        } else {
            out.push_str(lead);
            out.push_str(core.trim_end());
            out.push_str(" | ");
            out.push_str(PRINT_FN);
            out.push(' ');
            out.push_str(trail);
        }
        out.push_str("}}");
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

fn f_json(a: &[Value]) -> Result<Value, FuncError> {
    let v = a.first().ok_or(FuncError::ExactlyXArgs("json".into(), 1))?;
    Ok(Value::String(serde_json::to_string(&from_gtmpl(v)).unwrap_or_default()))
}
fn f_join(a: &[Value]) -> Result<Value, FuncError> {
    if a.len() != 2 {
        return Err(FuncError::ExactlyXArgs("join".into(), 2));
    }
    let sep = match &a[1] {
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let items: Vec<String> = match &a[0] {
        Value::Array(v) => v.iter().map(|x| x.to_string()).collect(),
        other => vec![other.to_string()],
    };
    Ok(Value::String(items.join(&sep)))
}
fn f_upper(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(a.first().map(|v| v.to_string().to_uppercase()).unwrap_or_default()))
}
fn f_lower(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(a.first().map(|v| v.to_string().to_lowercase()).unwrap_or_default()))
}
fn f_title(a: &[Value]) -> Result<Value, FuncError> {
    let s = a.first().map(|v| v.to_string()).unwrap_or_default();
    let mut c = s.chars();
    Ok(Value::String(match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }))
}
fn f_split(a: &[Value]) -> Result<Value, FuncError> {
    if a.len() != 2 {
        return Err(FuncError::ExactlyXArgs("split".into(), 2));
    }
    let s = a[0].to_string();
    let sep = a[1].to_string();
    Ok(Value::Array(s.split(sep.as_str()).map(|x| Value::String(x.into())).collect()))
}
fn f_truncate(a: &[Value]) -> Result<Value, FuncError> {
    if a.len() != 2 {
        return Err(FuncError::ExactlyXArgs("truncate".into(), 2));
    }
    let s = a[0].to_string();
    let n = match &a[1] {
        Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
        _ => 0,
    };
    Ok(Value::String(s.chars().take(n).collect()))
}
fn f_pad(a: &[Value]) -> Result<Value, FuncError> {
    if a.len() != 3 {
        return Err(FuncError::ExactlyXArgs("pad".into(), 3));
    }
    let n = |v: &Value| match v {
        Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
        _ => 0,
    };
    Ok(Value::String(format!("{}{}{}", " ".repeat(n(&a[1])), a[0], " ".repeat(n(&a[2])))))
}

/// A parsed `--format` template. `table ...` prints a header row from the field names.
pub struct Template {
    tmpl: gtmpl::Template,
    pub table: bool,
    header: Option<String>,
}

impl Template {
    pub fn parse(format: &str) -> Result<Self> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => (true, rest.trim_start().to_string()),
            _ => (false, format.to_string()),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut tmpl = gtmpl::Template::default();
        tmpl.add_funcs(&[
            ("json", f_json as gtmpl_value::Func),
            ("join", f_join as gtmpl_value::Func),
            ("upper", f_upper as gtmpl_value::Func),
            ("lower", f_lower as gtmpl_value::Func),
            ("title", f_title as gtmpl_value::Func),
            ("split", f_split as gtmpl_value::Func),
            ("truncate", f_truncate as gtmpl_value::Func),
            ("pad", f_pad as gtmpl_value::Func),
            (PRINT_FN, f_print_v as gtmpl_value::Func),
        ]);
        tmpl.parse(add_print(&body)).map_err(|e| anyhow!("template parsing error: {e}"))?;
        let header = if table { Some(header_of(&body)) } else { None };
        Ok(Self { tmpl, table, header })
    }

    pub fn render(&self, v: &serde_json::Value) -> Result<String> {
        let ctx = gtmpl::Context::from(to_gtmpl(v));
        self.tmpl.render(&ctx).map_err(|e| anyhow!("template: {e}"))
    }

    /// Render rows; for `table` formats, align the tab-separated cells with a header.
    pub fn render_all(&self, items: &[serde_json::Value]) -> Result<String> {
        let mut lines = Vec::new();
        for it in items {
            lines.push(self.render(it)?);
        }
        if !self.table {
            let mut out = String::new();
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
            return Ok(out);
        }
        let mut rows: Vec<Vec<String>> = Vec::new();
        if let Some(h) = &self.header {
            rows.push(h.split('\t').map(String::from).collect());
        }
        for l in lines {
            rows.push(l.split('\t').map(String::from).collect());
        }
        Ok(table(&rows))
    }
}

/// Header for `table {{.ID}}\t{{.Image}}`: Docker's column titles.
fn header_of(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find("}}") else { break };
        let inner = rest[i + 2..i + j].trim();
        let field = inner.trim_start_matches('.').split_whitespace().next().unwrap_or("");
        out.push_str(&column_title(field));
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    out
}

fn column_title(f: &str) -> String {
    match f {
        "ID" => "CONTAINER ID".into(),
        "Image" => "IMAGE".into(),
        "Command" => "COMMAND".into(),
        "CreatedAt" => "CREATED AT".into(),
        "CreatedSince" | "RunningFor" => "CREATED".into(),
        "Ports" => "PORTS".into(),
        "Status" => "STATUS".into(),
        "Names" => "NAMES".into(),
        "Repository" => "REPOSITORY".into(),
        "Tag" => "TAG".into(),
        "Digest" => "DIGEST".into(),
        "Size" => "SIZE".into(),
        "State" => "STATE".into(),
        "Labels" => "LABELS".into(),
        "Mounts" => "MOUNTS".into(),
        "Networks" => "NETWORKS".into(),
        "Name" => "NAME".into(),
        "Driver" => "DRIVER".into(),
        "Scope" => "SCOPE".into(),
        other => {
            // CamelCase → UPPER CASE words
            let mut s = String::new();
            for (i, c) in other.chars().enumerate() {
                if i > 0 && c.is_uppercase() {
                    s.push(' ');
                }
                s.extend(c.to_uppercase());
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes() {
        assert_eq!(human_size(4_261_000.0), "4.26MB");
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(1240.0), "1.24kB");
        assert_eq!(human_size(12_345_678.0), "12.3MB");
    }
    #[test]
    fn templates() {
        let t = Template::parse("{{.Id}} {{json .Config}}").unwrap();
        let s = t.render(&serde_json::json!({"Id": "x", "Config": {"Cmd": ["sh"]}})).unwrap();
        assert_eq!(s, r#"x {"Cmd":["sh"]}"#);
        let t = Template::parse("{{.State.Running}}").unwrap();
        assert_eq!(t.render(&serde_json::json!({"State": {"Running": true}})).unwrap(), "true");
    }
    #[test]
    fn slices_and_maps_print_like_go() {
        let v = serde_json::json!({"Env": ["A=1", "B=2"], "Labels": {"z": "1", "a": "x y"}, "E": [], "M": {},
            "Nested": [["a", "b"], ["c"]], "N": 3, "S": "s}}", "Mounts": [{"Source": "/a"}, {"Source": "/b"}]});
        let r = |f: &str| Template::parse(f).unwrap().render(&v).unwrap();
        assert_eq!(r("{{.Env}}"), "[A=1 B=2]");
        assert_eq!(r("{{.Labels}}"), "map[a:x y z:1]");
        assert_eq!(r("{{.E}} {{.M}} {{.Nested}} {{.N}}"), "[] map[] [[a b] [c]] 3");
        assert_eq!(r("{{json .Env}}"), r#"["A=1","B=2"]"#);
        // (gtmpl ranges over a map in hash order, Go in key order: compare as a set)
        let mut pairs: Vec<String> = r("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}").split_terminator(';').map(String::from).collect();
        pairs.sort();
        assert_eq!(pairs, ["a=x y", "z=1"]);
        assert_eq!(r("{{range .Mounts}}{{.Source}} {{end}}"), "/a /b ");
        assert_eq!(r("{{if .Env}}yes{{else}}no{{end}}"), "yes");
        assert_eq!(r("{{$e := .Env}}{{$e}}"), "[A=1 B=2]");
        assert_eq!(r("{{index .Labels \"a\"}} {{ \"}}\" }}"), "x y }}");
        assert_eq!(r("{{- .N -}} {{/* c */}}"), "3");
        assert_eq!(r("{{.S}}"), "s}}");
        assert_eq!(r("{{join .Env \",\"}}"), "A=1,B=2");
    }
    #[test]
    fn tables() {
        let t = table(&[vec!["A".into(), "BB".into()], vec!["ccc".into(), "d".into()]]);
        assert_eq!(t, "A         BB\nccc       d\n");
    }
}
