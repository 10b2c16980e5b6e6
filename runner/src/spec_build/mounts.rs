//! The mounts every spec built from flags starts with: the host
//! sandbox's read-only system directories, the kernel filesystems, and
//! where /sys goes among them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Mount, MountBuilder};

use super::flag_values::parse_volume;
use super::{maps_contain, Host};
use crate::cli::{CgroupManager, NetMode, RunArgs};
use crate::idmap::IdPlan;

/// The mounts for `args` on network `net`, in the order they are made:
/// the host sandbox's system directories, the kernel filesystems, the
/// caller's home, `--volume`s, `--tmpfs`es, then /sys and its cgroup2.
pub(super) fn mounts(
    args: &RunArgs,
    host: &Host,
    ids: &IdPlan,
    net: &NetMode,
) -> Result<Vec<Mount>> {
    let sandbox = args.rootfs.is_none();
    let mut mounts = Vec::new();
    if sandbox {
        for dir in SANDBOX_HOST_DIRS {
            if Path::new(dir).exists() {
                mounts.push(bind(Path::new(dir), dir, true)?);
            }
        }
    }
    let (first, sys) = system_mounts(net, maps_contain(&ids.gid_map, 5))?;
    mounts.extend(first);
    let mut sys_mounts = vec![sys];
    if sandbox && !args.no_home {
        let home = std::fs::canonicalize(&host.home).with_context(|| {
            format!(
                "your home {} does not exist (use --no-home)",
                host.home.display()
            )
        })?;
        mounts.push(bind(&home, &home.to_string_lossy(), false)?);
    }
    for v in &args.volumes {
        let (src, dst, ro) = parse_volume(v, host.cwd.as_deref())?;
        mounts.push(bind(&src, &dst, ro)?);
    }
    for t in &args.tmpfs {
        if !t.starts_with('/') {
            bail!("--tmpfs {t:?} must be an absolute path");
        }
        mounts.push(mount(
            t,
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=1777"],
        )?);
    }
    if args.cgroup.cgroup_manager != CgroupManager::Disabled && cgroup_delegate::cgroup2_mounted() {
        // The container's own cgroup namespace, rooted at its leaf. (On a
        // v1 or hybrid host there is no unified tree worth showing.)
        let mode = if args.cgroup.cgroup_rw { "rw" } else { "ro" };
        sys_mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup2",
            "cgroup2",
            &["nosuid", "noexec", "nodev", mode],
        )?);
    }
    place_sys_mounts(&mut mounts, sys_mounts);
    Ok(mounts)
}

/// Host directories the sandbox (no `--rootfs`) binds read-only.
const SANDBOX_HOST_DIRS: [&str; 8] = [
    "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

fn mount(dst: &str, typ: &str, src: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dst)
        .typ(typ)
        .source(src)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

pub(super) fn bind(src: &Path, dst: &str, readonly: bool) -> Result<Mount> {
    let mut opts = vec!["rbind", "nosuid"];
    if readonly {
        opts.push("ro");
    }
    mount(dst, "bind", &src.to_string_lossy(), &opts)
}

/// The standard kernel filesystems every container gets: (the ones made
/// first, the /sys one).
fn system_mounts(net: &NetMode, gid5_mapped: bool) -> Result<(Vec<Mount>, Mount)> {
    let mut pts = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    if gid5_mapped {
        pts.push("gid=5");
    }
    let sys = match net {
        // A sysfs instance belongs to a network namespace; without our own,
        // the kernel refuses a new one, so show the host's, read-only.
        NetMode::Host => bind(Path::new("/sys"), "/sys", true)?,
        NetMode::Private | NetMode::Pasta | NetMode::Bridge(_) => mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
    };
    let first = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount("/dev/pts", "devpts", "devpts", &pts)?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777"])?,
        mount("/run", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=755"])?,
    ];
    Ok((first, sys))
}

/// Puts the /sys mounts as late as they can go: a sysfs shows the network
/// namespace it is mounted in, which the engine makes in parallel with the
/// mounts before it. Mounts the user asked for under /sys still come after.
fn place_sys_mounts(mounts: &mut Vec<Mount>, sys: Vec<Mount>) {
    let at = mounts
        .iter()
        .position(|m| m.destination().starts_with("/sys"))
        .unwrap_or(mounts.len());
    mounts.splice(at..at, sys);
}
