//! kennel-net's command line.

use std::fmt;

use crate::policy::valid_ifname;
use crate::subnet::Subnet;

pub const USAGE: &str = "\
usage: kennel-net attach BRIDGE fd:NETNS fd:NETLINK
       kennel-net gc
       kennel-net setup-bridge NAME SUBNET      (as root)

attach   links the network namespace open on fd NETNS (an nsfs fd of a
         namespace owned by your user namespace) to BRIDGE with a veth
         pair: eth0 inside, with an address from the bridge's subnet and
         a default route; NETLINK is a NETLINK_ROUTE socket opened inside
         that namespace. Prints ADDRESS/PREFIX GATEWAY HOST-INTERFACE.
gc       removes veths whose set-up was interrupted.
setup-bridge  creates bridge NAME with SUBNET's first address, up.
Policy: /etc/kennel/net.conf (see kennel-net's README).
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Attach {
        bridge: String,
        netns_fd: i32,
        netlink_fd: i32,
    },
    Gc,
    SetupBridge {
        name: String,
        subnet: Subnet,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    Missing,
    Unknown(String),
    BadFd(String),
    BadBridge(String),
    BadSubnet(String),
    Extra(String),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Missing => f.write_str("missing arguments"),
            UsageError::Unknown(c) => write!(f, "unknown command {c:?}"),
            UsageError::BadFd(a) => write!(f, "{a:?} is not fd:N"),
            UsageError::BadBridge(b) => write!(f, "{b:?} is not an interface name"),
            UsageError::BadSubnet(why) => f.write_str(why),
            UsageError::Extra(a) => write!(f, "unexpected argument {a:?}"),
        }
    }
}

fn fd_arg(text: &str) -> Result<i32, UsageError> {
    text.strip_prefix("fd:")
        .and_then(|n| n.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| UsageError::BadFd(text.into()))
}

fn ifname(text: &str) -> Result<String, UsageError> {
    if valid_ifname(text) {
        Ok(text.into())
    } else {
        Err(UsageError::BadBridge(text.into()))
    }
}

pub fn parse_args(args: &[&str]) -> Result<Command, UsageError> {
    match args {
        [] => Err(UsageError::Missing),
        ["-h" | "--help" | "help", ..] => Ok(Command::Help),
        ["attach", bridge, netns, netlink] => Ok(Command::Attach {
            bridge: ifname(bridge)?,
            netns_fd: fd_arg(netns)?,
            netlink_fd: fd_arg(netlink)?,
        }),
        ["gc"] => Ok(Command::Gc),
        ["setup-bridge", name, subnet] => Ok(Command::SetupBridge {
            name: ifname(name)?,
            subnet: subnet.parse().map_err(UsageError::BadSubnet)?,
        }),
        ["attach" | "gc" | "setup-bridge", rest @ ..] if rest.len() > 3 => {
            Err(UsageError::Extra(rest[rest.len() - 1].to_string()))
        }
        ["attach" | "setup-bridge", ..] => Err(UsageError::Missing),
        ["gc", extra, ..] => Err(UsageError::Extra(extra.to_string())),
        [other, ..] => Err(UsageError::Unknown(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_command() {
        assert_eq!(
            parse_args(&["attach", "kennel0", "fd:3", "fd:4"]),
            Ok(Command::Attach {
                bridge: "kennel0".into(),
                netns_fd: 3,
                netlink_fd: 4
            })
        );
        assert_eq!(parse_args(&["gc"]), Ok(Command::Gc));
        assert!(matches!(
            parse_args(&["setup-bridge", "kennel0", "10.88.0.0/24"]),
            Ok(Command::SetupBridge { .. })
        ));
        assert_eq!(parse_args(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert_eq!(
            parse_args(&["attach", "kennel0", "3", "fd:4"]),
            Err(UsageError::BadFd("3".into()))
        );
        assert_eq!(
            parse_args(&["attach", "kennel0", "fd:-1", "fd:4"]),
            Err(UsageError::BadFd("fd:-1".into()))
        );
        assert_eq!(
            parse_args(&["attach", "../x", "fd:3", "fd:4"]),
            Err(UsageError::BadBridge("../x".into()))
        );
        assert_eq!(parse_args(&["attach", "kennel0"]), Err(UsageError::Missing));
        assert_eq!(
            parse_args(&["gc", "now"]),
            Err(UsageError::Extra("now".into()))
        );
        assert_eq!(parse_args(&["up"]), Err(UsageError::Unknown("up".into())));
        assert!(matches!(
            parse_args(&["setup-bridge", "kennel0", "10.88.0.1/24"]),
            Err(UsageError::BadSubnet(_))
        ));
    }
}
