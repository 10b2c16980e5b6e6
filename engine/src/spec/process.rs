//! The process a container runs, as the child applies it: its ids,
//! capabilities and limits from the spec, and what confines it, planned
//! in the parent by `security`: the compiled seccomp `Filter` and the
//! Landlock `Rules`.

use anyhow::{bail, Result};
use nix::sys::resource::Resource;
use oci_spec::runtime::{PosixRlimitType, Process};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub terminal: bool,
    pub no_new_privs: bool,
    pub bounding: Vec<caps::Capability>,
    pub permitted: Vec<caps::Capability>,
    pub effective: Vec<caps::Capability>,
    pub inheritable: Vec<caps::Capability>,
    pub ambient: Vec<caps::Capability>,
    pub rlimits: Vec<(Resource, u64, u64)>,
    /// process.user.umask; None keeps the caller's.
    pub umask: Option<u32>,
    /// process.oomScoreAdj, written before the user switch.
    pub oom_score_adj: Option<i32>,
    /// linux.seccomp, compiled; installed last, just before exec.
    pub seccomp: Option<Filter>,
    /// The Landlock rules applied just before the command (see
    /// `landlock`), once the kernel is known to have it.
    pub landlock: Option<Rules>,
}

/// A compiled filter: the program and seccomp(2)'s flags for it.
#[derive(Clone)]
pub struct Filter {
    pub program: Vec<libc::sock_filter>,
    pub flags: u32,
    /// The program also answers as the keys filter (`seccomp::keys_program`) does,
    /// so a process that gets this one needs no other.
    pub includes_keys: bool,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Filter({} instructions, flags {:#x}{})",
            self.program.len(),
            self.flags,
            if self.includes_keys {
                ", with the keys filter"
            } else {
                ""
            }
        )
    }
}

/// The Landlock ruleset planned in the parent, applied by the child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// Paths inside the container beneath which writing is allowed.
    pub writable: Vec<String>,
    /// The fence: writing is allowed anywhere in the container's own tree
    /// (`writable` is empty), and nowhere else.
    #[serde(default)]
    pub whole_root: bool,
}

fn to_caps(set: &Option<oci_spec::runtime::Capabilities>) -> Result<Vec<caps::Capability>> {
    let mut out = Vec::new();
    for c in set.iter().flatten() {
        let name = serde_json::to_value(c)?;
        let name = name.as_str().unwrap_or_default();
        out.push(name.parse::<caps::Capability>().map_err(|_| {
            anyhow::anyhow!("capability {name} is not known to this kernel interface")
        })?);
    }
    out.sort_by_key(|c| c.index());
    Ok(out)
}

fn to_resource(t: PosixRlimitType) -> Result<Resource> {
    use PosixRlimitType as T;
    Ok(match t {
        T::RlimitCpu => Resource::RLIMIT_CPU,
        T::RlimitFsize => Resource::RLIMIT_FSIZE,
        T::RlimitData => Resource::RLIMIT_DATA,
        T::RlimitStack => Resource::RLIMIT_STACK,
        T::RlimitCore => Resource::RLIMIT_CORE,
        T::RlimitRss => Resource::RLIMIT_RSS,
        T::RlimitNproc => Resource::RLIMIT_NPROC,
        T::RlimitNofile => Resource::RLIMIT_NOFILE,
        T::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        T::RlimitAs => Resource::RLIMIT_AS,
        T::RlimitLocks => Resource::RLIMIT_LOCKS,
        T::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        T::RlimitNice => Resource::RLIMIT_NICE,
        T::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        T::RlimitRttime => Resource::RLIMIT_RTTIME,
        #[allow(unreachable_patterns)]
        other => bail!("resource limit {other:?} is not supported"),
    })
}

/// The id that setresuid(2), setresgid(2) and setgroups(2) read as "leave
/// it unchanged", (uid_t)-1: asked for, it would leave the command root.
const NO_CHANGE_ID: u32 = u32::MAX;

fn refuse_no_change_ids(user: &oci_spec::runtime::User) -> Result<()> {
    let extra = user.additional_gids().clone().unwrap_or_default();
    let named = [("uid", user.uid()), ("gid", user.gid())]
        .into_iter()
        .chain(extra.into_iter().map(|g| ("additional gid", g)));
    for (what, id) in named {
        if id == NO_CHANGE_ID {
            bail!("process user: {what} {id} is (uid_t)-1, which the kernel reads as \"leave unchanged\" (the command would stay root); pick an id below {id}");
        }
    }
    Ok(())
}

impl ProcessPlan {
    pub fn from_process(process: &Process) -> Result<ProcessPlan> {
        let args = process.args().clone().unwrap_or_default();
        if args.is_empty() {
            bail!("the spec's process has no args: nothing to run");
        }
        let user = process.user();
        refuse_no_change_ids(user)?;
        let caps = process.capabilities().clone().unwrap_or_default();
        let permitted = to_caps(caps.permitted())?;
        let ambient = to_caps(caps.ambient())?;
        if let Some(c) = ambient.iter().find(|c| !permitted.contains(c)) {
            bail!("process.capabilities.ambient has {c}, which permitted lacks: the kernel keeps only permitted capabilities ambient; add it to permitted or drop it from ambient");
        }
        // An ambient capability must also be inheritable (capabilities(7)):
        // asking for it asks for that. runc's specs list ambient without
        // inheritable.
        let mut inheritable = to_caps(caps.inheritable())?;
        for c in &ambient {
            if !inheritable.contains(c) {
                inheritable.push(*c);
            }
        }
        inheritable.sort_by_key(|c| c.index());
        let rlimits = process
            .rlimits()
            .iter()
            .flatten()
            .map(|r| Ok((to_resource(r.typ())?, r.soft(), r.hard())))
            .collect::<Result<Vec<_>>>()?;
        Ok(ProcessPlan {
            args,
            env: process.env().clone().unwrap_or_default(),
            cwd: process.cwd().display().to_string(),
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            terminal: process.terminal().unwrap_or(false),
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            bounding: to_caps(caps.bounding())?,
            permitted,
            effective: to_caps(caps.effective())?,
            inheritable,
            ambient,
            rlimits,
            umask: user.umask(),
            oom_score_adj: process.oom_score_adj(),
            seccomp: None,
            landlock: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_no_change_id_is_refused_for_uid_gid_and_groups() {
        for user in [
            r#"{"uid": 4294967295, "gid": 0}"#,
            r#"{"uid": 0, "gid": 4294967295}"#,
            r#"{"uid": 0, "gid": 0, "additionalGids": [5, 4294967295]}"#,
        ] {
            let process: Process = serde_json::from_str(&format!(
                r#"{{"cwd": "/", "args": ["true"], "user": {user}}}"#
            ))
            .unwrap();
            let Err(err) = ProcessPlan::from_process(&process) else {
                panic!("accepted: {user}");
            };
            assert!(err.to_string().contains("(uid_t)-1"), "{err}");
        }
        let process: Process = serde_json::from_str(
            r#"{"cwd": "/", "args": ["true"], "user": {"uid": 4294967294, "gid": 0}}"#,
        )
        .unwrap();
        assert!(ProcessPlan::from_process(&process).is_ok());
    }
}
