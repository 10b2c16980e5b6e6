//! The container's bridged network: a veth pair from `kennel-net`, the
//! capability helper, with eth0 inside on the bridge's subnet.
//!
//! Asked for with the annotation `run.kennel.net=bridge` (bridge
//! `kennel0`) or `run.kennel.net=bridge=NAME`. The child joins its network
//! namespace, opens a NETLINK_ROUTE socket there and sends it with
//! `ToParent::StartNetwork`; the runner opens the namespace from
//! `/proc/PID/ns/net` (the child is ours and unreaped, so the pid cannot
//! name anyone else), runs kennel-net with both as inherited fds, and
//! answers `ToChild::NetworkUp` once eth0 has its address and route.
//! When the namespace goes, the veth goes with it, and with it the
//! helper's record: nothing is left to clean up.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use crate::net::annotation::{bridge_of, NET_ANNOTATION};
use crate::protocol::{serve_network_request, Channel};
use crate::sys;

/// The helper's name, found as kennel-idmap is.
pub const HELPER: &str = "kennel-net";

/// CAP_NET_ADMIN's bit in a file capability's first word.
const CAP_NET_ADMIN_BIT: u32 = 1 << 12;

/// The bridged network a spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgePlan {
    pub bridge: String,
}

/// Reads the annotations: None unless `run.kennel.net=bridge[=NAME]`.
pub fn plan(annotations: Option<&HashMap<String, String>>) -> Result<Option<BridgePlan>> {
    match annotations.and_then(|a| a.get(NET_ANNOTATION)) {
        Some(value) => bridge_of(value)
            .transpose()
            .map(|b| b.map(|bridge| BridgePlan { bridge })),
        None => Ok(None),
    }
}

/// Whether kennel-net can do its work when run from this process, and if
/// not, the fix. Used before anything exists, and by `kennel doctor`.
pub fn usable_helper() -> Result<PathBuf> {
    let path = crate::host::ids::find_helper_program(HELPER).ok_or_else(|| {
        anyhow!(
            "{HELPER} is needed for --net bridge, but it was not found next to kennel, in {} or on PATH; fix: {}",
            crate::host::ids::libexec_dir().display(),
            crate::host::install_kind::Installed::this().missing_helper_fix(HELPER)
        )
    })?;
    let granted = crate::sys::file_capabilities(&path)
        .ok()
        .flatten()
        .is_some_and(|data| crate::host::ids::grants_caps(&data, CAP_NET_ADMIN_BIT));
    if !granted {
        bail!(
            "{HELPER}'s file capability is needed for --net bridge, but {} has none; fix with: {}",
            path.display(),
            crate::host::install_kind::Installed::this()
                .capabilities_fix(&path, "cap_net_admin=ep")
        );
    }
    if crate::host::ids::on_nosuid_mount(&path) {
        bail!(
            "{HELPER}'s file capability is needed for --net bridge, but {} is on a file system mounted nosuid, where the kernel ignores it; install it on one mounted without nosuid (`findmnt -T {}` shows the options)",
            path.display(),
            path.display()
        );
    }
    if nix::sys::prctl::get_no_new_privs().unwrap_or(false) {
        bail!(
            "{HELPER} is needed for --net bridge, but no_new_privs is set on this process, so the kernel ignores its file capability; run kennel from a shell without no_new_privs (not under `setpriv --no-new-privs` or NoNewPrivileges=yes), or use --net pasta"
        );
    }
    Ok(path)
}

/// What the helper reports: the container's address and the host end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub host_link: String,
}

/// Reads kennel-net's one line: `ADDRESS/PREFIX GATEWAY HOST-LINK`.
pub fn parse_attached(line: &str) -> Option<Attached> {
    let mut words = line.split_whitespace();
    let (address, prefix) = words.next()?.split_once('/')?;
    let attached = Attached {
        address: address.parse().ok()?,
        prefix: prefix.parse().ok().filter(|p| *p <= 32)?,
        gateway: words.next()?.parse().ok()?,
        host_link: words.next()?.to_string(),
    };
    words.next().is_none().then_some(attached)
}

/// Waits until the child is in its network namespace, has kennel-net
/// link it to the bridge, and lets the child go on.
pub fn attach_when_asked(
    chan: &Channel,
    pid: Pid,
    pidfd: BorrowedFd<'_>,
    plan: &BridgePlan,
    helper: &std::path::Path,
) -> Result<Attached, crate::Error> {
    serve_network_request(chan, pid, Ok, |socket| {
        let socket = socket
            .ok_or_else(|| anyhow!("the container sent no netlink socket for its network"))?;
        let netns = nix::fcntl::open(
            format!("/proc/{pid}/ns/net").as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| anyhow!("cannot open the container's network namespace: {e}"))?;
        // The child is ours and not reaped, so its pid named it when we opened.
        sys::pidfd_send_signal(pidfd, 0)
            .map_err(|e| anyhow!("the container's process is gone: {e}"))?;
        Ok(run_helper(helper, &plan.bridge, netns, socket)?)
    })
}

/// Runs `kennel-net attach BRIDGE fd:NETNS fd:SOCKET` and reads its answer.
fn run_helper(
    helper: &std::path::Path,
    bridge: &str,
    netns: OwnedFd,
    socket: OwnedFd,
) -> Result<Attached> {
    let (ns_fd, sock_fd) = (netns.as_raw_fd(), socket.as_raw_fd());
    let mut cmd = Command::new(helper);
    cmd.arg("attach")
        .arg(bridge)
        .arg(format!("fd:{ns_fd}"))
        .arg(format!("fd:{sock_fd}"))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // These two are the only fds the helper inherits: everything else of
    // ours is close-on-exec.
    for fd in [netns.as_fd(), socket.as_fd()] {
        sys::set_cloexec(fd.as_raw_fd(), false)
            .with_context(|| format!("cannot pass an fd to {HELPER}"))?;
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot execute {}", helper.display()));
    drop((netns, socket));
    let out = out?;
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.trim();
    if !out.status.success() {
        bail!(
            "--net bridge={bridge}: {}",
            if said.is_empty() {
                format!("{} failed ({})", helper.display(), out.status)
            } else {
                said.to_string()
            }
        );
    }
    let answer = String::from_utf8_lossy(&out.stdout);
    parse_attached(answer.trim()).ok_or_else(|| {
        anyhow!(
            "--net bridge={bridge}: {} answered {:?}, not ADDRESS/PREFIX GATEWAY LINK",
            helper.display(),
            answer.trim()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_values() {
        let mut a = HashMap::new();
        assert_eq!(plan(Some(&a)).unwrap(), None);
        a.insert(NET_ANNOTATION.to_string(), "bridge=br1".to_string());
        assert_eq!(plan(Some(&a)).unwrap().unwrap().bridge, "br1");
    }

    #[test]
    fn reads_the_helpers_answer() {
        let a = parse_attached("10.88.0.2/24 10.88.0.1 kn1f00").unwrap();
        assert_eq!(a.address, Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!((a.prefix, a.host_link.as_str()), (24, "kn1f00"));
        for bad in [
            "",
            "10.88.0.2 10.88.0.1 kn",
            "10.88.0.2/33 10.88.0.1 kn",
            "10.88.0.2/24 10.88.0.1 kn x",
        ] {
            assert_eq!(parse_attached(bad), None, "{bad}");
        }
    }
}
