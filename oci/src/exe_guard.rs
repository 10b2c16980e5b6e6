//! Keeping kennel-oci's binary out of the container's reach (runc's
//! CVE-2019-5736): a created container's process is kennel-oci's own code
//! until `start`, and `exec` puts kennel-oci's code into the container
//! until the command execs. A container process that opens
//! `/proc/PID/exe` of either, and keeps the fd, can write the binary on
//! the host once no kennel-oci runs from it.
//!
//! Two defences, the cheap one always:
//! - Those processes are not dumpable (the engine sees to it), so opening
//!   their `/proc/PID/exe` needs CAP_SYS_PTRACE in the user namespace the
//!   binary was executed in: ours. A container in a user namespace of its
//!   own never has that.
//! - A container that shares our user namespace (root without a user
//!   namespace, or under rootless podman's) may have CAP_SYS_PTRACE there.
//!   If it could also write the binary (an owner it maps, a writable mode,
//!   a mount that is not read-only), kennel-oci runs from a sealed memfd
//!   copy instead ([`kennel_sys::sealed_exe`]), as runc does on every
//!   start: the container then finds a file nobody can change.
//!
//! The copy costs milliseconds, so it is made only where it is needed:
//! for `create` when the container's capabilities include CAP_SYS_PTRACE,
//! for `exec` whenever both conditions hold (an earlier exec may have
//! given some process of the container CAP_SYS_PTRACE).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Result};
use oci_spec::runtime::{Capability, LinuxNamespaceType, Process, Spec};

/// What the container could do to a file, judged from the file and its
/// mount as our user namespace sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileReach {
    pub read_only_mount: bool,
    /// The owner is mapped in our user namespace: root of a namespace we
    /// share may write it (CAP_DAC_OVERRIDE applies to mapped owners).
    pub owner_mapped: bool,
    pub group_writable_and_mapped: bool,
    pub other_writable: bool,
}

impl FileReach {
    /// Whether a process of a container sharing our user namespace, with
    /// any capabilities there, could write the file.
    pub fn writable_from_shared_namespace(&self) -> bool {
        !self.read_only_mount
            && (self.owner_mapped || self.group_writable_and_mapped || self.other_writable)
    }
}

/// What to do before a process of ours enters a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Non-dumpable is enough: run from the binary as it is.
    AsIs,
    /// Run from a sealed copy.
    SealedCopy,
}

/// `create`'s rule: the container's own processes are the only ones that
/// can reach the waiting process, bounded by the spec's capabilities.
pub fn for_create(shares_user_ns: bool, may_ptrace: bool, binary: FileReach) -> Verdict {
    if shares_user_ns && may_ptrace && binary.writable_from_shared_namespace() {
        Verdict::SealedCopy
    } else {
        Verdict::AsIs
    }
}

/// `exec`'s rule: any process of the container may have been given
/// CAP_SYS_PTRACE by another exec.
pub fn for_exec(shares_user_ns: bool, binary: FileReach) -> Verdict {
    if shares_user_ns && binary.writable_from_shared_namespace() {
        Verdict::SealedCopy
    } else {
        Verdict::AsIs
    }
}

/// Whether any of the process's capability sets holds CAP_SYS_PTRACE
/// (inheritable too: with a file's inheritable bits it survives an exec
/// past the bounding set).
pub fn may_ptrace(process: Option<&Process>) -> bool {
    let Some(caps) = process.and_then(|p| p.capabilities().as_ref()) else {
        return false;
    };
    [
        caps.bounding(),
        caps.effective(),
        caps.permitted(),
        caps.inheritable(),
        caps.ambient(),
    ]
    .iter()
    .any(|set| {
        set.as_ref()
            .is_some_and(|s| s.contains(&Capability::SysPtrace))
    })
}

/// Whether the spec's container stays in our user namespace: no user
/// namespace asked for, or one joined by a path that names ours.
pub fn spec_shares_user_ns(spec: &Spec) -> bool {
    let user = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|ns| ns.iter().find(|n| n.typ() == LinuxNamespaceType::User));
    match user {
        None => true,
        Some(ns) => match ns.path() {
            None => false,
            Some(path) => same_file(path, Path::new("/proc/self/ns/user")).unwrap_or(true),
        },
    }
}

fn same_file(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (a, b) = (std::fs::metadata(a)?, std::fs::metadata(b)?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

/// How the container could reach our own binary. What cannot be read
/// counts as writable.
pub fn own_binary() -> FileReach {
    let writable = FileReach {
        read_only_mount: false,
        owner_mapped: true,
        group_writable_and_mapped: true,
        other_writable: true,
    };
    let Ok(meta) = std::fs::metadata("/proc/self/exe") else {
        return writable;
    };
    let read_only_mount = nix::sys::statvfs::statvfs("/proc/self/exe")
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false);
    let uid_map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let gid_map = std::fs::read_to_string("/proc/self/gid_map").unwrap_or_default();
    let overflow = |file: &str| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(65534)
    };
    let mode = meta.mode();
    FileReach {
        read_only_mount,
        owner_mapped: id_mapped(
            meta.uid(),
            &uid_map,
            overflow("/proc/sys/kernel/overflowuid"),
        ),
        group_writable_and_mapped: mode & 0o020 != 0
            && id_mapped(
                meta.gid(),
                &gid_map,
                overflow("/proc/sys/kernel/overflowgid"),
            ),
        other_writable: mode & 0o002 != 0,
    }
}

/// Whether `id`, as stat showed it in our namespace, is a mapped id. An
/// unmapped owner shows as the overflow id; that id is also a real one
/// where the map covers it, so it counts as mapped then.
pub fn id_mapped(id: u32, map: &str, overflow: u32) -> bool {
    if id != overflow {
        return true;
    }
    map.lines().any(|line| {
        let f: Vec<u64> = line.split_whitespace().filter_map(|n| n.parse().ok()).collect();
        matches!(f.as_slice(), [inside, _, count] if (*inside..inside + count).contains(&u64::from(id)))
    })
}

/// Refuses to give CAP_SYS_PTRACE to a process entering a created
/// container whose waiting process still runs our binary from the host:
/// with it, the new process could reach that binary through
/// `/proc/PID/exe`. The container shares our user namespace.
fn check_exec_into_created(pid: i32, gives_ptrace: bool, binary: FileReach) -> Result<()> {
    if !gives_ptrace || !binary.writable_from_shared_namespace() {
        return Ok(());
    }
    let theirs = format!("/proc/{pid}/exe");
    let host = kennel_sys::sealed_exe::original_exe();
    // Unreadable counts as the host's binary.
    let runs_host_binary = host
        .as_deref()
        .is_none_or(|p| same_file(Path::new(&theirs), p).unwrap_or(true));
    if runs_host_binary {
        bail!(
            "exec with CAP_SYS_PTRACE into a created container is refused: until `start`, the \
             container's process is kennel-oci's own code, run from {}, which the new process \
             could then open and rewrite (CVE-2019-5736); start the container first, or exec \
             without CAP_SYS_PTRACE",
            host.map(|p| p.display().to_string())
                .unwrap_or_else(|| "the host's binary".into())
        );
    }
    Ok(())
}

/// Before `create` (or `run`) starts the container's process.
pub fn guard_create(spec: &Spec) -> Result<()> {
    // The cheap questions first: most containers stop here.
    if !may_ptrace(spec.process().as_ref()) || !spec_shares_user_ns(spec) {
        return Ok(());
    }
    apply(
        for_create(true, true, own_binary()),
        "a container with CAP_SYS_PTRACE in kennel-oci's user namespace could otherwise rewrite",
    )
}

/// Before `exec` puts a process into the container of `pid`, `status`.
pub fn guard_exec(pid: i32, created: bool, process: Option<&Process>) -> Result<()> {
    let theirs = format!("/proc/{pid}/ns/user");
    let shares = match same_file(Path::new(&theirs), Path::new("/proc/self/ns/user")) {
        Ok(same) => same,
        Err(e) if created && e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "cannot exec into container process {pid} before `start`: until then it is \
             kennel-oci's own code, which nobody without CAP_SYS_PTRACE may reach, so that the \
             container cannot reach kennel-oci's binary through it (CVE-2019-5736); start the \
             container first"
        ),
        Err(_) => true,
    };
    if !shares {
        return Ok(());
    }
    let binary = own_binary();
    if created {
        check_exec_into_created(pid, may_ptrace(process), binary)?;
    }
    apply(
        for_exec(true, binary),
        "a process of the container with CAP_SYS_PTRACE could otherwise rewrite",
    )
}

/// Carries out a verdict: returns for `AsIs` or when already running
/// from a sealed copy; otherwise re-executes from one and returns only
/// with the reason it could not.
pub fn apply(verdict: Verdict, why: &str) -> Result<()> {
    if verdict == Verdict::AsIs || kennel_sys::sealed_exe::running_sealed_copy() {
        return Ok(());
    }
    let Err((what, errno)) = kennel_sys::sealed_exe::reexec_from_sealed_copy();
    bail!(
        "cannot run kennel-oci from a sealed copy, which {why}: {what}: {errno}; install \
         kennel-oci where the container cannot write it (root-owned, on a read-only mount, or \
         use a user namespace)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITABLE: FileReach = FileReach {
        read_only_mount: false,
        owner_mapped: true,
        group_writable_and_mapped: false,
        other_writable: false,
    };

    #[test]
    fn the_copy_is_made_only_where_a_shared_namespace_could_write_and_reach() {
        let unmapped_root = FileReach {
            owner_mapped: false,
            ..WRITABLE
        };
        let read_only = FileReach {
            read_only_mount: true,
            other_writable: true,
            ..WRITABLE
        };
        let world_writable = FileReach {
            other_writable: true,
            ..unmapped_root
        };
        let cases = [
            // (shares, may_ptrace, binary, create, exec)
            (
                true,
                true,
                WRITABLE,
                Verdict::SealedCopy,
                Verdict::SealedCopy,
            ),
            (true, false, WRITABLE, Verdict::AsIs, Verdict::SealedCopy),
            (false, true, WRITABLE, Verdict::AsIs, Verdict::AsIs),
            (true, true, unmapped_root, Verdict::AsIs, Verdict::AsIs),
            (true, true, read_only, Verdict::AsIs, Verdict::AsIs),
            (
                true,
                true,
                world_writable,
                Verdict::SealedCopy,
                Verdict::SealedCopy,
            ),
        ];
        for (shares, ptrace, binary, create, exec) in cases {
            assert_eq!(for_create(shares, ptrace, binary), create, "{binary:?}");
            assert_eq!(for_exec(shares, binary), exec, "{binary:?}");
        }
    }

    #[test]
    fn an_overflow_owner_is_unmapped_unless_the_map_covers_it() {
        let init = "         0          0 4294967295\n";
        let rootless = "         0       1000          1\n         1     100000      65536\n";
        assert!(id_mapped(0, rootless, 65534));
        assert!(!id_mapped(
            65534,
            "         0       1000          1\n",
            65534
        ));
        assert!(id_mapped(65534, rootless, 65534));
        assert!(id_mapped(65534, init, 65534));
        assert!(!id_mapped(65534, "", 65534));
    }

    #[test]
    fn ptrace_in_any_set_counts() {
        let mut p = Process::default();
        assert!(
            !may_ptrace(Some(&p)),
            "the default process has no CAP_SYS_PTRACE"
        );
        let mut caps = p.capabilities().clone().unwrap_or_default();
        caps.set_inheritable(Some([Capability::SysPtrace].into()));
        p.set_capabilities(Some(caps));
        assert!(may_ptrace(Some(&p)));
        assert!(!may_ptrace(None));
    }
}
