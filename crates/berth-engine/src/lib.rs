//! berth's engine: content store, snapshots, metadata, images and containers.
//!
//! The API server (in the `berth` binary) calls [`Engine`] methods; nothing here knows about
//! HTTP. Layers, bottom up: [`content`] (blobs by digest) and [`snapshot`] (overlay layers)
//! and [`meta`] (redb); [`image`] ties configs, manifests and layers together; [`container`]
//! runs containers through `berth-runtime`'s shims.

pub mod build;
pub mod container;
pub mod content;
pub mod digest;
pub mod distribution;
pub mod engine;
pub mod fsops;
mod health_watch;
pub mod error;
pub mod fault;
pub mod image;
pub mod meta;
pub mod names;
pub mod network;
mod recover;
pub mod reference;
pub mod snapshot;
pub mod transfer;
pub mod volume;

pub use engine::{Engine, EngineConfig};
pub use error::{EngineError, ErrorKind, Result};
