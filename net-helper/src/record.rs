//! What kennel-net remembers about a veth it made. The record lives in
//! the kernel, as the host end's interface alias (IFLA_IFALIAS), which
//! only a holder of CAP_NET_ADMIN can change: it dies with the veth,
//! which dies with the container's network namespace, so a record can
//! never outlive what it describes, and nothing is written to disk.

use std::net::Ipv4Addr;

/// Every record starts with this word.
pub const ALIAS_PREFIX: &str = "kennel-net";

/// Host-side names start with this (`kn` + the namespace's inode in hex).
pub const HOST_NAME_PREFIX: &str = "kn";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The caller's real uid.
    pub uid: u32,
    /// The container's address.
    pub address: Ipv4Addr,
    /// The inode of the container's network namespace.
    pub netns: u64,
    /// The host end's interface index, as the kernel gave it.
    pub ifindex: u32,
}

/// What a link dump says about one link, as far as telling kennel-net's
/// own veths from everyone else's needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFacts<'a> {
    pub index: u32,
    pub name: &'a str,
    pub is_veth: bool,
    pub alias: Option<&'a str>,
}

impl Record {
    pub fn alias(&self) -> String {
        format!(
            "{ALIAS_PREFIX} uid={} ip={} netns={} ifindex={}",
            self.uid, self.address, self.netns, self.ifindex
        )
    }

    /// The record of a link kennel-net made, or None for any other link:
    /// a veth whose alias is a record naming this very link (its index)
    /// and whose name is the one kennel-net gives the record's namespace.
    /// A bridge, an uplink, or root's own `kn…` veth is never one, so
    /// nothing kennel-net counts or deletes can be someone else's.
    pub fn of_link(link: &LinkFacts<'_>) -> Option<Record> {
        let r = Record::parse(link.alias?)?;
        (link.is_veth && r.ifindex == link.index && link.name == host_name(r.netns)).then_some(r)
    }

    /// Reads an alias back; None for anything kennel-net did not write.
    pub fn parse(alias: &str) -> Option<Record> {
        let mut words = alias.split(' ');
        if words.next() != Some(ALIAS_PREFIX) {
            return None;
        }
        let mut field = |key: &str| words.next()?.strip_prefix(key).map(str::to_string);
        let uid = field("uid=")?.parse().ok()?;
        let address = field("ip=")?.parse().ok()?;
        let netns = field("netns=")?.parse().ok()?;
        let ifindex = field("ifindex=")?.parse().ok()?;
        if words.next().is_some() {
            return None;
        }
        Some(Record {
            uid,
            address,
            netns,
            ifindex,
        })
    }
}

/// The container end's hardware address, fixed by kennel-net so that the
/// host end's filter can name it: locally administered, unicast, `02:6b`
/// (`k`) and the four bytes of the container's address, so distinct on a
/// bridge as the addresses are, and the same for an address handed out
/// again (the host's neighbour entry stays right).
pub fn container_mac(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0x6b, a, b, c, d]
}

/// The host end's name for the namespace with inode `netns`: unique among
/// live namespaces, so a second request for one namespace fails with
/// EEXIST instead of making a second link, and short enough for IFNAMSIZ.
pub fn host_name(netns: u64) -> String {
    format!("{HOST_NAME_PREFIX}{netns:x}")
}

/// Whether an interface name is one kennel-net makes.
pub fn is_host_name(name: &str) -> bool {
    name.strip_prefix(HOST_NAME_PREFIX).is_some_and(|hex| {
        !hex.is_empty() && hex.len() <= 13 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn alias_round_trip_and_strangers() {
        let r = Record {
            uid: 1000,
            address: Ipv4Addr::new(10, 88, 0, 2),
            netns: 4026532000,
            ifindex: 17,
        };
        assert_eq!(
            r.alias(),
            "kennel-net uid=1000 ip=10.88.0.2 netns=4026532000 ifindex=17"
        );
        assert_eq!(Record::parse(&r.alias()), Some(r));
        for other in [
            "",
            "uplink",
            "kennel-net",
            "kennel-net uid=1000 ip=10.88.0.2",
            "kennel-net uid=1000 ip=10.88.0.2 netns=1",
            "kennel-net uid=x ip=10.88.0.2 netns=1 ifindex=2",
            "kennel-net uid=1 ip=10.88.0.2 netns=1 ifindex=2 more",
            "kennel-netz uid=1 ip=10.88.0.2 netns=1 ifindex=2",
        ] {
            assert_eq!(Record::parse(other), None, "{other}");
        }
    }

    #[test]
    fn only_a_recorded_veth_of_its_own_name_and_index_is_kennel_nets() {
        let r = Record {
            uid: 1000,
            address: Ipv4Addr::new(10, 88, 0, 2),
            netns: 0xf000_0001,
            ifindex: 17,
        };
        let alias = r.alias();
        let ours = LinkFacts {
            index: 17,
            name: "knf0000001",
            is_veth: true,
            alias: Some(&alias),
        };
        assert_eq!(Record::of_link(&ours), Some(r));
        // root's bridge or veth named like ours, with no record.
        for alias in [None, Some(""), Some("uplink")] {
            assert_eq!(Record::of_link(&LinkFacts { alias, ..ours }), None);
        }
        // A record on what is not a veth (a bridge given the alias).
        assert_eq!(
            Record::of_link(&LinkFacts {
                is_veth: false,
                ..ours
            }),
            None
        );
        // A record copied onto another link, or naming another namespace.
        assert_eq!(Record::of_link(&LinkFacts { index: 18, ..ours }), None);
        assert_eq!(
            Record::of_link(&LinkFacts {
                name: "knf0000002",
                ..ours
            }),
            None
        );
        assert_eq!(
            Record::of_link(&LinkFacts {
                name: "eth0",
                ..ours
            }),
            None
        );
    }

    #[test]
    fn container_macs_are_local_unicast_and_follow_the_address() {
        let mac = container_mac(Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(mac, [0x02, 0x6b, 10, 88, 0, 2]);
        assert_eq!(mac[0] & 0x03, 0x02, "locally administered, unicast");
        assert_ne!(mac, container_mac(Ipv4Addr::new(10, 88, 0, 3)));
    }

    #[test]
    fn host_names_fit_ifnamsiz() {
        assert_eq!(host_name(0xf000_0001), "knf0000001");
        assert!(is_host_name(&host_name(u32::MAX.into())));
        assert!(host_name(u32::MAX.into()).len() <= crate::policy::MAX_IFNAME);
        assert!(!is_host_name("kn"));
        assert!(!is_host_name("kennel0"));
        assert!(!is_host_name("eth0"));
    }

    proptest! {
        #[test]
        fn any_record_round_trips(uid in any::<u32>(), ip in any::<u32>(), netns in any::<u64>(), ifindex in any::<u32>()) {
            let r = Record { uid, address: Ipv4Addr::from(ip), netns, ifindex };
            prop_assert_eq!(Record::parse(&r.alias()), Some(r));
        }

        #[test]
        fn parse_never_panics(text in "(?s).{0,120}") {
            let _ = Record::parse(&text);
        }
    }
}
