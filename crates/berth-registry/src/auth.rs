//! HTTP Basic authentication against an htpasswd file of bcrypt entries.
//!
//! bcrypt is deliberately slow (tens of milliseconds per check), which would cap the
//! request rate of an authenticated registry, so successful checks are remembered as a
//! sha256 of `user:password` (never the password itself). Checks run on the blocking
//! pool so the async workers keep serving.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Longest `Authorization` header considered (anything larger is refused unread).
pub const MAX_AUTH_HEADER: usize = 8192;
/// Most verified credentials remembered.
const CACHE_MAX: usize = 1024;

/// Why the htpasswd file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("read htpasswd {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("htpasswd {path} line {line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Coarse class of an [`AuthError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthErrorKind {
    Io,
    Invalid,
}

impl AuthError {
    /// The class of this error.
    pub fn kind(&self) -> AuthErrorKind {
        match self {
            AuthError::Read { .. } => AuthErrorKind::Io,
            AuthError::Parse { .. } => AuthErrorKind::Invalid,
        }
    }
}

/// Users and their bcrypt hashes.
pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Bounds concurrent bcrypt checks, so a flood of wrong passwords cannot take
    /// every blocking thread (which file I/O needs too).
    checks: Arc<tokio::sync::Semaphore>,
}

impl Htpasswd {
    /// Loads an htpasswd file (`user:$2y$...` lines; `#` comments and blank lines
    /// ignored). Only bcrypt entries are accepted, like distribution.
    pub fn load(path: &Path) -> Result<Htpasswd, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Htpasswd::parse(&text).map_err(|(line, reason)| AuthError::Parse {
            path: path.display().to_string(),
            line,
            reason,
        })
    }

    /// Parses htpasswd text; the error carries the 1-based line number.
    pub fn parse(text: &str) -> Result<Htpasswd, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or((i + 1, "expected user:hash".to_string()))?;
            if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
                return Err((
                    i + 1,
                    format!("user {user:?}: only bcrypt entries are supported"),
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
            checks: Arc::new(tokio::sync::Semaphore::new(cores)),
        })
    }

    /// Checks an `Authorization` header value. Returns the user name on success.
    pub async fn check(self: &Arc<Self>, header: Option<&[u8]>) -> Option<String> {
        let header = header?;
        if header.len() > MAX_AUTH_HEADER {
            return None;
        }
        let header = std::str::from_utf8(header).ok()?;
        let (scheme, rest) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (user, pass) = raw.split_once(':')?;
        let hash = self.users.get(user)?.clone();
        let key: [u8; 32] = Sha256::digest(raw.as_bytes()).into();
        if self
            .verified
            .lock()
            .map(|v| v.contains(&key))
            .unwrap_or(false)
        {
            return Some(user.to_string());
        }
        let pass = pass.to_string();
        let permit = self.checks.clone().acquire_owned().await.ok()?;
        let ok = tokio::task::spawn_blocking(move || {
            let ok = bcrypt::verify(pass, &hash).unwrap_or(false);
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false);
        if !ok {
            return None;
        }
        if let Ok(mut v) = self.verified.lock() {
            if v.len() >= CACHE_MAX {
                v.clear();
            }
            v.insert(key);
        }
        Some(user.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> Vec<u8> {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!("Basic {enc}").into_bytes()
    }

    #[tokio::test]
    async fn basic_auth() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let h = Arc::new(Htpasswd::parse(&format!("# c\n\nalice:{hash}\n")).unwrap());
        assert_eq!(
            h.check(Some(&basic("alice", "secret"))).await.as_deref(),
            Some("alice")
        );
        // cached path
        assert_eq!(
            h.check(Some(&basic("alice", "secret"))).await.as_deref(),
            Some("alice")
        );
        assert_eq!(h.check(Some(&basic("alice", "wrong"))).await, None);
        assert_eq!(h.check(Some(&basic("bob", "secret"))).await, None);
        assert_eq!(h.check(None).await, None);
        assert_eq!(
            h.check(Some(b"Bearer eyJhbGciOiJub25lIn0.e30.")).await,
            None
        );
        assert_eq!(h.check(Some(b"Basic !!!")).await, None);
        assert_eq!(h.check(Some(b"Basic")).await, None);
        let huge = vec![b'A'; MAX_AUTH_HEADER + 10];
        assert_eq!(h.check(Some(&huge)).await, None);
    }

    #[test]
    fn rejects_non_bcrypt() {
        assert!(Htpasswd::parse("bob:{SHA}abc").is_err());
        assert!(Htpasswd::parse("bob").is_err());
    }
}
