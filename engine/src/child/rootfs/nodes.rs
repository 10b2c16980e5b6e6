//! linux.devices in the new root, once the spec's mounts are made (a /dev
//! tmpfs among them), as runc makes them: mknod where the kernel allows
//! it, else the host's node at the same path bound onto a file (a user
//! namespace may make no device node). Every parent is resolved, and made,
//! inside the root by the kernel (`inroot`), and the node is made relative
//! to that parent's fd: an image's `/dev -> /somewhere` link lands inside
//! the root, never on the host.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::stat::{fstatat, mknodat, umask, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};

use super::mounts::{fail, host_path, Mounts, Step};
use crate::inroot::{Make, Root};
use crate::protocol::{ChildFailure, Stage};
use crate::spec::devices::{DevicePlan, NodeKind};
use crate::spec::mounts::MountPlan;

pub(super) fn make_all(root: &Root, mounts: &mut dyn Mounts, devices: &[DevicePlan]) -> Step {
    for d in devices {
        make_one(root, mounts, d)?;
    }
    Ok(())
}

fn failure(e: Errno, d: &DevicePlan, detail: impl Into<String>) -> ChildFailure {
    fail(Stage::Mount, e, &d.path).with_detail(format!(
        "linux.devices {} ({}): {}",
        d.path.display(),
        d.describe(),
        detail.into()
    ))
}

fn make_one(root: &Root, mounts: &mut dyn Mounts, d: &DevicePlan) -> Step {
    // The plan gives an absolute path with a parent and a name.
    let (Some(parent), Some(name)) = (d.path.parent(), d.path.file_name()) else {
        return Err(failure(Errno::EINVAL, d, "no name"));
    };
    let dir = root
        .lookup_or_make(parent, Make::Directory)
        .map_err(|e| failure(e, d, format!("make its directory {}", parent.display())))?;
    match fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => {}
        Ok(st) if is_node(st.st_mode, st.st_rdev, d) => return owner_and_mode(&dir, name, d),
        Ok(st) => {
            // A file the image holds, or the default kennel bound there:
            // covered by the host's node where one is bound; mknod cannot
            // replace it without removing something of the image.
            if d.kind != NodeKind::Fifo
                && SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
            {
                return bind_from_host(root, mounts, d, false);
            }
            return Err(failure(
                Errno::EEXIST,
                d,
                "the rootfs already has something else there; remove it from the image or drop the device",
            ));
        }
        Err(e) => return Err(failure(e, d, "look at the path")),
    }
    let kind = match d.kind {
        NodeKind::Char => SFlag::S_IFCHR,
        NodeKind::Block => SFlag::S_IFBLK,
        NodeKind::Fifo => SFlag::S_IFIFO,
    };
    // The mode exactly as asked: no umask of the caller's takes bits off.
    let old = umask(Mode::empty());
    let made = mknodat(
        dir.as_fd(),
        name,
        kind,
        Mode::from_bits_truncate(d.mode),
        nix::sys::stat::makedev(d.major, d.minor),
    );
    umask(old);
    match made {
        Ok(()) => owner_and_mode(&dir, name, d),
        // A user namespace, or a kernel or LSM that keeps mknod from us:
        // the host's node instead, as runc binds it.
        Err(Errno::EPERM) if d.kind != NodeKind::Fifo => bind_from_host(root, mounts, d, true),
        Err(e) => Err(failure(e, d, "mknod")),
    }
}

/// Whether `mode`/`rdev` is the node `d` asks for.
fn is_node(mode: u32, rdev: u64, d: &DevicePlan) -> bool {
    let t = SFlag::from_bits_truncate(mode) & SFlag::S_IFMT;
    match d.kind {
        NodeKind::Fifo => t == SFlag::S_IFIFO,
        NodeKind::Char => t == SFlag::S_IFCHR && same_number(rdev, d),
        NodeKind::Block => t == SFlag::S_IFBLK && same_number(rdev, d),
    }
}

fn same_number(rdev: u64, d: &DevicePlan) -> bool {
    nix::sys::stat::major(rdev) == d.major && nix::sys::stat::minor(rdev) == d.minor
}

fn owner_and_mode(dir: &OwnedFd, name: &std::ffi::OsStr, d: &DevicePlan) -> Step {
    fchownat(
        dir.as_fd(),
        name,
        Some(Uid::from_raw(d.uid)),
        Some(Gid::from_raw(d.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| failure(e, d, format!("chown {}:{}", d.uid, d.gid)))?;
    // After the chown, which may clear bits of the mode. fchmodat cannot
    // refuse a link here, but the name was just checked or made as a node
    // in a directory only this process reaches by fd.
    nix::sys::stat::fchmodat(
        dir.as_fd(),
        name,
        Mode::from_bits_truncate(d.mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| failure(e, d, format!("chmod {:o}", d.mode)))
}

/// The host's node at `d`'s path, bound onto a file made in the root.
/// `denied`: mknod was refused (else an image's file is being covered).
fn bind_from_host(root: &Root, mounts: &mut dyn Mounts, d: &DevicePlan, denied: bool) -> Step {
    let host = host_path(&d.path);
    let why = match denied {
        true => "mknod is not allowed here (a user namespace), so the host's node is bound, as runc does",
        false => "the rootfs has a file there, which the host's node covers",
    };
    let st = nix::sys::stat::stat(&host).map_err(|e| match e {
        Errno::ENOENT => failure(
            e,
            d,
            format!("{why}, but the host has no {}: make it on the host, or run as root without a user namespace", d.path.display()),
        ),
        e => failure(e, d, format!("{why}: stat the host's {}", d.path.display())),
    })?;
    if !is_node(st.st_mode, st.st_rdev, d) {
        return Err(failure(
            Errno::EINVAL,
            d,
            format!(
                "{why}, but the host's {} is not that device; give the host's numbers in config.json",
                d.path.display()
            ),
        ));
    }
    let plan = MountPlan {
        destination: d.path.display().to_string(),
        fstype: "bind".into(),
        source: d.path.display().to_string(),
        flags: nix::mount::MsFlags::MS_BIND,
        data: String::new(),
        bind: true,
        readonly: false,
        copy_up: false,
        propagation: None,
    };
    let mut target = |make| {
        root.lookup_or_make(&d.path, make)
            .map_err(|e| failure(e, d, "make a file as mount point for the host's node"))
    };
    mounts.bind(&host, &plan, &mut target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::devices::tests::mydev;

    #[test]
    fn a_node_matches_by_type_and_number() {
        let rdev = nix::sys::stat::makedev(1, 3);
        assert!(is_node(SFlag::S_IFCHR.bits() | 0o666, rdev, &mydev()));
        assert!(!is_node(SFlag::S_IFBLK.bits(), rdev, &mydev()));
        assert!(!is_node(
            SFlag::S_IFCHR.bits(),
            nix::sys::stat::makedev(1, 5),
            &mydev()
        ));
        assert!(!is_node(SFlag::S_IFREG.bits(), 0, &mydev()));
    }
}
