//! `.dockerignore` (and `COPY --exclude`) matching, with Docker's rules
//! (moby/patternmatcher and its `ignorefile` reader):
//!
//! - Lines starting with `#` are comments; surrounding whitespace is trimmed; empty
//!   lines are skipped; a UTF-8 BOM is dropped.
//! - Patterns are cleaned like Go's `filepath.Clean` (`./a//b/` → `a/b`) and a
//!   leading `/` is removed, so `/a` and `a` are the same pattern.
//! - `*` matches within one path segment, `?` one character except `/`, `[a-z]` /
//!   `[^a]` character classes, `\x` the literal `x`, and `**` any number of segments
//!   (`**/x`, `a/**`, `a/**/b`).
//! - A pattern also matches everything below a matched directory.
//! - `!pattern` re-includes what earlier patterns excluded; the last matching
//!   pattern wins.
//!
//! One intentional difference: Docker passes `\d`, `\w`... through to a regular
//! expression (so `\d` is "a digit"); berth treats every `\x` as the literal `x`, as
//! `filepath.Match` documents.
//!
//! ```
//! use berth_dockerfile::IgnoreMatcher;
//! let m = IgnoreMatcher::new("# comment\nnode_modules\n*.log\n!keep.log\n**/tmp\n").unwrap();
//! assert!(m.matches("node_modules/x/y.js"));
//! assert!(m.matches("a.log") && !m.matches("keep.log"));
//! assert!(m.matches("src/deep/tmp/file"));
//! assert!(!m.matches("src/main.rs"));
//! // A walker may skip node_modules/ entirely: no `!` pattern can match inside it.
//! assert!(!m.dir_may_contain_exceptions("node_modules"));
//! ```

use regex::Regex;

/// Why an ignore file or pattern list is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// `filepath.Match` would reject the pattern (unclosed `[`, trailing `\`, ...).
    #[error("syntax error in pattern: {pattern}")]
    BadPattern {
        /// The cleaned pattern.
        pattern: String,
    },
    /// A line that is just `!`.
    #[error("illegal exclusion pattern: \"!\"")]
    IllegalExclusion,
    /// More patterns than [`IgnoreMatcher::MAX_PATTERNS`].
    #[error("too many patterns in ignore file (maximum {max})")]
    TooMany {
        /// The limit.
        max: usize,
    },
}

/// Coarse class of an [`IgnoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreErrorKind {
    /// Invalid pattern.
    InvalidPattern,
    /// Size limit.
    Limit,
}

impl IgnoreError {
    /// Coarse class of the error.
    pub fn kind(&self) -> IgnoreErrorKind {
        match self {
            IgnoreError::TooMany { .. } => IgnoreErrorKind::Limit,
            _ => IgnoreErrorKind::InvalidPattern,
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Exact,
    Prefix(String),
    Suffix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct Pattern {
    exclusion: bool,
    cleaned: String,
    kind: Kind,
    /// Per-segment matchers, for [`IgnoreMatcher::dir_may_contain_exceptions`];
    /// `None` marks a segment containing `**`.
    segments: Vec<Option<Regex>>,
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
}

impl IgnoreMatcher {
    /// Most patterns accepted (bounds memory and matching time).
    pub const MAX_PATTERNS: usize = 10_000;

    /// Reads `.dockerignore` text.
    pub fn new(text: &str) -> Result<Self, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let invert = p.starts_with('!');
            if invert {
                p = p[1..].trim();
            }
            let mut p = if p.is_empty() {
                String::new()
            } else {
                clean(p)
            };
            if p.len() > 1 && p.starts_with('/') {
                p.remove(0);
            }
            patterns.push(if invert { format!("!{p}") } else { p });
        }
        Self::from_patterns(&patterns)
    }

    /// Compiles already-split patterns (e.g. `COPY --exclude` values), with the same
    /// semantics as lines of a `.dockerignore`.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Self, IgnoreError> {
        if patterns.len() > Self::MAX_PATTERNS {
            return Err(IgnoreError::TooMany {
                max: Self::MAX_PATTERNS,
            });
        }
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let p = clean(p);
            let (exclusion, p) = match p.strip_prefix('!') {
                Some("") => return Err(IgnoreError::IllegalExclusion),
                Some(rest) => (true, rest.to_string()),
                None => (false, p),
            };
            let bad = || IgnoreError::BadPattern { pattern: p.clone() };
            if !valid_match_pattern(&p) {
                return Err(bad());
            }
            let kind = compile(&p).ok_or_else(bad)?;
            let segments = p
                .split('/')
                .map(|seg| {
                    if seg.contains("**") {
                        Ok(None)
                    } else {
                        segment_regex(seg).map(Some).ok_or_else(bad)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Pattern {
                exclusion,
                cleaned: p,
                kind,
                segments,
            });
        }
        Ok(IgnoreMatcher { patterns: out })
    }

    /// The cleaned patterns, `!` prefix kept.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exclusion {
                    format!("!{}", p.cleaned)
                } else {
                    p.cleaned.clone()
                }
            })
            .collect()
    }

    /// True when there are `!` patterns.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `rel_path` (slash-separated, relative to the context root) is
    /// ignored: the last pattern matching it or one of its parent directories
    /// decides (moby's `MatchesOrParentMatches`). The context root itself is never
    /// ignored.
    pub fn matches(&self, rel_path: &str) -> bool {
        let file = clean(rel_path);
        let file = file.trim_start_matches('/');
        if file.is_empty() || file == "." {
            return false;
        }
        let parents: Vec<&str> = match file.rfind('/') {
            Some(i) => file[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.matches(file);
            if !hit && !parents.is_empty() {
                let mut prefix_end = 0;
                for (i, seg) in parents.iter().enumerate() {
                    prefix_end += seg.len() + usize::from(i > 0);
                    if p.matches(&file[..prefix_end]) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether some `!` pattern could match `dir` itself or a path below it. When
    /// `dir` is ignored and this is false, a context walker can skip the whole
    /// directory without looking inside.
    pub fn dir_may_contain_exceptions(&self, dir: &str) -> bool {
        let dir = clean(dir);
        let dir = dir.trim_start_matches('/');
        let dsegs: Vec<&str> = if dir.is_empty() || dir == "." {
            Vec::new()
        } else {
            dir.split('/').collect()
        };
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| p.may_match_under(&dsegs))
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix(pre) => path.starts_with(pre.as_str()),
            Kind::Suffix(suf) => {
                path.ends_with(suf.as_str()) || suf.strip_prefix('/').is_some_and(|s| path == s)
            }
            Kind::Regex(re) => re.is_match(path),
        }
    }

    fn may_match_under(&self, dir: &[&str]) -> bool {
        for (i, d) in dir.iter().enumerate() {
            match self.segments.get(i) {
                // The pattern is exhausted: it matches an ancestor of (or) `dir`.
                None => return true,
                Some(None) => return true,
                Some(Some(re)) => {
                    if !re.is_match(d) {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// Go's `filepath.Clean` for slash-separated paths.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// Syntax check of Go's `filepath.Match`: classes must be closed and non-empty, a
/// range end or class char may not be `-` or `]` in the wrong place, and an escape
/// needs a following character.
fn valid_match_pattern(p: &str) -> bool {
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return false;
                }
                i += 2;
            }
            '[' => {
                i += 1;
                if chars.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut n = 0;
                loop {
                    match chars.get(i) {
                        None => return false,
                        Some(']') if n > 0 => {
                            i += 1;
                            break;
                        }
                        Some(_) => {}
                    }
                    // lo
                    let Some(next) = class_char(&chars, &mut i) else {
                        return false;
                    };
                    let _ = next;
                    if chars.get(i) == Some(&'-') {
                        i += 1;
                        if class_char(&chars, &mut i).is_none() {
                            return false;
                        }
                    }
                    n += 1;
                }
            }
            _ => i += 1,
        }
    }
    true
}

/// Go's `getEsc`: one (possibly escaped) class character.
fn class_char(chars: &[char], i: &mut usize) -> Option<char> {
    let c = *chars.get(*i)?;
    if c == '-' || c == ']' {
        return None;
    }
    if c == '\\' {
        *i += 1;
        let e = *chars.get(*i)?;
        *i += 1;
        return Some(e);
    }
    *i += 1;
    Some(c)
}

fn push_literal(re: &mut String, c: char) {
    let mut buf = [0u8; 4];
    re.push_str(&regex::escape(c.encode_utf8(&mut buf)));
}

/// moby/patternmatcher's compile: pick a fast match kind or build a regex.
fn compile(p: &str) -> Option<Kind> {
    #[derive(PartialEq, Clone, Copy)]
    enum T {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let chars: Vec<char> = p.chars().collect();
    let mut re = String::from("^");
    let mut t = T::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if t == T::Exact {
                        t = T::Prefix;
                    } else {
                        re.push_str(".*");
                        t = T::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    t = T::Regex;
                }
                if first {
                    t = T::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                t = T::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                t = T::Regex;
            }
            '\\' => match chars.get(i) {
                Some(&c) => {
                    i += 1;
                    push_literal(&mut re, c);
                    t = T::Regex;
                }
                None => re.push_str("\\\\"),
            },
            '[' => {
                // Copy the class through, escaping what Rust's regex syntax would
                // otherwise interpret (nested classes, set operators, escapes).
                re.push('[');
                if chars.get(i) == Some(&'^') {
                    re.push('^');
                    i += 1;
                }
                while let Some(&c) = chars.get(i) {
                    i += 1;
                    match c {
                        ']' => break,
                        '\\' => {
                            if let Some(&e) = chars.get(i) {
                                i += 1;
                                push_literal(&mut re, e);
                            }
                        }
                        '-' => re.push('-'),
                        c => push_literal(&mut re, c),
                    }
                }
                re.push(']');
                t = T::Regex;
            }
            c => push_literal(&mut re, c),
        }
        first = false;
    }
    Some(match t {
        T::Exact => Kind::Exact,
        T::Prefix => Kind::Prefix(p[..p.len() - 2].to_string()),
        T::Suffix => Kind::Suffix(p[2..].to_string()),
        T::Regex => {
            re.push('$');
            Kind::Regex(Regex::new(&re).ok()?)
        }
    })
}

/// A regex for one path segment (no `**`), `filepath.Match` semantics.
fn segment_regex(seg: &str) -> Option<Regex> {
    match compile(seg)? {
        Kind::Regex(r) => Some(r),
        _ => Regex::new(&format!("^{}$", regex::escape(&unescape(seg)))).ok(),
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        for (i, o) in [
            ("", "."),
            ("a/b", "a/b"),
            ("./a//b/", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("/", "/"),
            ("a/./.", "a"),
            ("a/b/../../..", ".."),
        ] {
            assert_eq!(clean(i), o, "clean({i:?})");
        }
    }

    /// (patterns, path, ignored?)
    const TABLE: &[(&str, &str, bool)] = &[
        ("fileutils.go", "fileutils.go", true),
        ("*.go", "fileutils.go", true),
        ("*.go", "dir/fileutils.go", false),
        ("*/*.go", "dir/fileutils.go", true),
        ("docs", "docs/README.md", true),
        ("docs/", "docs/a/b", true),
        ("/docs", "docs/x", true),
        ("./docs", "docs/x", true),
        ("docs/*.md", "docs/README.md", true),
        ("docs/*.md", "docs/sub/README.md", false),
        ("**", "anything/at/all", true),
        ("**/*.md", "README.md", true),
        ("**/*.md", "a/b/c.md", true),
        ("**/foo", "foo", true),
        ("**/foo", "a/b/foo", true),
        ("**/foo", "a/b/foobar", false),
        ("foo/**", "foo/x/y", true),
        ("foo/**", "foobar", false),
        ("foo/**", "foo", false),
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("a/**/b", "a/x/y/c", false),
        ("a/**/b/*.txt", "a/q/b/n.txt", true),
        ("**/*.go\n!vendor/**", "vendor/x.go", false),
        ("dir?", "dir1", true),
        ("dir?", "dir12", false),
        ("dir?", "dir/", false),
        ("[a-c]x", "bx", true),
        ("[a-c]x", "dx", false),
        ("[^a-c]x", "dx", true),
        ("[^a-c]x", "ax", false),
        ("a\\*b", "a*b", true),
        ("a\\*b", "axb", false),
        ("a.b", "axb", false),
        ("a+b(c)", "a+b(c)", true),
        ("*\n!keep\n", "keep", false),
        ("*\n!keep\n", "other", true),
        ("*\n!keep\n", "keep/inner", false),
        ("docs\n!docs/README.md", "docs/README.md", false),
        ("docs\n!docs/README.md", "docs/other.md", true),
        ("!a\nb", "a", false),
        (
            "*.log\n!important.log\nimportant.log",
            "important.log",
            true,
        ),
        ("# comment\nfoo", "foo", true),
        ("  foo  ", "foo", true),
        ("#foo", "#foo", false),
        (" #foo", "#foo", true),
        ("a/../b", "b", true),
        ("foo", ".", false),
        ("foo", "./foo", true),
    ];

    #[test]
    fn table() {
        for (pats, path, want) in TABLE {
            let m = IgnoreMatcher::new(pats).unwrap();
            assert_eq!(m.matches(path), *want, "patterns {pats:?} path {path:?}");
        }
    }

    #[test]
    fn bad_patterns() {
        assert_eq!(
            IgnoreMatcher::new("!").unwrap_err(),
            IgnoreError::IllegalExclusion
        );
        for p in ["[", "a[", "[]a]", "[a-]", "a\\", "[-a]", "[a"] {
            let e = IgnoreMatcher::new(p).unwrap_err();
            assert_eq!(e.kind(), IgnoreErrorKind::InvalidPattern, "{p}");
        }
        assert!(IgnoreMatcher::new("[a\\]]x").is_ok());
    }

    #[test]
    fn pruning() {
        let m = IgnoreMatcher::new("node_modules\nbuild\n!build/keep/**\n!**/*.keep\n").unwrap();
        // `**` exceptions may match anywhere.
        assert!(m.dir_may_contain_exceptions("node_modules"));
        let m = IgnoreMatcher::new("node_modules\nbuild\n!build/keep/*\n").unwrap();
        assert!(!m.dir_may_contain_exceptions("node_modules"));
        assert!(m.dir_may_contain_exceptions("build"));
        assert!(m.dir_may_contain_exceptions("build/keep"));
        assert!(!m.dir_may_contain_exceptions("build/other"));
        assert!(m.matches("build/other/x"));
        assert!(!m.matches("build/keep/x"));
        let m = IgnoreMatcher::new("*\n!src\n").unwrap();
        assert!(m.dir_may_contain_exceptions("src/deep"));
        assert!(!m.dir_may_contain_exceptions("docs"));
        assert!(!m.matches("src/deep/file"));
    }

    #[test]
    fn bom_and_from_patterns() {
        let m = IgnoreMatcher::new("\u{feff}a\n").unwrap();
        assert!(m.matches("a"));
        let m = IgnoreMatcher::from_patterns(&["*.tmp", "!keep.tmp"]).unwrap();
        assert!(m.matches("x.tmp") && !m.matches("keep.tmp"));
        assert!(m.has_exclusions());
        assert_eq!(m.patterns(), vec!["*.tmp", "!keep.tmp"]);
    }
}
