//! placeholder
mod dns;
pub mod error;
mod ipam;
mod manager;
mod netlink;
mod netns;
mod nft;
pub mod types;

pub use error::{NetError, NetErrorKind};
pub use manager::NetManager;
pub use types::*;
