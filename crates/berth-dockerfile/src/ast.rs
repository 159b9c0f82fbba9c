//! The typed output of the parser.
//!
//! Arguments are stored exactly as BuildKit keeps them before dispatch: words that are
//! subject to variable expansion still contain their quotes and `$` references
//! (`LABEL a="x y"` keeps `"x y"`), because expansion also removes quotes. Call
//! [`Instruction::expanded`] (or [`crate::expand`]) to get the final values.

use std::time::Duration;

pub use crate::lint::{CheckConfig, Warning};
pub use crate::mount::{CacheSharing, Expander, Mount, MountType};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives found at the top of the file (`# syntax=`, `# escape=`,
    /// `# check=`), in file order.
    pub directives: Vec<Directive>,
    /// The escape token in effect: `\` or `` ` ``. Pass it to [`crate::expand`].
    pub escape: char,
    /// `ARG` instructions before the first `FROM` (each of kind
    /// [`InstructionKind::Arg`]). Their values are visible only to `FROM` lines,
    /// unless a stage re-declares them with `ARG name`.
    pub meta_args: Vec<Instruction>,
    /// Build stages, one per `FROM`, in file order.
    pub stages: Vec<Stage>,
    /// Build-check findings ([`crate::lint`] rules), sorted by line, with rules
    /// skipped by `# check=skip=...` left out.
    pub warnings: Vec<Warning>,
    /// The `# check=` directive (default when absent).
    pub check: CheckConfig,
}

impl Dockerfile {
    /// The meta `ARG` declarations, flattened (`ARG a=1 b` gives two).
    pub fn meta_arg_decls(&self) -> impl Iterator<Item = &ArgDecl> {
        self.meta_args.iter().flat_map(|i| match &i.kind {
            InstructionKind::Arg(decls) => decls.as_slice(),
            _ => &[],
        })
    }

    /// Index of the stage called `name` (stage names are lowercase; the lookup is
    /// case-insensitive like BuildKit's; with duplicate names the last one wins).
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().rposition(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }
}

/// A parser directive such as `# syntax=docker/dockerfile:1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lowercase name: `syntax`, `escape` or `check`.
    pub name: String,
    /// Value with surrounding whitespace removed.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// One build stage: a `FROM` line and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// Base image or stage name, unexpanded (may contain `$VAR` from meta args).
    pub base: String,
    /// `--platform` value, unexpanded.
    pub platform: Option<String>,
    /// First line of the `FROM` instruction.
    pub start_line: usize,
    /// Last line of the `FROM` instruction.
    pub end_line: usize,
    /// The `FROM` line as written (continuations joined, trimmed).
    pub original: String,
    /// Instructions of the stage, in order.
    pub instructions: Vec<Instruction>,
}

/// One instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// What the instruction does.
    pub kind: InstructionKind,
    /// 1-based first line.
    pub start_line: usize,
    /// 1-based last line (continuations and heredoc bodies included).
    pub end_line: usize,
    /// The instruction as written: continuation lines joined, comments inside the
    /// continuation dropped, surrounding whitespace trimmed, heredoc bodies not
    /// included. This is BuildKit's `String()` of a command and what cache keys use.
    pub original: String,
}

/// The instruction-specific part of an [`Instruction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`. An empty shell form gives no args.
    Entrypoint(CommandLine),
    /// `LABEL k=v ...` (or legacy `LABEL k v`).
    Label(Vec<KeyValue>),
    /// `MAINTAINER text` (deprecated).
    Maintainer(String),
    /// `EXPOSE 80/tcp ...`, sorted like BuildKit does; each entry may still expand to
    /// several ports.
    Expose(Vec<String>),
    /// `ENV k=v ...` (or legacy `ENV k v w`).
    Env(Vec<KeyValue>),
    /// `ADD`.
    Add(Add),
    /// `COPY`.
    Copy(Copy),
    /// `VOLUME` paths (JSON or words).
    Volume(Vec<String>),
    /// `USER user[:group]`.
    User(String),
    /// `WORKDIR path`.
    Workdir(String),
    /// `ARG name[=default] ...`.
    Arg(Vec<ArgDecl>),
    /// `ONBUILD <instruction>`.
    Onbuild(Onbuild),
    /// `STOPSIGNAL signal`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `SHELL ["exe", "arg"]` (JSON form only).
    Shell(Vec<String>),
}

/// A command in exec (JSON) or shell form, as taken by RUN, CMD and ENTRYPOINT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// Exec form: the JSON strings. Shell form: one element, the command text.
    pub args: Vec<String>,
    /// True for shell form: the builder prepends the stage's `SHELL`
    /// (default `/bin/sh -c`).
    pub prepend_shell: bool,
    /// Heredocs introduced on the line (`RUN <<EOF`), in order.
    pub heredocs: Vec<Heredoc>,
}

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// Delimiter word, quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// Body, every line with its newline, without the terminator line. For `<<-`
    /// heredocs this is the raw body; see [`Heredoc::effective_content`].
    pub content: String,
    /// Expand variables in the body (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from body lines.
    pub chomp: bool,
    /// File descriptor prefix (`3<<EOF`), 0 when absent.
    pub fd: u32,
}

impl Heredoc {
    /// The body with leading tabs stripped from every line when `chomp` is set.
    pub fn effective_content(&self) -> String {
        if self.chomp {
            chomp_tabs(&self.content)
        } else {
            self.content.clone()
        }
    }
}

pub(crate) fn chomp_tabs(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

/// `RUN` with its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: CommandLine,
    /// `--mount=...` specs, parsed.
    pub mounts: Vec<Mount>,
    /// `--network=default|none|host`.
    pub network: NetworkMode,
    /// `--security=sandbox|insecure`.
    pub security: SecurityMode,
}

/// `RUN --network` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// The build's default network.
    #[default]
    Default,
    /// No network.
    None,
    /// The host's network (needs an entitlement).
    Host,
}

/// `RUN --security` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityMode {
    /// Normal confinement.
    #[default]
    Sandbox,
    /// Privileged (needs an entitlement).
    Insecure,
}

/// A `key=value` pair of ENV or LABEL, unexpanded (quotes still present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// Written in the legacy `ENV key value` form.
    pub legacy: bool,
}

/// One name of an `ARG` instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// Name.
    pub name: String,
    /// Default value, unexpanded; `None` for `ARG name`.
    pub default: Option<String>,
}

/// Sources and destination of COPY/ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFiles {
    /// Source paths or URLs, unexpanded.
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`).
    pub inline: Vec<InlineFile>,
    /// Destination, unexpanded.
    pub dest: String,
}

/// A file created from a heredoc by COPY/ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    /// File name: the heredoc delimiter.
    pub path: String,
    /// Content (leading tabs already removed for `<<-`).
    pub data: String,
    /// Expand variables in `data` (the delimiter was not quoted).
    pub expand: bool,
}

/// `ADD` with its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// What to copy where.
    pub files: CopyFiles,
    /// `--chown=user:group`.
    pub chown: Option<String>,
    /// `--chmod=mode`.
    pub chmod: Option<String>,
    /// `--checksum=sha256:...`.
    pub checksum: Option<String>,
    /// `--keep-git-dir[=bool]`, `None` when not given.
    pub keep_git_dir: Option<bool>,
    /// `--unpack[=bool]`, `None` when not given.
    pub unpack: Option<bool>,
    /// `--link`.
    pub link: bool,
    /// `--exclude=pattern`, repeatable.
    pub exclude: Vec<String>,
}

/// `COPY` with its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// What to copy where.
    pub files: CopyFiles,
    /// `--from=stage|image|index`.
    pub from: Option<String>,
    /// `--chown=user:group`.
    pub chown: Option<String>,
    /// `--chmod=mode`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude=pattern`, repeatable.
    pub exclude: Vec<String>,
}

/// `ONBUILD` trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The nested instruction, parsed (and validated) now.
    pub trigger: Box<Instruction>,
    /// The text stored in the image config's `OnBuild` list: the line without the
    /// `ONBUILD` keyword, followed by heredoc bodies and terminators if any.
    pub expression: String,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    /// `HEALTHCHECK [options] CMD ...`.
    Check(HealthcheckConfig),
}

/// Options of `HEALTHCHECK CMD`. Zero durations and retries mean "inherit".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckConfig {
    /// `["CMD", args...]` for exec form or `["CMD-SHELL", command]` for shell form,
    /// as stored in the image config.
    pub test: Vec<String>,
    /// `--interval`.
    pub interval: Duration,
    /// `--timeout`.
    pub timeout: Duration,
    /// `--start-period`.
    pub start_period: Duration,
    /// `--start-interval`.
    pub start_interval: Duration,
    /// `--retries`.
    pub retries: u32,
}

impl InstructionKind {
    /// Upper-case keyword: `RUN`, `COPY`, ...
    pub fn keyword(&self) -> &'static str {
        match self {
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Maintainer(_) => "MAINTAINER",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::User(_) => "USER",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::StopSignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Shell(_) => "SHELL",
        }
    }
}

impl Instruction {
    /// Upper-case keyword of the instruction.
    pub fn keyword(&self) -> &'static str {
        self.kind.keyword()
    }

    /// Whether the builder expands variables in this instruction's arguments
    /// (BuildKit: ADD COPY ENV EXPOSE LABEL STOPSIGNAL USER VOLUME WORKDIR, ARG
    /// defaults, and RUN `--mount` options; FROM is expanded with meta args only).
    /// ONBUILD, RUN/CMD/ENTRYPOINT commands, SHELL, HEALTHCHECK and MAINTAINER are
    /// taken literally.
    pub fn expands_variables(&self) -> bool {
        matches!(
            self.kind,
            InstructionKind::Add(_)
                | InstructionKind::Copy(_)
                | InstructionKind::Env(_)
                | InstructionKind::Expose(_)
                | InstructionKind::Label(_)
                | InstructionKind::StopSignal(_)
                | InstructionKind::User(_)
                | InstructionKind::Volume(_)
                | InstructionKind::Workdir(_)
                | InstructionKind::Arg(_)
                | InstructionKind::Run(_)
        )
    }
}

/// What a RUN (or CMD/ENTRYPOINT) line actually executes once heredocs are taken
/// into account, following BuildKit. Apply the stage's `SHELL` afterwards when
/// [`CommandLine::prepend_shell`] is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectiveCommand {
    /// Run these arguments.
    Args(Vec<String>),
    /// `RUN <<EOF` whose body starts with `#!`: write `data` to
    /// `/dev/pipes/<name>` (mode 0755, read-only mount) and run that path.
    Script {
        /// File name (the heredoc delimiter).
        name: String,
        /// Script body (tabs removed for `<<-`).
        data: String,
    },
}

impl CommandLine {
    /// Resolves heredocs into the command to run:
    ///
    /// - no heredocs: the arguments as they are;
    /// - the whole command is one heredoc (`RUN <<EOF`): its body is the shell
    ///   command, or a script file when it starts with `#!`;
    /// - otherwise (`RUN cat <<EOF > f`, several heredocs): the line followed by each
    ///   body and terminator, for the shell to interpret.
    pub fn effective(&self) -> EffectiveCommand {
        if self.heredocs.is_empty() || self.args.len() != 1 || !self.prepend_shell {
            return EffectiveCommand::Args(self.args.clone());
        }
        let first = &self.heredocs[0];
        let whole_is_heredoc = crate::parse::parse_heredoc_word(&self.args[0])
            .ok()
            .flatten()
            .is_some();
        if whole_is_heredoc {
            let data = first.effective_content();
            if data.starts_with("#!") {
                return EffectiveCommand::Script {
                    name: first.name.clone(),
                    data,
                };
            }
            return EffectiveCommand::Args(vec![data]);
        }
        let mut line = self.args[0].clone();
        for h in &self.heredocs {
            line.push('\n');
            line.push_str(&h.content);
            line.push_str(&h.name);
        }
        EffectiveCommand::Args(vec![line])
    }
}
