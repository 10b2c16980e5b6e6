//! `kennel exec`: run a command inside a running named container.
//!
//! We join every namespace of the container in one setns(2) call on its
//! pidfd (atomic, and immune to pid reuse), then fork: only children enter
//! the new pid namespace. The child goes through the same process setup as
//! `run` (user, capabilities, no_new_privs, terminal) and execs.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;

use anyhow::{anyhow, Context};
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::Process;

use crate::child::tty::SavedTerminal;
use crate::child::{self, options::ChildOptions};
use crate::lifecycle::run::create::{check_preserved_fds, clone_error};
use crate::lifecycle::supervise::{block_signals, supervise, wait_for_exec, Started};
use crate::protocol::Channel;
use crate::spec::process::ProcessPlan;
use crate::sys::{self, Forked};
use crate::{host::passwd, lifecycle::state, Detached, Error, Exit, Options};

/// A command to run in a running container.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The container's id.
    pub id: String,
    pub command: Vec<String>,
    pub tty: bool,
    /// KEY=VALUE entries (or KEY, taken from our environment) over the
    /// container's own.
    pub env: Vec<String>,
    /// Absolute path inside the container.
    pub workdir: Option<String>,
    /// A user name or uid[:gid], looked up in the container's /etc/passwd.
    pub user: Option<String>,
    /// The whole process (an OCI `process.json`) in place of the
    /// container's own; the fields above are applied over it.
    pub process: Option<Process>,
    /// Fds 3 to 3+N-1 are passed to the command.
    pub preserve_fds: u32,
}

/// Applies one KEY=VALUE entry to `out`, replacing an earlier KEY; a bare
/// KEY takes its value from our environment (and is skipped when unset).
pub fn apply_env_entry(entry: &str, out: &mut Vec<String>) {
    match entry.split_once('=') {
        Some((k, _)) => {
            out.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k));
            out.push(entry.to_string());
        }
        None => {
            if let Ok(v) = std::env::var(entry) {
                apply_env_entry(&format!("{entry}={v}"), out);
            }
        }
    }
}

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

/// The process whose namespaces and root are joined, and its pidfd when
/// it is not the container's first process. setns(2) on a pidfd (and
/// /proc/PID/ns, /proc/PID/root) needs ptrace read access to the process:
/// kennel's --init never execs and is not dumpable, its memory belonging
/// to the host's user namespace, so the kernel refuses that to everyone
/// without CAP_SYS_PTRACE there (EPERM). Its command, exec'd in the same
/// namespaces, is the container's own program and open to its owner.
fn join_target(
    running: &state::Running,
    id: &str,
) -> Result<(i32, Option<std::os::fd::OwnedFd>), Error> {
    let init = running.state.pid;
    if !running.state.kennel.init {
        return Ok((init, None));
    }
    let children =
        std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap_or_default();
    for child in children
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
    {
        let Ok(fd) = sys::pidfd_open(nix::unistd::Pid::from_raw(child)) else {
            continue;
        };
        // Read after the pidfd is open: a child of the live init is the
        // container's, whatever pid it was recycled from.
        if parent_of(child) == Some(init) {
            return Ok((child, Some(fd)));
        }
    }
    Err(anyhow!(
        "container {id:?} has no command running under its init (pid {init}), so there is nothing to join: it is stopping; start it again"
    )
    .into())
}

/// Field 4 of /proc/PID/stat.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `req` in its container and waits for it; `opts` gives the caller
/// and the events' receiver.
pub fn exec(req: &ExecRequest, opts: &Options<'_>) -> Result<Exit, Error> {
    let started = start(req, opts, false)?;
    Ok(Exit {
        code: supervise(
            started.pid,
            &started.pidfd,
            &started.sigfd,
            started.master.as_ref(),
            None,
        ),
        oom_killed: None,
    })
}

/// Starts `req` in its container and returns at once: the command is our
/// child until we exit, then the subreaper's (conmon, a shim) or init's.
pub fn exec_detached(req: &ExecRequest, opts: &Options<'_>) -> Result<Detached, Error> {
    let started = start(req, opts, true)?;
    Ok(Detached {
        pid: started.pid.as_raw(),
        console: started.master,
    })
}

/// The process `req` runs in `running` (its command's pid is `pid`):
/// the container's own process with `req`'s command, env, workdir and
/// user, under the container's seccomp filter and Landlock rules.
fn process_plan(
    args: &ExecRequest,
    running: &state::Running,
    pid: i32,
) -> Result<ProcessPlan, Error> {
    let mut process = match &args.process {
        Some(p) => p.clone(),
        None => {
            let mut p = running.state.kennel.process.clone();
            p.set_terminal(Some(args.tty));
            p
        }
    };
    if !args.command.is_empty() {
        process.set_args(Some(args.command.clone()));
    }
    if args.tty {
        process.set_terminal(Some(true));
    }
    let mut env = process.env().clone().unwrap_or_default();
    for e in &args.env {
        apply_env_entry(e, &mut env);
    }
    process.set_env(Some(env));
    if let Some(w) = &args.workdir {
        if !w.starts_with('/') {
            return Err(anyhow!("--workdir {w:?} must be an absolute path").into());
        }
        process.set_cwd(w.into());
    }
    if let Some(u) = &args.user {
        let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
        let who = passwd::resolve_user(&root, u)?;
        let mut user = process.user().clone();
        user.set_uid(who.uid);
        user.set_gid(who.gid);
        user.set_additional_gids(None);
        process.set_user(user);
    }
    let mut plan = ProcessPlan::from_process(&process)?;
    // The container's filter, as its own capabilities decided it: a
    // process given more capabilities must not widen the profile.
    let container = ProcessPlan::from_process(&running.state.kennel.process)?;
    plan.seccomp = crate::security::seccomp::resolve(
        Some(&running.state.annotations.clone().into_iter().collect()),
        running.state.kennel.seccomp.as_ref(),
        &container.bounding,
    )?;
    plan.landlock =
        crate::security::landlock::for_exec(running.state.kennel.landlock.as_ref(), &plan)?;
    Ok(plan)
}

/// The options of a command joining a running container: it makes no
/// namespace and is passed no socket.
fn child_options(
    args: &ExecRequest,
    single: sys::SingleThreaded,
    detached: bool,
    join_cgroupns: Option<std::os::fd::RawFd>,
) -> ChildOptions {
    ChildOptions {
        init: false,
        preserve_fds: args.preserve_fds,
        activation: None,
        unshare: nix::sched::CloneFlags::empty(),
        new_cgroupns: false,
        join_cgroupns,
        helper_socket: None,
        ignored_signals: single.ignored_signals(),
        single,
        start_fifo: None,
        outlives_parent: detached,
        // The process's own user switch comes before anything it makes.
        become_root: false,
        stop_at: None,
    }
}

/// Clones the command into the container's cgroup leaf where it can
/// (outside it, with a warning, where this caller may not move it
/// there); the parent then leaves the v1 hierarchies it `entered`.
fn clone_in_leaf(
    single: &sys::SingleThreaded,
    leaf: Option<&std::os::fd::OwnedFd>,
    entered: Option<cgroup_delegate::v1::Entered>,
    opts: &Options<'_>,
) -> Result<Result<Forked, nix::errno::Errno>, Error> {
    let forked = match sys::clone_process(single, 0, leaf.as_ref().map(|l| l.as_fd())) {
        // Moving into a cgroup needs write access at the common ancestor of
        // ours and the container's, which a login shell may not have.
        Err(e) if leaf.is_some() => {
            opts.warn(&format!(
                "cannot start the command in the container's cgroup ({}); it runs outside the container's limits",
                e.desc()
            ));
            sys::clone_process(single, 0, None)
        }
        other => other,
    };
    if let (Some(entered), Ok(Forked::Parent { .. }) | Err(_)) = (entered, &forked) {
        entered
            .leave()
            .context("cannot leave the container's cgroups after starting the command")?;
    }
    Ok(forked)
}

struct ExecStarted {
    pid: nix::unistd::Pid,
    pidfd: std::os::fd::OwnedFd,
    sigfd: nix::sys::signalfd::SignalFd,
    master: Option<std::os::fd::OwnedFd>,
    _terminal: Option<SavedTerminal>,
}

fn start(req: &ExecRequest, opts: &Options<'_>, detached: bool) -> Result<ExecStarted, Error> {
    let args = req;
    let store = state::Store::new(opts.state_root.as_deref())?;
    let running = state::find(&store, &args.id)?
        .with_context(|| format!("no running container named {:?}", args.id))?;
    let (pid, join_fd) = join_target(&running, &args.id)?;
    let plan = process_plan(args, &running, pid)?;
    check_preserved_fds(0, args.preserve_fds)?;

    sys::cloexec_from(3).context("cannot mark fds close-on-exec")?;
    let sigfd = block_signals()?;
    let terminal = (!plan.terminal && !detached).then(SavedTerminal::save);
    let (parent_end, child_end) = Channel::pair().context("cannot create the sync socketpair")?;
    // Opened before setns: afterwards /sys/fs/cgroup is the container's view.
    let leaf = running.state.kennel.cgroup.as_ref().and_then(|p| {
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
    let single = sys::check_before_clone()?;
    // cgroup v1 hierarchies cannot be entered at birth: the command
    // inherits them from us, moved there for the clone and back after (by
    // paths of the host's mount namespace: before setns).
    let v1 = &running.state.kennel.cgroup_v1;
    let entered = match v1.is_empty() {
        true => None,
        false => Some(cgroup_delegate::v1::enter(v1).with_context(|| {
            format!(
                "cannot start the command in the cgroups of container {:?}",
                args.id
            )
        })?),
    };
    let flags = namespaces_to_join(pid);
    let target = join_fd.as_ref().unwrap_or(&running.pidfd);
    // The cgroup namespace is the command's to join, once born in the
    // leaf (see ChildOptions::join_cgroupns).
    let cgroupns = flags.contains(CloneFlags::CLONE_NEWCGROUP);
    nix::sched::setns(target.as_fd(), flags - CloneFlags::CLONE_NEWCGROUP).with_context(|| {
        format!(
            "cannot join the namespaces of container {:?} (pid {pid})",
            args.id
        )
    })?;
    let forked = clone_in_leaf(&single, leaf.as_ref(), entered, opts)?;
    let (child_pid, child_pidfd) = match forked {
        Ok(Forked::Child(single)) => {
            drop(parent_end);
            let opts = child_options(args, single, detached, cgroupns.then(|| target.as_raw_fd()));
            child::run_process(&plan, child_end, &opts);
        }
        Ok(Forked::Parent { pid, pidfd }) => (pid, pidfd),
        Err(e) => return Err(clone_error(e).into()),
    };
    drop(child_end);
    match wait_for_exec(&parent_end, child_pid)? {
        Started::Failed(f) => Err(Error::Container(f)),
        Started::Running(master) => Ok(ExecStarted {
            pid: child_pid,
            pidfd: child_pidfd,
            sigfd,
            master,
            _terminal: terminal,
        }),
    }
}
