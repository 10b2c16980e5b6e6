//! The steps in the child that confine its process, each a system call
//! on itself: a session keyring of its own and the keys filter, the
//! bounding set, the user and capability switch, and the bundle's seccomp
//! filter, installed last before exec. Landlock's are in `landlock`.

use nix::errno::Errno;
use nix::sys::prctl;
use nix::unistd::{Gid, Uid};

use crate::protocol::{ChildFailure, Stage};
use crate::spec::process::ProcessPlan;
use crate::sys;

type Step<T = ()> = Result<T, ChildFailure>;

/// Out of reach of the caller's keys: a new, empty session keyring, then
/// a seccomp filter that refuses the key management system calls (the
/// container's root is the caller's uid on the host, so the caller's user
/// keyring, found by its serial number, would be its to link and read).
/// Done as early as it can be, while the parent writes the maps: the
/// kernel studies a new filter against every system call number, which is
/// the costliest part. `filter` false leaves the filter to the process's
/// own, which includes it.
pub fn isolate_keys(filter: bool) -> Step {
    sys::join_new_session_keyring().map_err(|e| {
        let f = ChildFailure::new(Stage::Keyring, e, None);
        match e {
            Errno::EDQUOT => f.with_detail("your key quota is used up; raise it, e.g. `sudo sysctl -w kernel.keys.maxkeys=2000 kernel.keys.maxbytes=200000`"),
            Errno::EPERM | Errno::EACCES => f.with_detail("a seccomp filter around kennel (a container's default profile, say) refuses keyctl; allow keyctl there"),
            _ => f,
        }
    })?;
    if !filter {
        return Ok(());
    }
    // SPEC_ALLOW: without it the kernel turns on its speculation
    // mitigations (SSBD, IBPB at every switch) for any task with a filter,
    // slowing the container's whole workload; this filter only narrows what
    // the container may ask, and it had none of those mitigations before.
    let spec_allow = 1 << 2;
    sys::install_seccomp_filter(&crate::security::seccomp::keys_program(), spec_allow).map_err(
        |e| {
            ChildFailure::new(Stage::Keyring, e, None)
                .with_detail("installing the seccomp filter that refuses keyctl and TIOCSTI")
        },
    )
}

/// Installs linux.seccomp's filter, compiled by the parent.
pub fn install_seccomp(p: &ProcessPlan) -> Step {
    let Some(filter) = &p.seccomp else {
        return Ok(());
    };
    sys::install_seccomp_filter(&filter.program, filter.flags).map_err(|e| {
        let f = ChildFailure::new(Stage::Seccomp, e, None);
        match e {
            Errno::EINVAL => f.with_detail("the kernel refused the filter or one of linux.seccomp.flags; remove the flags it lacks"),
            Errno::EACCES => f.with_detail("the process has neither no_new_privs nor CAP_SYS_ADMIN; set process.noNewPrivileges"),
            _ => f,
        }
    })
}

fn cap_err(e: caps::errors::CapsError) -> ChildFailure {
    ChildFailure::new(Stage::Capabilities, Errno::EPERM, None).with_detail(e.to_string())
}

/// Sets the effective and permitted sets to the plan's, with `extra` in
/// both when one is kept for a while.
pub fn set_working_caps(p: &ProcessPlan, extra: Option<caps::Capability>) -> Step {
    use caps::CapSet;
    let set = |which: CapSet, list: Vec<caps::Capability>| {
        caps::set(None, which, &list.into_iter().collect()).map_err(cap_err)
    };
    // Effective must stay a subset of permitted at every step: shrink it first.
    let effective = p.effective.iter().filter(|c| p.permitted.contains(c));
    set(CapSet::Effective, effective.copied().chain(extra).collect())?;
    set(
        CapSet::Permitted,
        p.permitted.iter().copied().chain(extra).collect(),
    )
}

/// Shrinks the bounding set to the spec's. Done first: dropping needs
/// CAP_SETPCAP, which we still hold; the effective set (mounts, setns) is
/// untouched until `switch_user_and_capabilities`.
pub fn drop_bounding(p: &ProcessPlan) -> Step {
    for cap in caps::all() {
        if !p.bounding.contains(&cap) {
            sys::drop_bounding_cap(cap.index()).map_err(|e| {
                ChildFailure::new(Stage::Capabilities, e, Some(cap.to_string()))
                    .with_detail("dropping it from the bounding set")
            })?;
        }
    }
    Ok(())
}

/// Switches to the container user keeping the capabilities we still need,
/// then sets the final capability sets.
pub fn switch_user_and_capabilities(p: &ProcessPlan, keep_admin: bool) -> Step {
    use caps::CapSet;
    prctl::set_keepcaps(true).map_err(|e| ChildFailure::new(Stage::User, e, None))?;
    let user_err = |e: Errno, what: String| {
        let f = ChildFailure::new(Stage::User, e, Some(what));
        if e == Errno::EINVAL {
            f.with_detail("that id is not mapped into the container's user namespace")
        } else {
            f
        }
    };
    // setgroups is denied when only our own gid is mapped (no helper); then
    // there are no supplementary groups to set anyway.
    let setgroups_allowed = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() == "allow")
        .unwrap_or(false);
    if setgroups_allowed {
        let mut groups: Vec<Gid> = p
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        if groups.is_empty() {
            groups.push(Gid::from_raw(p.gid));
        }
        nix::unistd::setgroups(&groups)
            .map_err(|e| user_err(e, format!("groups {:?}", p.additional_gids)))?;
    }
    // Checked when the plan was made; here too, since a miss would leave
    // the command root: (uid_t)-1 means "unchanged" to these calls.
    if p.uid == u32::MAX || p.gid == u32::MAX || p.additional_gids.contains(&u32::MAX) {
        return Err(user_err(Errno::EINVAL, format!("{}:{}", p.uid, p.gid)));
    }
    let gid = Gid::from_raw(p.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| user_err(e, format!("gid {}", p.gid)))?;
    let uid = Uid::from_raw(p.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| user_err(e, format!("uid {}", p.uid)))?;
    prctl::set_keepcaps(false).map_err(|e| ChildFailure::new(Stage::User, e, None))?;

    let set = |which: CapSet, list: &[caps::Capability]| {
        caps::set(None, which, &list.iter().copied().collect()).map_err(cap_err)
    };
    set_working_caps(p, keep_admin.then_some(caps::Capability::CAP_SYS_ADMIN))?;
    set(CapSet::Inheritable, &p.inheritable)?;
    caps::clear(None, CapSet::Ambient).map_err(cap_err)?;
    for cap in &p.ambient {
        caps::raise(None, CapSet::Ambient, *cap).map_err(cap_err)?;
    }
    Ok(())
}
