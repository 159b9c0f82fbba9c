//! How stages refer to each other (FROM, `COPY --from`, `RUN --mount=from=`),
//! resolved with BuildKit's rules, so the builder can order and parallelise stages.
//!
//! - `FROM x` names an *earlier* stage only if one is called exactly `x` (stage
//!   names are lowercase, and BuildKit compares the base name as written; with
//!   duplicate names the latest earlier one wins);
//!   `scratch` is the empty image; anything else is an image reference.
//! - `COPY --from=x` and `--mount=from=x` accept a stage index (`0`), a stage name
//!   (case-insensitive) or an image reference; naming the current or a later stage
//!   is an error.
//!
//! ```
//! use berth_dockerfile::{parse, SourceRef};
//! let df = parse("FROM golang AS build\nRUN make\nFROM scratch\nCOPY --from=build /app /\n").unwrap();
//! assert_eq!(df.resolve_base(1, "scratch").unwrap(), SourceRef::Scratch);
//! assert_eq!(df.stage_dependencies(1, "scratch").unwrap(), vec![0]);
//! ```

use crate::ast::{Dockerfile, InstructionKind};
use crate::error::{invalid_arg, ParseError};

/// What a stage reference points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    /// Another stage of this Dockerfile, by index.
    Stage(usize),
    /// The empty image.
    Scratch,
    /// An image reference to pull or look up.
    Image(String),
}

impl Dockerfile {
    /// Resolves the (already expanded) base name of stage `index`.
    pub fn resolve_base(&self, index: usize, base: &str) -> Result<SourceRef, ParseError> {
        let at = |e: ParseError| match self.stages.get(index) {
            Some(s) => e.at(s.start_line, s.end_line).on("FROM"),
            None => e,
        };
        if base.trim().is_empty() {
            return Err(at(invalid_arg(format!(
                "base name ({}) should not be blank",
                self.stages.get(index).map_or("", |s| s.base.as_str())
            ))));
        }
        if let Some(i) = self.stages[..index.min(self.stages.len())]
            .iter()
            .rposition(|s| s.name.as_deref() == Some(base))
        {
            return Ok(SourceRef::Stage(i));
        }
        if base == "scratch" {
            return Ok(SourceRef::Scratch);
        }
        Ok(SourceRef::Image(base.to_string()))
    }

    /// Resolves a `COPY --from` or `--mount=from=` value used in stage `index`.
    pub fn resolve_from(&self, index: usize, from: &str) -> Result<SourceRef, ParseError> {
        let current = self
            .stages
            .get(index)
            .and_then(|s| s.name.clone())
            .unwrap_or_default();
        let too_late = || {
            invalid_arg(format!(
                "cannot copy from stage {from:?}, it needs to be defined before current stage {current:?}"
            ))
        };
        let target = if let Ok(n) = from.parse::<i64>() {
            match usize::try_from(n).ok().filter(|&n| n < self.stages.len()) {
                Some(n) => n,
                None => return Err(invalid_arg(format!("invalid stage index {n}"))),
            }
        } else {
            match self.stage_index(from) {
                Some(i) => i,
                None if from == "scratch" => return Ok(SourceRef::Scratch),
                None => return Ok(SourceRef::Image(from.to_string())),
            }
        };
        if target >= index {
            return Err(too_late());
        }
        Ok(SourceRef::Stage(target))
    }

    /// Earlier stages that stage `index` needs, given its expanded base name: its
    /// base stage and every stage used by `COPY --from` or `RUN --mount=from=`
    /// (ONBUILD triggers inherited from images are not known here). Sorted, no
    /// duplicates. Errors carry the line of the offending instruction.
    pub fn stage_dependencies(&self, index: usize, base: &str) -> Result<Vec<usize>, ParseError> {
        let mut deps = Vec::new();
        if let SourceRef::Stage(i) = self.resolve_base(index, base)? {
            deps.push(i);
        }
        let Some(stage) = self.stages.get(index) else {
            return Ok(deps);
        };
        for inst in &stage.instructions {
            let at = |e: ParseError| e.at(inst.start_line, inst.end_line).on(inst.keyword());
            let mut froms: Vec<&str> = Vec::new();
            match &inst.kind {
                InstructionKind::Copy(c) => froms.extend(c.from.as_deref()),
                InstructionKind::Run(r) => {
                    froms.extend(r.mounts.iter().filter_map(|m| m.from.as_deref()))
                }
                _ => {}
            }
            for from in froms {
                if let SourceRef::Stage(i) = self.resolve_from(index, from).map_err(at)? {
                    deps.push(i);
                }
            }
        }
        deps.sort_unstable();
        deps.dedup();
        Ok(deps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    #[test]
    fn references() {
        let df = parse(
            "FROM alpine AS base\nFROM base AS build\nRUN --mount=from=base,target=/b true\n\
             COPY --from=0 /a /a\nFROM Build\nCOPY --from=BUILD /x /x\nCOPY --from=nginx:1 /y /y\n",
        )
        .unwrap();
        assert_eq!(
            df.resolve_base(0, "alpine").unwrap(),
            SourceRef::Image("alpine".into())
        );
        assert_eq!(df.resolve_base(1, "base").unwrap(), SourceRef::Stage(0));
        // Base names are compared as written, like BuildKit.
        assert_eq!(
            df.resolve_base(2, "Build").unwrap(),
            SourceRef::Image("Build".into())
        );
        assert_eq!(df.stage_dependencies(1, "base").unwrap(), vec![0]);
        assert_eq!(df.stage_dependencies(2, "Build").unwrap(), vec![1]);
        assert_eq!(
            df.resolve_from(2, "nginx:1").unwrap(),
            SourceRef::Image("nginx:1".into())
        );
        assert_eq!(df.resolve_from(2, "scratch").unwrap(), SourceRef::Scratch);
        assert!(df.resolve_base(0, " ").is_err());
    }

    #[test]
    fn forward_and_bad_references() {
        let df =
            parse("FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\nCOPY --from=5 /x /x\n")
                .unwrap();
        let e = df.stage_dependencies(0, "a").unwrap_err();
        assert_eq!(
            e.message,
            "cannot copy from stage \"two\", it needs to be defined before current stage \"one\""
        );
        assert_eq!(e.line, 2);
        assert_eq!(
            df.stage_dependencies(1, "b").unwrap_err().message,
            "invalid stage index 5"
        );
        assert_eq!(
            df.resolve_from(1, "1").unwrap_err().message,
            "cannot copy from stage \"1\", it needs to be defined before current stage \"two\""
        );
    }
}
