//! A bridge's IPv4 subnet and the addresses handed out on it: the first
//! host address is the bridge's own (the containers' gateway), the rest go
//! to containers, lowest free first.

use std::fmt;
use std::net::Ipv4Addr;

/// Prefixes kennel-net accepts: /8 at the widest, /30 at the narrowest
/// (one container).
pub const MIN_PREFIX: u8 = 8;
pub const MAX_PREFIX: u8 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl std::str::FromStr for Subnet {
    type Err = String;

    fn from_str(text: &str) -> Result<Subnet, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a subnet (write it as 10.88.0.0/24)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let prefix: u8 = match prefix.parse() {
            Ok(p) if (MIN_PREFIX..=MAX_PREFIX).contains(&p) => p,
            _ => {
                return Err(format!(
                    "{text:?}: the prefix length must be {MIN_PREFIX} to {MAX_PREFIX}"
                ))
            }
        };
        let subnet = Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        };
        if subnet.network != addr {
            return Err(format!(
                "{text:?} has host bits set; did you mean {subnet}?"
            ));
        }
        Ok(subnet)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX << (32 - u32::from(prefix))
}

impl Subnet {
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The bridge's own address, the containers' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether `addr` is one a container may be given: inside, and neither
    /// the network, the gateway nor the broadcast address.
    pub fn is_container_address(&self, addr: Ipv4Addr) -> bool {
        self.contains(addr)
            && addr != self.network
            && addr != self.gateway()
            && addr != self.broadcast()
    }

    /// The lowest container address not in `used`, or None when the
    /// subnet is full.
    pub fn pick(&self, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        let first = u32::from(self.gateway()) + 1;
        let last = u32::from(self.broadcast()) - 1;
        let mut taken: Vec<u32> = used
            .iter()
            .filter(|a| self.contains(**a))
            .map(|a| u32::from(*a))
            .collect();
        taken.sort_unstable();
        let mut candidate = first;
        for t in taken {
            if t > candidate {
                break;
            }
            if t == candidate {
                candidate = candidate.checked_add(1)?;
            }
        }
        (candidate <= last).then(|| Ipv4Addr::from(candidate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(text: &str) -> Subnet {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(s("10.88.0.0/24").to_string(), "10.88.0.0/24");
        assert_eq!(s("10.88.0.0/24").gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(s("10.88.0.0/24").broadcast(), Ipv4Addr::new(10, 88, 0, 255));
        for (bad, why) in [
            ("10.88.0.0", "not a subnet"),
            ("10.88.0.1/24", "did you mean 10.88.0.0/24"),
            ("10.88.0.0/31", "prefix length"),
            ("10.0.0.0/7", "prefix length"),
            ("10.88.0/24", "not an IPv4 address"),
            ("fd00::/64", "not an IPv4 address"),
        ] {
            let e = bad.parse::<Subnet>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn picks_the_lowest_free_address() {
        let net = s("10.88.0.0/24");
        assert_eq!(net.pick(&[]), Some(Ipv4Addr::new(10, 88, 0, 2)));
        let used = [Ipv4Addr::new(10, 88, 0, 2), Ipv4Addr::new(10, 88, 0, 4)];
        assert_eq!(net.pick(&used), Some(Ipv4Addr::new(10, 88, 0, 3)));
        let small = s("10.0.0.0/30");
        assert_eq!(small.pick(&[]), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(small.pick(&[Ipv4Addr::new(10, 0, 0, 2)]), None);
        // Addresses outside the subnet do not count.
        assert_eq!(
            small.pick(&[Ipv4Addr::new(10, 0, 1, 2)]),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
    }

    proptest! {
        #[test]
        fn a_pick_is_free_and_usable(base in any::<u32>(), prefix in 24u8..=30, used in proptest::collection::vec(any::<u8>(), 0..80)) {
            let net = Subnet { network: Ipv4Addr::from(base & mask(prefix)), prefix };
            let used: Vec<Ipv4Addr> = used.iter().map(|o| Ipv4Addr::from(u32::from(net.network) | (u32::from(*o) & !mask(prefix)))).collect();
            match net.pick(&used) {
                Some(a) => {
                    prop_assert!(net.is_container_address(a));
                    prop_assert!(!used.contains(&a));
                }
                None => {
                    let free = (u32::from(net.gateway()) + 1..u32::from(net.broadcast()))
                        .map(Ipv4Addr::from)
                        .filter(|a| !used.contains(a))
                        .count();
                    prop_assert_eq!(free, 0);
                }
            }
        }
    }
}
