//! Whether pasta can open /dev/net/tun, asked before it is started.
//!
//! pasta makes the container's tap interface through /dev/net/tun, opened
//! as the user in the container's user namespace. The kernel checks the
//! node's mode and owner as the host sees them, and the user namespace
//! gives no override on a node whose owner (root) it does not map: where
//! the node is 0600 root (Debian without udev's rules: containers, minimal
//! VMs) pasta fails with only "Failed to open tun socket in namespace".
//! The runner, still the user in the host's namespaces, opening the node
//! itself meets the same check, and can name the cause and the fix.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use nix::errno::Errno;

/// The node pasta opens.
pub const TUN_DEVICE: &str = "/dev/net/tun";

/// What a user does until /dev/net/tun is fixed: a network without pasta.
const MEANWHILE: &str = "meanwhile run with --net private (loopback only) or --net host";

/// Why this user cannot open /dev/net/tun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunDenied {
    pub errno: Errno,
    /// The node's permission bits and owner (user:group), when it exists.
    pub node: Option<(u32, String)>,
    pub uid: u32,
}

/// Opens /dev/net/tun read-write (close-on-exec, as std always opens) and
/// closes it at once: no interface exists until an ioctl asks for one.
pub fn check_tun() -> Result<(), TunDenied> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(TUN_DEVICE);
    let Err(e) = opened else { return Ok(()) };
    let node = std::fs::metadata(TUN_DEVICE).ok().map(|m| {
        let owner = crate::host::passwd::host_user(m.uid()).map_or(m.uid().to_string(), |(n, _)| n);
        let group = group_name(m.gid()).unwrap_or_else(|| m.gid().to_string());
        (m.permissions().mode() & 0o7777, format!("{owner}:{group}"))
    });
    Err(TunDenied {
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        node,
        uid: nix::unistd::geteuid().as_raw(),
    })
}

fn group_name(gid: u32) -> Option<String> {
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[2].parse::<u32>() == Ok(gid)).then(|| f[0].to_string())
        })
}

impl TunDenied {
    /// What is wrong, with the node's mode and owner and the errno.
    pub fn cause(&self) -> String {
        let node = match &self.node {
            Some((mode, owner)) => format!("{TUN_DEVICE} (mode {mode:04o}, owner {owner})"),
            None => TUN_DEVICE.to_string(),
        };
        let why = match self.errno {
            Errno::EACCES => format!("uid {} may not open {node}", self.uid),
            Errno::EPERM => format!(
                "opening {node} is not permitted whatever its mode: a device cgroup or security module denies it"
            ),
            Errno::ENOENT => format!("{TUN_DEVICE} does not exist"),
            Errno::ENODEV | Errno::ENXIO => {
                format!("the kernel has no tun driver behind {node}")
            }
            _ => format!("opening {node} failed"),
        };
        format!(
            "{why}: {}; pasta opens it as you, so every container on pasta (the default network of a rootless --rootfs) fails",
            self.errno
        )
    }

    /// The command that fixes it, then what works meanwhile.
    pub fn fix(&self) -> String {
        let fix = match self.errno {
            // udev's own default rule for tun: opening it grants nothing
            // without CAP_NET_ADMIN over a network namespace.
            Errno::EACCES => format!(
                "let every user open it, as udev's default rules do: a rule KERNEL==\"tun\", MODE=\"0666\" in /etc/udev/rules.d/ (echo 'KERNEL==\"tun\", MODE=\"0666\"' | sudo tee /etc/udev/rules.d/60-tun.rules), then sudo udevadm trigger (or reboot); or, until the next boot, sudo chmod 0666 {TUN_DEVICE}"
            ),
            Errno::EPERM => "allow the character device 10:200 (rw) to the container or VM kennel runs in (LXC: lxc.cgroup2.devices.allow = c 10:200 rwm)".to_string(),
            Errno::ENOENT => format!(
                "sudo modprobe tun (its node then appears), or sudo mkdir -p /dev/net && sudo mknod -m 0666 {TUN_DEVICE} c 10 200"
            ),
            Errno::ENODEV | Errno::ENXIO => {
                "sudo modprobe tun (a kernel built with CONFIG_TUN)".to_string()
            }
            _ => format!("find why {TUN_DEVICE} cannot be opened (strace -e openat pasta)"),
        };
        format!("{fix}; {MEANWHILE}")
    }
}

impl std::fmt::Display for TunDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; fix: {}", self.cause(), self.fix())
    }
}

impl std::error::Error for TunDenied {}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(errno: Errno) -> TunDenied {
        TunDenied {
            errno,
            node: Some((0o600, "root:root".into())),
            uid: 1000,
        }
    }

    #[test]
    fn a_root_only_node_names_its_mode_owner_errno_and_the_fixes() {
        let text = denied(Errno::EACCES).to_string();
        for part in [
            "uid 1000 may not open /dev/net/tun (mode 0600, owner root:root)",
            "EACCES",
            "KERNEL==\"tun\", MODE=\"0666\"",
            "/etc/udev/rules.d/",
            "udevadm trigger",
            "sudo chmod 0666 /dev/net/tun",
            "--net private",
            "--net host",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
    }

    #[test]
    fn a_missing_node_or_driver_asks_for_the_module() {
        let missing = TunDenied {
            node: None,
            ..denied(Errno::ENOENT)
        };
        assert!(missing.cause().starts_with("/dev/net/tun does not exist"));
        assert!(missing.fix().contains("modprobe tun"));
        assert!(denied(Errno::ENODEV).fix().contains("modprobe tun"));
        assert!(!denied(Errno::EPERM).fix().contains("chmod"));
    }
}
