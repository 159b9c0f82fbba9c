//! berth-runtime (doc being written).
pub mod cgroup;
mod client;
pub mod config;
pub mod logs;
mod shim;
pub mod spec;

pub use cgroup::{Cgroup, CgroupError, Stats};
pub use client::{
    cgroups_path, cleanup, create, read_config, read_exit, start, ExitStatus, RuntimeError,
    RuntimeErrorKind, Shim, StartFailure, Started, State, Status,
};
pub use config::*;
pub use shim::{shim_main, ShimError, ShimErrorKind};
pub use spec::{build_spec, SpecError};
