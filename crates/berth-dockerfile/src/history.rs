//! Image history text (`CreatedBy`), in BuildKit's format.
//!
//! berth writes history the way BuildKit does, not the classic builder's
//! `/bin/sh -c #(nop)  CMD ["sh"]`:
//!
//! | instruction | `CreatedBy` |
//! |---|---|
//! | `RUN make` | `RUN /bin/sh -c make # buildkit` (with `\|N k=v ...` when the stage declared ARGs) |
//! | `CMD ["sh"]` | `CMD ["sh"]` (Go `%q` of the final list, no commas) |
//! | `COPY --chown=1 a b /d/` | `COPY --chown=1 a b /d/ # buildkit` |
//! | `ENV A=1 B=2` | `ENV A=1 B=2` |
//! | `VOLUME /a /b` | `VOLUME [/a /b]` |
//! | `HEALTHCHECK ...` | `HEALTHCHECK {Test:[CMD-SHELL x] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}` |
//!
//! Steps that produce a layer end in ` # buildkit`. `ONBUILD` adds no history entry.

use std::fmt::Write as _;

/// The `Comment` BuildKit puts on every history entry of a Dockerfile build.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";
use std::time::Duration;

use crate::ast::*;

/// Formats a list like Go's `fmt.Sprintf("%q", []string{...})`: `["a" "b c"]`.
pub fn go_quote_slice(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&go_quote(s));
    }
    out.push(']');
    out
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if c == ' ' || !(c.is_control() || c.is_whitespace()) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Go's `time.Duration.String()`.
pub(crate) fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    let frac = |v: u128, digits: u32| -> String {
        let div = 10u128.pow(digits);
        let (int, rem) = (v / div, v % div);
        if rem == 0 {
            return int.to_string();
        }
        let s = format!("{rem:0width$}", width = digits as usize);
        format!("{int}.{}", s.trim_end_matches('0'))
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 6));
    }
    let h = ns / 3_600_000_000_000;
    let m = (ns / 60_000_000_000) % 60;
    let s = frac(ns % 60_000_000_000, 9);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

fn kv_line(cmd: &str, kvs: &[KeyValue]) -> String {
    let mut out = cmd.to_string();
    for kv in kvs {
        let _ = write!(out, " {}={}", kv.key, kv.value);
    }
    out
}

fn with_shell(shell: &[String], cmd: &CommandLine) -> Vec<String> {
    if !cmd.prepend_shell {
        return cmd.args.clone();
    }
    let mut v: Vec<String> = if shell.is_empty() {
        vec!["/bin/sh".into(), "-c".into()]
    } else {
        shell.to_vec()
    };
    v.push(cmd.args.join(" "));
    v
}

fn copy_line(
    cmd: &str,
    files: &CopyFiles,
    parents: bool,
    chown: &Option<String>,
    chmod: &Option<String>,
) -> String {
    let mut out = cmd.to_string();
    if parents {
        out.push_str(" --parents");
    }
    if let Some(c) = chown {
        let _ = write!(out, " --chown={c}");
    }
    if let Some(c) = chmod {
        let _ = write!(out, " --chmod={c}");
    }
    for s in &files.sources {
        let _ = write!(out, " {s}");
    }
    for i in &files.inline {
        let _ = write!(out, " <<{}", i.path);
    }
    let _ = write!(out, " {} # buildkit", files.dest);
    out
}

impl Instruction {
    /// The image history `CreatedBy` text for this (already expanded) instruction,
    /// in BuildKit's format; `None` for instructions that add no history (ONBUILD).
    ///
    /// `shell` is the stage's current `SHELL` (empty means `/bin/sh -c`);
    /// `history_args` are the stage's declared ARGs with values
    /// ([`crate::StageScope::history_args`]), used for RUN.
    ///
    /// ```
    /// let df = berth_dockerfile::parse("FROM a\nCMD [\"sh\"]\nRUN make\n").unwrap();
    /// let i = &df.stages[0].instructions;
    /// assert_eq!(i[0].created_by(&[], &[]).unwrap(), "CMD [\"sh\"]");
    /// assert_eq!(i[1].created_by(&[], &[("V".into(), "1".into())]).unwrap(),
    ///            "RUN |1 V=1 /bin/sh -c make # buildkit");
    /// ```
    pub fn created_by(
        &self,
        shell: &[String],
        history_args: &[(String, String)],
    ) -> Option<String> {
        Some(match &self.kind {
            InstructionKind::Run(r) => {
                let mut parts: Vec<String> = Vec::new();
                if !history_args.is_empty() {
                    parts.push(format!("|{}", history_args.len()));
                    parts.extend(history_args.iter().map(|(k, v)| format!("{k}={v}")));
                }
                parts.extend(with_shell(shell, &r.command));
                format!("RUN {} # buildkit", parts.join(" "))
            }
            InstructionKind::Cmd(c) => format!("CMD {}", go_quote_slice(&with_shell(shell, c))),
            InstructionKind::Entrypoint(c) => {
                let args = if c.args.is_empty() {
                    Vec::new()
                } else {
                    with_shell(shell, c)
                };
                format!("ENTRYPOINT {}", go_quote_slice(&args))
            }
            InstructionKind::Env(kv) => kv_line("ENV", kv),
            InstructionKind::Label(kv) => kv_line("LABEL", kv),
            InstructionKind::Maintainer(m) => format!("MAINTAINER {m}"),
            InstructionKind::Expose(p) => {
                let ports: Vec<String> = p
                    .iter()
                    .map(|p| {
                        if p.contains('/') {
                            p.to_lowercase()
                        } else {
                            format!("{p}/tcp")
                        }
                    })
                    .collect();
                format!("EXPOSE [{}]", ports.join(" "))
            }
            InstructionKind::Add(a) => copy_line("ADD", &a.files, false, &a.chown, &a.chmod),
            InstructionKind::Copy(c) => copy_line("COPY", &c.files, c.parents, &c.chown, &c.chmod),
            InstructionKind::Volume(v) => format!("VOLUME [{}]", v.join(" ")),
            InstructionKind::User(u) => format!("USER {u}"),
            InstructionKind::Workdir(w) => format!("WORKDIR {w}"),
            InstructionKind::Arg(decls) => {
                let parts: Vec<String> = decls
                    .iter()
                    .map(|d| match &d.default {
                        Some(v) => format!("{}={v}", d.name),
                        None => d.name.clone(),
                    })
                    .collect();
                format!("ARG {}", parts.join(" "))
            }
            InstructionKind::Onbuild(_) => return None,
            InstructionKind::StopSignal(s) => format!("STOPSIGNAL {s}"),
            InstructionKind::Shell(s) => format!("SHELL [{}]", s.join(" ")),
            InstructionKind::Healthcheck(h) => {
                let (test, iv, to, sp, si, r) = match h {
                    Healthcheck::None => (
                        vec!["NONE".to_string()],
                        Duration::ZERO,
                        Duration::ZERO,
                        Duration::ZERO,
                        Duration::ZERO,
                        0,
                    ),
                    Healthcheck::Check(c) => (
                        c.test.clone(),
                        c.interval,
                        c.timeout,
                        c.start_period,
                        c.start_interval,
                        c.retries,
                    ),
                };
                format!(
                    "HEALTHCHECK {{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{r}}}",
                    test.join(" "),
                    go_duration(iv),
                    go_duration(to),
                    go_duration(sp),
                    go_duration(si),
                )
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(
            go_quote_slice(&["a".into(), "b \"c\"\n".into()]),
            r#"["a" "b \"c\"\n"]"#
        );
        assert_eq!(go_quote("\u{1}é"), "\"\\x01é\"");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::from_nanos(10)), "10ns");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn created_by_forms() {
        let df = crate::parse(
            "FROM a\nSHELL [\"/bin/bash\", \"-c\"]\nRUN echo hi\nCMD echo hi\nENTRYPOINT [\"x\"]\n\
             COPY --parents --chown=1:2 a b /d/\nADD --chmod=644 u /e\nENV A=1 B=2\nLABEL x=y\n\
             VOLUME /v /w\nEXPOSE 80 53/UDP\nUSER u\nWORKDIR /w\nARG Q R=1\nSTOPSIGNAL TERM\n\
             HEALTHCHECK --interval=5s --retries=3 CMD curl -f x\nHEALTHCHECK NONE\nONBUILD RUN x\n\
             MAINTAINER me\nCOPY <<EOF /f\nhi\nEOF\n",
        )
        .unwrap();
        let sh = vec!["/bin/bash".to_string(), "-c".to_string()];
        let got: Vec<Option<String>> = df.stages[0]
            .instructions
            .iter()
            .map(|i| i.created_by(&sh, &[]))
            .collect();
        let want = [
            Some("SHELL [/bin/bash -c]"),
            Some("RUN /bin/bash -c echo hi # buildkit"),
            Some("CMD [\"/bin/bash\" \"-c\" \"echo hi\"]"),
            Some("ENTRYPOINT [\"x\"]"),
            Some("COPY --parents --chown=1:2 a b /d/ # buildkit"),
            Some("ADD --chmod=644 u /e # buildkit"),
            Some("ENV A=1 B=2"),
            Some("LABEL x=y"),
            Some("VOLUME [/v /w]"),
            Some("EXPOSE [53/udp 80/tcp]"),
            Some("USER u"),
            Some("WORKDIR /w"),
            Some("ARG Q R=1"),
            Some("STOPSIGNAL TERM"),
            Some("HEALTHCHECK {Test:[CMD-SHELL curl -f x] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}"),
            Some("HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}"),
            None,
            Some("MAINTAINER me"),
            Some("COPY <<EOF /f # buildkit"),
        ];
        let want: Vec<Option<String>> = want.iter().map(|w| w.map(str::to_string)).collect();
        assert_eq!(got, want);
    }
}
