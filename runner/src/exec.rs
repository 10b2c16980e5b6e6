//! `kennel exec`: run a command inside a running named container.
//!
//! We join every namespace of the container in one setns(2) call on its
//! pidfd (atomic, and immune to pid reuse), then fork: only children enter
//! the new pid namespace. The child goes through the same process setup as
//! `run` (user, capabilities, no_new_privs, terminal) and execs.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use crate::cli::ExecArgs;
use crate::engine::child::{self, ChildOptions};
use crate::engine::config::ProcessPlan;
use crate::engine::protocol::Channel;
use crate::engine::{self, Started};
use crate::sys::{self, Forked};
use crate::{passwd, state};

/// The namespaces of `pid` that differ from ours (joining one we are
/// already in, such as the host network with --net=host, would need
/// privileges we do not have and changes nothing).
fn namespaces_to_join(pid: i32) -> CloneFlags {
    let mut flags = CloneFlags::empty();
    for (name, flag) in [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("mnt", CloneFlags::CLONE_NEWNS),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("net", CloneFlags::CLONE_NEWNET),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ] {
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).map(|m| (m.dev(), m.ino()));
        let theirs =
            std::fs::metadata(format!("/proc/{pid}/ns/{name}")).map(|m| (m.dev(), m.ino()));
        match (ours, theirs) {
            (Ok(a), Ok(b)) if a == b => {}
            _ => flags |= flag,
        }
    }
    flags
}

pub fn exec(args: &ExecArgs) -> Result<i32> {
    let running = state::find(&args.name)?.with_context(|| {
        format!(
            "no running container named {:?} (see `kennel ps`)",
            args.name
        )
    })?;
    let pid = running.state.pid;
    let mut process = running.state.process.clone();
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.process.tty));
    let mut env = process.env().clone().unwrap_or_default();
    for e in &args.process.env {
        crate::spec_build::apply_env_entry(e, &mut env);
    }
    process.set_env(Some(env));
    if let Some(w) = &args.process.workdir {
        if !w.starts_with('/') {
            anyhow::bail!("--workdir {w:?} must be an absolute path");
        }
        process.set_cwd(w.into());
    }
    if let Some(u) = &args.process.user {
        let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
        let who = passwd::resolve_user(&root, u)?;
        let mut user = process.user().clone();
        user.set_uid(who.uid);
        user.set_gid(who.gid);
        user.set_additional_gids(None);
        process.set_user(user);
    }
    let plan = ProcessPlan::from_process(&process)?;

    sys::cloexec_from(3).context("cannot mark fds close-on-exec")?;
    let sigfd = engine::block_signals()?;
    let _terminal = (!plan.terminal).then(engine::SavedTerminal::save);
    let (parent_end, child_end) = Channel::pair().context("cannot create the sync socketpair")?;
    // Opened before setns: afterwards /sys/fs/cgroup is the container's view.
    let leaf = running.state.cgroup.as_ref().and_then(|p| {
        nix::fcntl::open(
            p.as_path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()
    });
    // Until the command execs, this process holds fds of the host (the
    // cgroup leaf, the signalfd) while it sits in the container's pid
    // namespace: not dumpable, the container cannot open them through
    // /proc/PID/fd or ptrace it (runc's CVE-2016-9962). exec resets it.
    nix::sys::prctl::set_dumpable(false).context("cannot make kennel exec non-dumpable")?;
    let ignored_signals = engine::check_before_clone()?;
    let flags = namespaces_to_join(pid);
    nix::sched::setns(running.pidfd.as_fd(), flags).with_context(|| {
        format!(
            "cannot join the namespaces of container {:?} (pid {pid})",
            args.name
        )
    })?;
    let forked = match sys::clone_process(0, leaf.as_ref().map(|l| l.as_fd())) {
        // Moving into a cgroup needs write access at the common ancestor of
        // ours and the container's, which a login shell may not have.
        Err(e) if leaf.is_some() => {
            eprintln!(
                "kennel: cannot start the command in the container's cgroup ({}); it runs outside the container's limits",
                e.desc()
            );
            sys::clone_process(0, None)
        }
        other => other,
    };
    let (child_pid, child_pidfd) = match forked {
        Ok(Forked::Child) => {
            drop(parent_end);
            let opts = ChildOptions {
                init: false,
                preserve_fds: 0,
                unshare: nix::sched::CloneFlags::empty(),
                new_cgroupns: false,
                helper_socket: None,
                ignored_signals,
            };
            child::run_process(&plan, child_end, &opts);
        }
        Ok(Forked::Parent { pid, pidfd }) => (pid, pidfd),
        Err(e) => return Err(engine::clone_error(e)),
    };
    drop(child_end);
    match engine::wait_for_exec(&parent_end, child_pid)? {
        Started::Failed(code) => Ok(code),
        Started::Running(master) => Ok(engine::supervise(
            child_pid,
            &child_pidfd,
            &sigfd,
            master.as_ref(),
            None,
        )),
    }
}
