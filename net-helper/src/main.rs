//! kennel-net: links a rootless container's network namespace to a bridge
//! with a veth pair, within the quota `/etc/kennel/net.conf` grants. It
//! runs with the file capability `cap_net_admin=ep` (never setuid), so
//! everything it does with privilege, the threat, and the check that
//! answers it:
//!
//! * Stray privilege: a setuid helper, or one holding more than
//!   CAP_NET_ADMIN, could be turned to other ends. We refuse to run if the
//!   real and effective ids differ, the file is setuid or setgid, or any
//!   other capability is permitted (unless the caller is root). Under
//!   no_new_privs, without `setcap`, under a tracer, or on a nosuid mount
//!   (the kernel ignores file capabilities there), we say which and stop
//!   at once (the checks are kennel-idmap's: `kennel_sys::cap_helper`).
//! * Someone else's namespace: a veth in another user's namespace would
//!   spend our caller's quota on them, or reach into a root service's
//!   network. The namespace comes as an inherited nsfs fd (never a path or
//!   pid we open), and its owning user namespace, walked up to the one
//!   just below ours, must have been created by the caller's real uid
//!   (NS_GET_OWNER_UID). Our own namespace's children only: the host's
//!   network, or root's `unshare -n`, is refused. A recycled pid cannot
//!   matter: the fd names one namespace for as long as it is open.
//! * The socket that configures the container end must be a
//!   NETLINK_ROUTE socket made in that same namespace (SIOCGSKNS), so the
//!   address and route land where the veth's peer is.
//! * Quota and addresses: only the policy file, root's and not writable by
//!   others, grants; it is read before the namespace is looked at, and a
//!   refusal names only the caller's own lines and links, never whether
//!   another user's bridge, link or namespace exists (lxc-user-nic's
//!   CVE-2018-6556 and CVE-2022-47952 told whether a path existed). Each
//!   veth's record is its host end's alias, which only CAP_NET_ADMIN can
//!   change and which dies with the veth. Concurrent requests take an
//!   flock, so no address is handed out twice: on the namespace's
//!   `net.ipv4.route.flush` sysctl (mode 0200, opened for writing and
//!   never written), which only root and CAP_NET_ADMIN can open, so a
//!   user who may not attach cannot hold it and stall everyone else
//!   (any readable file could be flocked by anyone: flock needs only a
//!   read-only fd). Every command checks the caller against the policy
//!   before it takes the lock.
//! * Someone else's links: kennel-net counts, and deletes, only links it
//!   can prove it made: a veth whose alias is a record naming that link's
//!   own index, and whose name is `kn` + the record's namespace inode. A
//!   bridge, an uplink or root's own `kn…` veth never passes, whatever its
//!   name. `gc` removes only the caller's own (root: anyone's) recorded
//!   veths that never reached a bridge; a veth on a bridge is in use.
//! * Leftovers: a veth is made down and on no bridge, recorded, and only
//!   then attached and brought up, so a helper killed part-way leaves a
//!   link that carries nothing and goes with its namespace; any failure
//!   we see deletes the link we made, by its index (both ends go).
//! * Process state: non-dumpable first thing, /dev/null on closed fds 0-2,
//!   no environment read, capabilities dropped before exit.

#![cfg_attr(not(test), no_main)]

mod netlink;
mod sys;

use std::collections::HashSet;
use std::fmt;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use caps::Capability;
use kennel_net::{
    container_mac, host_name, parse_args, parse_policy, port_filter, Command, Policy, Record,
    Requester, Subnet, UsageError, LOCK_FILE, POLICY_FILE, USAGE,
};
use kennel_sys::cap_helper::{Helper, SelfCheckFailure};
use netlink::Netlink;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::{fstat, Mode};

kennel_sys::helper_entry_point!(helper_main);

static NET: Helper = Helper {
    program: "kennel-net",
    caps: &[Capability::CAP_NET_ADMIN],
    work: "create a veth",
    otherwise: ", or use --net pasta",
};

/// How long a request waits for another's lock.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// How long a request at its quota waits for the veths of namespaces
/// being torn down to go.
const DYING_WAIT: Duration = Duration::from_millis(1000);

/// nsfs's magic number (linux/magic.h).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// procfs's magic number (linux/magic.h).
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Why the helper did not do its job. One line each.
#[derive(Debug)]
enum Failure {
    Usage(UsageError),
    SelfCheck(SelfCheckFailure),
    NotRoot,
    UnsafePolicy,
    NoGrant {
        user: String,
        bridge: String,
    },
    NoGrantAnywhere {
        user: String,
    },
    NoSubnet {
        bridge: String,
    },
    NoBridge {
        bridge: String,
        subnet: Subnet,
    },
    QuotaFull {
        user: String,
        bridge: String,
        quota: u32,
    },
    SubnetFull {
        bridge: String,
        subnet: Subnet,
    },
    BadFd(i32),
    NotNetns(i32),
    NotYours(i32),
    NotRouteSocket(i32),
    OtherNamespace(i32),
    AlreadyLinked,
    NoLock,
    LockBusy,
    Sys {
        what: String,
        errno: Errno,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(e) => write!(f, "{e} (see --help)"),
            Failure::SelfCheck(e) => write!(f, "{e}"),
            Failure::NotRoot => f.write_str("setup-bridge is root's: run it with sudo"),
            Failure::UnsafePolicy => write!(
                f,
                "refused: {POLICY_FILE} must be owned by root and writable by no one else (sudo chown root: {POLICY_FILE}; sudo chmod 0644 {POLICY_FILE})"
            ),
            Failure::NoGrant { user, bridge } => write!(
                f,
                "refused: no line in {POLICY_FILE} lets {user} attach veths to bridge {bridge}; root can add: {user} veth {bridge} 4"
            ),
            Failure::NoGrantAnywhere { user } => write!(
                f,
                "refused: no line in {POLICY_FILE} lets {user} attach veths to any bridge, so there is nothing of theirs to collect"
            ),
            Failure::NoSubnet { bridge } => write!(
                f,
                "refused: {POLICY_FILE} gives bridge {bridge} no subnet; root can add: bridge {bridge} 10.88.0.0/24"
            ),
            Failure::NoBridge { bridge, subnet } => write!(
                f,
                "bridge {bridge} (in {POLICY_FILE}) does not exist in this network namespace; root creates it with: kennel-net setup-bridge {bridge} {subnet}"
            ),
            Failure::QuotaFull { user, bridge, quota } => write!(
                f,
                "refused: {user} already has {quota} veth(s) on bridge {bridge}, the quota in {POLICY_FILE}; stop one of your bridged containers, or ask root to raise the count"
            ),
            Failure::SubnetFull { bridge, subnet } => write!(
                f,
                "bridge {bridge}'s subnet {subnet} has no free address; root can give it a larger subnet in {POLICY_FILE}"
            ),
            Failure::BadFd(n) => write!(f, "refused: fd:{n} is not an open inherited descriptor"),
            Failure::NotNetns(n) => write!(f, "refused: fd:{n} is not a network namespace (give an fd of /proc/PID/ns/net)"),
            Failure::NotYours(n) => write!(
                f,
                "refused: the network namespace on fd:{n} is not one of yours (it must belong to a user namespace you created)"
            ),
            Failure::NotRouteSocket(n) => write!(f, "refused: fd:{n} is not a NETLINK_ROUTE socket"),
            Failure::OtherNamespace(n) => write!(
                f,
                "refused: the socket on fd:{n} was made in another network namespace than the one given"
            ),
            Failure::AlreadyLinked => f.write_str(
                "refused: this network namespace already has a veth from kennel-net, or an eth0 of its own",
            ),
            Failure::NoLock => write!(
                f,
                "{LOCK_FILE}, which kennel-net locks, is missing or not on procfs: it needs /proc mounted and IPv4 in this network namespace"
            ),
            Failure::LockBusy => write!(
                f,
                "another kennel-net has held its lock ({LOCK_FILE}) for {} s; try again",
                LOCK_WAIT.as_secs()
            ),
            Failure::Sys { what, errno } => {
                write!(f, "failed: {what}: {} ({})", errno.desc(), *errno as i32)
            }
        }
    }
}

fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> Failure {
    let what = what.into();
    move |errno| Failure::Sys { what, errno }
}

/// Called by `main`, the process entry point.
fn helper_main() -> ! {
    let std_fds = sys::ensure_std_fds_open();
    let _ = nix::sys::prctl::set_dumpable(false);
    let result = std_fds
        .map_err(sys("opening /dev/null on closed fds 0-2"))
        .and_then(|()| run(std::env::args_os().skip(1).collect()));
    match result {
        Ok(out) => {
            let _ = std::io::stdout().write_all(out.as_bytes());
            std::process::exit(0)
        }
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "kennel-net: {failure}");
            std::process::exit(1)
        }
    }
}

fn run(argv: Vec<std::ffi::OsString>) -> Result<String, Failure> {
    let args: Vec<&str> = argv
        .iter()
        .map(|a| {
            a.to_str()
                .ok_or_else(|| Failure::Usage(UsageError::Extra(a.to_string_lossy().into())))
        })
        .collect::<Result<_, _>>()?;
    let command = parse_args(&args).map_err(Failure::Usage)?;
    if command == Command::Help {
        return Ok(USAGE.into());
    }
    let caller = check_privileges()?;
    let only_net_admin: HashSet<Capability> = [Capability::CAP_NET_ADMIN].into();
    limit_caps(&only_net_admin, &only_net_admin)?;
    let out = match command {
        Command::Help => unreachable!("answered above"),
        Command::Attach {
            bridge,
            netns_fd,
            netlink_fd,
        } => attach(&caller, &bridge, netns_fd, netlink_fd),
        Command::Gc => gc(&caller),
        Command::SetupBridge { name, subnet } => setup_bridge(&caller, &name, subnet),
    };
    limit_caps(&HashSet::new(), &HashSet::new())?;
    out
}

/// The caller: their real ids and what the policy knows them by.
struct Caller {
    uid: u32,
    name: String,
    groups: Vec<String>,
}

impl Caller {
    fn requester(&self) -> Requester<'_> {
        Requester {
            name: &self.name,
            uid: self.uid,
            groups: &self.groups,
        }
    }
}

/// Refuses stray privilege, explains missing privilege, and finds the
/// caller's names.
fn check_privileges() -> Result<Caller, Failure> {
    let ids =
        kennel_sys::cap_helper::check_privileges(&NET, |_| [Capability::CAP_NET_ADMIN].into())
            .map_err(Failure::SelfCheck)?;
    let uid = ids.uid;
    let mut gid_list = nix::unistd::getgroups().unwrap_or_default();
    gid_list.push(nix::unistd::Gid::from_raw(ids.gid));
    let group_file = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let groups = group_file
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let gid: u32 = f.get(2)?.parse().ok()?;
            gid_list
                .iter()
                .any(|g| g.as_raw() == gid)
                .then(|| f[0].to_string())
        })
        .collect();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| uid.to_string());
    Ok(Caller { uid, name, groups })
}

/// Narrows our capabilities to `permitted`, of which `effective` are in
/// effect (see `kennel_sys::cap_helper::limit_caps`).
fn limit_caps(
    permitted: &HashSet<Capability>,
    effective: &HashSet<Capability>,
) -> Result<(), Failure> {
    kennel_sys::cap_helper::limit_caps(permitted, effective).map_err(sys("capset"))
}

/// Reads the policy, refusing one that someone but root could have written.
fn read_policy() -> Result<Policy, Failure> {
    let file = match std::fs::File::open(POLICY_FILE) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Policy::default()),
        Err(e) => return Err(sys(format!("reading {POLICY_FILE}"))(io_errno(e))),
    };
    let st = fstat(file.as_fd()).map_err(sys(format!("fstat {POLICY_FILE}")))?;
    if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
        return Err(Failure::UnsafePolicy);
    }
    let mut text = String::new();
    std::io::BufReader::new(file)
        .read_to_string(&mut text)
        .map_err(|e| sys(format!("reading {POLICY_FILE}"))(io_errno(e)))?;
    Ok(parse_policy(&text))
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The inode of the network namespace on `fd`, once it is known to be one
/// whose user namespace the caller created (below our own).
fn check_netns(caller: &Caller, n: i32, ns: BorrowedFd<'_>) -> Result<u64, Failure> {
    let on_nsfs = nix::sys::statfs::fstatfs(ns)
        .map(|s| s.filesystem_type().0 == NSFS_MAGIC)
        .unwrap_or(false);
    if !on_nsfs || sys::ns_type(ns) != Ok(libc::CLONE_NEWNET) {
        return Err(Failure::NotNetns(n));
    }
    let id = |fd: BorrowedFd<'_>| fstat(fd).map(|s| (s.st_dev, s.st_ino));
    let own = nix::sys::stat::stat("/proc/self/ns/user")
        .map(|s| (s.st_dev, s.st_ino))
        .map_err(sys("stat /proc/self/ns/user"))?;
    let not_yours = |_| Failure::NotYours(n);
    let mut userns = sys::ns_owning_userns(ns).map_err(not_yours)?;
    loop {
        if id(userns.as_fd()).map_err(not_yours)? == own {
            // The host's namespace, or one root made without a user
            // namespace of its own.
            return Err(Failure::NotYours(n));
        }
        let parent = sys::ns_parent(userns.as_fd()).map_err(not_yours)?;
        if id(parent.as_fd()).map_err(not_yours)? == own {
            // `userns` is the top of the chain below ours: its creator
            // made everything beneath it.
            if sys::ns_owner_uid(&userns).map_err(not_yours)? != caller.uid {
                return Err(Failure::NotYours(n));
            }
            return id(ns).map(|(_, ino)| ino).map_err(not_yours);
        }
        userns = parent;
    }
}

/// Checks that `sock` is a NETLINK_ROUTE socket made in the namespace
/// whose inode is `netns`.
fn check_socket(n: i32, sock: BorrowedFd<'_>, netns: u64) -> Result<(), Failure> {
    match sys::socket_domain_protocol(sock) {
        Ok((libc::AF_NETLINK, libc::NETLINK_ROUTE)) => {}
        _ => return Err(Failure::NotRouteSocket(n)),
    }
    let its = sys::socket_netns(sock).map_err(|_| Failure::OtherNamespace(n))?;
    let ino = fstat(its.as_fd())
        .map_err(sys("fstat the socket's namespace"))?
        .st_ino;
    if ino != netns {
        return Err(Failure::OtherNamespace(n));
    }
    Ok(())
}

/// Takes the lock every request that reads or changes records holds (see
/// `LOCK_FILE`: only root and CAP_NET_ADMIN can open it). Called only
/// once the caller has passed the policy.
fn lock() -> Result<Flock<std::fs::File>, Failure> {
    let fd = match nix::fcntl::open(
        LOCK_FILE,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(Failure::NoLock),
        Err(e) => return Err(sys(format!("opening {LOCK_FILE}"))(e)),
    };
    let on_proc = nix::sys::statfs::fstatfs(&fd)
        .map(|s| s.filesystem_type().0 == PROC_SUPER_MAGIC)
        .unwrap_or(false);
    if !on_proc {
        return Err(Failure::NoLock);
    }
    let mut file = std::fs::File::from(fd);
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((_, Errno::EWOULDBLOCK)) => return Err(Failure::LockBusy),
            Err((_, e)) => return Err(sys(format!("flock {LOCK_FILE}"))(e)),
        }
    }
}

fn attach(caller: &Caller, bridge: &str, netns_n: i32, netlink_n: i32) -> Result<String, Failure> {
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
    if netns_n == netlink_n {
        return Err(Failure::NotRouteSocket(netlink_n));
    }
    let netns = sys::take_inherited_fd(netns_n).ok_or(Failure::BadFd(netns_n))?;
    let sock = sys::take_inherited_fd(netlink_n).ok_or(Failure::BadFd(netlink_n))?;
    let netns_ino = check_netns(caller, netns_n, netns.as_fd())?;
    check_socket(netlink_n, sock.as_fd(), netns_ino)?;

    let _lock = lock()?;
    let mut host = Netlink::open().map_err(sys("opening a netlink socket"))?;
    let mut links = host.links().map_err(sys("listing links"))?;
    // A container that just ended leaves its namespace to the kernel's
    // clean-up, which removes the veth a moment later: give that moment
    // before calling the quota spent.
    let deadline = Instant::now() + DYING_WAIT;
    let (br_index, br_mtu, records) = loop {
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
            break (br.index, br.mtu, records);
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
    };
    let used: Vec<Ipv4Addr> = records.iter().map(|r| r.address).collect();
    let address = subnet.pick(&used).ok_or_else(|| Failure::SubnetFull {
        bridge: bridge.into(),
        subnet,
    })?;
    let name = host_name(netns_ino);
    // Made down and on no bridge: until it is recorded and attached below,
    // nothing the container sends reaches anyone. The bridge's MTU, so a
    // bridge set up for jumbo frames carries them to the container too.
    match host.create_veth(&name, "eth0", container_mac(address), netns.as_fd(), br_mtu) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Err(Failure::AlreadyLinked),
        Err(e) => return Err(sys(format!("creating veth {name} on {bridge}"))(e)),
    }
    // We hold the lock and the name is unique to the namespace, so the
    // link of that name is the one just made (only CAP_NET_ADMIN renames).
    let link = match host.link_named(&name) {
        Ok(l) if l.is_veth => l,
        Ok(_) => return Err(sys(format!("finding {name}"))(Errno::ENODEV)),
        Err(e) => return Err(sys(format!("finding {name}"))(e)),
    };
    let record = Record {
        uid: caller.uid,
        address,
        netns: netns_ino,
        ifindex: link.index,
    };
    let filter = port_filter(container_mac(address), address);
    let configured = host
        .set_alias(link.index, &record.alias())
        .map_err(sys(format!("recording {name}")))
        .and_then(|()| {
            // Before the link carries anything: the container may send
            // only from the MAC and address it was given.
            host.add_port_filter(link.index, &filter)
                .map_err(sys(format!(
                    "filtering what {name} may send (needs cls_bpf and the clsact qdisc)"
                )))
        })
        .and_then(|()| {
            host.attach_up(link.index, br_index)
                .map_err(sys(format!("attaching {name} to {bridge}")))
        })
        .and_then(|()| configure_inside(sock, address, subnet));
    if let Err(f) = configured {
        // Ours by its index; deleting the host end takes the container's
        // end with it.
        let _ = host.delete_link(link.index);
        return Err(f);
    }
    Ok(format!(
        "{address}/{} {} {name}\n",
        subnet.prefix(),
        subnet.gateway()
    ))
}

/// eth0's address, eth0 up, and the default route via the bridge, through
/// the socket made inside the container's namespace.
fn configure_inside(sock: OwnedFd, address: Ipv4Addr, subnet: Subnet) -> Result<(), Failure> {
    let mut inside = Netlink::from_socket(sys::netlink_socket_from(sock))
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

fn gc(caller: &Caller) -> Result<String, Failure> {
    // The policy first, as for attach: the lock is for users kennel-net
    // works for, and a user with no grant has no veth to collect.
    if caller.uid != 0 && !read_policy()?.grants_any(&caller.requester()) {
        return Err(Failure::NoGrantAnywhere {
            user: caller.name.clone(),
        });
    }
    let _lock = lock()?;
    let mut host = Netlink::open().map_err(sys("opening a netlink socket"))?;
    let links = host.links().map_err(sys("listing links"))?;
    let mut removed = 0;
    for l in &links {
        if let Some(r) = Record::of_link(&l.facts()) {
            if collectable(caller.uid, &r, l.controller) && host.delete_link(l.index).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(format!("removed {removed} interrupted veth(s)\n"))
}

/// Whether `gc`, run by `uid`, removes the veth of record `r` that is on
/// bridge `controller`: one kennel-net recorded but never attached (its
/// set-up was interrupted; the namespace may outlive the helper), the
/// caller's own or, for root, anyone's. A veth on a bridge is in use, and
/// goes with its namespace.
fn collectable(uid: u32, r: &Record, controller: Option<u32>) -> bool {
    controller.is_none() && (uid == 0 || r.uid == uid)
}

/// Root's set-up: the bridge with the subnet's first address, up.
/// Running it again changes nothing.
fn setup_bridge(caller: &Caller, name: &str, subnet: Subnet) -> Result<String, Failure> {
    if caller.uid != 0 {
        return Err(Failure::NotRoot);
    }
    let mut host = Netlink::open().map_err(sys("opening a netlink socket"))?;
    let existing = host.links().map_err(sys("listing links"))?;
    let index = match existing.iter().find(|l| l.name == name) {
        Some(l) if l.is_bridge => l.index,
        Some(_) => {
            return Err(sys(format!("{name} exists and is not a bridge"))(
                Errno::EEXIST,
            ))
        }
        None => {
            host.create_bridge(name)
                .map_err(sys(format!("creating bridge {name}")))?;
            host.links()
                .map_err(sys("listing links"))?
                .into_iter()
                .find(|l| l.name == name)
                .ok_or_else(|| sys(format!("finding {name}"))(Errno::ENODEV))?
                .index
        }
    };
    match host.add_address(index, subnet.gateway(), subnet.prefix()) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(sys(format!("adding {} to {name}", subnet.gateway()))(e)),
    }
    host.set_up(index)
        .map_err(sys(format!("bringing {name} up")))?;
    Ok(format!(
        "bridge {name} is up with {}/{}; {POLICY_FILE} needs the line `bridge {name} {subnet}` and one per user or @group: USER veth {name} COUNT\n",
        subnet.gateway(),
        subnet.prefix()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_file_and_the_fix() {
        let t = Failure::NoGrant {
            user: "alice".into(),
            bridge: "kennel0".into(),
        }
        .to_string();
        assert!(
            t.contains("/etc/kennel/net.conf") && t.contains("alice veth kennel0"),
            "{t}"
        );
        let t = Failure::SelfCheck(SelfCheckFailure {
            helper: &NET,
            refusal: kennel_sys::cap_helper::Refusal::NoNewPrivs,
        })
        .to_string();
        assert!(t.starts_with("no_new_privs is set"), "{t}");
        assert!(t.contains("cannot create a veth"), "{t}");
    }

    #[test]
    fn gc_takes_only_the_callers_unattached_veths() {
        let r = Record {
            uid: 1000,
            address: Ipv4Addr::new(10, 88, 0, 2),
            netns: 1,
            ifindex: 5,
        };
        assert!(collectable(1000, &r, None));
        assert!(collectable(0, &r, None));
        assert!(!collectable(1001, &r, None), "another user's");
        assert!(!collectable(1000, &r, Some(3)), "on a bridge: in use");
        assert!(!collectable(0, &r, Some(3)), "on a bridge: in use");
    }
}
