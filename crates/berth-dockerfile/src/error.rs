//! The parse error: every failure carries the Dockerfile line (and instruction)
//! it was found on.

/// Why a Dockerfile could not be parsed.
///
/// Displays as `Dockerfile:<line>: <message>`, e.g.
/// `Dockerfile:7: unknown instruction: RUNN (did you mean RUN?)`. The message
/// follows BuildKit's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Dockerfile:{line}: {message}")]
pub struct ParseError {
    /// First (1-based) line of the offending instruction; for file-level errors the
    /// last line of the file.
    pub line: usize,
    /// Last line of the offending instruction (continuations and heredocs included).
    pub end_line: usize,
    /// Instruction keyword as written (`RUNN`, `copy`), when the error is about one.
    pub instruction: Option<String>,
    /// Human readable description, BuildKit's wording where it has one.
    pub message: String,
    kind: ParseErrorKind,
}

/// Coarse class of a [`ParseError`]. All of them are client errors (HTTP 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Malformed line: bad directive, bad JSON, unterminated heredoc, bad quoting.
    Syntax,
    /// An instruction keyword berth does not know.
    UnknownInstruction,
    /// A `--flag` the instruction does not take, or a bad flag value.
    InvalidFlag,
    /// Wrong number or shape of arguments.
    InvalidArgument,
    /// The file has no instructions, no stage, or an instruction before `FROM`.
    Structure,
    /// Input exceeds a size limit (file, line, heredoc, nesting).
    Limit,
    /// Variable expansion failed (builder time: [`crate::Instruction::expanded`]).
    Expansion,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, message: impl Into<String>) -> Self {
        ParseError {
            line: 0,
            end_line: 0,
            instruction: None,
            message: message.into(),
            kind,
        }
    }

    pub(crate) fn at(mut self, line: usize, end_line: usize) -> Self {
        self.line = line;
        self.end_line = end_line.max(line);
        self
    }

    pub(crate) fn on(mut self, instruction: &str) -> Self {
        if self.instruction.is_none() {
            self.instruction = Some(instruction.to_string());
        }
        self
    }

    /// Coarse class of the error.
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }
}

pub(crate) fn syntax(msg: impl Into<String>) -> ParseError {
    ParseError::new(ParseErrorKind::Syntax, msg)
}

pub(crate) fn invalid_arg(msg: impl Into<String>) -> ParseError {
    ParseError::new(ParseErrorKind::InvalidArgument, msg)
}

pub(crate) fn invalid_flag(msg: impl Into<String>) -> ParseError {
    ParseError::new(ParseErrorKind::InvalidFlag, msg)
}

impl From<crate::ExpandError> for ParseError {
    fn from(e: crate::ExpandError) -> Self {
        ParseError::new(ParseErrorKind::Expansion, e.to_string())
    }
}
