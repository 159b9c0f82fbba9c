//! Validation of the identifiers that arrive in URLs: repository names, tags and
//! digests, following the grammar of the OCI distribution spec.
//!
//! Everything here is pure and allocation-light; it is the first thing every request
//! goes through, so a hostile name never reaches the filesystem.

use std::fmt;
use std::str::FromStr;

/// Longest repository name accepted (the spec's recommended bound).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag accepted (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`).
pub const MAX_TAG_LEN: usize = 128;

/// Why an identifier was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid repository name {0:?}")]
    Name(String),
    #[error("invalid tag {0:?}")]
    Tag(String),
    #[error("invalid digest {0:?}")]
    Digest(String),
    #[error("unsupported digest algorithm {0:?}")]
    Algorithm(String),
}

/// Coarse class of a [`NameError`], for mapping to a distribution error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameErrorKind {
    Name,
    Tag,
    Digest,
    Unsupported,
}

impl NameError {
    /// The class of this error.
    pub fn kind(&self) -> NameErrorKind {
        match self {
            NameError::Name(_) => NameErrorKind::Name,
            NameError::Tag(_) => NameErrorKind::Tag,
            NameError::Digest(_) => NameErrorKind::Digest,
            NameError::Algorithm(_) => NameErrorKind::Unsupported,
        }
    }
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-+", always followed by an alnum.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_alnum_lower(b[i]) {
            return false;
        }
    }
    true
}

/// Checks a repository name (`library/busybox`, `a/b-c/d__e`).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.split('/').all(valid_component) {
        return Err(NameError::Name(truncate(name)));
    }
    Ok(())
}

/// Checks a tag (`latest`, `v1.2_3-rc`).
pub fn validate_tag(tag: &str) -> Result<(), NameError> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NameError::Tag(truncate(tag)))
    }
}

/// Keeps error messages bounded when the input is hostile (10 KB names).
fn truncate(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_string();
    }
    let mut end = 80;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// A validated `sha256:<64 lowercase hex>` digest, the only algorithm this registry
/// stores (the spec makes sha256 mandatory and everything else optional).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Builds a digest from raw sha256 output.
    pub fn from_sha256(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(bytes),
        }
    }

    /// Digest of a byte slice.
    pub fn of(data: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest::from_sha256(&sha2::Sha256::digest(data))
    }

    /// The 64 hex characters.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Digest, NameError> {
        let Some((alg, enc)) = s.split_once(':') else {
            return Err(NameError::Digest(truncate(s)));
        };
        // algorithm-component ::= [a-z0-9]+ joined by [+._-]; encoded ::= [a-zA-Z0-9=_-]+
        let alg_ok = !alg.is_empty()
            && alg
                .bytes()
                .all(|c| is_alnum_lower(c) || matches!(c, b'+' | b'.' | b'_' | b'-'));
        let enc_ok = !enc.is_empty()
            && enc
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'));
        if !alg_ok || !enc_ok {
            return Err(NameError::Digest(truncate(s)));
        }
        if alg != "sha256" {
            return Err(NameError::Algorithm(truncate(alg)));
        }
        if enc.len() != 64
            || !enc
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err(NameError::Digest(truncate(s)));
        }
        Ok(Digest {
            hex: enc.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/busybox",
            "a/b/c",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "0x/9",
        ] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "..", "a/../b", "a/./b", "a..b", "a___b", "-a", "a-",
            "a_", "_a", "a b", "a:b", "a/B",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_name(&"a".repeat(255)).is_ok());
        assert!(validate_name(&"a".repeat(256)).is_err());
        let err = validate_name(&"a".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 200);
    }

    #[test]
    fn tags() {
        for ok in ["latest", "_x", "V1.2-rc_3", &"a".repeat(128)] {
            assert!(validate_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "-a", "a/b", "a:b", &"a".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert_eq!(
            "sha512:abcd".parse::<Digest>().unwrap_err().kind(),
            NameErrorKind::Unsupported
        );
        for bad in [
            "sha256:abc",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:../../etc/passwd",
        ] {
            assert_eq!(
                bad.parse::<Digest>().unwrap_err().kind(),
                NameErrorKind::Digest,
                "{bad}"
            );
        }
        let upper = format!("sha256:{}", "A".repeat(64));
        assert!(upper.parse::<Digest>().is_err());
    }
}
