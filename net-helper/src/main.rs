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

mod attach;
mod caller;
mod checks;
mod failure;
mod lock;
mod netlink;
mod sys;

use std::collections::HashSet;
use std::io::Write;

use attach::attach;
use caller::{check_privileges, limit_caps, read_policy, Caller};
use caps::Capability;
use failure::{sys, Failure};
use kennel_net::{parse_args, Command, Record, Subnet, UsageError, POLICY_FILE, USAGE};
use kennel_sys::cap_helper::Helper;
use lock::lock;
use netlink::Netlink;
use nix::errno::Errno;

kennel_sys::helper_entry_point!(helper_main);

static NET: Helper = Helper {
    program: "kennel-net",
    caps: &[Capability::CAP_NET_ADMIN],
    work: "create a veth",
    otherwise: ", or use --net pasta",
};

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
    use std::net::Ipv4Addr;

    use kennel_sys::cap_helper::SelfCheckFailure;

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
