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
}

impl Record {
    pub fn alias(&self) -> String {
        format!(
            "{ALIAS_PREFIX} uid={} ip={} netns={}",
            self.uid, self.address, self.netns
        )
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
        if words.next().is_some() {
            return None;
        }
        Some(Record {
            uid,
            address,
            netns,
        })
    }
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
        };
        assert_eq!(
            r.alias(),
            "kennel-net uid=1000 ip=10.88.0.2 netns=4026532000"
        );
        assert_eq!(Record::parse(&r.alias()), Some(r));
        for other in [
            "",
            "uplink",
            "kennel-net",
            "kennel-net uid=1000 ip=10.88.0.2",
            "kennel-net uid=x ip=10.88.0.2 netns=1",
            "kennel-net uid=1 ip=10.88.0.2 netns=1 more",
            "kennel-netz uid=1 ip=10.88.0.2 netns=1",
        ] {
            assert_eq!(Record::parse(other), None, "{other}");
        }
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
        fn any_record_round_trips(uid in any::<u32>(), ip in any::<u32>(), netns in any::<u64>()) {
            let r = Record { uid, address: Ipv4Addr::from(ip), netns };
            prop_assert_eq!(Record::parse(&r.alias()), Some(r));
        }

        #[test]
        fn parse_never_panics(text in "(?s).{0,120}") {
            let _ = Record::parse(&text);
        }
    }
}
