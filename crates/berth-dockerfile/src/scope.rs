//! ARG and ENV scoping, as a small state machine the builder drives.
//!
//! The rules (Dockerfile reference, "Scope" and "Using ARG variables"):
//!
//! - `ARG`s before the first `FROM` (meta args) are visible only in `FROM` lines.
//!   A stage sees one only after re-declaring it with `ARG name` (no default), which
//!   takes the meta value.
//! - A `--build-arg` value overrides the default of a declared `ARG`, in the meta
//!   scope and in stages. Build args that no `ARG` declares are not visible.
//! - "ENV overrides ARG" is order-dependent, as BuildKit implements it: an `ENV`
//!   after an `ARG` of the same name wins; an `ARG` with a value declared after an
//!   `ENV` (or after an inherited base-image variable) wins for expansion and for
//!   RUN's environment, while the image config keeps the ENV value
//!   (moby/moby#34494). An `ARG` without any value changes nothing.
//! - ARG defaults and ENV values are expanded with what is visible *before* the
//!   instruction (`ENV a=1 b=$a` gives `b` the previous `a`).
//!
//! ```
//! use berth_dockerfile::ScopeState;
//! use std::collections::BTreeMap;
//! let mut g = ScopeState::new(BTreeMap::from([("V".to_string(), "2".to_string())]));
//! g.declare_meta_arg("V", Some("1"), '\\').unwrap();
//! g.declare_meta_arg("IMG", Some("alpine:$V"), '\\').unwrap();
//! assert_eq!(g.expand_from("${IMG}", '\\').unwrap(), "alpine:2");
//! let mut s = g.stage(&[("PATH".into(), "/bin".into())]);
//! assert_eq!(s.lookup("IMG"), None); // not re-declared
//! s.declare_arg("IMG", None, '\\').unwrap();
//! assert_eq!(s.lookup("IMG").as_deref(), Some("alpine:2"));
//! s.set_env("MODE", "env");
//! s.declare_arg("MODE", Some("arg"), '\\').unwrap();
//! assert_eq!(s.lookup("MODE").as_deref(), Some("arg")); // later ARG wins for RUN
//! assert_eq!(s.env().last().unwrap().1, "env"); // the image keeps the ENV
//! ```

use std::collections::{BTreeMap, HashMap};

use crate::ast::{ArgDecl, Instruction, InstructionKind};
use crate::error::{ParseError, ParseErrorKind};
use crate::shell::{expand, ExpandError};

/// Most bytes of variable names and values a stage may hold (ENV and ARG together).
pub const MAX_SCOPE_BYTES: usize = 32 << 20;

/// Global build scope: build args and meta args.
#[derive(Debug, Clone, Default)]
pub struct ScopeState {
    build_args: BTreeMap<String, String>,
    /// Declared meta args and their values (`None`: declared, no value).
    meta: Vec<(String, Option<String>)>,
}

impl ScopeState {
    /// Starts a build with the given `--build-arg` values.
    pub fn new(build_args: BTreeMap<String, String>) -> Self {
        ScopeState {
            build_args,
            meta: Vec::new(),
        }
    }

    /// Declares a meta arg (an `ARG` before the first `FROM`). Its value is the build
    /// arg if given, else the default expanded with earlier meta args. Returns it.
    pub fn declare_meta_arg(
        &mut self,
        name: &str,
        default: Option<&str>,
        escape: char,
    ) -> Result<Option<String>, ExpandError> {
        let value = match self.build_args.get(name) {
            Some(v) => Some(v.clone()),
            None => match default {
                Some(d) => Some(expand(d, &|k| self.meta_lookup(k), escape)?),
                None => None,
            },
        };
        self.set_meta(name, value.clone());
        Ok(value)
    }

    /// Sets a meta arg directly, e.g. BuildKit's automatic platform args
    /// (`BUILDPLATFORM`, `TARGETOS`, ...), which the builder defines before parsing
    /// the file's own meta args.
    pub fn set_meta(&mut self, name: &str, value: Option<String>) {
        self.meta.retain(|(k, _)| k != name);
        self.meta.push((name.to_string(), value));
    }

    /// Value of a meta arg.
    pub fn meta_lookup(&self, name: &str) -> Option<String> {
        self.meta
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    /// The build args given for this build.
    pub fn build_args(&self) -> &BTreeMap<String, String> {
        &self.build_args
    }

    /// Expands a `FROM` base name or `--platform` value with the meta args.
    pub fn expand_from(&self, word: &str, escape: char) -> Result<String, ExpandError> {
        expand(word, &|k| self.meta_lookup(k), escape)
    }

    /// Build args no `ARG` declared so far in the meta scope or `stages` (Docker
    /// warns about them: "one or more build-args were not consumed").
    pub fn unused_build_args<'a>(&'a self, stages: &[StageScope]) -> Vec<&'a str> {
        self.build_args
            .keys()
            .filter(|k| {
                !self.meta.iter().any(|(m, _)| m == *k)
                    && !stages
                        .iter()
                        .any(|s| s.declared.iter().any(|d| d.name == **k))
            })
            .map(String::as_str)
            .collect()
    }

    /// Starts a stage whose base image config has environment `image_env`.
    pub fn stage(&self, image_env: &[(String, String)]) -> StageScope {
        let mut s = StageScope {
            global: self.clone(),
            vars: OrderedVars::default(),
            env: OrderedVars::default(),
            declared: Vec::new(),
        };
        for (k, v) in image_env {
            s.set_env(k, v);
        }
        s
    }
}

/// Insertion-ordered name → value map with size accounting.
#[derive(Debug, Clone, Default)]
struct OrderedVars {
    items: Vec<(String, String)>,
    index: HashMap<String, usize>,
    bytes: usize,
}

impl OrderedVars {
    fn set(&mut self, name: &str, value: &str) {
        match self.index.get(name) {
            Some(&i) => {
                self.bytes = self.bytes - self.items[i].1.len() + value.len();
                self.items[i].1 = value.to_string();
            }
            None => {
                self.bytes += name.len() + value.len();
                self.index.insert(name.to_string(), self.items.len());
                self.items.push((name.to_string(), value.to_string()));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.items[i].1.as_str())
    }
}

/// Variables visible inside one stage.
#[derive(Debug, Clone)]
pub struct StageScope {
    global: ScopeState,
    /// What expansion and RUN see: ENV and valued ARGs, last write wins.
    vars: OrderedVars,
    /// The image config's environment: base image env and ENV only.
    env: OrderedVars,
    /// ARGs declared in this stage, with their resolved values, in order.
    declared: Vec<ArgDecl>,
}

impl StageScope {
    /// Value of a variable for expansion and for RUN.
    pub fn lookup(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(str::to_string)
    }

    /// `ENV name=value` (value already expanded).
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.vars.set(name, value);
        self.env.set(name, value);
    }

    /// `ARG name[=default]`: resolves the value (build arg, else expanded default,
    /// else the meta arg of that name) and, when there is one, makes it visible.
    /// Returns the resolved value.
    pub fn declare_arg(
        &mut self,
        name: &str,
        default: Option<&str>,
        escape: char,
    ) -> Result<Option<String>, ExpandError> {
        let value = match self.global.build_args.get(name) {
            Some(v) => Some(v.clone()),
            None => match default {
                Some(d) => Some(expand(d, &|k| self.lookup(k), escape)?),
                None => self.global.meta_lookup(name),
            },
        };
        self.declared.retain(|d| d.name != name);
        self.declared.push(ArgDecl {
            name: name.to_string(),
            default: value.clone(),
        });
        if let Some(v) = &value {
            self.vars.set(name, v);
        }
        Ok(value)
    }

    /// Environment for the image config: base image env and ENV, in order.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env.items.clone()
    }

    /// Environment of a RUN step: ENV plus declared ARGs that have a value.
    pub fn run_env(&self) -> Vec<(String, String)> {
        self.vars.items.clone()
    }

    /// ARGs declared in this stage as `(name, value)`, for the `|N name=value`
    /// prefix of RUN history (BuildKit uses the current variable value, else the
    /// ARG's own value, else empty).
    pub fn history_args(&self) -> Vec<(String, String)> {
        self.declared
            .iter()
            .map(|d| {
                let v = self
                    .lookup(&d.name)
                    .or_else(|| d.default.clone())
                    .unwrap_or_default();
                (d.name.clone(), v)
            })
            .collect()
    }

    /// Total bytes of variable names and values in the stage.
    pub fn size(&self) -> usize {
        self.vars.bytes + self.env.bytes
    }

    /// Expands `inst` with the variables visible now and updates the scope for ENV
    /// and ARG. The returned ARG instruction carries resolved values as defaults.
    /// Fails when the stage's variables would exceed [`MAX_SCOPE_BYTES`].
    pub fn apply(&mut self, inst: &Instruction, escape: char) -> Result<Instruction, ParseError> {
        let out = self.apply_inner(inst, escape)?;
        if self.size() > MAX_SCOPE_BYTES {
            return Err(ParseError::new(
                ParseErrorKind::Limit,
                format!("variables of the stage exceed {MAX_SCOPE_BYTES} bytes"),
            )
            .at(inst.start_line, inst.end_line)
            .on(inst.keyword()));
        }
        Ok(out)
    }

    fn apply_inner(&mut self, inst: &Instruction, escape: char) -> Result<Instruction, ParseError> {
        let at = |e: ExpandError| {
            ParseError::from(e)
                .at(inst.start_line, inst.end_line)
                .on(inst.keyword())
        };
        match &inst.kind {
            InstructionKind::Arg(decls) => {
                let mut out = Vec::with_capacity(decls.len());
                for d in decls {
                    let v = self
                        .declare_arg(&d.name, d.default.as_deref(), escape)
                        .map_err(at)?;
                    out.push(ArgDecl {
                        name: d.name.clone(),
                        default: v,
                    });
                }
                Ok(Instruction {
                    kind: InstructionKind::Arg(out),
                    ..inst.clone()
                })
            }
            _ => {
                let e = inst.expanded(&|k| self.lookup(k), escape)?;
                if let InstructionKind::Env(kvs) = &e.kind {
                    for kv in kvs {
                        self.set_env(&kv.key, &kv.value);
                    }
                }
                Ok(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn meta_args_only_in_from_until_redeclared() {
        let mut g = ScopeState::new(args(&[]));
        g.declare_meta_arg("A", Some("1"), '\\').unwrap();
        g.declare_meta_arg("B", Some("${A}2"), '\\').unwrap();
        g.declare_meta_arg("C", None, '\\').unwrap();
        assert_eq!(g.expand_from("x:$B$C", '\\').unwrap(), "x:12");
        let mut s = g.stage(&[]);
        assert_eq!(s.lookup("A"), None);
        assert_eq!(
            s.declare_arg("A", None, '\\').unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(s.lookup("A").as_deref(), Some("1"));
        // A default in the stage replaces the meta value.
        assert_eq!(
            s.declare_arg("B", Some("own"), '\\').unwrap().as_deref(),
            Some("own")
        );
        assert_eq!(s.declare_arg("C", None, '\\').unwrap(), None);
        assert_eq!(s.lookup("C"), None);
    }

    #[test]
    fn build_args_override_defaults() {
        let mut g = ScopeState::new(args(&[("V", "cli"), ("UNUSED", "x")]));
        assert_eq!(
            g.declare_meta_arg("V", Some("d"), '\\').unwrap().as_deref(),
            Some("cli")
        );
        let mut s = g.stage(&[]);
        assert_eq!(
            s.declare_arg("V", Some("other"), '\\').unwrap().as_deref(),
            Some("cli")
        );
        assert_eq!(g.unused_build_args(&[s.clone()]), vec!["UNUSED"]);
        // Build args are invisible unless declared.
        assert_eq!(s.lookup("UNUSED"), None);
    }

    #[test]
    fn env_and_arg_last_write_wins() {
        let g = ScopeState::new(args(&[("X", "cli")]));
        let mut s = g.stage(&[("PATH".into(), "/bin".into())]);
        // ARG then ENV: ENV wins.
        s.declare_arg("X", Some("a"), '\\').unwrap();
        assert_eq!(s.lookup("X").as_deref(), Some("cli"));
        s.set_env("X", "env");
        assert_eq!(s.lookup("X").as_deref(), Some("env"));
        // ENV then ARG with a value: the ARG wins for expansion and RUN...
        s.declare_arg("X", Some("again"), '\\').unwrap();
        assert_eq!(s.lookup("X").as_deref(), Some("cli"));
        s.declare_arg("PATH", Some("/override"), '\\').unwrap();
        assert_eq!(s.lookup("PATH").as_deref(), Some("/override"));
        // ...while the image config keeps the ENV values.
        assert_eq!(
            s.env(),
            vec![
                ("PATH".to_string(), "/bin".to_string()),
                ("X".to_string(), "env".to_string())
            ]
        );
        // An ARG without a value changes nothing.
        s.declare_arg("PATH", None, '\\').unwrap();
        assert_eq!(s.lookup("PATH").as_deref(), Some("/override"));
        let mut t = g.stage(&[("HOME".into(), "/root".into())]);
        t.declare_arg("HOME", None, '\\').unwrap();
        assert_eq!(t.lookup("HOME").as_deref(), Some("/root"));
        assert_eq!(
            s.run_env(),
            vec![
                ("PATH".to_string(), "/override".to_string()),
                ("X".to_string(), "cli".to_string())
            ]
        );
        assert_eq!(
            s.history_args(),
            vec![
                ("X".to_string(), "cli".to_string()),
                ("PATH".to_string(), "/override".to_string())
            ]
        );
    }

    #[test]
    fn apply_expands_with_state_before_instruction() {
        let df = crate::parse(
            "FROM a\nENV abc=hello\nENV abc=bye def=$abc\nARG N=${def}-x\nWORKDIR /$N\n",
        )
        .unwrap();
        let g = ScopeState::new(BTreeMap::new());
        let mut s = g.stage(&[]);
        let mut out = Vec::new();
        for i in &df.stages[0].instructions {
            out.push(s.apply(i, '\\').unwrap());
        }
        assert_eq!(s.lookup("def").as_deref(), Some("hello"));
        assert_eq!(s.lookup("N").as_deref(), Some("hello-x"));
        assert_eq!(out[3].kind, InstructionKind::Workdir("/hello-x".into()));
    }

    #[test]
    fn exponential_env_is_bounded() {
        let mut text = String::from("FROM a\nENV A0=xxxxxxxxxxxxxxxx\n");
        for i in 1..40 {
            text.push_str(&format!("ENV A{i}=$A{p}$A{p}\n", p = i - 1));
        }
        let df = crate::parse(&text).unwrap();
        let mut s = ScopeState::default().stage(&[]);
        let mut failed = None;
        for inst in &df.stages[0].instructions {
            if let Err(e) = s.apply(inst, '\\') {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("growth must be stopped");
        assert_eq!(e.kind(), ParseErrorKind::Expansion);
        assert!(s.size() < 8 << 20);
        // Many large values hit the stage budget.
        let mut s = ScopeState::default().stage(&[]);
        let big = "v".repeat(1 << 20);
        let mut text = String::from("FROM a\n");
        for i in 0..40 {
            text.push_str(&format!("ENV V{i}=$BIG\n"));
        }
        s.set_env("BIG", &big);
        let df = crate::parse(&text).unwrap();
        let e = df.stages[0]
            .instructions
            .iter()
            .try_for_each(|i| s.apply(i, '\\').map(|_| ()))
            .unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::Limit);
    }

    #[test]
    fn apply_reports_line() {
        let df = crate::parse("FROM a\n\nWORKDIR ${X:?need X}\n").unwrap();
        let mut s = ScopeState::default().stage(&[]);
        let e = s.apply(&df.stages[0].instructions[0], '\\').unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile:3: failed to process \"${X:?need X}\": X: need X"
        );
        assert_eq!(e.instruction.as_deref(), Some("WORKDIR"));
    }
}
