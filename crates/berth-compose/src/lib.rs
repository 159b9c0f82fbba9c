//! The compose model layer of berth: everything `berth compose` needs before talking to
//! the engine, as pure code over files.
//!
//! Pipeline ([`load()`]): find the files (`-f`, else `compose.yaml` / `docker-compose.yml`
//! in the working directory or a parent) → read each one bounded to
//! [`load::MAX_FILE_BYTES`] → parse YAML (the parser caps alias expansion, so
//! billion-laughs documents fail with "repetition limit exceeded") → apply `<<` merge keys,
//! drop `x-*` extensions → interpolate `${VAR}` from the environment over `.env` /
//! `--env-file` → check the file against the typed model (unknown key or bad type errors
//! name file, line and key) → merge the files by the compose spec rules ([`load::merge`])
//! → resolve `extends` → type and normalise (short syntaxes to long ones, relative paths
//! to absolute, `env_file` folded into `environment`, a `default` network, resource names
//! `<project>_<key>`) → filter by profiles → check `depends_on` (undefined services,
//! cycles).
//!
//! Why so: validation happens on each file *after* interpolation, because a value such as
//! `replicas: ${N:-2}` only has its type once expanded, and *before* merging, because only
//! then is there a single file and text to point at. The merge itself works on untyped
//! YAML values, as the spec's rules are defined per key. The typed model ([`model`]) has
//! one normalised form per field, which is also what `config` prints.
//!
//! ```no_run
//! use berth_compose::{load, LoadOptions};
//! let opts = LoadOptions {
//!     files: vec![],                       // find compose.yaml from cwd
//!     cwd: std::env::current_dir().unwrap(),
//!     environ: std::env::vars().collect(),
//!     profiles: vec!["debug".into()],
//!     ..Default::default()
//! };
//! let project = load(&opts)?;
//! for name in project.start_order()? {
//!     let svc = &project.services[&name];
//!     println!("{}: {:?} x{}", name, svc.image, svc.replicas());
//! }
//! print!("{}", project.to_yaml()?);        // `docker compose config`
//! # Ok::<(), berth_compose::ComposeError>(())
//! ```
//!
//! Public API:
//! - [`load()`]`(&LoadOptions) -> Result<Project, ComposeError>`; [`Project`] has
//!   `name`, `services`, `networks`, `volumes`, `configs`, `secrets`,
//!   `disabled_services`, `working_dir`, `files`, `variables`, and
//!   `start_order() -> Result<Vec<String>, _>`, `with_dependencies(&[String])` (what
//!   `up SERVICE...` starts, in order), `enable_services(&mut self, &[String])` (turn on
//!   profile-disabled services named on the command line) and `to_yaml()`
//!   (`docker compose config`).
//! - Without `-f`, `COMPOSE_FILE` (colon-separated) is used, else the nearest default
//!   file plus its `*.override.yaml|yml`; `COMPOSE_PROFILES` adds to `--profile`;
//!   project name precedence is `-p`, `COMPOSE_PROJECT_NAME`, `name:`, then the
//!   normalised project directory name.
//! - [`load::find_compose_file`], [`load::override_file`],
//!   [`load::normalize_project_name`], [`load::validate_project_name`],
//!   [`load::parse_file`], [`load::merge`], [`load::find_line`],
//!   [`load::read_bounded`]; bounds [`load::MAX_FILE_BYTES`],
//!   [`load::MAX_FLOW_DEPTH`], [`load::MAX_EXTENDS_DEPTH`], [`interp::MAX_DEPTH`].
//! - [`interp::interpolate`], [`interp::parse_dotenv`].
//! - [`graph::start_order`].
//! - [`ComposeError`] with [`ComposeError::kind`] → [`ErrorKind`].

pub mod error;
pub mod graph;
pub mod interp;
pub mod load;
pub mod model;

pub use error::{ComposeError, ErrorKind, InterpError};
pub use load::{load, LoadOptions, Project};
pub use model::{Port, Service, ServiceVolume};
