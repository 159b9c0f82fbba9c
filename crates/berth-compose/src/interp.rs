//! `${VAR}` interpolation and `.env` files, as Docker Compose does them.
//!
//! Supported: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`,
//! `${VAR?err}`, `${VAR:+alt}`, `${VAR+alt}`, `$$` (a literal `$`). Defaults may nest
//! (`${A:-${B}}`), bounded to [`MAX_DEPTH`]. Substituted text is never expanded again, so
//! a variable whose value contains `${...}` cannot loop.

use std::collections::BTreeMap;

use crate::error::InterpError;

/// Maximum nesting of `${...}` inside defaults.
pub const MAX_DEPTH: usize = 16;

/// Expand every `${...}` in `input`, looking variables up with `lookup`.
///
/// ```
/// let env = |k: &str| (k == "TAG").then(|| "1.36".to_string());
/// let s = berth_compose::interp::interpolate("busybox:${TAG:-latest} $$HOME", &env).unwrap();
/// assert_eq!(s, "busybox:1.36 $HOME");
/// ```
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpError> {
    expand(input, lookup, 0)
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn expand(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, InterpError> {
    if depth > MAX_DEPTH {
        return Err(InterpError::Format(input.to_string()));
    }
    let mut out = String::with_capacity(input.len());
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                // find the matching close brace, counting nested `${`
                let start = i + 2;
                let mut j = start;
                let mut level = 1;
                while j < chars.len() {
                    if chars[j] == '$' && chars.get(j + 1) == Some(&'{') {
                        level += 1;
                        j += 2;
                        continue;
                    }
                    if chars[j] == '}' {
                        level -= 1;
                        if level == 0 {
                            break;
                        }
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(InterpError::Format(input.to_string()));
                }
                let body: String = chars[start..j].iter().collect();
                out.push_str(&expand_braced(&body, input, lookup, depth)?);
                i = j + 1;
            }
            Some(&n) if is_name_start(n) => {
                let mut j = i + 1;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                out.push_str(&lookup(&name).unwrap_or_default());
                i = j;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn expand_braced(
    body: &str,
    whole: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, InterpError> {
    let name_len = body.chars().take_while(|&c| is_name_char(c)).count();
    let name = &body[..name_len];
    if name.is_empty() || !body.starts_with(is_name_start) {
        return Err(InterpError::Format(whole.to_string()));
    }
    let rest = &body[name_len..];
    let value = lookup(name);
    if rest.is_empty() {
        return Ok(value.unwrap_or_default());
    }
    let (colon, op_rest) = match rest.strip_prefix(':') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let mut it = op_rest.chars();
    let op = it
        .next()
        .ok_or_else(|| InterpError::Format(whole.to_string()))?;
    let arg = it.as_str();
    // `:` means "unset or empty", without it only "unset"
    let missing = match &value {
        None => true,
        Some(v) => colon && v.is_empty(),
    };
    match op {
        '-' => {
            if missing {
                expand(arg, lookup, depth + 1)
            } else {
                Ok(value.unwrap_or_default())
            }
        }
        '?' => {
            if missing {
                Err(InterpError::Required {
                    name: name.to_string(),
                    message: expand(arg, lookup, depth + 1)?,
                })
            } else {
                Ok(value.unwrap_or_default())
            }
        }
        '+' => {
            if missing {
                Ok(String::new())
            } else {
                expand(arg, lookup, depth + 1)
            }
        }
        _ => Err(InterpError::Format(whole.to_string())),
    }
}

/// Parse a `.env` file: `KEY=VALUE` lines, `export ` prefix, `#` comments, single quotes
/// (literal), double quotes (`\n`, `\t`, `\\`, `\"` escapes). Unquoted and double-quoted
/// values are interpolated with earlier keys and `outer`. A bare `KEY` line is skipped.
pub fn parse_dotenv(
    text: &str,
    outer: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, val)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty()
            || !key.starts_with(is_name_start)
            || !key.chars().all(|c| is_name_char(c) || c == '.' || c == '-')
        {
            return Err((lineno, format!("invalid variable name {key:?}")));
        }
        let val = val.trim_start();
        let value = if let Some(inner) = val.strip_prefix('\'') {
            let end = inner
                .find('\'')
                .ok_or((lineno, "unterminated single quote".to_string()))?;
            inner[..end].to_string()
        } else if let Some(inner) = val.strip_prefix('"') {
            let mut s = String::new();
            let mut chars = inner.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some('r') => s.push('\r'),
                        Some(o) => s.push(o),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    o => s.push(o),
                }
            }
            if !closed {
                return Err((lineno, "unterminated double quote".to_string()));
            }
            let look = |k: &str| vars.get(k).cloned().or_else(|| outer(k));
            interpolate(&s, &look).map_err(|e| (lineno, e.to_string()))?
        } else {
            let v = match val.find(" #") {
                Some(p) => &val[..p],
                None => val,
            };
            let look = |k: &str| vars.get(k).cloned().or_else(|| outer(k));
            interpolate(v.trim_end(), &look).map_err(|e| (lineno, e.to_string()))?
        };
        vars.insert(key.to_string(), value);
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "SET" => Some("v".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn forms() {
        let t = |s: &str| interpolate(s, &env);
        assert_eq!(t("${SET}").unwrap(), "v");
        assert_eq!(t("$SET/x").unwrap(), "v/x");
        assert_eq!(t("${UNSET}").unwrap(), "");
        assert_eq!(t("${UNSET:-d}").unwrap(), "d");
        assert_eq!(t("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(t("${EMPTY-d}").unwrap(), "");
        assert_eq!(t("${UNSET-d}").unwrap(), "d");
        assert_eq!(t("${SET:-d}").unwrap(), "v");
        assert_eq!(t("${SET:+alt}").unwrap(), "alt");
        assert_eq!(t("${UNSET:+alt}").unwrap(), "");
        assert_eq!(t("$$SET $").unwrap(), "$SET $");
        assert_eq!(t("${UNSET:-${SET}x}").unwrap(), "vx");
        assert_eq!(t("${EMPTY?e}").unwrap(), "");
        assert_eq!(
            t("${EMPTY:?need it}").unwrap_err(),
            InterpError::Required {
                name: "EMPTY".into(),
                message: "need it".into()
            }
        );
        assert!(matches!(t("${UNSET?x}"), Err(InterpError::Required { .. })));
        assert!(matches!(t("${SET"), Err(InterpError::Format(_))));
        assert!(matches!(t("${}"), Err(InterpError::Format(_))));
        assert!(matches!(t("${1A}"), Err(InterpError::Format(_))));
    }

    #[test]
    fn no_recursive_expansion() {
        let loopy = |k: &str| (k == "A").then(|| "${A}".to_string());
        assert_eq!(interpolate("${A}", &loopy).unwrap(), "${A}");
        let deep = "${A:-".repeat(40) + &"}".repeat(40);
        assert!(interpolate(&deep, &|_| None).is_err());
    }

    #[test]
    fn dotenv() {
        let text = "# c\nexport A=1\nB = 'x $A'\nC=\"$A\\n2\"\nD=${A}3 # comment\nBARE\n\nE=\n";
        let m = parse_dotenv(text, &|_| None).unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "x $A");
        assert_eq!(m["C"], "1\n2");
        assert_eq!(m["D"], "13");
        assert_eq!(m["E"], "");
        assert!(!m.contains_key("BARE"));
        assert_eq!(parse_dotenv("X='open", &|_| None).unwrap_err().0, 1);
    }
}
