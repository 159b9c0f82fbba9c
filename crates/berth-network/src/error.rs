//! The crate's public error type. Each module has its own error enum (`IpamError`,
//! `NetlinkError`, `NftError`, `NetnsError`, `DnsError`), wrapped here; every one has a
//! `kind()` returning the [`NetErrorKind`] the API edge maps to HTTP statuses.

use std::io;

/// Coarse classification of a [`NetError`], for callers that map errors to status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetErrorKind {
    /// The network, endpoint or namespace does not exist (HTTP 404).
    NotFound,
    /// A name, subnet, address or host port is already taken (HTTP 409).
    Conflict,
    /// The request itself is invalid: bad subnet, name, address, MAC (HTTP 400).
    InvalidInput,
    /// The kernel or a helper binary failed (HTTP 500).
    Internal,
}

/// Everything that can go wrong in `berth-network`.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No network with this id is known to the manager.
    #[error("network {0} not found")]
    NetworkNotFound(String),
    /// The container has no endpoint on the network.
    #[error("container {container} is not connected to network {network}")]
    EndpointNotFound {
        /// Container id.
        container: String,
        /// Network id.
        network: String,
    },
    /// The container is already connected to the network.
    #[error("endpoint with name {container} already exists in network {network}")]
    EndpointExists {
        /// Container id.
        container: String,
        /// Network id.
        network: String,
    },
    /// A network with this id already exists.
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    /// The network still has endpoints.
    #[error("error while removing network: network {0} has active endpoints")]
    ActiveEndpoints(String),
    /// A user-supplied value is invalid.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was invalid ("subnet", "bridge name", ...).
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// Subnet overlaps another network or a host route.
    #[error("pool overlaps with other one on this address space: {0}")]
    SubnetOverlap(String),
    /// The host port is taken by a listening socket or another binding.
    #[error("driver failed programming external connectivity on endpoint {endpoint}: Bind for {host_ip}:{port} failed: port is already allocated")]
    PortInUse {
        /// Container id.
        endpoint: String,
        /// Host IP of the binding.
        host_ip: std::net::Ipv4Addr,
        /// Host port.
        port: u16,
    },
    /// The operation does not apply to this driver (connect to `host`/`none`).
    #[error("{0}")]
    Unsupported(String),
    /// Address management refused.
    #[error(transparent)]
    Ipam(#[from] crate::ipam::IpamError),
    /// A netlink request failed.
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
    /// Loading the nftables rules failed.
    #[error(transparent)]
    Nft(#[from] crate::nft::NftError),
    /// A namespace operation failed.
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
    /// The embedded DNS server could not start.
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),
    /// Another system call or file operation failed.
    #[error("{op}: {source}")]
    Io {
        /// The operation and its object ("mount netns /run/berth/netns/abc").
        op: String,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
}

impl NetError {
    /// Classify the error.
    pub fn kind(&self) -> NetErrorKind {
        match self {
            NetError::NetworkNotFound(_) | NetError::EndpointNotFound { .. } => {
                NetErrorKind::NotFound
            }
            NetError::EndpointExists { .. }
            | NetError::NetworkExists(_)
            | NetError::ActiveEndpoints(_)
            | NetError::SubnetOverlap(_)
            | NetError::PortInUse { .. } => NetErrorKind::Conflict,
            NetError::Invalid { .. } | NetError::Unsupported(_) => NetErrorKind::InvalidInput,
            NetError::Io { .. } => NetErrorKind::Internal,
            NetError::Ipam(e) => e.kind(),
            NetError::Netlink(e) => e.kind(),
            NetError::Nft(e) => e.kind(),
            NetError::Netns(e) => e.kind(),
            NetError::Dns(e) => e.kind(),
        }
    }

    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Self {
        NetError::Io {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        NetError::Invalid {
            what,
            detail: detail.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = NetError> = std::result::Result<T, E>;
