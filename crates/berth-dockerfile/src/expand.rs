//! Applying variable expansion to a parsed instruction, the way BuildKit's
//! dispatcher does before executing it.

use crate::ast::*;
use crate::error::ParseError;
use crate::mount::Mount;
use crate::shell::{expand, expand_heredoc, expand_words, ExpandError};

impl Instruction {
    /// Returns a copy with variables expanded and quotes removed in the arguments
    /// BuildKit expands (see [`Instruction::expands_variables`]); other instructions
    /// are returned unchanged. `lookup` gives the variables visible at this point of
    /// the stage (use [`crate::StageScope::lookup`]); `escape` is
    /// [`Dockerfile::escape`].
    ///
    /// - ENV, LABEL: keys and values, each as one word.
    /// - ADD, COPY: sources, destination, `--chown`, `--chmod` (and ADD
    ///   `--checksum`); heredoc sources whose delimiter was unquoted get their body
    ///   expanded with quotes kept.
    /// - WORKDIR, USER, STOPSIGNAL, VOLUME entries: one word each.
    /// - EXPOSE: each entry split into words (`EXPOSE $PORTS`).
    /// - ARG: unchanged; defaults depend on build args, use
    ///   [`crate::StageScope::apply`] or [`crate::StageScope::declare_arg`].
    /// - RUN: `--mount` options that contain `$` are parsed again with expansion.
    ///
    /// Errors carry the instruction's lines.
    pub fn expanded(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        escape: char,
    ) -> Result<Instruction, ParseError> {
        let at = |e: ParseError| e.at(self.start_line, self.end_line).on(self.keyword());
        self.expanded_inner(lookup, escape).map_err(at)
    }

    fn expanded_inner(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        escape: char,
    ) -> Result<Instruction, ParseError> {
        let one = |w: &str| expand(w, lookup, escape);
        let opt = |w: &Option<String>| -> Result<Option<String>, ExpandError> {
            w.as_deref().map(one).transpose()
        };
        let kvs = |kvs: &[KeyValue]| -> Result<Vec<KeyValue>, ExpandError> {
            kvs.iter()
                .map(|kv| {
                    Ok(KeyValue {
                        key: one(&kv.key)?,
                        value: one(&kv.value)?,
                        legacy: kv.legacy,
                    })
                })
                .collect()
        };
        let files = |f: &CopyFiles| -> Result<CopyFiles, ExpandError> {
            Ok(CopyFiles {
                sources: f.sources.iter().map(|s| one(s)).collect::<Result<_, _>>()?,
                inline: f
                    .inline
                    .iter()
                    .map(|i| {
                        Ok(InlineFile {
                            path: i.path.clone(),
                            data: if i.expand {
                                expand_heredoc(&i.data, lookup)?
                            } else {
                                i.data.clone()
                            },
                            expand: i.expand,
                        })
                    })
                    .collect::<Result<_, ExpandError>>()?,
                dest: one(&f.dest)?,
            })
        };
        let kind = match &self.kind {
            InstructionKind::Env(kv) => InstructionKind::Env(kvs(kv)?),
            InstructionKind::Label(kv) => InstructionKind::Label(kvs(kv)?),
            InstructionKind::Add(a) => InstructionKind::Add(Add {
                files: files(&a.files)?,
                chown: opt(&a.chown)?,
                chmod: opt(&a.chmod)?,
                checksum: opt(&a.checksum)?,
                ..a.clone()
            }),
            InstructionKind::Copy(c) => InstructionKind::Copy(Copy {
                files: files(&c.files)?,
                chown: opt(&c.chown)?,
                chmod: opt(&c.chmod)?,
                ..c.clone()
            }),
            InstructionKind::Workdir(p) => InstructionKind::Workdir(one(p)?),
            InstructionKind::User(u) => InstructionKind::User(one(u)?),
            InstructionKind::StopSignal(s) => InstructionKind::StopSignal(one(s)?),
            InstructionKind::Volume(v) => {
                InstructionKind::Volume(v.iter().map(|s| one(s)).collect::<Result<_, _>>()?)
            }
            InstructionKind::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    out.extend(expand_words(p, lookup, escape)?);
                }
                InstructionKind::Expose(out)
            }
            InstructionKind::Run(r) => {
                let exp = |w: &str| expand(w, lookup, escape);
                let mounts = r
                    .mounts
                    .iter()
                    .map(|m| {
                        if m.needs_expansion || m.spec.contains('$') {
                            Mount::parse(&m.spec, Some(&exp))
                        } else {
                            Ok(m.clone())
                        }
                    })
                    .collect::<Result<_, _>>()?;
                InstructionKind::Run(Run {
                    mounts,
                    ..r.clone()
                })
            }
            other => other.clone(),
        };
        Ok(Instruction {
            kind,
            start_line: self.start_line,
            end_line: self.end_line,
            original: self.original.clone(),
        })
    }
}
