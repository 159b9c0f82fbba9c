//! berth-dockerfile: the Dockerfile and `.dockerignore` parser used by `berth build`.
//!
//! Pure code: no I/O, no global state, no panics on any input (it is fuzzed: the
//! entry point is [`parse`]), and bounded work: see [`MAX_DOCKERFILE_SIZE`],
//! [`MAX_LINE_SIZE`], [`MAX_INSTRUCTIONS`], [`MAX_STAGES`], [`MAX_EXPANSION_DEPTH`],
//! [`MAX_EXPANSION_GROWTH`] and [`MAX_SCOPE_BYTES`]; every step is linear in the
//! input size.
//!
//! The parser is checked against BuildKit's own parser test files and shell-lexer
//! tables (`tests/buildkit_compat.rs`, opt-in) besides its own golden files.
//!
//! # Why it is shaped like this
//!
//! Docker's behaviour is the reference, and BuildKit's frontend defines it, so the
//! crate follows BuildKit's pipeline step for step rather than a grammar of its own:
//!
//! 1. **Logical lines** ([`parse`]): parser directives (`# syntax=`, `# escape=`,
//!    `# check=`) only before anything else, comments, line continuations with the
//!    escape token (comment and blank lines inside a continuation are dropped),
//!    heredocs (`RUN <<EOF`, `<<-EOF`, `<<"EOF"`, several per line, `COPY <<EOF /d`).
//! 2. **Typed instructions** ([`Dockerfile`], [`Stage`], [`Instruction`]): keyword,
//!    `--flags` (unknown flags are errors, with BuildKit's "did you mean" hint) and
//!    arguments in exec (JSON) or shell form. Arguments stay *unexpanded*: which
//!    variables are visible depends on build args and the base image, which only
//!    the builder knows.
//! 3. **Expansion** ([`expand`], [`expand_words`], [`Instruction::expanded`],
//!    [`ScopeState`], [`StageScope`]): BuildKit's shell lexer (`$V`, `${V:-x}`,
//!    `${V#p}`, `${V/p/r}`, quoting and escapes) and its ARG/ENV scoping rules, as
//!    small pure helpers the builder drives instruction by instruction.
//!
//! `.dockerignore` handling ([`IgnoreMatcher`]) lives here too because it is the
//! other half of "what the build sees" and shares the same no-I/O constraints.
//!
//! Errors are [`ParseError`]s that print like `Dockerfile:7: unknown instruction: RUNN`
//! and carry the line range and instruction keyword.
//!
//! # History and cache text
//!
//! [`Instruction::original`] is the instruction as written (continuations joined,
//! trimmed), which is what cache keys use. Image history uses BuildKit's format
//! (not the classic builder's `/bin/sh -c #(nop) ...`), produced by
//! [`Instruction::created_by`] from an expanded instruction: `CMD ["sh"]`,
//! `ENV A=b`, `RUN /bin/sh -c make # buildkit`, `COPY dir /app # buildkit`, with
//! [`HISTORY_COMMENT`] as the entry's comment.
//!
//! # Heredocs in RUN
//!
//! [`CommandLine::effective`] turns `RUN <<EOF` forms into what BuildKit executes
//! ([`EffectiveCommand`]); COPY/ADD heredocs are [`InlineFile`]s.
//!
//! # Stage graph
//!
//! [`Dockerfile::resolve_base`], [`Dockerfile::resolve_from`] and
//! [`Dockerfile::stage_dependencies`] resolve FROM / `COPY --from` /
//! `--mount=from=` references with BuildKit's rules ([`SourceRef`]).
//!
//! # Warnings
//!
//! BuildKit's build checks that need only the file ([`lint`]) are in
//! [`Dockerfile::warnings`], honouring `# check=skip=...`.
//!
//! # Example
//!
//! ```
//! use berth_dockerfile::{parse, InstructionKind, ScopeState};
//! use std::collections::BTreeMap;
//!
//! let df = parse("ARG V=3.19\nFROM alpine:$V AS base\nENV GREETING=\"hi there\"\nCMD echo $GREETING\n").unwrap();
//! let mut scope = ScopeState::new(BTreeMap::new());
//! for decl in df.meta_arg_decls() {
//!     scope.declare_meta_arg(&decl.name, decl.default.as_deref(), df.escape).unwrap();
//! }
//! assert_eq!(scope.expand_from(&df.stages[0].base, df.escape).unwrap(), "alpine:3.19");
//!
//! let mut stage = scope.stage(&[]);
//! for inst in &df.stages[0].instructions {
//!     let inst = stage.apply(inst, df.escape).unwrap();
//!     if let InstructionKind::Env(kv) = &inst.kind {
//!         assert_eq!(kv[0].value, "hi there");
//!     }
//! }
//! assert_eq!(stage.lookup("GREETING").as_deref(), Some("hi there"));
//! ```

#![warn(missing_docs)]

mod ast;
mod error;
mod expand;
mod history;
mod ignore;
pub mod lint;
mod mount;
mod parse;
mod scope;
mod shell;
mod stages;
mod suggest;

pub use ast::*;
pub use error::{ParseError, ParseErrorKind};
pub use history::{go_quote_slice, HISTORY_COMMENT};
pub use ignore::{IgnoreError, IgnoreErrorKind, IgnoreMatcher};
pub use parse::{
    dump_ast, parse, parse_onbuild_trigger, MAX_DOCKERFILE_SIZE, MAX_INSTRUCTIONS, MAX_LINE_SIZE,
    MAX_STAGES,
};
pub use scope::{ScopeState, StageScope, MAX_SCOPE_BYTES};
pub use shell::{
    expand, expand_heredoc, expand_words, ExpandError, ExpandErrorKind, Lexer, MAX_EXPANSION_DEPTH,
    MAX_EXPANSION_GROWTH,
};
pub use stages::SourceRef;
