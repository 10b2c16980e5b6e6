//! Seeing pasta's configuration of the container's network namespace
//! complete, as it happens.
//!
//! pasta configures the namespace (link, then per address family the
//! address and the default route) early in its start-up, and only then
//! fills its socket and pipe pools and writes its pid file, which takes
//! longer than all the rest of a container's start. A packet the
//! container sends before pasta's loop runs waits in the tap device's
//! queue; what must not happen is a connect() before the route exists
//! (ENETUNREACH). So pasta's keeper subscribes to route changes on a
//! NETLINK_ROUTE socket the child made inside the namespace, and counts
//! the namespace as configured once a default route has appeared for each
//! family pasta will configure: those for which the host has a default
//! route, as pasta picks its template interface by the host's default
//! route and leaves a family without one unconfigured.
//!
//! Only the fixed headers of the kernel's route announcements are read
//! (the message length and type, and the route's family, destination
//! length and table); nothing is sent on the socket.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use libc::{RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTM_NEWROUTE, RT_TABLE_MAIN};
use nix::errno::Errno;
use nix::sys::socket::{bind, recv, MsgFlags, NetlinkAddr};

/// struct nlmsghdr: u32 length, u16 type, u16 flags, u32 seq, u32 pid.
const NLMSG_HEADER: usize = std::mem::size_of::<libc::nlmsghdr>();
/// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
/// type (u8 each), flags (u32).
const RTMSG: usize = 12;

/// Which families' default routes the configuration ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    pub ipv4: bool,
    pub ipv6: bool,
}

impl Families {
    /// The families for which this (the host's) network namespace has a
    /// default route in its main table.
    pub fn with_host_default_route() -> Families {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        Families {
            ipv4: has_ipv4_default(&read("/proc/net/route")),
            ipv6: has_ipv6_default(&read("/proc/net/ipv6_route")),
        }
    }

    fn none(self) -> bool {
        !self.ipv4 && !self.ipv6
    }
}

/// /proc/net/route: a line whose destination and mask are zero.
fn has_ipv4_default(table: &str) -> bool {
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&"00000000") && f.get(7) == Some(&"00000000")
    })
}

/// /proc/net/ipv6_route: destination ::/0, through a device other than
/// lo (the kernel lists unreachable defaults on lo).
fn has_ipv6_default(table: &str) -> bool {
    table.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo"
    })
}

/// A subscription to the namespace's route announcements.
pub struct Watch {
    socket: OwnedFd,
    waiting_for: Families,
}

impl Watch {
    /// Subscribes `socket` (NETLINK_ROUTE, made in the namespace) to the
    /// route groups of the families in `expected`. None when nothing is
    /// expected: then there is nothing to see.
    pub fn subscribe(socket: OwnedFd, expected: Families) -> Result<Option<Watch>, Errno> {
        if expected.none() {
            return Ok(None);
        }
        let mut groups = 0;
        if expected.ipv4 {
            groups |= RTMGRP_IPV4_ROUTE as u32;
        }
        if expected.ipv6 {
            groups |= RTMGRP_IPV6_ROUTE as u32;
        }
        bind(socket.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
        Ok(Some(Watch {
            socket,
            waiting_for: expected,
        }))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Reads what has been announced (without blocking); true once every
    /// expected default route has appeared.
    pub fn configured(&mut self) -> Result<bool, Errno> {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match recv(self.socket.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) | Err(Errno::EAGAIN) => break,
                Ok(n) => note_default_routes(&buf[..n], &mut self.waiting_for),
                // Announcements were dropped: the pid file still says it.
                Err(Errno::ENOBUFS) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(self.waiting_for.none())
    }
}

/// Clears from `waiting_for` each family whose main-table default route a
/// message in `datagram` announces.
fn note_default_routes(datagram: &[u8], waiting_for: &mut Families) {
    let mut rest = datagram;
    while rest.len() >= NLMSG_HEADER {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < NLMSG_HEADER || len > rest.len() {
            return;
        }
        if kind == RTM_NEWROUTE && len >= NLMSG_HEADER + RTMSG {
            let route = &rest[NLMSG_HEADER..];
            let (family, dst_len, table) = (route[0], route[1], route[4]);
            if dst_len == 0 && table == RT_TABLE_MAIN {
                match i32::from(family) {
                    libc::AF_INET => waiting_for.ipv4 = false,
                    libc::AF_INET6 => waiting_for.ipv6 = false,
                    _ => {}
                }
            }
        }
        // Messages are aligned to 4 bytes.
        let next = (len + 3) & !3;
        rest = rest.get(next..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(family: u8, dst_len: u8, table: u8) -> Vec<u8> {
        let len = (NLMSG_HEADER + RTMSG) as u32;
        let mut m = Vec::new();
        m.extend(len.to_ne_bytes());
        m.extend(RTM_NEWROUTE.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend([family, dst_len, 0, 0, table, 0, 0, 1]);
        m.extend([0u8; 4]);
        m
    }

    fn both() -> Families {
        Families {
            ipv4: true,
            ipv6: true,
        }
    }

    #[test]
    fn each_family_is_done_by_its_own_default_route() {
        let mut w = both();
        note_default_routes(&route(libc::AF_INET as u8, 0, RT_TABLE_MAIN), &mut w);
        assert_eq!((w.ipv4, w.ipv6), (false, true));
        note_default_routes(&route(libc::AF_INET6 as u8, 0, RT_TABLE_MAIN), &mut w);
        assert!(w.none());
    }

    #[test]
    fn other_routes_and_tables_do_not_count() {
        let mut w = both();
        let mut two = route(libc::AF_INET as u8, 24, RT_TABLE_MAIN);
        two.extend(route(libc::AF_INET6 as u8, 0, 255));
        note_default_routes(&two, &mut w);
        assert_eq!(w, both());
    }

    #[test]
    fn a_later_message_in_one_datagram_is_read() {
        let mut w = both();
        let mut two = route(libc::AF_INET as u8, 8, RT_TABLE_MAIN);
        two.extend(route(libc::AF_INET6 as u8, 0, RT_TABLE_MAIN));
        note_default_routes(&two, &mut w);
        assert_eq!((w.ipv4, w.ipv6), (true, false));
    }

    #[test]
    fn truncated_or_lying_lengths_stop_the_reading() {
        let mut w = both();
        let mut m = route(libc::AF_INET as u8, 0, RT_TABLE_MAIN);
        m[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        note_default_routes(&m, &mut w);
        note_default_routes(&m[..10], &mut w);
        let mut zero = m.clone();
        zero[0..4].copy_from_slice(&0u32.to_ne_bytes());
        note_default_routes(&zero, &mut w);
        assert_eq!(w, both());
    }

    #[test]
    fn host_tables_are_read_as_the_kernel_writes_them() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert!(has_ipv4_default(v4));
        let no_v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert!(!has_ipv4_default(no_v4));
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n";
        assert!(has_ipv6_default(v6));
        let unreachable = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert!(!has_ipv6_default(unreachable));
        let prefix = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n";
        assert!(!has_ipv6_default(prefix));
    }
}
