//! Text → [`Dockerfile`], in two steps like BuildKit: physical lines are joined into
//! logical lines (directives, comments, continuations, heredocs), then each logical
//! line is split into keyword, `--flags` and arguments and turned into a typed
//! [`Instruction`].
//!
//! Everything is linear in the input size: continuation lines are appended to one
//! buffer, heredoc bodies likewise, and no step rescans what it has already seen.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use crate::ast::*;
use crate::error::{invalid_arg, invalid_flag, syntax, ParseError, ParseErrorKind};
use crate::mount::Mount;
use crate::shell::Lexer;
use crate::suggest::did_you_mean;

/// Largest Dockerfile accepted, in bytes.
pub const MAX_DOCKERFILE_SIZE: usize = 16 << 20;
/// Longest physical line accepted, in bytes (Go's `bufio.Scanner` limit, which is
/// what Docker enforces).
pub const MAX_LINE_SIZE: usize = 64 * 1024 - 1;
/// Most instructions accepted (FROM lines included). Each parsed instruction costs
/// a few hundred bytes, so this bounds memory for files of many tiny lines; real
/// Dockerfiles are far smaller (and images cannot have more than ~127 layers).
pub const MAX_INSTRUCTIONS: usize = 100_000;
/// Most build stages accepted (real Dockerfiles have a handful; the bound keeps
/// stage-graph work small).
pub const MAX_STAGES: usize = 10_000;

const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parses a Dockerfile. Never panics; every error carries its line.
///
/// ```
/// let df = berth_dockerfile::parse("FROM alpine AS base\nRUN echo hi\n").unwrap();
/// assert_eq!(df.stages[0].name.as_deref(), Some("base"));
/// assert_eq!(df.stages[0].instructions[0].original, "RUN echo hi");
/// let err = berth_dockerfile::parse("FROM a\nRUNN x\n").unwrap_err();
/// assert_eq!(err.to_string(), "Dockerfile:2: unknown instruction: RUNN (did you mean RUN?)");
/// ```
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    if text.len() > MAX_DOCKERFILE_SIZE {
        return Err(ParseError::new(
            ParseErrorKind::Limit,
            format!("dockerfile is larger than the maximum of {MAX_DOCKERFILE_SIZE} bytes"),
        )
        .at(1, 1));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Logical {
        nodes,
        directives,
        escape,
        last_line,
        warnings,
    } = logical_lines(text)?;
    if nodes.is_empty() {
        return Err(
            ParseError::new(ParseErrorKind::Structure, "file with no instructions")
                .at(last_line, last_line),
        );
    }

    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in nodes {
        let (start, end) = (node.start, node.end);
        let cmd = node.cmd.clone();
        let locate = |e: ParseError| e.at(start, end).on(&cmd);
        if node.cmd.eq_ignore_ascii_case("from") {
            if stages.len() >= MAX_STAGES {
                return Err(locate(ParseError::new(
                    ParseErrorKind::Limit,
                    format!("too many build stages (maximum {MAX_STAGES})"),
                )));
            }
            stages.push(parse_from(&node).map_err(locate)?);
            continue;
        }
        let inst = to_instruction(&node, escape).map_err(locate)?;
        match stages.last_mut() {
            Some(stage) => stage.instructions.push(inst),
            None if matches!(inst.kind, InstructionKind::Arg(_)) => meta_args.push(inst),
            None => {
                return Err(locate(ParseError::new(
                    ParseErrorKind::Structure,
                    "no build stage in current context",
                )))
            }
        }
    }
    if stages.is_empty() {
        return Err(ParseError::new(
            ParseErrorKind::Structure,
            "dockerfile contains no stages to build",
        )
        .at(last_line, last_line));
    }
    let check = match directives.iter().find(|d| d.name == "check") {
        Some(d) => CheckConfig::parse(&d.value).map_err(|e| e.at(d.line, d.line))?,
        None => CheckConfig::default(),
    };
    let mut df = Dockerfile {
        directives,
        escape,
        meta_args,
        stages,
        warnings,
        check,
    };
    let mut found = std::mem::take(&mut df.warnings);
    crate::lint::lint(&df, &mut found);
    found.retain(|w| df.check.enabled(&w.rule));
    found.sort_by_key(|w| w.line);
    df.warnings = found;
    Ok(df)
}

/// Parses one ONBUILD trigger taken from a base image's config (`OnBuild` list,
/// the [`Onbuild::expression`] text, heredoc bodies included), as BuildKit does
/// when a stage is built `FROM` that image. `line` is the stage's `FROM` line, which
/// the instruction and any error are attributed to.
///
/// ```
/// use berth_dockerfile::{parse_onbuild_trigger, InstructionKind};
/// let i = parse_onbuild_trigger("RUN <<EOF\necho hi\nEOF", 3).unwrap();
/// assert_eq!(i.start_line, 3);
/// assert!(matches!(i.kind, InstructionKind::Run(_)));
/// ```
pub fn parse_onbuild_trigger(trigger: &str, line: usize) -> Result<Instruction, ParseError> {
    let at = |e: ParseError| e.at(line, line);
    if trigger.len() > MAX_DOCKERFILE_SIZE {
        return Err(at(ParseError::new(
            ParseErrorKind::Limit,
            "onbuild trigger is too large",
        )));
    }
    let Logical {
        mut nodes, escape, ..
    } = logical_lines(trigger).map_err(at)?;
    if nodes.len() != 1 {
        return Err(at(syntax("onbuild trigger should be a single expression")));
    }
    let mut node = nodes.remove(0);
    node.start = line;
    node.end = line;
    if let Some(sub) = &mut node.sub {
        sub.start = line;
        sub.end = line;
    }
    let cmd = node.cmd.clone();
    if cmd.eq_ignore_ascii_case("from") {
        return Err(at(invalid_arg("FROM isn't allowed as an ONBUILD trigger")).on(&cmd));
    }
    to_instruction(&node, escape).map_err(|e| at(e).on(&cmd))
}

/// Dumps the logical-line AST in BuildKit's `Node.Dump()` format, one
/// s-expression per instruction. Only for differential tests against BuildKit's
/// parser test files; not a stable API.
#[doc(hidden)]
pub fn dump_ast(text: &str) -> Result<String, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Logical {
        nodes, last_line, ..
    } = logical_lines(text)?;
    if nodes.is_empty() {
        return Err(
            ParseError::new(ParseErrorKind::Structure, "file with no instructions")
                .at(last_line, last_line),
        );
    }
    let mut out = String::new();
    for n in &nodes {
        out.push('(');
        out.push_str(&n.dump());
        out.push_str(")\n");
    }
    Ok(out.trim().to_string())
}

impl Node {
    fn dump(&self) -> String {
        use crate::history::{go_quote, go_quote_slice};
        let mut s = self.cmd.to_lowercase();
        if !self.flags.is_empty() {
            s.push(' ');
            s.push_str(&go_quote_slice(&self.flags));
        }
        let lower = self.cmd.to_ascii_lowercase();
        if let Some(sub) = &self.sub {
            s.push_str(&format!(" ({})", sub.dump()));
        } else if lower == "env" || lower == "label" {
            for (k, v, legacy) in &self.kvs {
                let sep = if *legacy { "" } else { "=" };
                for w in [k.as_str(), v.as_str(), sep] {
                    s.push(' ');
                    s.push_str(&go_quote(w));
                }
            }
        } else if !INSTRUCTIONS
            .iter()
            .any(|i| i.eq_ignore_ascii_case(&self.cmd))
        {
            s.push_str(" \"\"");
        } else {
            for a in &self.args {
                s.push(' ');
                s.push_str(&go_quote(a));
            }
        }
        s.trim().to_string()
    }
}

/// A logical line split into keyword, flags and arguments (BuildKit's AST node).
#[derive(Debug)]
struct Node {
    cmd: String,
    flags: Vec<String>,
    args: Vec<String>,
    json: bool,
    /// ENV/LABEL: (key, value, legacy).
    kvs: Vec<(String, String, bool)>,
    sub: Option<Box<Node>>,
    original: String,
    heredocs: Vec<Heredoc>,
    start: usize,
    end: usize,
}

impl Node {
    fn can_contain_heredoc(&self) -> bool {
        let n = match &self.sub {
            Some(sub) if self.cmd.eq_ignore_ascii_case("onbuild") => sub,
            _ => self,
        };
        let c = n.cmd.to_ascii_lowercase();
        matches!(c.as_str(), "add" | "copy" | "run") && !n.json
    }
}

/// Physical-line iterator that keeps line endings and enforces the line limit.
struct Lines<'a> {
    rest: &'a str,
    line: usize,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Result<Option<&'a str>, ParseError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let end = self.rest.find('\n').map_or(self.rest.len(), |i| i + 1);
        let (l, r) = self.rest.split_at(end);
        self.rest = r;
        self.line += 1;
        if l.trim_end_matches(['\r', '\n']).len() > MAX_LINE_SIZE {
            return Err(ParseError::new(
                ParseErrorKind::Limit,
                format!("dockerfile line greater than max allowed size of {MAX_LINE_SIZE}"),
            )
            .at(self.line, self.line));
        }
        Ok(Some(l))
    }
}

struct DirectiveState {
    done: bool,
    seen: Vec<String>,
    escape: char,
    found: Vec<Directive>,
}

impl DirectiveState {
    /// Looks at a (left-trimmed, newline-free) line while directives are still
    /// allowed. Returns true when the line was a directive.
    fn check(&mut self, line: &str, line_no: usize) -> Result<bool, ParseError> {
        if self.done {
            return Ok(false);
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(false);
        };
        let Some((key, value)) = split_directive(rest.trim_start()) else {
            self.done = true;
            return Ok(false);
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        let at = |e: ParseError| e.at(line_no, line_no);
        if self.seen.contains(&key) {
            return Err(at(syntax(format!(
                "only one {key} parser directive can be used"
            ))));
        }
        self.seen.push(key.clone());
        if key == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(at(syntax(format!(
                        "invalid escape token '{value}' does not match ` or \\"
                    ))))
                }
            };
        }
        self.found.push(Directive {
            name: key,
            value: value.to_string(),
            line: line_no,
        });
        Ok(true)
    }
}

fn is_go_ascii_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn split_directive(s: &str) -> Option<(&str, &str)> {
    let key_end = s
        .char_indices()
        .find(|(_, c)| !c.is_ascii_alphanumeric())
        .map_or(s.len(), |(i, _)| i);
    let key = &s[..key_end];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let rest = s[key_end..].trim_start_matches(is_go_ascii_space);
    let rest = rest.strip_prefix('=')?;
    let value = rest
        .trim_start_matches(is_go_ascii_space)
        .trim_end_matches(is_go_ascii_space);
    if value.is_empty() || value.contains('\n') {
        return None;
    }
    Some((key, value))
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(s: &str) -> bool {
    s.trim_start().starts_with('#')
}

/// Removes a trailing line-continuation escape. Returns the line and whether the
/// logical line ends here. Mirrors BuildKit's regex
/// `([^\\])\\[ \t]*$|^\\[ \t]*$`, including its quirk that an escaped escape
/// (`\\`) at the end does not continue.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    let Some(before) = t.strip_suffix(escape) else {
        return (line, true);
    };
    if before.is_empty() || !before.ends_with(escape) {
        (before, false)
    } else {
        (line, true)
    }
}

struct Logical {
    nodes: Vec<Node>,
    directives: Vec<Directive>,
    escape: char,
    last_line: usize,
    warnings: Vec<Warning>,
}

fn logical_lines(text: &str) -> Result<Logical, ParseError> {
    let mut lines = Lines {
        rest: text,
        line: 0,
    };
    let mut d = DirectiveState {
        done: false,
        seen: Vec::new(),
        escape: '\\',
        found: Vec::new(),
    };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    while let Some(raw) = lines.next_line()? {
        let token = trim_newline(raw).trim_start();
        d.check(token, lines.line)?;
        let token = if is_comment(token) { "" } else { token };
        let start = lines.line;
        let (first, mut eol) = trim_continuation(token, d.escape);
        if eol && first.is_empty() {
            continue;
        }
        let mut buf = String::from(first);
        let mut empty_continuation = false;
        while !eol {
            let Some(raw) = lines.next_line()? else {
                break;
            };
            if is_comment(raw) {
                continue;
            }
            let token = trim_newline(raw);
            if token.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, e) = trim_continuation(token, d.escape);
            eol = e;
            buf.push_str(part);
            if buf.len() > MAX_DOCKERFILE_SIZE {
                return Err(
                    ParseError::new(ParseErrorKind::Limit, "instruction too long")
                        .at(start, lines.line),
                );
            }
        }
        if empty_continuation {
            warnings.push(crate::lint::warning(
                "NoEmptyContinuation",
                "Empty continuation line".into(),
                lines.line,
            ));
        }
        let mut node = node_from_line(&buf, d.escape, false).map_err(|e| {
            let keyword = buf.split_whitespace().next().unwrap_or_default();
            e.at(start, lines.line).on(keyword)
        })?;
        if node.can_contain_heredoc() && buf.contains("<<") {
            let docs = heredocs_from_line(&buf).map_err(|e| e.at(start, lines.line))?;
            for mut doc in docs {
                let mut content = String::new();
                let mut terminated = false;
                while let Some(raw) = lines.next_line()? {
                    let mut possible = trim_newline(raw);
                    if doc.chomp {
                        possible = possible.trim_start_matches('\t');
                    }
                    if possible == doc.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(raw);
                }
                if !terminated {
                    return Err(syntax("unterminated heredoc")
                        .at(start, lines.line)
                        .on(&node.cmd));
                }
                doc.content = content;
                match &mut node.sub {
                    Some(sub) if node.cmd.eq_ignore_ascii_case("onbuild") => {
                        sub.heredocs.push(doc.clone())
                    }
                    _ => {}
                }
                node.heredocs.push(doc);
            }
        }
        if nodes.len() >= MAX_INSTRUCTIONS {
            return Err(ParseError::new(
                ParseErrorKind::Limit,
                format!("too many instructions (maximum {MAX_INSTRUCTIONS})"),
            )
            .at(start, lines.line));
        }
        node.start = start;
        node.end = lines.line;
        if let Some(sub) = &mut node.sub {
            sub.start = start;
            sub.end = lines.line;
        }
        nodes.push(node);
    }
    Ok(Logical {
        nodes,
        directives: d.found,
        escape: d.escape,
        last_line: lines.line.max(1),
        warnings,
    })
}

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]+`.
fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn split_ws(s: &str) -> Vec<String> {
    s.split(is_split_space)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// `nested` is true for the trigger of an ONBUILD: a nested ONBUILD is not parsed
/// further (it is an error anyway), which bounds recursion on `ONBUILD ONBUILD ...`.
fn node_from_line(line: &str, escape: char, nested: bool) -> Result<Node, ParseError> {
    let trimmed = line.trim();
    let (cmd, rest) = match trimmed.find(is_split_space) {
        Some(i) => (
            &trimmed[..i],
            Some(trimmed[i..].trim_start_matches(is_split_space)),
        ),
        None => (trimmed, None),
    };
    let (args, flags) = match rest {
        Some(rest) => extract_builder_flags(rest, escape),
        None => (String::new(), Vec::new()),
    };
    let rest = args.trim();
    let mut node = Node {
        cmd: cmd.to_string(),
        flags,
        args: Vec::new(),
        json: false,
        kvs: Vec::new(),
        sub: None,
        original: line.to_string(),
        heredocs: Vec::new(),
        start: 0,
        end: 0,
    };
    match cmd.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => (node.args, node.json) = maybe_json_to_list(rest)?,
        "cmd" | "entrypoint" | "run" | "shell" => (node.args, node.json) = maybe_json(rest)?,
        "arg" => node.args = parse_words(rest, escape),
        "env" => node.kvs = parse_name_val(rest, "ENV", escape)?,
        "label" => node.kvs = parse_name_val(rest, "LABEL", escape)?,
        "expose" | "from" => node.args = split_ws(rest),
        "maintainer" | "stopsignal" | "user" | "workdir" if !rest.is_empty() => {
            node.args = vec![rest.to_string()];
        }
        "healthcheck" => {
            let sep = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            if sep > 0 {
                let typ = &rest[..sep];
                let (cmd_args, json) = maybe_json(rest[sep..].trim_start())?;
                node.args = std::iter::once(typ.to_string()).chain(cmd_args).collect();
                node.json = json;
            }
        }
        "onbuild" if !rest.is_empty() && !nested => {
            let sub = node_from_line(rest, escape, true)?;
            node.args = std::iter::once(sub.cmd.clone())
                .chain(sub.args.iter().cloned())
                .collect();
            node.sub = Some(Box::new(sub));
        }
        _ => {}
    }
    Ok(node)
}

/// Splits leading `--flag[=value]` words off the arguments (BuildKit's
/// `extractBuilderFlags`): quotes and escapes are processed inside flag words, a
/// bare `--` ends the flags.
fn extract_builder_flags(line: &str, escape: char) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let Some(&(pos, ch)) = chars.get(i) else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return (String::new(), words);
        };
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    i += 1;
                    continue;
                }
                let next_dash = chars.get(i + 1).is_some_and(|&(_, c)| c == '-');
                if ch != '-' || !next_dash {
                    return (line[pos..].to_string(), words);
                }
                phase = Phase::Word;
                continue;
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (line[pos..].to_string(), words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == escape {
                    if let Some(&(_, c)) = chars.get(i + 1) {
                        word.push(c);
                        i += 1;
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                } else if ch == escape {
                    match chars.get(i + 1) {
                        Some(&(_, c)) => {
                            word.push(c);
                            i += 1;
                        }
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
        i += 1;
    }
}

/// BuildKit's `parseWords`: whitespace-separated words, quotes and escapes kept
/// (they are processed later by variable expansion).
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        match quote {
            None => {
                if !in_word {
                    if ch.is_whitespace() {
                        i += 1;
                        continue;
                    }
                    in_word = true;
                }
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    in_word = false;
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if i + 1 == chars.len() {
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    word.push(chars[i]);
                } else {
                    word.push(ch);
                }
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    if i + 1 == chars.len() {
                        quote = None;
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    word.push(chars[i]);
                } else {
                    word.push(ch);
                }
            }
        }
        i += 1;
    }
    if (in_word || quote.is_some()) && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

fn parse_name_val(
    rest: &str,
    key: &str,
    escape: char,
) -> Result<Vec<(String, String, bool)>, ParseError> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(i) = rest.find(is_split_space) else {
            return Err(invalid_arg(format!("{key} must have two arguments")));
        };
        let value = rest[i..].trim_start_matches(is_split_space);
        return Ok(vec![(rest[..i].to_string(), value.to_string(), true)]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string(), false)),
            None => Err(invalid_arg(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ))),
        })
        .collect()
}

enum JsonResult {
    Array(Vec<String>),
    NotStrings,
    NotJson,
}

fn parse_json(rest: &str) -> JsonResult {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return JsonResult::NotJson;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Ok(values) => {
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return JsonResult::NotStrings,
                }
            }
            JsonResult::Array(out)
        }
        Err(_) => JsonResult::NotJson,
    }
}

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), ParseError> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json(rest) {
        JsonResult::Array(a) => Ok((a, true)),
        JsonResult::NotStrings => Err(syntax(NOT_STRING_ARRAY)),
        JsonResult::NotJson => Ok((vec![rest.to_string()], false)),
    }
}

fn maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), ParseError> {
    match parse_json(rest) {
        JsonResult::Array(a) => Ok((a, true)),
        JsonResult::NotStrings => Err(syntax(NOT_STRING_ARRAY)),
        JsonResult::NotJson => Ok((split_ws(rest), false)),
    }
}

fn heredoc_regex() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^([0-9]*)<<(-?)[\t\n\x0c\r ]*([^<]*)$")
            .expect("constant regex is valid")
    })
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// Recognises a heredoc word such as `<<EOF`, `<<-"EOF"` or `3<<EOF`.
pub(crate) fn parse_heredoc_word(src: &str) -> Result<Option<Heredoc>, ParseError> {
    let Some(c) = heredoc_regex().captures(src) else {
        return Ok(None);
    };
    let fd = c[1].parse::<u32>().unwrap_or(0);
    let chomp = &c[2] == "-";
    let rest = &c[3];
    if rest.is_empty() {
        return Ok(None);
    }
    let lex = Lexer {
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let words = lex
        .process_words(rest, &no_env)
        .map_err(|e| syntax(e.to_string()))?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = Lexer {
        raw_quotes: true,
        ..lex
    }
    .process_words(rest, &no_env)
    .map_err(|e| syntax(e.to_string()))?;
    if raw.len() != words.len() {
        return Err(syntax(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        )));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let name = words.into_iter().next().unwrap_or_default();
    Ok(Some(Heredoc {
        expand: quotes(&name) == quotes(&raw[0]),
        name,
        content: String::new(),
        chomp,
        fd,
    }))
}

fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, ParseError> {
    let lex = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let words = lex.process_words(line, &no_env).unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc_word(&w)? {
            docs.push(h);
        }
    }
    Ok(docs)
}

// ---------------------------------------------------------------------------
// Flags

#[derive(Clone, Copy, PartialEq)]
enum FlagType {
    Bool,
    Str,
    Strings,
}

#[derive(Default)]
struct FlagValues {
    bools: HashMap<&'static str, bool>,
    strs: HashMap<&'static str, String>,
    lists: HashMap<&'static str, Vec<String>>,
}

impl FlagValues {
    fn bool(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }
    fn str(&mut self, name: &str) -> Option<String> {
        self.strs.remove(name)
    }
    fn list(&mut self, name: &str) -> Vec<String> {
        self.lists.remove(name).unwrap_or_default()
    }
}

/// BuildKit's `BFlags.Parse`.
fn parse_flags(
    args: &[String],
    spec: &[(&'static str, FlagType)],
) -> Result<FlagValues, ParseError> {
    let mut out = FlagValues::default();
    let mut used: Vec<&str> = Vec::new();
    for a in args {
        if a == "--" {
            break;
        }
        let Some(body) = a.strip_prefix("--") else {
            return Err(invalid_flag(format!("arg should start with -- : {a}")));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let flag_name = format!("--{name}");
        let Some(&(key, typ)) = spec.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = spec.iter().map(|(n, _)| *n).collect();
            return Err(invalid_flag(did_you_mean(
                format!("unknown flag: {flag_name}"),
                name,
                &names,
                true,
            )));
        };
        if used.contains(&key) && typ != FlagType::Strings {
            return Err(invalid_flag(format!(
                "duplicate flag specified: {flag_name}"
            )));
        }
        used.push(key);
        match typ {
            FlagType::Bool => {
                if value == Some("") {
                    return Err(invalid_flag(format!(
                        "missing a value on flag: {flag_name}"
                    )));
                }
                let v = match value.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(_) => {
                        return Err(invalid_flag(format!(
                            "expecting boolean value for flag {flag_name}, not: {}",
                            value.unwrap_or_default()
                        )))
                    }
                };
                out.bools.insert(key, v);
            }
            FlagType::Str => {
                let Some(v) = value else {
                    return Err(invalid_flag(format!(
                        "missing a value on flag: {flag_name}"
                    )));
                };
                out.strs.insert(key, v.to_string());
            }
            FlagType::Strings => {
                let Some(v) = value else {
                    return Err(invalid_flag(format!(
                        "missing a value on flag: {flag_name}"
                    )));
                };
                out.lists.entry(key).or_default().push(v.to_string());
            }
        }
    }
    Ok(out)
}

fn no_flags(node: &Node) -> Result<(), ParseError> {
    parse_flags(&node.flags, &[]).map(|_| ())
}

// ---------------------------------------------------------------------------
// Instructions

fn parse_from(node: &Node) -> Result<Stage, ParseError> {
    let args = &node.args;
    let name = match args.len() {
        3 if args[1].eq_ignore_ascii_case("as") => {
            let name = args[2].to_lowercase();
            if !valid_stage_name(&name) {
                return Err(invalid_arg(format!(
                    "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                    args[2]
                )));
            }
            Some(name)
        }
        1 => None,
        _ => return Err(invalid_arg("FROM requires either one or three arguments")),
    };
    let mut flags = parse_flags(&node.flags, &[("platform", FlagType::Str)])?;
    Ok(Stage {
        name,
        base: args[0].clone(),
        platform: flags.str("platform"),
        start_line: node.start,
        end_line: node.end,
        original: node.original.trim().to_string(),
        instructions: Vec::new(),
    })
}

/// `^[a-z][a-z0-9-_.]*$`
fn valid_stage_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn at_least_one(cmd: &str) -> ParseError {
    invalid_arg(format!("{cmd} requires at least one argument"))
}

fn exactly_one(cmd: &str) -> ParseError {
    invalid_arg(format!("{cmd} requires exactly one argument"))
}

fn command_line(node: &Node) -> CommandLine {
    let args = if node.json {
        node.args.clone()
    } else if node.args.is_empty() {
        Vec::new()
    } else {
        vec![node.args.join(" ")]
    };
    CommandLine {
        args,
        prepend_shell: !node.json,
        heredocs: node.heredocs.clone(),
    }
}

fn key_values(node: &Node, cmd: &str) -> Result<Vec<KeyValue>, ParseError> {
    if node.kvs.is_empty() {
        return Err(at_least_one(cmd));
    }
    node.kvs
        .iter()
        .map(|(k, v, legacy)| {
            if k.is_empty() {
                Err(invalid_arg(format!("{cmd} names can not be blank")))
            } else {
                Ok(KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                    legacy: *legacy,
                })
            }
        })
        .collect()
}

fn copy_files(node: &Node, cmd: &str) -> Result<CopyFiles, ParseError> {
    let Some((dest, srcs)) = node.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(invalid_arg(format!(
            "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
        )));
    };
    if parse_heredoc_word(dest)?.is_some() {
        return Err(invalid_arg(format!(
            "{cmd} cannot accept a heredoc as a destination"
        )));
    }
    let mut sources = Vec::new();
    let mut inline = Vec::new();
    // Later heredocs of the same name win, as in BuildKit's lookup map.
    let bodies: HashMap<&str, &str> = node
        .heredocs
        .iter()
        .map(|d| (d.name.as_str(), d.content.as_str()))
        .collect();
    for src in srcs {
        match parse_heredoc_word(src)? {
            Some(h) => {
                let content = bodies.get(h.name.as_str()).copied().unwrap_or_default();
                inline.push(InlineFile {
                    data: if h.chomp {
                        chomp_tabs(content)
                    } else {
                        content.to_string()
                    },
                    path: h.name,
                    expand: h.expand,
                });
            }
            None => sources.push(src.clone()),
        }
    }
    Ok(CopyFiles {
        sources,
        inline,
        dest: dest.clone(),
    })
}

/// Go's `time.ParseDuration`.
pub(crate) fn parse_go_duration(s: &str) -> Result<(bool, Duration), String> {
    let err = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok((false, Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..n_end];
        if num.is_empty() || num == "." {
            return Err(err());
        }
        let value: f64 = num.parse().map_err(|_| err())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        rest = &rest[u_end..];
        total += value * unit;
    }
    if !total.is_finite() || total > (i64::MAX as f64) / 1e9 {
        return Err(err());
    }
    Ok((neg && total > 0.0, Duration::from_secs_f64(total)))
}

fn parse_interval(name: &str, value: Option<String>) -> Result<Duration, ParseError> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(Duration::ZERO);
    };
    let (neg, d) = parse_go_duration(&v).map_err(invalid_flag)?;
    if d.is_zero() {
        return Ok(Duration::ZERO);
    }
    if neg || d < Duration::from_millis(1) {
        return Err(invalid_flag(format!(
            "Interval {name:?} cannot be less than 1ms"
        )));
    }
    Ok(d)
}

fn parse_healthcheck(node: &Node) -> Result<Healthcheck, ParseError> {
    let Some(typ) = node.args.first() else {
        return Err(at_least_one("HEALTHCHECK"));
    };
    let typ = typ.to_uppercase();
    let args = &node.args[1..];
    let spec: &[(&str, FlagType)] = &[
        ("interval", FlagType::Str),
        ("timeout", FlagType::Str),
        ("start-period", FlagType::Str),
        ("start-interval", FlagType::Str),
        ("retries", FlagType::Str),
    ];
    if typ == "NONE" {
        if !args.is_empty() {
            return Err(invalid_arg("HEALTHCHECK NONE takes no arguments"));
        }
        parse_flags(&node.flags, spec)?;
        return Ok(Healthcheck::None);
    }
    let mut flags = parse_flags(&node.flags, spec)?;
    if typ != "CMD" {
        return Err(invalid_arg(format!(
            "Unknown type {typ:?} in HEALTHCHECK (try CMD)"
        )));
    }
    let cmd: Vec<String> = if node.json {
        args.to_vec()
    } else if args.is_empty() {
        Vec::new()
    } else {
        vec![args.join(" ")]
    };
    if cmd.is_empty() {
        return Err(invalid_arg("Missing command after HEALTHCHECK CMD"));
    }
    let kind = if node.json { "CMD" } else { "CMD-SHELL" };
    let retries = match flags.str("retries").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => {
            let n: i64 = v.parse().map_err(|_| {
                invalid_flag(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
            })?;
            if n < 0 {
                return Err(invalid_flag(format!("--retries cannot be negative ({n})")));
            }
            u32::try_from(n).map_err(|_| {
                invalid_flag(format!(
                    "strconv.ParseInt: parsing {v:?}: value out of range"
                ))
            })?
        }
    };
    Ok(Healthcheck::Check(HealthcheckConfig {
        test: std::iter::once(kind.to_string()).chain(cmd).collect(),
        interval: parse_interval("interval", flags.str("interval"))?,
        timeout: parse_interval("timeout", flags.str("timeout"))?,
        start_period: parse_interval("start-period", flags.str("start-period"))?,
        start_interval: parse_interval("start-interval", flags.str("start-interval"))?,
        retries,
    }))
}

fn parse_run(node: &Node) -> Result<Run, ParseError> {
    let mut flags = parse_flags(
        &node.flags,
        &[
            ("mount", FlagType::Strings),
            ("network", FlagType::Str),
            ("security", FlagType::Str),
        ],
    )?;
    let network = match flags.str("network").as_deref() {
        None | Some("default") => NetworkMode::Default,
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(v) => return Err(invalid_flag(format!("invalid network mode {v:?}"))),
    };
    let security = match flags.str("security").as_deref() {
        None | Some("sandbox") => SecurityMode::Sandbox,
        Some("insecure") => SecurityMode::Insecure,
        Some(v) => return Err(invalid_flag(format!("security {v:?} is not valid"))),
    };
    let mounts = flags
        .list("mount")
        .iter()
        .map(|m| Mount::parse(m, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Run {
        command: command_line(node),
        mounts,
        network,
        security,
    })
}

fn to_instruction(node: &Node, escape: char) -> Result<Instruction, ParseError> {
    let lower = node.cmd.to_ascii_lowercase();
    let args = &node.args;
    let kind = match lower.as_str() {
        "env" => {
            no_flags(node)?;
            InstructionKind::Env(key_values(node, "ENV")?)
        }
        "label" => {
            no_flags(node)?;
            InstructionKind::Label(key_values(node, "LABEL")?)
        }
        "maintainer" => {
            if args.len() != 1 {
                return Err(exactly_one("MAINTAINER"));
            }
            no_flags(node)?;
            InstructionKind::Maintainer(args[0].clone())
        }
        "add" => {
            if args.len() < 2 {
                copy_files(node, "ADD")?;
            }
            let mut f = parse_flags(
                &node.flags,
                &[
                    ("chown", FlagType::Str),
                    ("chmod", FlagType::Str),
                    ("link", FlagType::Bool),
                    ("keep-git-dir", FlagType::Bool),
                    ("checksum", FlagType::Str),
                    ("unpack", FlagType::Bool),
                    ("exclude", FlagType::Strings),
                ],
            )?;
            InstructionKind::Add(Add {
                files: copy_files(node, "ADD")?,
                chown: f.str("chown").filter(|s| !s.is_empty()),
                chmod: f.str("chmod").filter(|s| !s.is_empty()),
                checksum: f.str("checksum").filter(|s| !s.is_empty()),
                keep_git_dir: f.bool("keep-git-dir"),
                unpack: f.bool("unpack"),
                link: f.bool("link").unwrap_or(false),
                exclude: f.list("exclude"),
            })
        }
        "copy" => {
            if args.len() < 2 {
                copy_files(node, "COPY")?;
            }
            let mut f = parse_flags(
                &node.flags,
                &[
                    ("chown", FlagType::Str),
                    ("from", FlagType::Str),
                    ("chmod", FlagType::Str),
                    ("link", FlagType::Bool),
                    ("exclude", FlagType::Strings),
                    ("parents", FlagType::Bool),
                ],
            )?;
            let from = f.str("from").filter(|s| !s.is_empty());
            if let Some(from) = &from {
                // BuildKit resolves --from before any variable is known.
                let lex = Lexer::new(escape);
                if lex.process_word(from, &no_env).ok().as_deref() != Some(from.as_str()) {
                    return Err(invalid_flag(
                        "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
                    ));
                }
            }
            InstructionKind::Copy(Copy {
                files: copy_files(node, "COPY")?,
                from,
                chown: f.str("chown").filter(|s| !s.is_empty()),
                chmod: f.str("chmod").filter(|s| !s.is_empty()),
                link: f.bool("link").unwrap_or(false),
                parents: f.bool("parents").unwrap_or(false),
                exclude: f.list("exclude"),
            })
        }
        "onbuild" => {
            let Some(sub) = &node.sub else {
                return Err(at_least_one("ONBUILD"));
            };
            no_flags(node)?;
            let trigger = sub.cmd.to_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err(invalid_arg(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ))
                }
                "MAINTAINER" | "FROM" => {
                    return Err(invalid_arg(format!(
                        "{trigger} isn't allowed as an ONBUILD trigger"
                    )))
                }
                _ => {}
            }
            let inner = to_instruction(sub, escape)?;
            let mut expression = strip_onbuild_keyword(&node.original).to_string();
            for h in &node.heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            InstructionKind::Onbuild(Onbuild {
                trigger: Box::new(inner),
                expression,
            })
        }
        "workdir" => {
            if args.len() != 1 {
                return Err(exactly_one("WORKDIR"));
            }
            no_flags(node)?;
            InstructionKind::Workdir(args[0].clone())
        }
        "run" => InstructionKind::Run(parse_run(node)?),
        "cmd" => {
            no_flags(node)?;
            InstructionKind::Cmd(command_line(node))
        }
        "entrypoint" => {
            no_flags(node)?;
            InstructionKind::Entrypoint(command_line(node))
        }
        "healthcheck" => InstructionKind::Healthcheck(parse_healthcheck(node)?),
        "expose" => {
            if args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            no_flags(node)?;
            let mut ports = args.clone();
            ports.sort();
            InstructionKind::Expose(ports)
        }
        "user" => {
            if args.len() != 1 {
                return Err(exactly_one("USER"));
            }
            no_flags(node)?;
            InstructionKind::User(args[0].clone())
        }
        "volume" => {
            if args.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            no_flags(node)?;
            let mut vols = Vec::with_capacity(args.len());
            for v in args {
                let v = v.trim();
                if v.is_empty() {
                    return Err(invalid_arg("VOLUME specified can not be an empty string"));
                }
                vols.push(v.to_string());
            }
            InstructionKind::Volume(vols)
        }
        "stopsignal" => {
            if args.len() != 1 {
                return Err(exactly_one("STOPSIGNAL"));
            }
            no_flags(node)?;
            InstructionKind::StopSignal(args[0].clone())
        }
        "arg" => {
            if args.is_empty() {
                return Err(at_least_one("ARG"));
            }
            no_flags(node)?;
            let mut decls = Vec::with_capacity(args.len());
            for a in args {
                decls.push(match a.split_once('=') {
                    Some(("", _)) => return Err(invalid_arg("ARG names can not be blank")),
                    Some((k, v)) => ArgDecl {
                        name: k.to_string(),
                        default: Some(v.to_string()),
                    },
                    None => ArgDecl {
                        name: a.clone(),
                        default: None,
                    },
                });
            }
            InstructionKind::Arg(decls)
        }
        "shell" => {
            no_flags(node)?;
            if args.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            if !node.json {
                return Err(invalid_arg(
                    "SHELL requires the arguments to be in JSON form",
                ));
            }
            InstructionKind::Shell(args.clone())
        }
        _ => {
            return Err(ParseError::new(
                ParseErrorKind::UnknownInstruction,
                did_you_mean(
                    format!("unknown instruction: {}", node.cmd),
                    &node.cmd,
                    INSTRUCTIONS,
                    false,
                ),
            ))
        }
    };
    Ok(Instruction {
        kind,
        start_line: node.start,
        end_line: node.end,
        original: node.original.trim().to_string(),
    })
}

/// `(?i)^\s*ONBUILD\s*` removed.
fn strip_onbuild_keyword(s: &str) -> &str {
    let t = s.trim_start_matches(is_go_ascii_space);
    match t.get(..7) {
        Some(k) if k.eq_ignore_ascii_case("onbuild") => {
            t[7..].trim_start_matches(is_go_ascii_space)
        }
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(&format!("FROM a\n{text}\n")).unwrap_err().message
    }

    #[test]
    fn onbuild_triggers() {
        let df = parse("FROM a\nONBUILD COPY <<EOF /f\ndata\nEOF\nONBUILD RUN make\n").unwrap();
        for inst in &df.stages[0].instructions {
            let InstructionKind::Onbuild(o) = &inst.kind else {
                panic!("{inst:?}");
            };
            let t = parse_onbuild_trigger(&o.expression, 1).unwrap();
            assert_eq!(t.kind, o.trigger.kind);
        }
        assert_eq!(
            parse_onbuild_trigger("RUN a\nRUN b", 2)
                .unwrap_err()
                .message,
            "onbuild trigger should be a single expression"
        );
        assert_eq!(parse_onbuild_trigger("", 2).unwrap_err().line, 2);
        assert!(parse_onbuild_trigger("FROM x", 2).is_err());
        assert!(parse_onbuild_trigger("RUNN x", 2).is_err());
    }

    #[test]
    fn argument_count_errors() {
        for cmd in ["MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"] {
            assert_eq!(err(cmd), format!("{cmd} requires exactly one argument"));
        }
        for cmd in [
            "ENV",
            "LABEL",
            "ONBUILD",
            "HEALTHCHECK",
            "EXPOSE",
            "VOLUME",
            "ARG",
            "SHELL",
        ] {
            assert_eq!(err(cmd), format!("{cmd} requires at least one argument"));
        }
        for cmd in ["ADD", "COPY"] {
            assert_eq!(
                err(&format!("{cmd} arg1")),
                format!("{cmd} requires at least two arguments, but only one was provided. Destination could not be determined")
            );
        }
        assert_eq!(err("MAINTAINER --boo joe"), "unknown flag: --boo");
        assert_eq!(
            err("foo bar"),
            "unknown instruction: foo (did you mean from?)"
        );
        assert_eq!(
            err("copyy a b"),
            "unknown instruction: copyy (did you mean copy?)"
        );
        assert_eq!(err("ENV a=b =c"), "ENV names can not be blank");
        assert_eq!(
            err("HEALTHCHECK --interval=50ns CMD x"),
            "Interval \"interval\" cannot be less than 1ms"
        );
        assert_eq!(err("RUN --mount"), "missing a value on flag: --mount");
        assert_eq!(err("RUN --network"), "missing a value on flag: --network");
        assert_eq!(
            err("ADD --unpack=nope a b"),
            "expecting boolean value for flag --unpack, not: nope"
        );
    }

    #[test]
    fn error_locations_and_instruction() {
        let e = parse("FROM a\nRUN a \\\n b\nCOPY --x=1 \\\n a b\n").unwrap_err();
        assert_eq!((e.line, e.end_line), (4, 5));
        assert_eq!(e.instruction.as_deref(), Some("COPY"));
        let e = parse("FROM a\nCMD [\"a\", 2]\n").unwrap_err();
        assert_eq!(e.instruction.as_deref(), Some("CMD"));
        let e = parse("FROM a\nRUN <<EOF\nx\n").unwrap_err();
        assert_eq!((e.line, e.end_line), (2, 3));
        assert_eq!(e.kind(), ParseErrorKind::Syntax);
    }

    #[test]
    fn continuation_regex_semantics() {
        assert_eq!(trim_continuation("RUN a \\", '\\'), ("RUN a ", false));
        assert_eq!(trim_continuation("RUN a\\  \t", '\\'), ("RUN a", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("  \\", '\\'), ("  ", false));
        assert_eq!(trim_continuation("RUN a \\\\", '\\'), ("RUN a \\\\", true));
        assert_eq!(trim_continuation("RUN a `", '`'), ("RUN a ", false));
        assert_eq!(trim_continuation("RUN a \\", '`'), ("RUN a \\", true));
    }

    #[test]
    fn directives_split() {
        assert_eq!(split_directive("escape=`"), Some(("escape", "`")));
        assert_eq!(
            split_directive("syntax = a/b:1 "),
            Some(("syntax", "a/b:1"))
        );
        assert_eq!(split_directive("1x=a"), None);
        assert_eq!(split_directive("x="), None);
        assert_eq!(split_directive("comment"), None);
    }

    #[test]
    fn flags_extraction() {
        let (rest, flags) = extract_builder_flags("--a=1 --b=\"x y\" cmd --c", '\\');
        assert_eq!(rest, "cmd --c");
        assert_eq!(flags, vec!["--a=1", "--b=x y"]);
        let (rest, flags) = extract_builder_flags("--a -- --b", '\\');
        assert_eq!(rest, " --b");
        assert_eq!(flags, vec!["--a"]);
        let (rest, flags) = extract_builder_flags("--only", '\\');
        assert_eq!(rest, "");
        assert_eq!(flags, vec!["--only"]);
        let (rest, flags) = extract_builder_flags("-x y", '\\');
        assert_eq!(rest, "-x y");
        assert!(flags.is_empty());
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words("a=\"x y\" b='p q' c=\\ d", '\\'),
            vec!["a=\"x y\"", "b='p q'", "c=\\ d"]
        );
        assert_eq!(parse_words("  ", '\\'), Vec::<String>::new());
        assert_eq!(parse_words("a\\", '\\'), vec!["a"]);
    }

    #[test]
    fn go_durations() {
        let d = |s: &str| parse_go_duration(s).map(|(_, d)| d);
        assert_eq!(d("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(d("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(d("0"), Ok(Duration::ZERO));
        assert!(d("10").is_err());
        assert!(d("abc").is_err());
        assert!(d("").is_err());
        assert!(parse_go_duration("-1s").unwrap().0);
    }

    #[test]
    fn heredoc_words() {
        let h = parse_heredoc_word("<<EOF").unwrap().unwrap();
        assert_eq!(
            (h.name.as_str(), h.expand, h.chomp, h.fd),
            ("EOF", true, false, 0)
        );
        let h = parse_heredoc_word("<<-\"EOF\"").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.chomp), ("EOF", false, true));
        let h = parse_heredoc_word("3<<'E'OF").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.fd), ("EOF", false, 3));
        assert!(parse_heredoc_word("<<").unwrap().is_none());
        assert!(parse_heredoc_word("a<<EOF").unwrap().is_none());
        assert!(parse_heredoc_word("file").unwrap().is_none());
    }
}
