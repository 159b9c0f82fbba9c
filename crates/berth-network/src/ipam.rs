//! IP address management: pure bookkeeping, no kernel access.
//!
//! A [`Pool`] hands out addresses of one network's subnet (or its `ip_range`), never the
//! network, broadcast or gateway address. Allocation continues after the last address
//! handed out and wraps around, as Docker does, so a just-freed address is not reused at
//! once (stale ARP entries and DNS caches would otherwise point at the new container).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::NetErrorKind;

/// Why an address or subnet could not be handed out.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Subnet, range, gateway or address is malformed or outside the network.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// Every subnet of the default pools is in use.
    #[error("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")]
    PoolExhausted,
    /// The requested address is already allocated.
    #[error("address already in use: {0}")]
    AddressInUse(Ipv4Addr),
    /// No free address left.
    #[error("no available IPv4 addresses on this network's address pools: {0}")]
    AddressesExhausted(String),
}

impl IpamError {
    /// Classify for status mapping.
    pub fn kind(&self) -> NetErrorKind {
        match self {
            IpamError::Invalid { .. } => NetErrorKind::InvalidInput,
            IpamError::AddressInUse(_) => NetErrorKind::Conflict,
            IpamError::PoolExhausted | IpamError::AddressesExhausted(_) => NetErrorKind::Internal,
        }
    }
}

fn invalid(what: &'static str, detail: impl Into<String>) -> IpamError {
    IpamError::Invalid {
        what,
        detail: detail.into(),
    }
}

type Result<T> = std::result::Result<T, IpamError>;

/// Do two subnets share any address?
pub(crate) fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// First subnet of `prefix_len` carved from `pools` that overlaps nothing in `taken`.
pub(crate) fn choose_subnet(
    pools: &[Ipv4Net],
    prefix_len: u8,
    taken: &[Ipv4Net],
) -> Result<Ipv4Net> {
    for pool in pools {
        let candidates: Vec<Ipv4Net> = if pool.prefix_len() >= prefix_len {
            vec![pool.trunc()]
        } else {
            pool.subnets(prefix_len)
                .map_err(|e| invalid("default pool", e.to_string()))?
                .collect()
        };
        if let Some(net) = candidates
            .into_iter()
            .find(|c| !taken.iter().any(|t| overlaps(c, t)))
        {
            return Ok(net);
        }
    }
    Err(IpamError::PoolExhausted)
}

/// Address allocations of one network.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub(crate) subnet: Ipv4Net,
    pub(crate) gateway: Ipv4Addr,
    range: Ipv4Net,
    allocated: BTreeMap<Ipv4Addr, String>,
    last: Option<u32>,
}

impl Pool {
    /// Validate subnet/gateway/range and build an empty pool.
    pub(crate) fn new(
        subnet: Ipv4Net,
        gateway: Option<Ipv4Addr>,
        ip_range: Option<Ipv4Net>,
    ) -> Result<Pool> {
        if subnet.prefix_len() > 30 {
            return Err(invalid(
                "subnet",
                format!("{subnet} is too small (at most /30)"),
            ));
        }
        if subnet.trunc() != subnet {
            return Err(invalid(
                "subnet",
                format!(
                    "{subnet} has host bits set (did you mean {}?)",
                    subnet.trunc()
                ),
            ));
        }
        let range = match ip_range {
            Some(r) if r.trunc() == r && subnet.contains(&r) => r,
            Some(r) => {
                return Err(invalid(
                    "ip range",
                    format!("{r} is not a subnet of {subnet}"),
                ))
            }
            None => subnet,
        };
        let gateway = match gateway {
            Some(g) => {
                if !subnet.contains(&g) || g == subnet.network() || g == subnet.broadcast() {
                    return Err(invalid(
                        "gateway",
                        format!("{g} is not a host address of {subnet}"),
                    ));
                }
                g
            }
            None => first_host(&subnet),
        };
        Ok(Pool {
            subnet,
            gateway,
            range,
            allocated: BTreeMap::new(),
            last: None,
        })
    }

    fn usable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(&ip)
            && ip != self.subnet.network()
            && ip != self.subnet.broadcast()
            && ip != self.gateway
    }

    /// Allocate `want` (must be free and inside the subnet) or the next free address.
    pub(crate) fn allocate(&mut self, owner: &str, want: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
        if let Some(ip) = want {
            if !self.usable(ip) {
                return Err(invalid(
                    "ip address",
                    format!("{ip} is not usable in {}", self.subnet),
                ));
            }
            if self.allocated.contains_key(&ip) {
                return Err(IpamError::AddressInUse(ip));
            }
            self.allocated.insert(ip, owner.to_string());
            return Ok(ip);
        }
        let start = u32::from(self.range.network());
        let end = u32::from(self.range.broadcast());
        let size = end - start + 1;
        let from = match self.last {
            Some(l) if l >= start && l < end => l + 1 - start,
            _ => 0,
        };
        for i in 0..size {
            let ip = Ipv4Addr::from(start + (from + i) % size);
            if self.usable(ip) && !self.allocated.contains_key(&ip) {
                self.allocated.insert(ip, owner.to_string());
                self.last = Some(u32::from(ip));
                return Ok(ip);
            }
        }
        Err(IpamError::AddressesExhausted(self.range.to_string()))
    }

    /// Record an allocation restored from the engine's database (reconcile).
    pub(crate) fn restore(&mut self, owner: &str, ip: Ipv4Addr) -> Result<()> {
        match self.allocated.get(&ip) {
            Some(o) if o != owner => Err(IpamError::AddressInUse(ip)),
            _ => {
                self.allocated.insert(ip, owner.to_string());
                Ok(())
            }
        }
    }

    /// Free an address (no-op if it was not allocated).
    pub(crate) fn release(&mut self, ip: Ipv4Addr) {
        self.allocated.remove(&ip);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.allocated.len()
    }
}

fn first_host(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn choose_skips_taken() {
        let pools = [net("172.30.0.0/16")];
        let taken = [
            net("172.30.0.0/24"),
            net("172.30.1.128/25"),
            net("10.0.0.0/8"),
        ];
        assert_eq!(
            choose_subnet(&pools, 24, &taken).unwrap(),
            net("172.30.2.0/24")
        );
        // a wide host route swallowing the whole pool exhausts it
        assert!(matches!(
            choose_subnet(&pools, 24, &[net("172.16.0.0/12")]),
            Err(IpamError::PoolExhausted)
        ));
        // falls through to the next pool
        let pools2 = [net("172.30.0.0/24"), net("192.168.64.0/20")];
        assert_eq!(
            choose_subnet(&pools2, 24, &[net("172.30.0.0/24")]).unwrap(),
            net("192.168.64.0/24")
        );
    }

    #[test]
    fn allocation_sequence_and_reuse() {
        let mut p = Pool::new(net("10.9.0.0/29"), None, None).unwrap();
        assert_eq!(p.gateway, Ipv4Addr::new(10, 9, 0, 1));
        let a: Vec<_> = (0..5)
            .map(|i| p.allocate(&format!("c{i}"), None).unwrap())
            .collect();
        assert_eq!(a[0], Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(a[4], Ipv4Addr::new(10, 9, 0, 6));
        assert!(matches!(
            p.allocate("x", None),
            Err(IpamError::AddressesExhausted(_))
        ));
        p.release(a[1]);
        assert_eq!(p.allocate("y", None).unwrap(), a[1]);
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn no_immediate_reuse() {
        let mut p = Pool::new(net("10.9.0.0/24"), None, None).unwrap();
        let a = p.allocate("a", None).unwrap();
        p.release(a);
        let b = p.allocate("b", None).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn requested_and_range() {
        let mut p = Pool::new(
            net("10.9.0.0/24"),
            Some(Ipv4Addr::new(10, 9, 0, 254)),
            Some(net("10.9.0.128/25")),
        )
        .unwrap();
        assert_eq!(p.allocate("a", None).unwrap(), Ipv4Addr::new(10, 9, 0, 128));
        assert_eq!(
            p.allocate("b", Some(Ipv4Addr::new(10, 9, 0, 5))).unwrap(),
            Ipv4Addr::new(10, 9, 0, 5)
        );
        assert!(matches!(
            p.allocate("c", Some(Ipv4Addr::new(10, 9, 0, 5))),
            Err(IpamError::AddressInUse(_))
        ));
        assert!(p.allocate("c", Some(Ipv4Addr::new(10, 9, 0, 254))).is_err());
        assert!(p.allocate("c", Some(Ipv4Addr::new(10, 9, 1, 5))).is_err());
        assert!(Pool::new(net("10.9.0.0/24"), Some(Ipv4Addr::new(10, 9, 1, 1)), None).is_err());
        assert!(Pool::new(net("10.9.0.1/24"), None, None).is_err());
        assert!(Pool::new(net("10.9.0.0/24"), None, Some(net("10.8.0.0/25"))).is_err());
    }
}
