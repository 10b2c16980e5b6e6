//! `attach`: a veth from the caller's namespace to a bridge, within the
//! quota and with an address the policy grants.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use kennel_net::{container_mac, host_name, port_filter, Record, Subnet};
use nix::errno::Errno;

use crate::caller::{read_policy, Caller};
use crate::checks::{check_netns, check_socket};
use crate::failure::{sys, Failure};
use crate::lock::lock;
use crate::netlink::Netlink;

/// How long a request at its quota waits for the veths of namespaces
/// being torn down to go.
const DYING_WAIT: Duration = Duration::from_millis(1000);

pub(crate) fn attach(
    caller: &Caller,
    bridge: &str,
    netns_n: i32,
    netlink_n: i32,
) -> Result<String, Failure> {
    let (quota, subnet) = grant(caller, bridge)?;
    let (netns, sock, netns_ino) = take_fds(caller, netns_n, netlink_n)?;

    let _lock = lock()?;
    let mut host = Netlink::open().map_err(sys("opening a netlink socket"))?;
    let (br_index, br_mtu, records) = room_on_bridge(&mut host, caller, bridge, quota, subnet)?;
    let used: Vec<Ipv4Addr> = records.iter().map(|r| r.address).collect();
    let address = subnet.pick(&used).ok_or_else(|| Failure::SubnetFull {
        bridge: bridge.into(),
        subnet,
    })?;
    let name = host_name(netns_ino);
    let link_index = make_veth(&mut host, &name, bridge, address, netns.as_fd(), br_mtu)?;
    let record = Record {
        uid: caller.uid,
        address,
        netns: netns_ino,
        ifindex: link_index,
    };
    let configured = record_and_connect(&mut host, &record, &name, bridge, br_index)
        .and_then(|()| configure_inside(sock, address, subnet));
    if let Err(f) = configured {
        // Ours by its index; deleting the host end takes the container's
        // end with it.
        let _ = host.delete_link(link_index);
        return Err(f);
    }
    Ok(format!(
        "{address}/{} {} {name}\n",
        subnet.prefix(),
        subnet.gateway()
    ))
}

/// The caller's quota on `bridge` and the bridge's subnet, from the
/// policy.
fn grant(caller: &Caller, bridge: &str) -> Result<(u32, Subnet), Failure> {
    // The policy first: a user it does not name learns nothing more.
    let policy = read_policy()?;
    let quota = policy
        .quota(&caller.requester(), bridge)
        .ok_or_else(|| Failure::NoGrant {
            user: caller.name.clone(),
            bridge: bridge.into(),
        })?;
    let subnet = policy.subnet(bridge).ok_or_else(|| Failure::NoSubnet {
        bridge: bridge.into(),
    })?;
    Ok((quota, subnet))
}

/// The inherited namespace and socket fds, once checked: the namespace
/// and its inode, and the socket made in it.
fn take_fds(
    caller: &Caller,
    netns_n: i32,
    netlink_n: i32,
) -> Result<(OwnedFd, OwnedFd, u64), Failure> {
    if netns_n == netlink_n {
        return Err(Failure::NotRouteSocket(netlink_n));
    }
    let netns = crate::sys::take_inherited_fd(netns_n).ok_or(Failure::BadFd(netns_n))?;
    let sock = crate::sys::take_inherited_fd(netlink_n).ok_or(Failure::BadFd(netlink_n))?;
    let netns_ino = check_netns(caller, netns_n, netns.as_fd())?;
    check_socket(netlink_n, sock.as_fd(), netns_ino)?;
    Ok((netns, sock, netns_ino))
}

/// The bridge's index and MTU and the records of the veths on it, once
/// the caller has fewer than `quota` of them.
fn room_on_bridge(
    host: &mut Netlink,
    caller: &Caller,
    bridge: &str,
    quota: u32,
    subnet: Subnet,
) -> Result<(u32, Option<u32>, Vec<Record>), Failure> {
    let mut links = host.links().map_err(sys("listing links"))?;
    // A container that just ended leaves its namespace to the kernel's
    // clean-up, which removes the veth a moment later: give that moment
    // before calling the quota spent.
    let deadline = Instant::now() + DYING_WAIT;
    loop {
        let Some(br) = links.iter().find(|l| l.name == bridge && l.is_bridge) else {
            return Err(Failure::NoBridge {
                bridge: bridge.into(),
                subnet,
            });
        };
        // Only kennel-net's own veths count, for the quota and addresses.
        let records: Vec<Record> = links
            .iter()
            .filter(|l| l.controller == Some(br.index))
            .filter_map(|l| Record::of_link(&l.facts()))
            .collect();
        let mine = records.iter().filter(|r| r.uid == caller.uid).count();
        if mine < quota as usize {
            return Ok((br.index, br.mtu, records));
        }
        if quota == 0 || Instant::now() >= deadline {
            return Err(Failure::QuotaFull {
                user: caller.name.clone(),
                bridge: bridge.into(),
                quota,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
        links = host.links().map_err(sys("listing links"))?;
    }
}

/// Makes the veth `name`, its peer eth0 in `netns`, and returns its
/// index.
fn make_veth(
    host: &mut Netlink,
    name: &str,
    bridge: &str,
    address: Ipv4Addr,
    netns: BorrowedFd<'_>,
    br_mtu: Option<u32>,
) -> Result<u32, Failure> {
    // Made down and on no bridge: until it is recorded and attached below,
    // nothing the container sends reaches anyone. The bridge's MTU, so a
    // bridge set up for jumbo frames carries them to the container too.
    match host.create_veth(name, "eth0", container_mac(address), netns, br_mtu) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Err(Failure::AlreadyLinked),
        Err(e) => return Err(sys(format!("creating veth {name} on {bridge}"))(e)),
    }
    // We hold the lock and the name is unique to the namespace, so the
    // link of that name is the one just made (only CAP_NET_ADMIN renames).
    match host.link_named(name) {
        Ok(l) if l.is_veth => Ok(l.index),
        Ok(_) => Err(sys(format!("finding {name}"))(Errno::ENODEV)),
        Err(e) => Err(sys(format!("finding {name}"))(e)),
    }
}

/// Records the veth in its alias, filters what it may send, and only then
/// attaches it to the bridge and brings it up.
fn record_and_connect(
    host: &mut Netlink,
    record: &Record,
    name: &str,
    bridge: &str,
    br_index: u32,
) -> Result<(), Failure> {
    let filter = port_filter(container_mac(record.address), record.address);
    host.set_alias(record.ifindex, &record.alias())
        .map_err(sys(format!("recording {name}")))?;
    // Before the link carries anything: the container may send only from
    // the MAC and address it was given.
    host.add_port_filter(record.ifindex, &filter)
        .map_err(sys(format!(
            "filtering what {name} may send (needs cls_bpf and the clsact qdisc)"
        )))?;
    host.attach_up(record.ifindex, br_index)
        .map_err(sys(format!("attaching {name} to {bridge}")))
}

/// eth0's address, eth0 up, and the default route via the bridge, through
/// the socket made inside the container's namespace.
fn configure_inside(sock: OwnedFd, address: Ipv4Addr, subnet: Subnet) -> Result<(), Failure> {
    let mut inside = Netlink::from_socket(crate::sys::netlink_socket_from(sock))
        .map_err(sys("using the container's netlink socket"))?;
    let eth0 = inside
        .link_named("eth0")
        .map_err(sys("finding eth0 in the container"))?
        .index;
    inside
        .add_address(eth0, address, subnet.prefix())
        .map_err(sys(format!("adding {address}/{} to eth0", subnet.prefix())))?;
    inside.set_up(eth0).map_err(sys("bringing eth0 up"))?;
    inside
        .add_default_route(eth0, subnet.gateway())
        .map_err(sys(format!(
            "adding the default route via {}",
            subnet.gateway()
        )))?;
    Ok(())
}
