//! Network namespaces: create one bind-mounted at a path, run code inside one, remove one.
//!
//! A namespace is entered by a short-lived thread that `setns`es (or `unshare`s) and exits:
//! network namespaces are per thread, so the daemon's other threads never change namespace
//! and no thread is ever returned to a pool while inside a container's namespace. Sockets
//! opened by that thread (netlink, the DNS listeners) stay in the namespace they were
//! created in after the thread is gone.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::NetErrorKind;
use crate::netlink::{Netlink, NetlinkError};

/// Creating, entering or removing a network namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// The operation and its path ("setns /run/berth/netns/abc").
        op: String,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Configuring the new namespace's `lo` failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

impl NetnsError {
    /// Classify for status mapping.
    pub fn kind(&self) -> NetErrorKind {
        match self {
            NetnsError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                NetErrorKind::NotFound
            }
            NetnsError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists => {
                NetErrorKind::Conflict
            }
            NetnsError::Io { .. } => NetErrorKind::Internal,
            NetnsError::Netlink(e) => e.kind(),
        }
    }
}

fn io_err(op: impl Into<String>, source: io::Error) -> NetnsError {
    NetnsError::Io {
        op: op.into(),
        source,
    }
}

type Result<T> = std::result::Result<T, NetnsError>;

/// Run `f` on a fresh thread that has joined the network namespace at `path`.
pub(crate) fn in_netns<T, E, F>(path: &Path, f: F) -> std::result::Result<T, E>
where
    T: Send,
    E: From<NetnsError> + Send,
    F: FnOnce() -> std::result::Result<T, E> + Send,
{
    let file = File::open(path).map_err(|e| io_err(format!("open netns {}", path.display()), e))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| io_err(format!("setns {}", path.display()), io::Error::from(e)))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io_err("netns thread", io::Error::other("panicked")).into()))
    })
}

/// Create a new network namespace bind-mounted at `path`, with `lo` up.
pub(crate) fn create(path: &Path) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err(format!("create netns file {}", path.display()), e))?;
    let res = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| io_err("unshare network namespace", e.into()))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| io_err(format!("bind-mount netns at {}", path.display()), e.into()))?;
            let mut nl = Netlink::open()?;
            let lo = nl
                .link_index("lo")?
                .ok_or_else(|| io_err("find lo", io::Error::from(io::ErrorKind::NotFound)))?;
            Ok(nl.set_up(lo)?)
        })
        .join()
        .unwrap_or_else(|_| Err(io_err("netns thread", io::Error::other("panicked"))))
    });
    if res.is_err() {
        let _ = remove(path);
    }
    res
}

/// Unmount and delete a namespace file; a missing file is not an error.
pub(crate) fn remove(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(io_err(
                format!("unmount netns {}", path.display()),
                e.into(),
            ))
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("remove netns file {}", path.display()), e)),
    }
}
