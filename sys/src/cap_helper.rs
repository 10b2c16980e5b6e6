//! What kennel's file-capability helpers (kennel-idmap, kennel-net) do
//! before any work: refuse stray privilege, and when their own capability
//! is missing, say which of the kernel's reasons it is (no_new_privs, a
//! tracer, a nosuid mount, no `setcap`), since only the last is fixed by
//! `setcap`. Each helper names the capabilities its file holds; the
//! checks and their words are the same for both.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fmt;

use caps::{CapSet, Capability};
use nix::errno::Errno;
use nix::sys::stat::Mode;
use nix::unistd::{getresgid, getresuid};

/// Defines the process entry point of a capability helper (see
/// [`entry_point!`](crate::entry_point)): SIGPIPE is ignored and `$run`
/// called. `$run` opens /dev/null on closed fds 0-2 itself, so that a
/// failure to do it is reported in the helper's own words.
#[macro_export]
macro_rules! helper_entry_point {
    ($run:path) => {
        $crate::entry_point!(@with $crate::cap_helper::prepare_helper_process, $run);
    };
}

/// What a helper's entry point does first: SIGPIPE ignored (a closed
/// stderr pipe gives an error, not a silent death). Never fails.
pub fn prepare_helper_process() -> Result<(), Errno> {
    crate::ignore_sigpipe();
    Ok(())
}

/// A helper: its name, and the capabilities its file holds.
#[derive(Debug)]
pub struct Helper {
    /// The program's name, when /proc/self/exe cannot say its path.
    pub program: &'static str,
    /// The capabilities of `setcap CAPS=ep`, and the only ones it may hold.
    pub caps: &'static [Capability],
    /// What it cannot do without them ("write id maps").
    pub work: &'static str,
    /// Another way to the caller's goal, for when no_new_privs is set
    /// (", or use --net pasta"); may be empty.
    pub otherwise: &'static str,
}

impl Helper {
    /// `cap_setuid,cap_setgid`: the form `setcap` and error messages use.
    pub fn cap_list(&self) -> String {
        cap_names(self.caps)
    }

    /// "cap_net_admin is" or "cap_setuid,cap_setgid are".
    fn caps_are(&self) -> String {
        let verb = if self.caps.len() == 1 { "is" } else { "are" };
        format!("{} {verb}", self.cap_list())
    }
}

fn cap_names(caps: &[Capability]) -> String {
    let names: Vec<String> = caps.iter().map(|c| c.to_string().to_lowercase()).collect();
    names.join(",")
}

/// Why a helper's self-check stopped it.
#[derive(Debug)]
pub enum Refusal {
    /// Its ids differ (setuid), or its file has the setuid or setgid bit.
    Setuid,
    /// It holds capabilities its file should not grant.
    ExtraCaps(Vec<Capability>),
    /// The caller set no_new_privs: exec grants nothing new.
    NoNewPrivs,
    /// Its capabilities are missing: the file has none.
    MissingCaps { path: String },
    /// Its capabilities are missing because its file system is nosuid.
    NosuidMount { path: String },
    /// Its capabilities are missing because a tracer (strace, gdb) has it.
    Traced { tracer: u32 },
    /// A system call of the check failed.
    Sys { what: &'static str, errno: Errno },
}

/// A [`Refusal`] with the helper it concerns, for the message.
#[derive(Debug)]
pub struct SelfCheckFailure {
    pub helper: &'static Helper,
    pub refusal: Refusal,
}

impl fmt::Display for SelfCheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = self.helper;
        let caps = h.cap_list();
        match &self.refusal {
            Refusal::Setuid => write!(
                f,
                "refused: running setuid or setgid; install with `chmod 0755` and `setcap {caps}=ep` instead"
            ),
            Refusal::ExtraCaps(extra) => write!(
                f,
                "refused: holding capabilities beyond {caps} ({}); give the file exactly `{caps}=ep`",
                cap_names(extra)
            ),
            Refusal::NoNewPrivs => write!(
                f,
                "no_new_privs is set on the caller: file capabilities are ignored, so this helper cannot {}; run it from a process without no_new_privs (e.g. not under `setpriv --no-new-privs` or NoNewPrivileges=yes){}",
                h.work, h.otherwise
            ),
            Refusal::MissingCaps { path } => write!(
                f,
                "missing {} {caps}; run `sudo setcap {caps}=ep {path}`",
                if h.caps.len() == 1 { "capability" } else { "capabilities" }
            ),
            Refusal::NosuidMount { path } => write!(
                f,
                "{path} is on a file system mounted nosuid, where the kernel ignores file capabilities, so {} missing; install it on one mounted without nosuid (`findmnt -T {path}` shows the options)",
                h.caps_are()
            ),
            Refusal::Traced { tracer } => write!(
                f,
                "being traced (TracerPid {tracer}): the kernel drops file capabilities under ptrace, so {} missing; run it without strace or gdb",
                h.caps_are()
            ),
            Refusal::Sys { what, errno } => {
                write!(f, "failed: {what}: {} ({})", errno.desc(), *errno as i32)
            }
        }
    }
}

impl std::error::Error for SelfCheckFailure {}

/// The caller's real ids, which every later check is about.
#[derive(Debug, Clone, Copy)]
pub struct RealIds {
    pub uid: u32,
    pub gid: u32,
}

/// Refuses stray privilege and explains missing privilege. `needed` gives
/// the capabilities this request needs, from the caller's real uid (a
/// subset of `helper.caps`, or more for root, whom the extra-capability
/// rule spares).
pub fn check_privileges(
    helper: &'static Helper,
    needed: impl FnOnce(u32) -> HashSet<Capability>,
) -> Result<RealIds, SelfCheckFailure> {
    let fail = |refusal| SelfCheckFailure { helper, refusal };
    let sys = |what| move |errno| fail(Refusal::Sys { what, errno });
    let uids = getresuid().map_err(sys("getresuid"))?;
    let gids = getresgid().map_err(sys("getresgid"))?;
    if uids.effective != uids.real
        || uids.saved != uids.real
        || gids.effective != gids.real
        || gids.saved != gids.real
    {
        return Err(fail(Refusal::Setuid));
    }
    let exe = nix::sys::stat::stat("/proc/self/exe").map_err(sys("stat /proc/self/exe"))?;
    if Mode::from_bits_truncate(exe.st_mode).intersects(Mode::S_ISUID | Mode::S_ISGID) {
        return Err(fail(Refusal::Setuid));
    }
    let ids = RealIds {
        uid: uids.real.as_raw(),
        gid: gids.real.as_raw(),
    };
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(|_| sys("capget")(Errno::last()))?;
    let mut extra: Vec<Capability> = permitted
        .iter()
        .copied()
        .filter(|c| !helper.caps.contains(c))
        .collect();
    if ids.uid != 0 && !extra.is_empty() {
        extra.sort_by_key(|c| c.index());
        return Err(fail(Refusal::ExtraCaps(extra)));
    }
    // no_new_privs promises the caller's sandbox that exec grants nothing
    // new. Most kernels ignore file capabilities then; where one grants
    // them anyway, we keep the promise and stop here too.
    if nix::sys::prctl::get_no_new_privs().unwrap_or(true) {
        return Err(fail(Refusal::NoNewPrivs));
    }
    if !needed(ids.uid).is_subset(&permitted) {
        // Under ptrace, or from a nosuid mount, the kernel execs us without
        // our file capabilities: setcap is no fix then, and saying it
        // would send people astray.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(tracer) = tracer_pid(&status) {
            return Err(fail(Refusal::Traced { tracer }));
        }
        let path = std::fs::read_link("/proc/self/exe")
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| helper.program.into());
        let nosuid = nix::sys::statvfs::statvfs("/proc/self/exe")
            .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID));
        if nosuid {
            return Err(fail(Refusal::NosuidMount { path }));
        }
        return Err(fail(Refusal::MissingCaps { path }));
    }
    Ok(ids)
}

/// The tracer's pid from the `TracerPid:` line of /proc/PID/status, or
/// None when nothing traces the process (0) or the line is unreadable.
pub fn tracer_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|p| p.trim().parse().ok())
        .filter(|pid| *pid != 0)
}

/// Narrows our capabilities to `permitted`, of which `effective` are in
/// effect; the inheritable and ambient sets are emptied. The errno is
/// capset(2)'s.
pub fn limit_caps(
    permitted: &HashSet<Capability>,
    effective: &HashSet<Capability>,
) -> Result<(), Errno> {
    let fail = |_| Errno::last();
    // Ambient is a subset of permitted and inheritable, so shrinking those
    // clears it too; clearing it directly may fail on old kernels.
    let _ = caps::clear(None, CapSet::Ambient);
    caps::clear(None, CapSet::Inheritable).map_err(fail)?;
    caps::set(None, CapSet::Effective, effective).map_err(fail)?;
    caps::set(None, CapSet::Permitted, permitted).map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    static ONE: Helper = Helper {
        program: "kennel-net",
        caps: &[Capability::CAP_NET_ADMIN],
        work: "create a veth",
        otherwise: ", or use --net pasta",
    };
    static TWO: Helper = Helper {
        program: "kennel-idmap",
        caps: &[Capability::CAP_SETUID, Capability::CAP_SETGID],
        work: "write id maps",
        otherwise: "",
    };

    fn said(helper: &'static Helper, refusal: Refusal) -> String {
        SelfCheckFailure { helper, refusal }.to_string()
    }

    #[test]
    fn tracer_pid_reads_the_status_line() {
        let status = |tracer: &str| {
            format!("Name:\tkennel-idmap\nState:\tR (running)\nTracerPid:\t{tracer}\nUid:\t1000\t1000\t1000\t1000\n")
        };
        assert_eq!(tracer_pid(&status("4242")), Some(4242));
        assert_eq!(tracer_pid(&status("0")), None);
        assert_eq!(tracer_pid(&status("x")), None);
        assert_eq!(tracer_pid("Name:\tkennel-idmap\n"), None);
        assert_eq!(tracer_pid(""), None);
    }

    #[test]
    fn traced_and_nosuid_say_why_and_not_setcap() {
        for helper in [&ONE, &TWO] {
            let traced = said(helper, Refusal::Traced { tracer: 77 });
            assert!(
                traced.starts_with(
                    "being traced (TracerPid 77): the kernel drops file capabilities under ptrace"
                ),
                "{traced}"
            );
            let path = "/mnt/x".to_string();
            let nosuid = said(helper, Refusal::NosuidMount { path });
            assert!(nosuid.starts_with("/mnt/x is on a file system mounted nosuid"));
            for text in [traced, nosuid] {
                assert!(!text.contains("setcap"), "{text}");
            }
        }
    }

    #[test]
    fn messages_name_each_helpers_own_capabilities() {
        let path = || "/usr/libexec/kennel/h".to_string();
        assert_eq!(
            said(&ONE, Refusal::MissingCaps { path: path() }),
            "missing capability cap_net_admin; run `sudo setcap cap_net_admin=ep /usr/libexec/kennel/h`"
        );
        assert_eq!(
            said(&TWO, Refusal::MissingCaps { path: path() }),
            "missing capabilities cap_setuid,cap_setgid; run `sudo setcap cap_setuid,cap_setgid=ep /usr/libexec/kennel/h`"
        );
        assert!(said(&ONE, Refusal::NosuidMount { path: path() })
            .contains("so cap_net_admin is missing;"));
        assert!(said(&TWO, Refusal::Traced { tracer: 1 })
            .contains("so cap_setuid,cap_setgid are missing;"));
        assert_eq!(
            said(&ONE, Refusal::ExtraCaps(vec![Capability::CAP_SYS_ADMIN])),
            "refused: holding capabilities beyond cap_net_admin (cap_sys_admin); give the file exactly `cap_net_admin=ep`"
        );
        let nnp = said(&ONE, Refusal::NoNewPrivs);
        assert!(nnp.starts_with("no_new_privs is set on the caller: file capabilities are ignored, so this helper cannot create a veth;"));
        assert!(
            nnp.ends_with("NoNewPrivileges=yes), or use --net pasta"),
            "{nnp}"
        );
        assert!(said(&TWO, Refusal::NoNewPrivs).ends_with("NoNewPrivileges=yes)"));
    }
}
