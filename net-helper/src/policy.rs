//! `/etc/kennel/net.conf`: which bridges kennel-net may attach to, the
//! subnet it hands out on each, and who may attach how many veths where.
//!
//! ```text
//! # bridge NAME SUBNET
//! bridge kennel0 10.88.0.0/24
//! # USER|@GROUP|UID  veth  BRIDGE  COUNT
//! alice   veth kennel0 4
//! @devs   veth kennel0 2
//! ```
//!
//! A line that does not parse grants nothing (and `kennel doctor` shows
//! it); a user's quota on a bridge is the largest COUNT of the lines that
//! name them, their uid or one of their groups.

use std::fmt;

use crate::subnet::Subnet;

/// The policy file's path.
pub const POLICY_FILE: &str = "/etc/kennel/net.conf";

/// The longest interface name the kernel takes (IFNAMSIZ less the NUL).
pub const MAX_IFNAME: usize = 15;

/// Veths one policy line may grant: far above any real need, low enough
/// that a typo (an extra digit) does not hand out a whole /16.
pub const MAX_COUNT: u32 = 4096;

/// Who a quota line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    User(String),
    Uid(u32),
    Group(String),
}

/// `WHO veth BRIDGE COUNT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub who: Grantee,
    pub bridge: String,
    pub count: u32,
}

/// `bridge NAME SUBNET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeDef {
    pub name: String,
    pub subnet: Subnet,
}

/// A line that grants nothing, and why (for `kennel doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub number: usize,
    pub why: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{POLICY_FILE} line {}: {}", self.number, self.why)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub bridges: Vec<BridgeDef>,
    pub grants: Vec<Grant>,
    pub bad_lines: Vec<BadLine>,
}

/// Whether `name` is an interface name the kernel accepts.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn valid_account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.$".contains(&b))
}

fn parse_line(fields: &[&str]) -> Result<Option<Line>, String> {
    match fields {
        [] => Ok(None),
        ["bridge", name, subnet] => {
            if !valid_ifname(name) {
                return Err(format!("{name:?} is not an interface name"));
            }
            let subnet = subnet.parse::<Subnet>()?;
            Ok(Some(Line::Bridge(BridgeDef {
                name: name.to_string(),
                subnet,
            })))
        }
        ["bridge", ..] => Err("the form is: bridge NAME SUBNET".into()),
        [who, "veth", bridge, count] => {
            let who = if let Some(group) = who.strip_prefix('@') {
                if !valid_account_name(group) {
                    return Err(format!("{group:?} is not a group name"));
                }
                Grantee::Group(group.to_string())
            } else if who.bytes().all(|b| b.is_ascii_digit()) {
                Grantee::Uid(who.parse().map_err(|_| format!("{who:?} is not a uid"))?)
            } else if valid_account_name(who) {
                Grantee::User(who.to_string())
            } else {
                return Err(format!("{who:?} is not a user name"));
            };
            if !valid_ifname(bridge) {
                return Err(format!("{bridge:?} is not an interface name"));
            }
            let count = match count.parse::<u32>() {
                Ok(n) if n <= MAX_COUNT => n,
                _ => return Err(format!("{count:?} is not a count from 0 to {MAX_COUNT}")),
            };
            Ok(Some(Line::Grant(Grant {
                who,
                bridge: bridge.to_string(),
                count,
            })))
        }
        _ => Err("the forms are: bridge NAME SUBNET, and USER|@GROUP veth BRIDGE COUNT".into()),
    }
}

enum Line {
    Bridge(BridgeDef),
    Grant(Grant),
}

/// Parses the policy file. Malformed lines and a second definition of a
/// bridge grant nothing and are kept in `bad_lines`.
pub fn parse_policy(text: &str) -> Policy {
    let mut policy = Policy::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = |why: String| BadLine { number: i + 1, why };
        match parse_line(&fields) {
            Ok(None) => {}
            Ok(Some(Line::Bridge(b))) => {
                if policy.bridges.iter().any(|d| d.name == b.name) {
                    policy
                        .bad_lines
                        .push(bad(format!("bridge {} is defined twice", b.name)));
                } else {
                    policy.bridges.push(b);
                }
            }
            Ok(Some(Line::Grant(g))) => policy.grants.push(g),
            Err(why) => policy.bad_lines.push(bad(why)),
        }
    }
    policy
}

/// The person asking, as the policy sees them.
#[derive(Debug, Clone)]
pub struct Requester<'a> {
    pub name: &'a str,
    pub uid: u32,
    pub groups: &'a [String],
}

impl Policy {
    /// The subnet of `bridge`, if the policy defines it.
    pub fn subnet(&self, bridge: &str) -> Option<Subnet> {
        self.bridges
            .iter()
            .find(|b| b.name == bridge)
            .map(|b| b.subnet)
    }

    /// How many veths `who` may have on `bridge`: the largest count of the
    /// lines naming them; None when no line does.
    pub fn quota(&self, who: &Requester<'_>, bridge: &str) -> Option<u32> {
        self.grants_to(who)
            .filter(|g| g.bridge == bridge)
            .map(|g| g.count)
            .max()
    }

    /// Whether `who` may attach at least one veth to some bridge: the
    /// users kennel-net does anything at all for (`gc` included).
    pub fn grants_any(&self, who: &Requester<'_>) -> bool {
        self.grants_to(who).any(|g| g.count > 0)
    }

    fn grants_to<'s>(&'s self, who: &'s Requester<'_>) -> impl Iterator<Item = &'s Grant> {
        self.grants.iter().filter(move |g| match &g.who {
            Grantee::User(n) => n == who.name,
            Grantee::Uid(u) => *u == who.uid,
            Grantee::Group(n) => who.groups.iter().any(|m| m == n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXAMPLE: &str = "\
# kennel-net policy
bridge kennel0 10.88.0.0/24
bridge lab 192.168.77.0/28   # a small one
alice veth kennel0 4
@devs veth kennel0 2
1001  veth lab 1
";

    fn who<'a>(name: &'a str, uid: u32, groups: &'a [String]) -> Requester<'a> {
        Requester { name, uid, groups }
    }

    #[test]
    fn parses_the_example() {
        let p = parse_policy(EXAMPLE);
        assert!(p.bad_lines.is_empty(), "{:?}", p.bad_lines);
        assert_eq!(p.bridges.len(), 2);
        assert_eq!(p.subnet("kennel0").unwrap().to_string(), "10.88.0.0/24");
        assert_eq!(p.subnet("lab").unwrap().to_string(), "192.168.77.0/28");
        assert_eq!(p.subnet("nope"), None);
        let none: Vec<String> = vec![];
        let devs = vec!["devs".to_string()];
        assert_eq!(p.quota(&who("alice", 1000, &none), "kennel0"), Some(4));
        assert_eq!(p.quota(&who("alice", 1000, &devs), "kennel0"), Some(4));
        assert_eq!(p.quota(&who("bob", 1002, &devs), "kennel0"), Some(2));
        assert_eq!(p.quota(&who("bob", 1002, &none), "kennel0"), None);
        assert_eq!(p.quota(&who("carol", 1001, &none), "lab"), Some(1));
        assert_eq!(p.quota(&who("carol", 1001, &none), "kennel0"), None);
        assert!(p.grants_any(&who("carol", 1001, &none)));
        assert!(p.grants_any(&who("bob", 1002, &devs)));
        assert!(!p.grants_any(&who("bob", 1002, &none)));
        let zero = parse_policy("bridge kennel0 10.88.0.0/24\nbob veth kennel0 0\n");
        assert!(!zero.grants_any(&who("bob", 1002, &none)));
    }

    #[test]
    fn bad_lines_grant_nothing_and_say_why() {
        let p = parse_policy(
            "alice veth kennel0 lots\n\
             alice veth kennel0 4 extra\n\
             bridge kennel0 10.88.0.0\n\
             bridge this-name-is-too-long 10.0.0.0/24\n\
             al/ice veth kennel0 1\n\
             @ veth kennel0 1\n\
             alice veth kennel0 99999\n\
             bridge a 10.0.0.0/24\n\
             bridge a 10.1.0.0/24\n",
        );
        let lines: Vec<usize> = p.bad_lines.iter().map(|b| b.number).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 6, 7, 9]);
        assert!(p.grants.is_empty());
        assert_eq!(p.subnet("a").unwrap().to_string(), "10.0.0.0/24");
        assert!(p.bad_lines[0]
            .to_string()
            .starts_with("/etc/kennel/net.conf line 1: "));
    }

    #[test]
    fn names_are_matched_exactly() {
        let p = parse_policy("alice veth kennel0 3\n@staff veth kennel0 1\n");
        let g = vec!["staff2".to_string()];
        assert_eq!(p.quota(&who("alic", 1, &g), "kennel0"), None);
        assert_eq!(p.quota(&who("alice2", 1, &g), "kennel0"), None);
        assert_eq!(p.quota(&who("alice", 1, &g), "kennel1"), None);
    }

    proptest! {
        #[test]
        fn never_panics_and_grants_only_from_well_formed_lines(text in "(?s).{0,400}") {
            let p = parse_policy(&text);
            for g in &p.grants {
                prop_assert!(valid_ifname(&g.bridge));
                prop_assert!(g.count <= MAX_COUNT);
            }
            for b in &p.bridges {
                prop_assert!(valid_ifname(&b.name));
            }
        }

        #[test]
        fn a_written_grant_reads_back(name in "[a-z][a-z0-9_-]{0,20}", bridge in "[a-z][a-z0-9]{0,14}", count in 0u32..=MAX_COUNT) {
            prop_assume!(name != "bridge");
            let p = parse_policy(&format!("{name} veth {bridge} {count}\n"));
            prop_assert!(p.bad_lines.is_empty());
            let none: Vec<String> = vec![];
            prop_assert_eq!(p.quota(&who(&name, 5, &none), &bridge), Some(count));
        }
    }
}
