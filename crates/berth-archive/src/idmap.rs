//! User-namespace id mapping for apply and pack (`--userns-remap`).

/// One contiguous range: container ids `inside .. inside + len` are host ids
/// `outside .. outside + len` (the format of `/proc/<pid>/uid_map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdRange {
    /// First id inside the container.
    pub inside: u32,
    /// First id on the host.
    pub outside: u32,
    /// Number of ids.
    pub len: u32,
}

/// uid and gid mappings between a container's user namespace and the host.
///
/// ```
/// use berth_archive::{IdMap, IdRange};
/// let m = IdMap::shifted(100_000, 65_536);
/// assert_eq!(m.uid_to_host(0), Some(100_000));
/// assert_eq!(m.uid_to_container(101_000), Some(1000));
/// assert_eq!(m.uid_to_host(70_000), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct IdMap {
    /// uid ranges.
    pub uids: Vec<IdRange>,
    /// gid ranges.
    pub gids: Vec<IdRange>,
}

fn forward(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let off = id.checked_sub(r.inside)?;
        (off < r.len).then(|| r.outside.checked_add(off)).flatten()
    })
}

fn backward(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let off = id.checked_sub(r.outside)?;
        (off < r.len).then(|| r.inside.checked_add(off)).flatten()
    })
}

impl IdMap {
    /// The common single-range shift: container ids `0..len` are host ids `base..base+len`
    /// for both users and groups.
    pub fn shifted(base: u32, len: u32) -> Self {
        let r = IdRange {
            inside: 0,
            outside: base,
            len,
        };
        IdMap {
            uids: vec![r],
            gids: vec![r],
        }
    }

    /// Host uid of a container uid.
    pub fn uid_to_host(&self, id: u32) -> Option<u32> {
        forward(&self.uids, id)
    }

    /// Host gid of a container gid.
    pub fn gid_to_host(&self, id: u32) -> Option<u32> {
        forward(&self.gids, id)
    }

    /// Container uid of a host uid.
    pub fn uid_to_container(&self, id: u32) -> Option<u32> {
        backward(&self.uids, id)
    }

    /// Container gid of a host gid.
    pub fn gid_to_container(&self, id: u32) -> Option<u32> {
        backward(&self.gids, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let m = IdMap {
            uids: vec![
                IdRange {
                    inside: 0,
                    outside: 1000,
                    len: 1,
                },
                IdRange {
                    inside: 1,
                    outside: 200_000,
                    len: 10,
                },
            ],
            gids: vec![],
        };
        assert_eq!(m.uid_to_host(0), Some(1000));
        assert_eq!(m.uid_to_host(5), Some(200_004));
        assert_eq!(m.uid_to_host(11), None);
        assert_eq!(m.uid_to_container(200_009), Some(10));
        assert_eq!(m.gid_to_host(0), None);
        let edge = IdMap::shifted(u32::MAX - 1, 10);
        assert_eq!(edge.uid_to_host(1), Some(u32::MAX));
        assert_eq!(edge.uid_to_host(2), None);
    }
}
