//! Word expansion and word splitting, as BuildKit's Dockerfile shell lexer does it.
//!
//! This is *not* a shell: it only understands quoting (`'...'`, `"..."`), the escape
//! token (`\` or `` ` ``), and parameter expansion:
//!
//! | form | meaning |
//! |---|---|
//! | `$VAR`, `${VAR}` | value, or empty when unset |
//! | `${VAR:-word}` / `${VAR-word}` | `word` when unset or empty / when unset |
//! | `${VAR:+word}` / `${VAR+word}` | `word` when set and not empty / when set |
//! | `${VAR:?msg}` / `${VAR?msg}` | error `VAR: msg` when unset or empty / when unset |
//! | `${VAR#pat}` `${VAR##pat}` | remove shortest / longest matching prefix |
//! | `${VAR%pat}` `${VAR%%pat}` | remove shortest / longest matching suffix |
//! | `${VAR/pat/repl}` `${VAR//pat/repl}` | replace first / every match |
//!
//! Patterns use `*` and `?` (no bracket expressions), like BuildKit.
//! Positional and special parameters (`$1`, `$@`, `$$`...) are looked up by that name
//! and are normally unset, so they expand to nothing.
//!
//! Which instructions expand variables is the builder's business; see
//! [`crate::Instruction::expands_variables`].
//!
//! ```
//! use berth_dockerfile::{expand, expand_words};
//! let env = |k: &str| (k == "NAME").then(|| "a b".to_string());
//! assert_eq!(expand("x-${NAME}-'$NAME'", &env, '\\').unwrap(), "x-a b-$NAME");
//! assert_eq!(expand_words("x$NAME \"$NAME\"", &env, '\\').unwrap(), vec!["xa", "b", "a b"]);
//! ```
//!
//! One deliberate difference from BuildKit: BuildKit's word splitter shares one buffer
//! between nested `${...}` scans, so `ab${X:-y}` split into words loses `ab`. berth keeps
//! separate buffers and returns `aby`.

use std::fmt;

/// Maximum nesting of `${...}` inside `${...}` words.
pub const MAX_EXPANSION_DEPTH: usize = 64;

/// How much longer than its input an expanded word may get, in bytes. This stops
/// "billion laughs" Dockerfiles (`ENV B=$A$A`, `ENV C=$B$B`, ...) while leaving
/// room for any real value (Linux caps one environment string at 128 KiB).
pub const MAX_EXPANSION_GROWTH: usize = 1 << 20;

/// Why expanding a word failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// Malformed word: unterminated quote, bad `${...}` syntax, bad pattern.
    #[error("failed to process {word:?}: {message}")]
    Syntax {
        /// The word being expanded.
        word: String,
        /// BuildKit's wording of what is wrong.
        message: String,
    },
    /// `${VAR?msg}` or `${VAR:?msg}` on an unset (or empty) variable.
    #[error("failed to process {word:?}: {name}: {message}")]
    Required {
        /// The word being expanded.
        word: String,
        /// The variable that must be set.
        name: String,
        /// The user's message, or the default one.
        message: String,
    },
    /// `${...}` nested deeper than [`MAX_EXPANSION_DEPTH`].
    #[error("failed to process {word:?}: variable expansion nested too deeply")]
    TooDeep {
        /// The word being expanded.
        word: String,
    },
    /// The result grew more than [`MAX_EXPANSION_GROWTH`] bytes beyond the input.
    #[error("failed to process {word:?}: expanded value is too large")]
    TooLarge {
        /// The word being expanded (truncated to 200 bytes).
        word: String,
    },
}

/// Coarse class of an [`ExpandError`], for mapping to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpandErrorKind {
    /// The word is malformed.
    Syntax,
    /// A required variable was unset.
    Required,
    /// A resource limit was hit.
    Limit,
}

impl ExpandError {
    /// Coarse class of the error.
    pub fn kind(&self) -> ExpandErrorKind {
        match self {
            ExpandError::Syntax { .. } => ExpandErrorKind::Syntax,
            ExpandError::Required { .. } => ExpandErrorKind::Required,
            ExpandError::TooDeep { .. } | ExpandError::TooLarge { .. } => ExpandErrorKind::Limit,
        }
    }
}

/// Expands variables in `word` and removes quotes, keeping it one word
/// (BuildKit's `ProcessWord`). `lookup` returns a variable's value, `None` when unset.
pub fn expand(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    Lexer::new(escape).process_word(word, lookup)
}

/// Expands variables in `word`, removes quotes and splits the result into words on
/// unquoted whitespace, including whitespace that comes from unquoted variable values
/// (BuildKit's `ProcessWords`).
pub fn expand_words(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    Lexer::new(escape).process_words(word, lookup)
}

/// Expands a heredoc body whose delimiter was not quoted: only `$` expansions and
/// escapes are processed, quotes are kept as they are (BuildKit's `ExpandRaw`, which
/// always uses `\` as escape). Like BuildKit, every backslash escapes the next
/// character, so `\n` becomes `n` and `\\` becomes `\`; quote the delimiter
/// (`<<"EOF"`) to keep a body verbatim.
pub fn expand_heredoc(
    content: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let lex = Lexer {
        skip_process_quotes: true,
        ..Lexer::new('\\')
    };
    lex.process_word(content, lookup)
}

/// The configurable lexer behind [`expand`] and [`expand_words`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    /// Escape token: `\` or `` ` ``.
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape tokens in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written (`$X`, `${X:-y}`).
    pub skip_unset_env: bool,
}

impl Lexer {
    /// A lexer with BuildKit's default options and the given escape token.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word` as one word.
    pub fn process_word(
        &self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ExpandError> {
        self.run(word, lookup).map(|(w, _)| w)
    }

    /// Expands `word` and splits it into words.
    pub fn process_words(
        &self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ExpandError> {
        self.run(word, lookup).map(|(_, ws)| ws)
    }

    fn run(
        &self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut sc = Scan {
            lex: *self,
            chars: word.chars().collect(),
            pos: 0,
            lookup,
            raw_escapes: self.raw_escapes,
            depth: 0,
            limit: word.len().saturating_add(MAX_EXPANSION_GROWTH),
        };
        sc.process_stop_on(None, self.raw_escapes)
            .map_err(|e| e.into_error(word))
    }
}

/// Internal error before the word is attached.
enum Fail {
    Syntax(String),
    Required(String, String),
    TooDeep,
    TooLarge,
}

impl Fail {
    fn into_error(self, word: &str) -> ExpandError {
        let word = word.to_string();
        match self {
            Fail::Syntax(message) => ExpandError::Syntax { word, message },
            Fail::Required(name, message) => ExpandError::Required {
                word,
                name,
                message,
            },
            Fail::TooDeep => ExpandError::TooDeep { word },
            Fail::TooLarge => {
                let mut end = word.len().min(200);
                while !word.is_char_boundary(end) {
                    end -= 1;
                }
                ExpandError::TooLarge {
                    word: word[..end].to_string(),
                }
            }
        }
    }
}

fn syntax(msg: impl fmt::Display) -> Fail {
    Fail::Syntax(msg.to_string())
}

struct Scan<'a> {
    lex: Lexer,
    chars: Vec<char>,
    pos: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    raw_escapes: bool,
    depth: usize,
    /// Largest result (or variable value) accepted.
    limit: usize,
}

#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), Fail> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), Fail> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.process_dollar()?;
                    self.check_size(result.len() + tmp.len())?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '<' => {
                    let tmp = self.process_possible_heredoc();
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '\'' if !self.lex.skip_process_quotes => {
                    let tmp = self.process_single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' if !self.lex.skip_process_quotes => {
                    let tmp = self.process_double_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.next();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            None => break,
                            Some(c) => {
                                words.add_raw_char(c);
                                result.push(c);
                            }
                        }
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(syntax(format!(
                "unexpected end of statement while looking for matching {stop}"
            )));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, Fail> {
        let mut out = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(syntax(
                        "unexpected end of statement while looking for matching single-quote",
                    ))
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, Fail> {
        let mut out = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(syntax(
                        "unexpected end of statement while looking for matching double-quote",
                    ))
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    self.check_size(out.len() + v.len())?;
                    out.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn check_size(&self, len: usize) -> Result<(), Fail> {
        if len > self.limit {
            Err(Fail::TooLarge)
        } else {
            Ok(())
        }
    }

    fn process_dollar(&mut self) -> Result<String, Fail> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err(syntax("syntax error: missing '}'")),
            Some('{' | '}' | ':') => return Err(syntax("syntax error: bad substitution")),
            _ => {}
        }
        self.depth += 1;
        if self.depth > MAX_EXPANSION_DEPTH {
            return Err(Fail::TooDeep);
        }
        let r = self.process_braced();
        self.depth -= 1;
        r
    }

    fn process_braced(&mut self) -> Result<String, Fail> {
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err(syntax("syntax error: missing '}'"));
        };
        let mut chs = ch.to_string();
        let mut null_is_unset = false;
        match ch {
            '}' => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                if ch == ':' {
                    null_is_unset = true;
                    // Like BuildKit, whatever follows ':' is taken as the modifier;
                    // an unknown one is reported after the word is scanned.
                    ch = self.next().unwrap_or('\u{fffd}');
                    chs.push(ch);
                }
                let raw = ch == '#' || ch == '%';
                if null_is_unset && raw {
                    return Err(syntax(format!(
                        "unsupported modifier ({chs}) in substitution"
                    )));
                }
                let word = self.scan_until_brace('}', raw, "syntax error: missing '}'")?;
                let value = self.lookup(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let empty_or_unset = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match ch {
                    '-' => Ok(if empty_or_unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if empty_or_unset { String::new() } else { word }),
                    '?' => match value {
                        None => Err(Fail::Required(
                            name,
                            if word.is_empty() {
                                "is not allowed to be unset".into()
                            } else {
                                word
                            },
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(Fail::Required(
                            name,
                            if word.is_empty() {
                                "is not allowed to be empty".into()
                            } else {
                                word
                            },
                        )),
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let (greedy, pat) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        let value = value.unwrap_or_default();
                        if ch == '%' {
                            trim_suffix(&pat, &value, greedy)
                        } else {
                            trim_prefix(&pat, &value, greedy)
                        }
                    }
                    _ => Err(syntax(format!(
                        "unsupported modifier ({chs}) in substitution"
                    ))),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern =
                    self.scan_until_brace('/', true, "syntax error: missing '/' in ${}")?;
                let replacement = self.scan_until_brace('}', true, "syntax error: missing '}'")?;
                let value = self.lookup(&name);
                let Some(value) = value else {
                    if self.lex.skip_unset_env {
                        return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                    }
                    return Ok(String::new());
                };
                let re = shell_pattern_regex(&pattern, true, false)?;
                if !all {
                    return Ok(re.replace(&value, replacement.as_str()).into_owned());
                }
                // Like `replace_all`, but bounded: `${A//?/$A}` would otherwise
                // square the size of A.
                let mut out = String::new();
                let mut last = 0;
                for caps in re.captures_iter(&value) {
                    let m = caps.get(0).expect("group 0 is the whole match");
                    out.push_str(&value[last..m.start()]);
                    caps.expand(&replacement, &mut out);
                    last = m.end();
                    self.check_size(out.len())?;
                }
                out.push_str(&value[last..]);
                self.check_size(out.len())?;
                Ok(out)
            }
            _ => Err(syntax(format!(
                "unsupported modifier ({chs}) in substitution"
            ))),
        }
    }

    fn scan_until_brace(
        &mut self,
        stop: char,
        raw_escapes: bool,
        eof_msg: &str,
    ) -> Result<String, Fail> {
        match self.process_stop_on(Some(stop), raw_escapes) {
            Ok((w, _)) => Ok(w),
            Err(Fail::Syntax(_)) if self.peek().is_none() => Err(syntax(eof_msg)),
            Err(e) => Err(e),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphabetic() || ch.is_numeric() || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            out.push(c);
            self.next();
        }
        out
    }
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Converts a shell wildcard pattern (`*`, `?`, `\` escapes) to a regex.
fn shell_pattern_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<regex::Regex, Fail> {
    let bad = |msg: String| {
        syntax(format!(
            "invalid pattern ({pattern}) in substitution: {msg}"
        ))
    };
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut it = pattern.chars().peekable();
    while let Some(tok) = it.next() {
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                if matches!(it.peek(), Some('}' | '/')) {
                    continue;
                }
                match it.next() {
                    Some(c @ ('*' | '?' | '\\')) => {
                        out.push('\\');
                        out.push(c);
                    }
                    Some(c) => return Err(bad(format!("invalid escape '\\{c}'"))),
                    None => return Err(bad("invalid escape '\\'".into())),
                }
            }
            _ => {
                let mut buf = [0u8; 4];
                out.push_str(&regex::escape(tok.encode_utf8(&mut buf)));
            }
        }
    }
    regex::Regex::new(&out).map_err(|e| bad(e.to_string()))
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, Fail> {
    let re = shell_pattern_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// Reverses a pattern but keeps `\x` escape pairs in order.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<String> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            units.push(format!("\\{}", chars[i + 1]));
            i += 2;
        } else {
            units.push(chars[i].to_string());
            i += 1;
        }
    }
    units.into_iter().rev().collect()
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, Fail> {
    let rp = reverse_pattern(pattern);
    let rv: String = value.chars().rev().collect();
    let out = trim_prefix(&rp, &rv, greedy)?;
    Ok(out.chars().rev().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("PWD", "/home"),
            ("SHELL", "bash"),
            ("NULL", ""),
            ("KOREAN", "한국어"),
            ("SPACE", "abc  def"),
            ("LEAD", "  ab c"),
            ("TRAIL", "ab c   "),
            ("PATHV", "/usr/local/bin/app.tar.gz"),
        ])
    }

    fn run(word: &str) -> Result<String, ExpandError> {
        let e = env();
        expand(word, &|k| e.get(k).map(|v| v.to_string()), '\\')
    }

    fn words(word: &str) -> Result<Vec<String>, ExpandError> {
        let e = env();
        expand_words(word, &|k| e.get(k).map(|v| v.to_string()), '\\')
    }

    /// (input, expected) where `None` means an error.
    const SINGLE: &[(&str, Option<&str>)] = &[
        ("plain", Some("plain")),
        ("a'b'c", Some("abc")),
        ("a'bc", None),
        ("a\\'bc", Some("a'bc")),
        ("a\\\\'bc", None),
        ("x\\ty", Some("xty")),
        ("\"x\\ty\"", Some("x\\ty")),
        ("\"x\\\\ty\"", Some("x\\ty")),
        ("'x\\ty'", Some("x\\ty")),
        ("end\\", Some("end")),
        ("end\\\\", Some("end\\")),
        ("\"open", None),
        ("\"open\\\"", None),
        ("\"it's\"", Some("it's")),
        ("'open", None),
        ("'q\\'", Some("q\\")),
        ("\"''\"", Some("''")),
        ("$.", Some("$.")),
        ("$", Some("$")),
        ("a$1b", Some("ab")),
        ("a$.b", Some("a$.b")),
        ("x$pwd.", Some("x.")),
        ("x$PWD", Some("x/home")),
        ("x\\$PWD", Some("x$PWD")),
        ("x\\\\$PWD", Some("x\\/home")),
        ("\"x\\$PWD\"", Some("x$PWD")),
        ("\"x\\\\$PWD\"", Some("x\\/home")),
        ("\\${}", Some("${}")),
        ("${}", None),
        ("a${}b", None),
        ("${.}", None),
        ("${{x}", None),
        ("${:}", None),
        ("${:-a}", None),
        ("${x}}", Some("}")),
        ("${PWD", None),
        ("${PWD:-a", None),
        ("${nope}x", Some("x")),
        ("${PWD}x", Some("/homex")),
        ("${X:-000}", Some("000")),
        ("${PWD:-000}", Some("/home")),
        ("${X:-$PWD}", Some("/home")),
        ("${X:-${PWD:-y}}", Some("/home")),
        ("${X:-${Y:-y}}", Some("y")),
        ("${X:YYY}", None),
        ("${PWD:=0}", None),
        ("${X?}", None),
        ("${X:?}", None),
        ("${PWD?}", Some("/home")),
        ("${NULL?}", Some("")),
        ("${NULL:?}", None),
        ("${NULL-d}", Some("")),
        ("${NULL:-d}", Some("d")),
        ("${NULL+s}", Some("s")),
        ("${NULL:+s}", Some("")),
        ("${X+s}", Some("")),
        ("${X:+$PWD}", Some("")),
        ("${PWD:+${X}}", Some("")),
        ("${PWD:+${SHELL}}", Some("bash")),
        ("${PWD:+x}", Some("x")),
        ("'a${X}'", Some("a${X}")),
        ("\"a${PWD}\"", Some("a/home")),
        ("\"a'$PWD'\"", Some("a'/home'")),
        ("'$PWD'", Some("$PWD")),
        ("'\\$PWD'", Some("\\$PWD")),
        ("${PWD:+${PWD}:}", Some("/home:")),
        ("${X:-\\$PWD:}", Some("$PWD:")),
        ("${X:-\\${PWD}z}", Some("${PWDz}")),
        ("${X:-a {b}", Some("a {b")),
        ("${X:-a ${y}", None),
        ("안'녕'$KOREAN", Some("안녕한국어")),
        ("${1}", Some("")),
        ("${1:-d}", Some("d")),
        ("$$", Some("")),
        ("${PATHV#*/}", Some("usr/local/bin/app.tar.gz")),
        ("${PATHV##*/}", Some("app.tar.gz")),
        ("${PATHV%.*}", Some("/usr/local/bin/app.tar")),
        ("${PATHV%%.*}", Some("/usr/local/bin/app")),
        ("${PATHV#nomatch}", Some("/usr/local/bin/app.tar.gz")),
        ("${PATHV%\\*}", Some("/usr/local/bin/app.tar.gz")),
        ("${PATHV#/usr?local}", Some("/bin/app.tar.gz")),
        ("${PATHV:#x}", None),
        ("${PATHV#\\q}", None),
        ("${PATHV/local/opt}", Some("/usr/opt/bin/app.tar.gz")),
        ("${PATHV//\\//_}", Some("_usr_local_bin_app.tar.gz")),
        ("${PATHV/*.}", None),
        ("${PATHV/a*a/X}", Some("/usr/locXr.gz")),
        ("${X/a/b}", Some("")),
        ("a<b", Some("a<b")),
        ("<< EOF", Some("<< EOF")),
    ];

    #[test]
    fn single_word_table() {
        for (input, want) in SINGLE {
            let got = run(input);
            match want {
                Some(w) => assert_eq!(got.as_deref(), Ok(*w), "input {input:?}"),
                None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
            }
        }
    }

    const SPLIT: &[(&str, Option<&[&str]>)] = &[
        ("hello", Some(&["hello"])),
        ("hello${X}bye", Some(&["hellobye"])),
        ("hello${SPACE}bye", Some(&["helloabc", "defbye"])),
        ("hello\"${SPACE}\"bye", Some(&["helloabc  defbye"])),
        ("hello \"${SPACE}\"bye", Some(&["hello", "abc  defbye"])),
        ("hello${LEAD}def", Some(&["hello", "ab", "cdef"])),
        ("hello\"${LEAD}\" def", Some(&["hello  ab c", "def"])),
        ("hello${TRAIL}", Some(&["helloab", "c"])),
        ("hello${TRAIL}d", Some(&["helloab", "c", "d"])),
        ("hello\"${TRAIL}\"d", Some(&["helloab c   d"])),
        ("hello\" there  \"", Some(&["hello there  "])),
        ("hello there     ", Some(&["hello", "there"])),
        ("hello\\ there", Some(&["hello there"])),
        ("hello\" there", None),
        ("hello\\\" there", Some(&["hello\"", "there"])),
        ("hello'\\there'", Some(&["hello\\there"])),
        ("hello'$there'", Some(&["hello$there"])),
        ("\"\" a", Some(&["a"])),
        ("ab${X:-y}", Some(&["aby"])),
        ("", Some(&[])),
    ];

    #[test]
    fn word_split_table() {
        for (input, want) in SPLIT {
            let got = words(input);
            match want {
                Some(w) => {
                    let w: Vec<String> = w.iter().map(|s| s.to_string()).collect();
                    assert_eq!(got, Ok(w), "input {input:?}")
                }
                None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
            }
        }
    }

    #[test]
    fn backtick_escape() {
        let e = env();
        let l = |k: &str| e.get(k).map(|v| v.to_string());
        assert_eq!(expand("a`$PWD", &l, '`').unwrap(), "a$PWD");
        assert_eq!(expand("a\\$PWD", &l, '`').unwrap(), "a\\/home");
        assert_eq!(expand("\"a`\"b\"", &l, '`').unwrap(), "a\"b");
    }

    #[test]
    fn skip_unset_and_raw() {
        let lex = Lexer {
            skip_unset_env: true,
            raw_quotes: true,
            ..Lexer::new('\\')
        };
        let l = |k: &str| (k == "A").then(|| "1".to_string());
        assert_eq!(
            lex.process_word("$A $B ${B} ${B:-x} '$A' ${B/a/b}", &l)
                .unwrap(),
            "1 $B ${B} ${B:-x} '$A' ${B/a/b}"
        );
    }

    #[test]
    fn heredoc_body_keeps_quotes() {
        let l = |k: &str| (k == "A").then(|| "1".to_string());
        assert_eq!(
            expand_heredoc("echo \"$A\" '$A' \\$A\n", &l).unwrap(),
            "echo \"1\" '1' $A\n"
        );
        assert_eq!(
            expand_heredoc("printf 'a\\nb' \\\\\n", &l).unwrap(),
            "printf 'anb' \\\n"
        );
    }

    #[test]
    fn errors_carry_word_and_message() {
        let e = run("${X:?must be set}").unwrap_err();
        assert_eq!(e.kind(), ExpandErrorKind::Required);
        assert_eq!(
            e.to_string(),
            "failed to process \"${X:?must be set}\": X: must be set"
        );
        let e = run("${X").unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to process \"${X\": syntax error: missing '}'"
        );
    }

    #[test]
    fn growth_is_bounded() {
        let big = "x".repeat(600 << 10);
        let l = |k: &str| (k == "A").then(|| big.clone());
        assert_eq!(expand("$A", &l, '\\').unwrap().len(), 600 << 10);
        let e = expand("$A$A", &l, '\\').unwrap_err();
        assert_eq!(e.kind(), ExpandErrorKind::Limit);
        let e = expand("\"${A}${A}\"", &l, '\\').unwrap_err();
        assert_eq!(e.kind(), ExpandErrorKind::Limit);
        let e = expand("${A//?/$A}", &l, '\\').unwrap_err();
        assert_eq!(e.kind(), ExpandErrorKind::Limit);
        // Big literal input is fine: the budget is relative to the input.
        let lit = "y".repeat(2 << 20);
        assert_eq!(expand(&lit, &l, '\\').unwrap().len(), 2 << 20);
    }

    #[test]
    fn nesting_is_bounded() {
        let mut w = String::new();
        for _ in 0..(MAX_EXPANSION_DEPTH + 5) {
            w.push_str("${X:-");
        }
        w.push('a');
        for _ in 0..(MAX_EXPANSION_DEPTH + 5) {
            w.push('}');
        }
        assert_eq!(run(&w).unwrap_err().kind(), ExpandErrorKind::Limit);
        let ok = "${X:-".repeat(10) + "a" + &"}".repeat(10);
        assert_eq!(run(&ok).unwrap(), "a");
    }
}
