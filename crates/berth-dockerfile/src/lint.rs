//! Build checks: BuildKit's Dockerfile lint rules that can be decided from the
//! file alone, reported as [`Warning`]s (`docker build` prints them as
//! `- StageNameCasing: Stage name 'Build' should be lowercase (line 3)`).
//!
//! Rules implemented: NoEmptyContinuation, StageNameCasing, FromAsCasing,
//! ConsistentInstructionCasing, DuplicateStageName, ReservedStageName,
//! MaintainerDeprecated, LegacyKeyValueFormat, MultipleInstructionsDisallowed,
//! ExposeProtoCasing, RedundantTargetPlatform, JSONArgsRecommended. Rules that need
//! build-time knowledge (UndefinedVar, WorkdirRelativePath, SecretsUsedInArgOrEnv,
//! base image platform, ...) are the builder's.
//!
//! The `# check=skip=<rules>|all; error=<bool>` directive is parsed into
//! [`CheckConfig`]; skipped rules are not reported, and `error=true` is for the
//! builder to turn warnings into a failed build.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::ast::{Dockerfile, InstructionKind};
use crate::error::{syntax, ParseError};
use crate::mount::parse_go_bool;

/// A non-fatal finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Rule name, e.g. `StageNameCasing`.
    pub rule: String,
    /// BuildKit's message.
    pub message: String,
    /// 1-based line the warning is about.
    pub line: usize,
    /// Documentation URL of the rule.
    pub url: String,
}

impl fmt::Display for Warning {
    /// BuildKit's short form: `Rule: message (line N)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (line {})", self.rule, self.message, self.line)
    }
}

/// The `# check=` directive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// `skip=all`.
    pub skip_all: bool,
    /// `skip=Rule1,Rule2`.
    pub skip: Vec<String>,
    /// `error=true`: warnings should fail the build.
    pub error: bool,
}

impl CheckConfig {
    /// Parses the directive value, e.g. `skip=JSONArgsRecommended;error=true`.
    /// The error carries no line; [`crate::parse`] attributes it to the directive.
    pub fn parse(s: &str) -> Result<CheckConfig, ParseError> {
        let mut c = CheckConfig::default();
        let s = s.trim();
        if s.is_empty() {
            return Ok(c);
        }
        for part in s.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(syntax(format!("invalid check option {part:?}")));
            };
            let v = v.trim();
            match k.trim() {
                "skip" if v == "all" => c.skip_all = true,
                "skip" => c.skip = v.split(',').map(|r| r.trim().to_string()).collect(),
                "experimental" => {}
                "error" => {
                    c.error = parse_go_bool(v).ok_or_else(|| {
                        syntax(format!(
                            "failed to parse check option {part:?}: strconv.ParseBool: parsing {v:?}: invalid syntax"
                        ))
                    })?
                }
                k => return Err(syntax(format!("invalid check option {k:?}"))),
            }
        }
        Ok(c)
    }

    /// Whether `rule` is reported.
    pub fn enabled(&self, rule: &str) -> bool {
        !self.skip_all && !self.skip.iter().any(|r| r == rule)
    }
}

fn url(rule: &str) -> String {
    // Rule docs live at kebab-case slugs: StageNameCasing -> stage-name-casing.
    let mut slug = String::new();
    let chars: Vec<char> = rule.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if i > 0 && (prev_lower || (next_lower && chars[i - 1].is_ascii_uppercase())) {
                slug.push('-');
            }
            slug.push(c.to_ascii_lowercase());
        } else {
            slug.push(*c);
        }
    }
    format!("https://docs.docker.com/go/dockerfile/rule/{slug}/")
}

pub(crate) fn warning(rule: &str, message: String, line: usize) -> Warning {
    Warning {
        rule: rule.to_string(),
        message,
        line,
        url: url(rule),
    }
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or_default()
}

fn consistent(s: &str) -> bool {
    s == s.to_lowercase() || s == s.to_uppercase()
}

/// Runs the static rules over a parsed file and appends their warnings.
pub(crate) fn lint(df: &Dockerfile, out: &mut Vec<Warning>) {
    // Keyword casing: majority over FROM lines and stage instructions.
    let keywords = df.stages.iter().flat_map(|s| {
        std::iter::once((first_word(&s.original), s.start_line)).chain(
            s.instructions
                .iter()
                .map(|i| (first_word(&i.original), i.start_line)),
        )
    });
    let (mut lower, mut upper) = (0, 0);
    for (k, _) in keywords.clone() {
        if consistent(k) {
            if k == k.to_lowercase() {
                lower += 1;
            } else {
                upper += 1;
            }
        }
    }
    let majority_lower = lower > upper;
    for (k, line) in keywords {
        let casing = if majority_lower && k != k.to_lowercase() {
            "lowercase"
        } else if !majority_lower && k != k.to_uppercase() {
            "uppercase"
        } else {
            continue;
        };
        out.push(warning(
            "ConsistentInstructionCasing",
            format!("Command '{k}' should match the case of the command majority ({casing})"),
            line,
        ));
    }

    let mut names: HashSet<&str> = HashSet::new();
    // Whether each stage ends with a SHELL set (its own or inherited from an
    // earlier stage it is based on), and the latest stage of each name.
    let mut shell_after: Vec<bool> = Vec::with_capacity(df.stages.len());
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for stage in df.stages.iter() {
        // FROM [--flags] base [AS name], as written.
        let words: Vec<&str> = stage.original.split_whitespace().collect();
        let from_kw = words.first().copied().unwrap_or_default();
        let args: Vec<&str> = words
            .iter()
            .skip(1)
            .skip_while(|w| w.starts_with("--"))
            .copied()
            .collect();
        if let [_, as_kw, name] = args[..] {
            if name != name.to_lowercase() {
                out.push(warning(
                    "StageNameCasing",
                    format!("Stage name '{name}' should be lowercase"),
                    stage.start_line,
                ));
            }
            let from_lower = from_kw == from_kw.to_lowercase();
            let from_upper = from_kw == from_kw.to_uppercase();
            if (from_lower && as_kw != as_kw.to_lowercase())
                || (!from_lower && from_upper && as_kw != as_kw.to_uppercase())
            {
                out.push(warning(
                    "FromAsCasing",
                    format!("'{as_kw}' and '{from_kw}' keywords' casing do not match"),
                    stage.start_line,
                ));
            }
        }
        if let Some(name) = stage.name.as_deref() {
            if name == "context" || name == "scratch" {
                out.push(warning(
                    "ReservedStageName",
                    format!("Stage name should not use the same name as reserved stage {name:?}"),
                    stage.start_line,
                ));
            }
            if !names.insert(name) {
                out.push(warning(
                    "DuplicateStageName",
                    format!("Duplicate stage name {name:?}, stage names should be unique"),
                    stage.start_line,
                ));
            }
        }
        if let Some(p) = stage.platform.as_deref() {
            if p == "$TARGETPLATFORM" || p == "${TARGETPLATFORM}" {
                out.push(warning(
                    "RedundantTargetPlatform",
                    format!("Setting platform to predefined {p} in FROM is redundant as this is the default behavior"),
                    stage.start_line,
                ));
            }
        }

        // SHELL may come from an earlier stage used as base.
        let mut has_shell = by_name
            .get(stage.base.as_str())
            .is_some_and(|&b| shell_after[b]);
        let mut last_once: [Option<usize>; 3] = [None; 3];
        for inst in &stage.instructions {
            let line = inst.start_line;
            let once_slot = match &inst.kind {
                InstructionKind::Cmd(_) => Some(0),
                InstructionKind::Entrypoint(_) => Some(1),
                InstructionKind::Healthcheck(_) => Some(2),
                _ => None,
            };
            if let Some(slot) = once_slot {
                if let Some(prev) = last_once[slot] {
                    out.push(warning(
                        "MultipleInstructionsDisallowed",
                        format!("Multiple {} instructions should not be used in the same stage because only the last one will be used", first_word(&inst.original)),
                        prev,
                    ));
                }
                last_once[slot] = Some(line);
            }
            match &inst.kind {
                InstructionKind::Shell(_) => has_shell = true,
                InstructionKind::Maintainer(_) => out.push(warning(
                    "MaintainerDeprecated",
                    "Maintainer instruction is deprecated in favor of using label".into(),
                    line,
                )),
                InstructionKind::Env(kvs) | InstructionKind::Label(kvs)
                    if kvs.iter().any(|kv| kv.legacy) =>
                {
                    let name = first_word(&inst.original);
                    out.push(warning(
                        "LegacyKeyValueFormat",
                        format!("\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"),
                        line,
                    ));
                }
                InstructionKind::Cmd(c) | InstructionKind::Entrypoint(c)
                    if c.prepend_shell && !has_shell =>
                {
                    out.push(warning(
                        "JSONArgsRecommended",
                        format!(
                            "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                            first_word(&inst.original)
                        ),
                        line,
                    ));
                }
                InstructionKind::Expose(ports) => {
                    for p in ports {
                        if let Some((_, proto)) = p.rsplit_once('/') {
                            if !p.contains('$') && proto != proto.to_lowercase() {
                                out.push(warning(
                                    "ExposeProtoCasing",
                                    format!("Defined protocol '{p}' in EXPOSE instruction should be lowercase"),
                                    line,
                                ));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        shell_after.push(has_shell);
        if let Some(name) = stage.name.as_deref() {
            by_name.insert(name, shell_after.len() - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn rules(text: &str) -> Vec<String> {
        parse(text)
            .unwrap()
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect()
    }

    #[test]
    fn urls() {
        assert_eq!(
            url("StageNameCasing"),
            "https://docs.docker.com/go/dockerfile/rule/stage-name-casing/"
        );
        assert_eq!(
            url("JSONArgsRecommended"),
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
        assert_eq!(
            url("FromAsCasing"),
            "https://docs.docker.com/go/dockerfile/rule/from-as-casing/"
        );
    }

    #[test]
    fn static_rules() {
        let w = rules(
            "FROM alpine as Build\nMAINTAINER me\nENV A b\nCMD echo 1\nCMD [\"x\"]\nEXPOSE 80/TCP 53/udp\n\
             from build AS scratch\nRUN true\nFROM --platform=$TARGETPLATFORM x AS build\nSHELL [\"sh\",\"-c\"]\nENTRYPOINT run\n",
        );
        assert_eq!(
            w,
            vec![
                "StageNameCasing: Stage name 'Build' should be lowercase (line 1)",
                "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
                "MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 2)",
                "LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format (line 3)",
                "JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 4)",
                "MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used (line 4)",
                "ExposeProtoCasing: Defined protocol '80/TCP' in EXPOSE instruction should be lowercase (line 6)",
                "ConsistentInstructionCasing: Command 'from' should match the case of the command majority (uppercase) (line 7)",
                "FromAsCasing: 'AS' and 'from' keywords' casing do not match (line 7)",
                "ReservedStageName: Stage name should not use the same name as reserved stage \"scratch\" (line 7)",
                "DuplicateStageName: Duplicate stage name \"build\", stage names should be unique (line 9)",
                "RedundantTargetPlatform: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior (line 9)",
            ]
        );
    }

    #[test]
    fn check_directive() {
        let w = rules(
            "# check=skip=MaintainerDeprecated,JSONArgsRecommended\nFROM a\nMAINTAINER x\nCMD y\n",
        );
        assert!(w.is_empty(), "{w:?}");
        let df = parse("# check=skip=all;error=true\nFROM a\nMAINTAINER x\n").unwrap();
        assert!(df.warnings.is_empty());
        assert!(df.check.error);
        let e = parse("# check=bogus\nFROM a\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile:1: invalid check option \"bogus\""
        );
        let e = parse("# check=error=maybe\nFROM a\n").unwrap_err();
        assert!(e.message.starts_with("failed to parse check option"), "{e}");
    }

    #[test]
    fn shell_from_base_stage_counts() {
        let w = rules("FROM a AS base\nSHELL [\"bash\",\"-c\"]\nFROM base\nCMD echo\n");
        assert!(w.is_empty(), "{w:?}");
    }
}
