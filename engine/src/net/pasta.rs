//! The container's user-mode network: Debian's `pasta` (package passt)
//! attached to the container's network and user namespaces.
//!
//! pasta is started by a small keeper process the runner forks once the
//! child has joined its network namespace; the child builds its rootfs
//! meanwhile, and waits for `ToChild::NetworkUp` before anything of the
//! container's runs (see `protocol`).
//!
//! Readiness: pasta configures the interface, addresses and routes in the
//! namespace early, and then fills its socket and pipe pools, binds the
//! published ports, and writes its pid file (`-P`; created, written and
//! closed at that point). Without published ports, the keeper counts the
//! network as up once the default routes appear (see `default_routes`);
//! with them, once the pid file is closed, so that the ports answer when
//! the container starts. Either way it watches pasta's pidfd too, so a
//! pasta that fails is seen at once.
//!
//! Lifetime: pasta does not quit when the processes of a namespace it was
//! given by pid are gone (it holds the namespace), and it drops the
//! parent-death signal when it sandboxes itself. So the keeper holds a
//! pidfd of the container's process and kills pasta when that process
//! ends, whether the runner waited for it, was killed (the container dies
//! with it), or left it to run (the OCI lifecycle). The keeper has its own
//! session, so a terminal's ^C reaches the container, not pasta.

use std::io::Read;
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::wait::waitpid;
use nix::unistd::{pipe2, Pid};

use crate::net::annotation::NET_ANNOTATION;
use crate::net::publish::{PastaPlan, Protocol, Publish};
use crate::protocol::{serve_network_request, Channel};
use crate::spec::mounts::MountPlan;
use crate::sys;

mod keeper;
mod prepared;
mod tun;
pub use prepared::Prepared;
pub use tun::{check_tun, TunDenied, TUN_DEVICE};

/// The address the container sends DNS queries to; pasta forwards them
/// to the host's first resolver (of the host's /etc/resolv.conf), so a
/// resolver on the host's loopback works too.
pub const DNS_FORWARD: &str = "169.254.1.1";

/// The fix when pasta is missing.
pub const INSTALL_HINT: &str =
    "install Debian's passt package (apt install passt), or use --net private";

/// pasta's path on `PATH`, if it is installed.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("pasta"))
        .find(|p| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok())
}

/// The address pasta gives the container: a copy of the host's on the
/// interface with the default IPv4 route (pasta's default), if any.
pub fn container_address() -> Option<IpAddr> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let iface = routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"00000000")).then(|| f[0].to_string())
    })?;
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        let ip = a.address?.as_sockaddr_in()?.ip();
        (a.interface_name == iface).then_some(IpAddr::V4(ip))
    })
}

/// Fails, naming the port and the fix, when a published host port cannot
/// be bound by this user: in use, or privileged. pasta itself only warns
/// about a port it cannot bind while it binds another (IPv6) one, so
/// kennel asks the kernel first, before anything is made.
pub fn check_ports(publish: &[Publish]) -> Result<()> {
    for p in publish {
        let ip = p
            .host_ip
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let bound = match p.protocol {
            Protocol::Tcp => TcpListener::bind((ip, p.host_port)).map(drop),
            Protocol::Udp => UdpSocket::bind((ip, p.host_port)).map(drop),
        };
        let Err(e) = bound else { continue };
        let why = match e.raw_os_error() {
            Some(libc::EADDRINUSE) => format!(
                "host port {}/{} is already in use: stop what listens there (ss -lntup) or publish another host port",
                p.host_port, p.protocol
            ),
            Some(libc::EACCES) => format!(
                "host port {}/{} is privileged: net.ipv4.ip_unprivileged_port_start is {}; publish a port at or above it, or lower it (sysctl -w net.ipv4.ip_unprivileged_port_start={})",
                p.host_port,
                p.protocol,
                std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "unknown".into()),
                p.host_port
            ),
            Some(libc::EADDRNOTAVAIL) => format!("{ip} is not an address of this host"),
            _ => e.to_string(),
        };
        bail!("cannot publish -p {p}: {why}");
    }
    Ok(())
}

/// pasta's arguments for `plan`, attached to `pid`'s namespaces.
fn arguments(plan: &PastaPlan, dir: &Path, pid: Pid) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--config-net".into(),
        "-f".into(),
        "-q".into(),
        "-l".into(),
        dir.join("log").display().to_string(),
        "-P".into(),
        dir.join("pid").display().to_string(),
        // As root, pasta would otherwise switch to nobody, who may not
        // open the container's namespaces.
        "--runas".into(),
        format!("{}:{}", nix::unistd::geteuid(), nix::unistd::getegid()),
        "--dns-forward".into(),
        DNS_FORWARD.into(),
        // The container's own loopback does not reach the host's.
        "-T".into(),
        "none".into(),
        "-U".into(),
        "none".into(),
    ];
    for proto in [Protocol::Tcp, Protocol::Udp] {
        let flag = match proto {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
        };
        let mine: Vec<&Publish> = plan
            .publish
            .iter()
            .filter(|p| p.protocol == proto)
            .collect();
        if mine.is_empty() {
            args.extend([flag.into(), "none".into()]);
        }
        for p in mine {
            let addr = p.host_ip.map(|ip| format!("{ip}/")).unwrap_or_default();
            args.extend([
                flag.into(),
                format!("{addr}{}:{}", p.host_port, p.container_port),
            ]);
        }
    }
    args.push(pid.to_string());
    args
}

/// A pasta on its way, through its keeper.
pub struct Starting {
    keeper: std::io::BufReader<std::fs::File>,
}

/// A running pasta, through its keeper.
pub struct Pasta {
    /// The keeper's status pipe: "prepared" and "ok", each on its own
    /// line, once pasta's directory is made and once pasta is ready, then
    /// end-of-file once pasta, killed after the container, is out of the
    /// user's way (see `keeper::keep`).
    keeper: std::io::BufReader<std::fs::File>,
    /// Left to outlive us with the container (`detach`).
    detached: bool,
}

impl Pasta {
    /// Starts pasta for the container `pid` (whose pidfd is `container`;
    /// `netlink` a NETLINK_ROUTE socket made in its network namespace)
    /// and returns once the container's resolv.conf exists.
    pub fn start(
        plan: &PastaPlan,
        prepared: &Prepared,
        pid: Pid,
        container: BorrowedFd<'_>,
        netlink: Option<OwnedFd>,
        single: &sys::SingleThreaded,
    ) -> Result<Starting> {
        let dir = prepared.dir.clone();
        let (status_read, status_write) =
            pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe for pasta")?;
        let args = arguments(plan, &dir, pid);
        // Forked twice, so the keeper is not our child: the runner's only
        // child stays the container, and the keeper outlives a runner that
        // leaves early (the OCI lifecycle) without becoming a zombie.
        let middle = match sys::fork_process(single).context("cannot fork pasta's keeper")? {
            None => {
                drop(status_read);
                match sys::fork_process(single) {
                    Ok(None) => keeper::keep(prepared, &args, container, netlink, status_write),
                    Ok(Some(_)) => sys::exit_now(0),
                    Err(e) => {
                        let _ = nix::unistd::write(
                            &status_write,
                            format!("cannot fork pasta's keeper: {e}").as_bytes(),
                        );
                        sys::exit_now(1)
                    }
                }
            }
            Some(middle) => middle,
        };
        drop((status_write, netlink));
        let _ = waitpid(middle, None);
        let mut keeper = std::io::BufReader::new(std::fs::File::from(status_read));
        expect(&mut keeper, "prepared")?;
        Ok(Starting { keeper })
    }

    /// Lets the keeper and pasta outlive us, with the container.
    pub fn detach(&mut self) {
        self.detached = true;
    }
}

impl Drop for Pasta {
    /// Waits for the keeper's word that pasta is out of the way: it kills
    /// pasta once the container is gone, which the runner has made sure
    /// of before dropping this.
    fn drop(&mut self) {
        if !self.detached {
            let _ = std::io::copy(&mut self.keeper, &mut std::io::sink());
        }
    }
}

impl Starting {
    /// Returns once the namespace's interface is configured.
    pub fn ready(mut self) -> Result<Pasta> {
        expect(&mut self.keeper, "ok")?;
        Ok(Pasta {
            keeper: self.keeper,
            detached: false,
        })
    }
}

/// Reads the keeper's next line, which should be `word`; else its error.
fn expect(keeper: &mut std::io::BufReader<std::fs::File>, word: &str) -> Result<()> {
    let mut answer = String::new();
    let _ = std::io::BufRead::read_line(keeper, &mut answer);
    if answer.strip_suffix('\n') == Some(word) {
        return Ok(());
    }
    if answer.is_empty() {
        bail!("pasta's keeper died before pasta was ready");
    }
    let _ = keeper.read_to_string(&mut answer);
    bail!(
        "pasta failed to set up the container's network: {}",
        answer.trim_end()
    )
}

/// Waits until the child is in its network namespace (it says so on the
/// sync channel), starts pasta there, lets the child build its rootfs
/// once pasta's directory exists, and says the network is up once the
/// interface is configured.
pub fn start_when_asked(
    chan: &Channel,
    pid: Pid,
    pidfd: BorrowedFd<'_>,
    plan: &PastaPlan,
    prepared: &Prepared,
    single: &sys::SingleThreaded,
) -> Result<Pasta, crate::Error> {
    serve_network_request(
        chan,
        pid,
        |netlink| Ok(Pasta::start(plan, prepared, pid, pidfd, netlink, single)?),
        |starting| Ok(starting.ready()?),
    )
}

/// Checks what can be checked before anything exists (pasta installed,
/// /dev/net/tun open to this user, each published host port bindable),
/// and adds the container's /etc/resolv.conf to `mounts` unless the spec
/// mounts its own: pasta's DNS forwarder, which relays to the host's
/// first resolver (one on the host's loopback too, which the container
/// could not reach), and the host's search domains, as podman does;
/// read-only. `writable_root` is the rootfs when the container writes to
/// it in place (not read-only, not the host sandbox): a mount point it
/// lacks is made there.
pub fn prepare(
    plan: &PastaPlan,
    mounts: &mut Vec<MountPlan>,
    writable_root: Option<&Path>,
) -> Result<Prepared> {
    let program = find()
        .ok_or_else(|| anyhow!("{NET_ANNOTATION}=pasta: pasta is not installed; {INSTALL_HINT}"))?;
    // Never a quiet fall back to another network: the user chose, or was
    // told, pasta's.
    check_tun().map_err(|e| anyhow!("pasta, this container's network, cannot start: {e}"))?;
    check_ports(&plan.publish)?;
    let base = crate::host::runtime_dir::runtime_dir()
        .map(|d| d.path)
        .ok()
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Made by the keeper with mkdir, which fails on an existing name.
    let dir = base.join(format!("kennel-pasta.{}.{nanos:x}", std::process::id()));
    let mut prepared = Prepared {
        program,
        dir,
        resolv_conf: None,
        resolv_point_in: None,
        publishes: !plan.publish.is_empty(),
    };
    if !mounts.iter().any(|m| m.destination == "/etc/resolv.conf") {
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut text = format!("nameserver {DNS_FORWARD}\n");
        for line in host.lines() {
            if line.starts_with("search ") || line.starts_with("options ") {
                text.push_str(line);
                text.push('\n');
            }
        }
        prepared.resolv_conf = Some(text);
        prepared.resolv_point_in = writable_root.map(Path::to_path_buf);
        let opts = crate::spec::mounts::parse_mount_options(&[
            "rbind".into(),
            "ro".into(),
            "nosuid".into(),
            "nodev".into(),
            "noexec".into(),
        ]);
        mounts.push(MountPlan {
            destination: "/etc/resolv.conf".into(),
            fstype: "none".into(),
            source: prepared.dir.join("resolv.conf").display().to_string(),
            flags: opts.flags | nix::mount::MsFlags::MS_BIND,
            data: opts.data,
            bind: true,
            readonly: true,
            copy_up: false,
            propagation: None,
        });
    }
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_forward_only_what_is_published() {
        let plan = PastaPlan {
            publish: vec!["127.0.0.1:18080:80".parse().unwrap()],
        };
        let a = arguments(&plan, Path::new("/d"), Pid::from_raw(42)).join(" ");
        assert!(a.contains("-t 127.0.0.1/18080:80"), "{a}");
        assert!(a.contains("-u none"), "{a}");
        assert!(!a.contains("-t none"), "{a}");
        assert!(a.contains("-T none -U none"), "{a}");
        assert!(a.ends_with(" 42"), "{a}");
    }
}
