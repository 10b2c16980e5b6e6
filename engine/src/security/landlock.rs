//! Landlock: the container may write only where its writes stay its own.
//!
//! Asked for by the annotation `run.kennel.landlock` (`true` or `on`: an
//! error where the kernel lacks Landlock; `auto`: Landlock where the
//! kernel has it; `false` or `off`: none). The rule, derived from the
//! mount plan in the parent:
//!
//! - Reading and executing are not confined: only the rights that change
//!   something are handled.
//! - Writing (writing a file, making, removing, renaming or linking
//!   anything, truncating, ioctl on a device) is allowed only beneath the
//!   destination of each mount that is not read-only: the volumes (and the
//!   host sandbox's home), and the container's own filesystems, which are
//!   new for it and gone with it: its tmpfs mounts (`/dev`, `/dev/shm`,
//!   `/tmp`, `/run`, a `tmpcopyup` one), its devpts and mqueue, its own
//!   `/proc` (whose kernel paths are masked or read-only by mount), and a
//!   cgroup2 mounted read-write.
//! - The root itself is never writable to Landlock, even where its mount
//!   is (a rootfs without read-only, the host sandbox's tmpfs root): that
//!   is what Landlock adds to the mounts. Nor is anything reached outside
//!   the mount plan, such as a host directory handed over as an open fd
//!   (`--preserve-fds`): it stays readable, not writable. A read-only
//!   mount below a writable one stays read-only by its mount (Landlock's
//!   rights add up along a path, so they cannot narrow it).
//! - The files behind stdio keep the access they were opened with, so
//!   `/dev/stdout` and `/proc/self/fd/1` can be reopened (a terminal, a
//!   file the caller redirected to); pipes and sockets need no rule.
//!
//! Without the annotation, a container whose process has no_new_privs
//! and does not keep CAP_SYS_ADMIN gets the fence: writing is allowed anywhere in its own mount tree (its
//! root, volumes and all), and nowhere outside it. Only paths outside the
//! tree are fenced off: the files the kernel reaches through `/proc`'s
//! magic links, such as `/proc/PID/exe` of a process that runs a host
//! binary (a script whose interpreter is `/proc/self/exe` runs the
//! binary that execs it: kennel's; runc's CVE-2019-5736 rewrote runc so),
//! or a host file behind an fd reopened through `/proc/self/fd`. A process
//! that keeps CAP_SYS_ADMIN is left without it: it holds that capability
//! to mount, and the kernel refuses mount(2) and pivot_root to a process
//! Landlock confines (a `--privileged` box's init mounts). It needs
//! ABI 2 (Linux 5.19), since ABI 1 refuses every rename into another
//! directory; `false` turns it off.
//!
//! Connecting to a socket by path is not confined (it writes no file), nor
//! is the network. The kernel enforces what its ABI knows: kennel asks for
//! ABI 5's filesystem rights with the crate's best effort, and says what
//! an older kernel leaves out. Landlock is applied last, just before the
//! command runs, so nothing of kennel's own set-up is confined by it. A
//! command run in the container later (`exec`) gets the same rules, kept
//! in the container's record.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use ::landlock::{
    AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetError, RulesetStatus, ABI,
};
use anyhow::{anyhow, bail, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;

use crate::inroot::{self, Root};
use crate::protocol::{ChildFailure, Stage};
use crate::spec::mounts::MountPlan;
use crate::spec::process::{ProcessPlan, Rules};
use crate::sys;

/// The annotation that asks for Landlock.
pub const ANNOTATION: &str = "run.kennel.landlock";

/// The ABI whose filesystem rights kennel asks for: truncate came with 3,
/// ioctl on devices with 5; later ABIs add nothing a write needs.
const RIGHTS_ABI: ABI = ABI::V5;

/// How the spec asks for Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Asked for: a kernel without Landlock is an error.
    Required,
    /// On where the kernel has it (the host sandbox's default).
    IfAvailable,
    /// Not asked for: only the fence (below), where the kernel has it.
    Fence,
}

/// What the spec asks for, before the kernel is asked what it has.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub request: Request,
    pub rules: Rules,
}

/// Reads the annotation: None when Landlock is not asked for.
pub fn request(value: Option<&str>) -> Result<Option<Request>> {
    match value.map(str::trim) {
        None => Ok(None),
        Some("true" | "on") => Ok(Some(Request::Required)),
        Some("auto") => Ok(Some(Request::IfAvailable)),
        Some("false" | "off") => Ok(None),
        Some(other) => bail!(
            "annotation {ANNOTATION}={other:?} is not understood: use true (Landlock, an error where the kernel lacks it), auto (Landlock where the kernel has it) or false"
        ),
    }
}

/// The paths writable under the rule above: each mount not read-only.
pub fn writable_paths(mounts: &[MountPlan]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in mounts {
        if m.readonly || m.flags.contains(nix::mount::MsFlags::MS_RDONLY) {
            continue;
        }
        let path = normalized(&m.destination);
        // A mount over / would make the whole root writable.
        if path != "/" && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// `path` without `.` components, doubled or trailing slashes (`..` is
/// kept: the child resolves it inside the root, as the mount was).
fn normalized(path: &str) -> String {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => out.push(".."),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out.display().to_string()
}

/// Plans Landlock for a spec: None when it is not asked for. An explicit
/// request the process cannot apply is refused here, before anything is
/// made.
pub fn plan(
    annotation: Option<&str>,
    mounts: &[MountPlan],
    process: &ProcessPlan,
) -> Result<Option<Wanted>> {
    let Some(request) = request(annotation)? else {
        // `false` turns even the fence off; no annotation gets it.
        let fence = annotation.is_none() && fence_fits(process);
        return Ok(fence.then(|| Wanted {
            request: Request::Fence,
            rules: Rules {
                writable: Vec::new(),
                whole_root: true,
            },
        }));
    };
    if request == Request::Required && !can_restrict(process) {
        bail!("{}", needs_no_new_privs());
    }
    Ok(Some(Wanted {
        request,
        rules: Rules {
            writable: writable_paths(mounts),
            whole_root: false,
        },
    }))
}

/// The kernel lets a process confine itself only with no_new_privs set or
/// with CAP_SYS_ADMIN, which the command's process must hold at the end.
fn can_restrict(p: &ProcessPlan) -> bool {
    p.no_new_privs || p.effective.contains(&caps::Capability::CAP_SYS_ADMIN)
}

/// Whether the fence, never asked for, goes on `p`: only where the kernel
/// lets the process confine itself through no_new_privs, and not on one
/// that keeps CAP_SYS_ADMIN, which is meant to mount.
fn fence_fits(p: &ProcessPlan) -> bool {
    p.no_new_privs && !p.effective.contains(&caps::Capability::CAP_SYS_ADMIN)
}

fn needs_no_new_privs() -> String {
    format!(
        "Landlock ({ANNOTATION}) needs process.noNewPrivileges: the kernel lets a process confine itself only with no_new_privs set (or CAP_SYS_ADMIN); set it, or do not ask for Landlock"
    )
}

/// The rules for a command run in a confined container (`exec`): the
/// container's own, which its process must be able to apply.
pub fn for_exec(container: Option<&Rules>, process: &ProcessPlan) -> Result<Option<Rules>> {
    match container {
        Some(r) if r.whole_root && !fence_fits(process) => Ok(None),
        Some(_) if !can_restrict(process) => bail!(
            "the container is confined by Landlock, and so is every command run in it; {}",
            needs_no_new_privs()
        ),
        other => Ok(other.cloned()),
    }
}

/// What a kernel of Landlock ABI `abi` leaves out of the rights kennel
/// asks for, said for a person.
pub fn unenforced(abi: i32) -> Vec<&'static str> {
    let mut out = Vec::new();
    if abi < 2 {
        out.push("renaming or linking a file into another directory, refused everywhere (allowing it in the writable paths needs ABI 2, Linux 5.19)");
    }
    if abi < 3 {
        out.push(
            "truncating a file outside the writable paths (confining it needs ABI 3, Linux 6.2)",
        );
    }
    if abi < 5 {
        out.push("ioctl on a device file opened outside the writable paths (confining it needs ABI 5, Linux 6.10)");
    }
    out
}

/// Asks the kernel what it has and settles `wanted` into the rules the
/// child applies (None: Landlock stays off, and `say` was told why), or
/// an error when Landlock was asked for and cannot be had.
pub fn decide(
    wanted: Option<&Wanted>,
    process: &ProcessPlan,
    say: &dyn Fn(bool, &str),
) -> Result<Option<Rules>> {
    let Some(wanted) = wanted else {
        return Ok(None);
    };
    let required = wanted.request == Request::Required;
    if !required && !can_restrict(process) {
        say(
            false,
            "Landlock is off: process.noNewPrivileges is false, and without no_new_privs (or CAP_SYS_ADMIN) the kernel lets no process confine itself",
        );
        return Ok(None);
    }
    let abi = match sys::landlock_abi_version() {
        Ok(abi) => abi,
        Err(e) if required => {
            return Err(anyhow!(
                "Landlock was asked for ({ANNOTATION}), but {}; or do not ask for it",
                missing(e)
            ))
        }
        Err(e) => {
            say(false, &format!("Landlock is off: {}", missing(e)));
            return Ok(None);
        }
    };
    if wanted.request == Request::Fence {
        if abi < 2 {
            say(
                false,
                "no Landlock fence: on ABI 1 it would refuse every rename into another directory",
            );
            return Ok(None);
        }
        say(
            false,
            &format!(
                "Landlock fence (ABI {}): writes only within the container's own tree, never to a host file reached through /proc (another process's exe, an fd's magic link)",
                abi.min(RIGHTS_ABI as i32)
            ),
        );
        return Ok(Some(wanted.rules.clone()));
    }
    let writable = match wanted.rules.writable.is_empty() {
        true => "nowhere".to_string(),
        false => wanted.rules.writable.join(", "),
    };
    say(
        false,
        &format!(
            "Landlock ABI {} (of the kernel's {abi}): writes allowed only beneath {writable} and to the files behind stdio; reading and executing are not confined",
            abi.min(RIGHTS_ABI as i32)
        ),
    );
    let left_out = unenforced(abi);
    if !left_out.is_empty() {
        say(
            required,
            &format!(
                "Landlock on this kernel (ABI {abi}) does not confine: {}",
                left_out.join("; ")
            ),
        );
    }
    Ok(Some(wanted.rules.clone()))
}

/// Why the kernel has no Landlock, and the fix.
fn missing(e: Errno) -> String {
    let why = match e {
        Errno::ENOSYS => "the kernel is built without it: it needs CONFIG_SECURITY_LANDLOCK=y, and landlock in the lsm= boot parameter (or CONFIG_LSM)",
        Errno::EOPNOTSUPP => "the kernel has it but it is not enabled: add landlock to the lsm= boot parameter (or CONFIG_LSM), e.g. lsm=landlock,lockdown,yama,apparmor",
        _ => "landlock_create_ruleset refused (a seccomp filter around kennel?)",
    };
    format!("this kernel does not provide it ({}): {why}", e.desc())
}

type Step<T = ()> = std::result::Result<T, ChildFailure>;

fn failure(e: Errno, path: Option<&str>, what: &str) -> ChildFailure {
    ChildFailure::new(Stage::Landlock, e, path.map(str::to_string)).with_detail(what.to_string())
}

/// The errno behind a ruleset error (the crate wraps the system call's).
fn errno_of(e: &RulesetError) -> Errno {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(code) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return Errno::from_raw(code);
        }
        source = err.source();
    }
    Errno::EINVAL
}

/// Applies `rules` to this process (the child, in its final root, as the
/// container's user): the last step before the command. Each path is
/// resolved inside the root by the kernel, so the image cannot steer a
/// rule out of it.
pub fn restrict_self(rules: Option<&Rules>) -> Step {
    let Some(rules) = rules else {
        return Ok(());
    };
    let ruleset_err = |what: &'static str| move |e: RulesetError| failure(errno_of(&e), None, what);
    let root = Root::open(Path::new("/"))
        .map_err(|e| failure(e, Some("/"), "opening the container's root"))?;
    let write = AccessFs::from_write(RIGHTS_ABI);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(write)
        .and_then(Ruleset::create)
        .map_err(ruleset_err("creating the ruleset"))?
        // Set already, or CAP_SYS_ADMIN is held (see `can_restrict`):
        // never turned on behind the spec's back.
        .no_new_privs(false);
    // Every writable path is a mount's destination, never on the root's
    // own mount: one that resolves there now was swapped for a link since
    // (by another container sharing the rootfs), or climbs out of its
    // mount with `..`, and its rule would open the root to writes.
    let root_fd = root
        .lookup(Path::new("/"))
        .map_err(|e| failure(e, Some("/"), "opening the container's root"))?;
    let root_mount = sys::mount_id(root_fd.as_fd())
        .map_err(|e| failure(e, Some("/"), "reading the root's mount id"))?;
    if rules.whole_root {
        add(&mut ruleset, root_fd, write, "/")?;
    }
    for path in &rules.writable {
        let fd = match root.lookup(Path::new(path)) {
            Ok(fd) => fd,
            // Out of the user's reach (a volume under a directory it may
            // not search) or covered by a later mount: no rule is needed
            // where nothing can go.
            Err(Errno::EACCES | Errno::ENOENT) => continue,
            Err(e) => return Err(failure(e, Some(path), "opening a writable path")),
        };
        let mount = sys::mount_id(fd.as_fd()).map_err(|e| failure(e, Some(path), "statx"))?;
        if mount == root_mount {
            return Err(failure(
                Errno::EXDEV,
                Some(path),
                "a writable path that now leads onto the root's own mount",
            ));
        }
        let is_dir = inroot::is_dir(&fd).map_err(|e| failure(e, Some(path), "fstat"))?;
        let access = match is_dir {
            true => write,
            false => write & AccessFs::from_file(RIGHTS_ABI),
        };
        add(&mut ruleset, fd, access, path)?;
    }
    allow_stdio(&mut ruleset)?;
    let status = ruleset
        .restrict_self()
        .map_err(ruleset_err("landlock_restrict_self"))?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(failure(
            Errno::ENOSYS,
            None,
            "the kernel enforced none of the ruleset, though it offered Landlock when the container was made",
        ));
    }
    Ok(())
}

fn add(ruleset: &mut RulesetCreated, fd: OwnedFd, access: BitFlags<AccessFs>, shown: &str) -> Step {
    ruleset
        .add_rule(PathBeneath::new(fd, access))
        .map(drop)
        .map_err(|e| failure(errno_of(&e), Some(shown), "adding its rule"))
}

/// A rule for each of stdin, stdout and stderr that lies on a filesystem,
/// with the access its fd was opened with.
fn allow_stdio(ruleset: &mut RulesetCreated) -> Step {
    let fds = [
        std::io::stdin().as_fd().try_clone_to_owned(),
        std::io::stdout().as_fd().try_clone_to_owned(),
        std::io::stderr().as_fd().try_clone_to_owned(),
    ];
    for (n, fd) in fds.into_iter().enumerate() {
        let shown = format!("fd {n}");
        let Ok(fd) = fd else {
            continue; // Closed: nothing to reopen.
        };
        let kind = nix::sys::stat::fstat(&fd)
            .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)
            .map_err(|e| failure(e, Some(&shown), "fstat"))?;
        // A directory rule would open everything beneath it.
        if kind == SFlag::S_IFDIR || kind == SFlag::S_IFSOCK {
            continue;
        }
        let mode = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)
            .map(OFlag::from_bits_truncate)
            .map_err(|e| failure(e, Some(&shown), "F_GETFL"))?;
        // A terminal reopened for reading still needs its ioctls (isatty).
        let access = match mode & OFlag::O_ACCMODE {
            OFlag::O_RDONLY => BitFlags::from(AccessFs::IoctlDev),
            _ => AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev,
        };
        match (&mut *ruleset).add_rule(PathBeneath::new(fd, access)) {
            Ok(_) => {}
            // A pipe (or another file of no filesystem, which the kernel
            // refuses a rule): nothing to reopen by path.
            Err(e) if errno_of(&e) == Errno::EBADFD => {}
            Err(e) => return Err(failure(errno_of(&e), Some(&shown), "adding its rule")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::mounts::parse_mount_options;

    fn mount(destination: &str, fstype: &str, options: &[&str]) -> MountPlan {
        let o = parse_mount_options(&options.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        MountPlan {
            destination: destination.into(),
            fstype: fstype.into(),
            source: fstype.into(),
            bind: o.flags.contains(nix::mount::MsFlags::MS_BIND),
            flags: o.flags,
            data: o.data,
            readonly: o.readonly,
            copy_up: o.copy_up,
            propagation: None,
        }
    }

    #[test]
    fn the_annotation_says_on_auto_or_off() {
        assert_eq!(request(None).unwrap(), None);
        assert_eq!(request(Some("true")).unwrap(), Some(Request::Required));
        assert_eq!(request(Some("on")).unwrap(), Some(Request::Required));
        assert_eq!(request(Some("auto")).unwrap(), Some(Request::IfAvailable));
        assert_eq!(request(Some("false")).unwrap(), None);
        assert_eq!(request(Some("off")).unwrap(), None);
        let err = request(Some("yes please")).unwrap_err().to_string();
        assert!(
            err.contains(ANNOTATION) && err.contains("yes please"),
            "{err}"
        );
    }

    #[test]
    fn only_mounts_not_read_only_are_writable() {
        let mounts = [
            mount("/usr", "bind", &["rbind", "nosuid", "ro"]),
            mount("/proc", "proc", &["nosuid"]),
            mount("/dev/", "tmpfs", &["mode=755"]),
            mount("/sys", "sysfs", &["nosuid", "ro"]),
            mount("/data/./sub", "bind", &["rbind"]),
            mount("/dev", "tmpfs", &[]),
            mount("/", "tmpfs", &[]),
        ];
        assert_eq!(writable_paths(&mounts), ["/proc", "/dev", "/data/sub"]);
    }

    #[test]
    fn an_explicit_request_needs_no_new_privs() {
        let spec: oci_spec::runtime::Process = serde_json::from_value(serde_json::json!({
            "args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        }))
        .unwrap();
        let mut p = ProcessPlan::from_process(&spec).unwrap();
        let err = plan(Some("true"), &[], &p).unwrap_err().to_string();
        assert!(err.contains("noNewPrivileges"), "{err}");
        // Left to the kernel check for `auto`, which then says why it is off.
        assert!(plan(Some("auto"), &[], &p).unwrap().is_some());
        p.no_new_privs = true;
        assert!(plan(Some("true"), &[], &p).unwrap().is_some());
        p.no_new_privs = false;
        p.effective = vec![caps::Capability::CAP_SYS_ADMIN];
        assert!(plan(Some("true"), &[], &p).unwrap().is_some());
    }

    #[test]
    fn the_fence_is_not_put_on_a_process_that_mounts() {
        let spec: oci_spec::runtime::Process = serde_json::from_value(serde_json::json!({
            "args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "noNewPrivileges": true,
        }))
        .unwrap();
        let mut p = ProcessPlan::from_process(&spec).unwrap();
        let fence = plan(None, &[], &p).unwrap().expect("the fence");
        assert!(fence.rules.whole_root);
        // podman --privileged: CAP_SYS_ADMIN, with or without no_new_privs.
        p.effective = vec![caps::Capability::CAP_SYS_ADMIN];
        assert!(plan(None, &[], &p).unwrap().is_none());
        assert_eq!(for_exec(Some(&fence.rules), &p).unwrap(), None);
        p.no_new_privs = false;
        assert!(plan(None, &[], &p).unwrap().is_none());
    }

    #[test]
    fn exec_into_a_confined_container_keeps_its_rules() {
        let spec: oci_spec::runtime::Process = serde_json::from_value(serde_json::json!({
            "args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "noNewPrivileges": true,
        }))
        .unwrap();
        let mut p = ProcessPlan::from_process(&spec).unwrap();
        let rules = Rules {
            writable: vec!["/tmp".into()],
            whole_root: false,
        };
        assert_eq!(for_exec(None, &p).unwrap(), None);
        assert_eq!(for_exec(Some(&rules), &p).unwrap(), Some(rules.clone()));
        p.no_new_privs = false;
        let err = for_exec(Some(&rules), &p).unwrap_err().to_string();
        assert!(err.contains("confined by Landlock"), "{err}");
        // The fence, never asked for, does not stop such an exec.
        let fence = Rules {
            writable: vec![],
            whole_root: true,
        };
        assert_eq!(for_exec(Some(&fence), &p).unwrap(), None);
    }

    #[test]
    fn an_older_kernel_is_told_what_it_leaves_out() {
        assert!(unenforced(5).is_empty() && unenforced(7).is_empty());
        let v4 = unenforced(4);
        assert!(v4.len() == 1 && v4[0].contains("ioctl"), "{v4:?}");
        assert!(unenforced(2).iter().any(|s| s.contains("truncat")));
        assert!(unenforced(1).iter().any(|s| s.contains("renaming")));
    }
}
