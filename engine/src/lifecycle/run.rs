//! The parent's side of a container's life: prepare, create, start and
//! wait. The child side is `child`, the rootfs is `rootfs`, and the
//! protocol between them is `protocol`.

use kennel_idmap::MapLine;
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::child::options::{preserved_fds, ChildOptions};
use crate::child::setup;
use crate::child::tty::{self, SavedTerminal};
use crate::host::maps::MapWriter;
use crate::lifecycle::cgroup;
use crate::lifecycle::sdnotify::Notify;
use crate::lifecycle::state;
use crate::net::netns::NetnsMaker;
use crate::plan::config::Config;
use crate::protocol::{Channel, ChildFailure, ToChild, ToParent};
use crate::stop_at::{self, StopPoint};
use crate::sys::{self, Forked};
use crate::{child::reaper, Detached, Error, Options};

/// Signals the parent handles: the forwarded ones, SIGCHLD and SIGWINCH.
fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in reaper::FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    set
}

/// Blocks the handled signals and returns a signalfd for them. The child
/// unblocks every signal before exec.
pub fn block_signals() -> Result<SignalFd> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_signals()), None)
        .context("cannot block signals")?;
    SignalFd::with_flags(&handled_signals(), SfdFlags::SFD_CLOEXEC)
        .context("cannot create a signalfd")
}

/// A spec checked and turned into what the child works from: every error
/// about the spec itself comes from here, before anything exists.
pub struct Plan {
    spec: Spec,
    cfg: Config,
}

/// Checks `spec`: an unsupported or invalid field is an error naming it.
pub fn prepare(spec: Spec) -> Result<Plan, Error> {
    let cfg = Config::from_spec(&spec)?;
    Ok(Plan { spec, cfg })
}

/// Whether this process's uid or gid has no id under `uid_map`/`gid_map`
/// while both give the namespace a root to become instead.
fn runner_unmapped(uid_map: &[MapLine], gid_map: &[MapLine]) -> bool {
    let covers = |map: &[MapLine], id: u32| {
        map.iter()
            .any(|l| id >= l.outer && u64::from(id) < u64::from(l.outer) + u64::from(l.count))
    };
    let has_root = |map: &[MapLine]| map.iter().any(|l| l.inner == 0 && l.count > 0);
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    (!covers(uid_map, uid) || !covers(gid_map, gid)) && has_root(uid_map) && has_root(gid_map)
}

/// How a container's process ended: its exit code, or 128 + the signal
/// that killed it (as a shell reports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    /// Set when the kernel's OOM killer ended it: the limit, described.
    pub oom_killed: Option<String>,
}

/// A created container: its process builds its root, then execs its
/// command (`start` waits for that), or, for the OCI lifecycle, waits for
/// `kennel-oci start` (`detach`). Dropping it before `wait` or `detach`
/// kills the process and removes what was made.
pub struct Container<'a> {
    pid: Pid,
    pidfd: OwnedFd,
    chan: Channel,
    sigfd: SignalFd,
    spec: Spec,
    leaf: LeafGuard,
    reservation: Option<state::Reservation>,
    start_time: Option<u64>,
    notify: Option<Notify>,
    master: Option<OwnedFd>,
    netns_maker: Option<NetnsMaker>,
    /// User-mode networking; dropped after the process is gone.
    pasta: Option<crate::net::pasta::Pasta>,
    /// The bridged network's address, from kennel-net.
    bridge: Option<crate::net::bridge::Attached>,
    /// Set for the OCI lifecycle (see `Options::bundle`).
    bundle: Option<std::path::PathBuf>,
    /// Left to outlive us (`detach`).
    detached: bool,
    /// The container's id (its pid when it has no name), for hooks.
    id: String,
    hooks: crate::host::hooks::HookPlans,
    landlock: Option<crate::spec::process::Rules>,
    /// PID 1 is kennel's --init, for the record.
    init: bool,
    events: Box<dyn Fn(&crate::Event) + 'a>,
    // Declared last: put back after the container is gone.
    _saved_terminal: Option<SavedTerminal>,
}

impl Plan {
    /// Makes the container: its cgroup, namespaces and maps; the child then
    /// builds its root filesystem and waits (see `Container::start`).
    pub fn create<'a>(mut self, mut opts: Options<'a>) -> Result<Container<'a>, Error> {
        let say = |warn: bool, text: &str| {
            if warn {
                opts.warn(text)
            } else {
                opts.decided(text)
            }
        };
        for warning in &self.cfg.warnings {
            opts.warn(warning);
        }
        self.cfg.process.landlock =
            crate::security::landlock::decide(self.cfg.landlock.as_ref(), &self.cfg.process, &say)?;
        // Before anything exists, so a refusal leaves nothing behind.
        let pasta_prepared = match &self.cfg.pasta {
            Some(plan) => {
                opts.decided("network: pasta");
                let writable_root = match self.cfg.readonly_root {
                    true => None,
                    false => self.cfg.root.as_deref(),
                };
                Some(crate::net::pasta::prepare(
                    plan,
                    &mut self.cfg.mounts,
                    writable_root,
                )?)
            }
            None => None,
        };
        let bridge_helper = match &self.cfg.bridge {
            Some(plan) => {
                opts.decided(&format!("network: bridge {}", plan.bridge));
                Some(crate::net::bridge::usable_helper()?)
            }
            None => None,
        };
        let cfg = &self.cfg;
        let user_joined = cfg
            .join
            .iter()
            .any(|(f, _)| *f == CloneFlags::CLONE_NEWUSER);
        if !cfg.clone_flags.contains(CloneFlags::CLONE_NEWUSER)
            && !user_joined
            && opts.caller.uid != 0
        {
            return Err(anyhow!(
                "the spec asks for no user namespace, which only root may run (you are uid {}): add {{\"type\": \"user\"}} to linux.namespaces, with uidMappings and gidMappings",
                opts.caller.uid
            )
            .into());
        }
        let listen_fds = opts.activation.as_ref().map_or(0, |a| a.count);
        check_listen_fds(listen_fds)?;
        check_preserved_fds(listen_fds, opts.preserve_fds)?;
        let seccomp = crate::security::seccomp::describe(
            self.spec.annotations().as_ref(),
            self.spec
                .linux()
                .as_ref()
                .is_some_and(|l| l.seccomp().is_some()),
        );
        match &cfg.process.seccomp {
            Some(f) => opts.decided(&format!("seccomp: {seccomp} ({f:?})")),
            None => opts.decided(&format!("seccomp: {seccomp}")),
        }
        if opts.bundle.is_some() && opts.id.is_none() {
            return Err(
                anyhow!("internal error: a container to be started later needs an id").into(),
            );
        }
        let reservation = match &opts.id {
            Some(name) => {
                let store = state::Store::new(opts.state_root.as_deref())?;
                Some(state::reserve(&store, name)?)
            }
            None => None,
        };
        // Made before the clone, so the child inherits it.
        let start_fifo = match (&reservation, &opts.bundle) {
            (Some(res), Some(_)) => Some(make_start_fifo(res.dir())?),
            _ => None,
        };
        // Nothing of ours may leak into the container or the helper; the
        // preserved fds are reopened for exec by the child.
        sys::cloexec_from(3).context("cannot mark fds close-on-exec")?;
        let sigfd = block_signals()?;
        // Before the clone: the container may change it from its first moment.
        let saved_terminal = (!cfg.process.terminal).then(SavedTerminal::save);

        let notify = opts.notify.take();
        let status = |text: &str| {
            if let Some(n) = &notify {
                n.status(text);
            }
        };
        status("creating the container's cgroup");
        let id = opts
            .id
            .clone()
            .unwrap_or_else(|| std::process::id().to_string());
        let leaf = LeafGuard(cgroup::place(cfg, &opts, &id)?);
        if let (Some(res), Some(p)) = (&reservation, &leaf.0) {
            state::record_cgroups(res, &p.leaf, &p.v1)?;
        }
        // After the placement: a helper still in a delegated unit's cgroup
        // would keep kennel from enabling controllers there (no internal
        // processes).
        let mut map_writer = match cfg.clone_flags.contains(CloneFlags::CLONE_NEWUSER) {
            true => MapWriter::prepare(
                &opts.caller,
                &cfg.uid_map,
                &cfg.gid_map,
                &opts,
                opts.helper.as_deref(),
            )?,
            false => MapWriter::Nothing,
        };
        // Entered here, so the child is born in them: a namespace owned by
        // a user namespace other than the container's can only be joined
        // from outside the container's (as runc joins them first).
        // A user or pid namespace is entered by a copy of us, which makes
        // the child (see `join`); the others by us, as runc does.
        let fork_joins = crate::lifecycle::join::needs_fork(&cfg.join);
        if !fork_joins {
            join_namespaces(&cfg.join)?;
        }
        let single = sys::check_before_clone()?;
        // After the placement (the maker must not sit in a delegated unit's
        // cgroup either), before the sync channel (which the maker must not
        // hold open). Without it, or with kennel-idmap, the child makes the
        // namespace itself (see `netns`).
        let mut netns_maker = match cfg.new_net() && !map_writer.uses_helper() {
            true => NetnsMaker::start(&single)
                .inspect_err(|e| {
                    opts.decided(&format!(
                        "cannot fork the network namespace's maker ({}); the container makes it itself",
                        e.desc()
                    ))
                })
                .ok(),
            false => None,
        };
        let (parent_end, child_end) =
            Channel::pair().context("cannot create the sync socketpair")?;

        status("creating the container's namespaces");
        // clone3 makes only the user and pid namespaces (a pid namespace can
        // only be entered at birth). The child unshares the others itself,
        // in parallel with our map writing (kennel-idmap's start-up above
        // all), and its cgroup namespace once it sits in its leaf, so that
        // namespace is rooted there on either path below.
        let become_root = cfg.clone_flags.contains(CloneFlags::CLONE_NEWUSER)
            && runner_unmapped(&cfg.uid_map, &cfg.gid_map);
        let at_clone = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID;
        let flags = (cfg.clone_flags & at_clone).bits() as u64;
        let leaf_fd = leaf
            .0
            .as_ref()
            .and_then(|p| p.leaf_fd.as_ref())
            .map(|fd| fd.as_fd());
        let mut born_in_leaf = leaf_fd.is_some();
        let entry = crate::lifecycle::join::Entry {
            namespaces: &cfg.join,
            uid_map: &cfg.uid_map,
            gid_map: &cfg.gid_map,
        };
        let clone = |single: &sys::SingleThreaded, cgroup: Option<std::os::fd::BorrowedFd<'_>>| {
            match fork_joins {
                true => crate::lifecycle::join::clone_inside(single, flags, cgroup, &entry),
                false => Ok(sys::clone_process(single, flags, cgroup)),
            }
        };
        let forked = match clone(&single, leaf_fd)? {
            Err(e) if born_in_leaf => {
                opts.decided(&format!(
                    "clone3 into the cgroup failed ({}); moving the child before it starts",
                    e.desc()
                ));
                born_in_leaf = false;
                clone(&single, None)?
            }
            other => other,
        };
        let (pid, pidfd) = match forked {
            Ok(Forked::Child(single)) => {
                drop(parent_end);
                let child_opts = ChildOptions {
                    init: opts.init,
                    preserve_fds: listen_fds + opts.preserve_fds,
                    activation: opts.activation.clone(),
                    // The network namespace has its own path (see `netns`).
                    unshare: cfg.clone_flags
                        - at_clone
                        - CloneFlags::CLONE_NEWCGROUP
                        - CloneFlags::CLONE_NEWNET,
                    new_cgroupns: cfg.clone_flags.contains(CloneFlags::CLONE_NEWCGROUP),
                    helper_socket: map_writer.take_helper_socket(),
                    ignored_signals: single.ignored_signals(),
                    single,
                    outlives_parent: start_fifo.is_some(),
                    start_fifo,
                    become_root,
                    stop_at: opts.stop_at,
                };
                let maker = netns_maker.as_mut().and_then(NetnsMaker::take_part);
                setup::run(cfg, child_end, &child_opts, maker);
            }
            Ok(Forked::Parent { pid, pidfd }) => (pid, pidfd),
            Err(e) => return Err(clone_error(e).into()),
        };
        drop(child_end);
        drop(start_fifo);
        stop_at::stop_if(opts.stop_at, StopPoint::Cloned);
        if let Some(m) = netns_maker.as_mut() {
            m.hand_over(pidfd.as_fd());
        }
        // Now, while the child surely lives (it waits for its maps): once
        // kennel-idmap has told it they are written, its command may be
        // done before we are, and a zombie's start time says nothing.
        let start_time = reservation
            .as_ref()
            .and_then(|_| state::start_time(pid.as_raw()));
        let mut container = Container {
            pid,
            pidfd,
            chan: parent_end,
            sigfd,
            spec: self.spec,
            leaf,
            reservation,
            start_time,
            notify,
            master: None,
            netns_maker,
            pasta: None,
            bridge: None,
            bundle: opts.bundle.clone(),
            detached: false,
            id: opts.id.clone().unwrap_or_else(|| pid.to_string()),
            hooks: cfg.hooks.clone(),
            landlock: cfg.process.landlock.clone(),
            init: opts.init,
            events: std::mem::replace(&mut opts.events, Box::new(|_| {})),
            _saved_terminal: saved_terminal,
        };
        // A container another process will start is on record from birth:
        // if we are killed from here on, `delete` finds what to remove.
        if container.bundle.is_some() {
            container.record(state::Status::Creating)?;
        }
        let parent_end = &container.chan;

        // cgroup v1 hierarchies cannot be entered at birth: the child
        // moves into them here, before its maps let it go on.
        let moved = match (&container.leaf.0, born_in_leaf) {
            (Some(p), false) => p.add_process(pid.as_raw()).map_err(anyhow::Error::from),
            (Some(p), true) => p.add_v1(pid.as_raw()).map_err(anyhow::Error::from),
            (None, _) => Ok(()),
        };
        // kennel-idmap tells the child itself (see `take_helper_socket`).
        let child_told = map_writer.uses_helper();
        if let Err(e) = moved.and_then(|()| map_writer.write(pid, &container.pidfd)) {
            // A child that failed on its own (creating its namespaces) has
            // already said why, and that is the cause worth reporting.
            if let Some(f) = crate::protocol::reported_failure(parent_end, pid) {
                return Err(Error::Container(f));
            }
            return Err(e.context("preparing the container").into());
        }
        if let Some(n) = &container.notify {
            n.status("setting up the root filesystem");
        }
        // A child that is gone has left its reason on the channel, which
        // `start` reads next.
        if !child_told {
            let _ = parent_end.send_to_child(&ToChild::MapsWritten);
        }
        stop_at::stop_if(opts.stop_at, StopPoint::MapsWritten);
        if let (Some(plan), Some(prepared)) = (&cfg.pasta, pasta_prepared.as_ref()) {
            if let Some(n) = &container.notify {
                n.status("starting the container's network (pasta)");
            }
            container.pasta = Some(crate::net::pasta::start_when_asked(
                &container.chan,
                container.pid,
                container.pidfd.as_fd(),
                plan,
                prepared,
                &single,
            )?);
        }
        if let (Some(plan), Some(helper)) = (&cfg.bridge, bridge_helper.as_ref()) {
            if let Some(n) = &container.notify {
                n.status("linking the container to its bridge (kennel-net)");
            }
            let attached = crate::net::bridge::attach_when_asked(
                &container.chan,
                container.pid,
                container.pidfd.as_fd(),
                plan,
                helper,
            )?;
            opts.decided(&format!(
                "network: eth0 {}/{} via {} on bridge {} (host end {})",
                attached.address,
                attached.prefix,
                attached.gateway,
                plan.bridge,
                attached.host_link
            ));
            container.bridge = Some(attached);
        }
        if cfg.hooks.during_create() {
            container.run_create_hooks()?;
        }
        Ok(container)
    }
}

/// Enters each namespace named by path (network, ipc, uts).
fn join_namespaces(join: &[(CloneFlags, std::path::PathBuf)]) -> anyhow::Result<()> {
    for (flag, path) in join {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("cannot open the namespace {}", path.display()))?;
        nix::sched::setns(&fd, *flag).with_context(|| {
            format!(
                "cannot join the namespace {} (is it a {} namespace, and one you may enter?)",
                path.display(),
                crate::lifecycle::join::kind(*flag)
            )
        })?;
    }
    Ok(())
}

/// Checks that the `n` sockets systemd passed (fds 3 to 3+n-1) are open.
fn check_listen_fds(n: u32) -> anyhow::Result<()> {
    for fd in preserved_fds(n) {
        if !sys::fd_is_open(fd) {
            bail!("LISTEN_FDS={n} names fd {fd}, which is not open: the unit's sockets did not reach kennel; check the .socket unit, or unset LISTEN_FDS and LISTEN_PID");
        }
    }
    Ok(())
}

/// Checks that `--preserve-fds N`'s fds are open: 3+after to
/// 3+after+N-1, after the `after` sockets systemd passed.
pub fn check_preserved_fds(after: u32, n: u32) -> anyhow::Result<()> {
    let (fd_limit, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .context("cannot read the fd limit")?;
    let end = 3 + u64::from(after) + u64::from(n);
    if end > fd_limit {
        bail!(
            "--preserve-fds {n}: fds up to {} cannot exist, this process may have only {fd_limit} open (ulimit -n)",
            end - 1
        );
    }
    for fd in preserved_fds(after + n).skip(after as usize) {
        if !sys::fd_is_open(fd) {
            bail!("--preserve-fds {n}: fd {fd} is not open");
        }
    }
    Ok(())
}

/// The fifo a created container waits on (`state::START_FIFO`), opened
/// read-write: the child keeps it, and `start` writes the go-ahead.
fn make_start_fifo(dir: &std::path::Path) -> anyhow::Result<OwnedFd> {
    let path = dir.join(state::START_FIFO);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("cannot create {}", path.display()))?;
    let fd = nix::fcntl::open(
        &path,
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", path.display()))?;
    Ok(fd)
}

impl<'a> Container<'a> {
    /// Lets the process exec its command, and returns once it has (or
    /// failed to, with the child's reason).
    pub fn start(&mut self) -> Result<(), Error> {
        let started = wait_for_exec(&self.chan, self.pid);
        // The child has joined its network namespace (or died): reap the maker.
        self.netns_maker = None;
        match started? {
            Started::Running(master) => self.master = master,
            Started::Failed(f) => return Err(Error::Container(f)),
        }
        if let Some(n) = &self.notify {
            n.started(&self.spec_command());
        }
        self.record(state::Status::Running)?;
        self.run_warned("poststart", &self.hooks.poststart, "running");
        Ok(())
    }

    /// The state document hooks read.
    fn hook_state(&self, status: &str) -> String {
        let annotations = self
            .spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        crate::host::hooks::state_json(
            &self.id,
            status,
            self.pid.as_raw(),
            self.bundle.as_deref().unwrap_or(std::path::Path::new("")),
            &annotations,
        )
    }

    /// Waits until the child's namespaces exist, runs the createRuntime
    /// hooks here, and lets the child go on with the state for its own.
    fn run_create_hooks(&self) -> Result<(), Error> {
        crate::protocol::await_request(
            &self.chan,
            self.pid,
            &ToParent::RunHooks,
            "its createRuntime hooks ran",
        )?;
        let state = self.hook_state("creating");
        crate::host::hooks::run("createRuntime", &self.hooks.create_runtime, &state)?;
        self.chan
            .send_to_child(&ToChild::HooksRan(state))
            .map_err(|e| anyhow!("the container's process is gone: {e}"))?;
        Ok(())
    }

    /// Runs hooks whose failure the spec says to report and go on from.
    fn run_warned(&self, point: &str, hooks: &[crate::host::hooks::HookPlan], status: &str) {
        if hooks.is_empty() {
            return;
        }
        if let Err(e) = crate::host::hooks::run(point, hooks, &self.hook_state(status)) {
            (self.events)(&crate::Event::Warning(&format!("{e:#}")));
        }
    }

    /// Writes the container's record, when it has a name.
    fn record(&self, status: state::Status) -> Result<(), Error> {
        let Some(res) = &self.reservation else {
            return Ok(());
        };
        let start_time = self
            .start_time
            .context("the container exited before it could be recorded")?;
        let recorded = state::Recorded {
            pid: self.pid,
            start_time,
            spec: &self.spec,
            cgroup: self.leaf.0.as_ref().map(|p| p.leaf.clone()),
            cgroup_v1: self
                .leaf
                .0
                .as_ref()
                .map(|p| p.v1.clone())
                .unwrap_or_default(),
            status,
            bundle: self.bundle.as_deref(),
            kept: self.bundle.is_some(),
            hooks: &self.hooks,
            landlock: self.landlock.as_ref(),
            init: self.init,
            bridge_address: self.bridge.as_ref().map(|b| b.address),
        };
        state::record(res, &recorded)?;
        Ok(())
    }

    /// The OCI lifecycle's end of `create`: waits until the process is
    /// ready and waiting for `start`, and leaves it (with its cgroup and
    /// record) to outlive us. The pty master, with a terminal, is returned
    /// for the caller to pass on.
    pub fn detach(mut self) -> Result<Detached, Error> {
        let mut console = None;
        loop {
            match self.chan.recv_to_parent() {
                Ok(Some(r)) => match r.message {
                    ToParent::PtyMaster => console = r.fd,
                    ToParent::Ready => break,
                    // Answered by `create`, before we get here.
                    ToParent::RunHooks | ToParent::StartNetwork => {}
                    ToParent::Failed(f) => {
                        let _ = waitpid(self.pid, None);
                        return Err(Error::Container(f));
                    }
                },
                Ok(None) => {
                    return Err(anyhow!("the container's process ended before it was ready").into())
                }
                Err(e) => return Err(anyhow!("reading from the container: {e}").into()),
            }
        }
        self.netns_maker = None;
        self.record(state::Status::Created)?;
        if let Some(p) = self.pasta.as_mut() {
            p.detach();
        }
        // Ours no more: `delete` removes them.
        drop(self.leaf.0.take());
        if let Some(res) = self.reservation.take() {
            res.keep();
        }
        let pid = self.pid.as_raw();
        self.bundle = None;
        // Not killed on drop: see `Drop`.
        self.detached = true;
        Ok(Detached { pid, console })
    }

    fn spec_command(&self) -> String {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default()
            .join(" ")
    }

    /// Supervises the started container to its end: forwards signals,
    /// relays its terminal, and removes its cgroup and record.
    pub fn wait(mut self) -> Exit {
        let master = self.master.take();
        let code = supervise(
            self.pid,
            &self.pidfd,
            &self.sigfd,
            master.as_ref(),
            self.notify.as_ref(),
        );
        let oom_killed = self
            .leaf
            .0
            .as_ref()
            .and_then(|p| p.finish().oom_killed.then(|| p.memory_description()));
        let code = match oom_killed {
            Some(_) => 128 + Signal::SIGKILL as i32,
            None => code,
        };
        self.reservation = None;
        self.run_warned("poststop", &self.hooks.poststop, "stopped");
        Exit { code, oom_killed }
    }
}

impl Drop for Container<'_> {
    /// A container dropped before its end (a failed start, a front end's
    /// error) must not outlive us.
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        if matches!(
            waitpid(self.pid, Some(WaitPidFlag::WNOHANG)),
            Ok(WaitStatus::StillAlive)
        ) {
            let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), Signal::SIGKILL as i32);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Removes the container's leaf on every way out of `run`.
struct LeafGuard(Option<cgroup_delegate::Placement>);

impl Drop for LeafGuard {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            p.remove();
        }
    }
}

/// How the start of the command went.
pub enum Started {
    /// It is running; with `--tty`, here is the pty master.
    Running(Option<OwnedFd>),
    /// It failed before exec, for this reason.
    Failed(ChildFailure),
}

/// Reads the child's messages until its exec closes the channel.
pub fn wait_for_exec(chan: &Channel, pid: Pid) -> Result<Started> {
    let mut master = None;
    loop {
        match chan.recv_to_parent() {
            Ok(None) => return Ok(Started::Running(master)),
            Ok(Some(r)) => match r.message {
                ToParent::PtyMaster => master = r.fd,
                // Only a child with a start fifo says it, and only `detach`
                // reads from such a child; `create` answers RunHooks.
                ToParent::Ready | ToParent::RunHooks | ToParent::StartNetwork => {}
                ToParent::Failed(f) => {
                    let _ = waitpid(pid, None);
                    return Ok(Started::Failed(f));
                }
            },
            Err(e) => anyhow::bail!("reading from the container: {e}"),
        }
    }
}

pub fn clone_error(e: Errno) -> anyhow::Error {
    let hint = match e {
        Errno::EPERM | Errno::ENOSPC | Errno::EACCES => {
            "; unprivileged user namespaces may be disabled: run `kennel doctor` for the exact fix"
        }
        _ => "",
    };
    anyhow::anyhow!(
        "cannot create the container's namespaces (clone3): {}{hint}",
        e.desc()
    )
}

fn status_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Waits for the container, forwarding signals and relaying the terminal.
pub fn supervise(
    pid: Pid,
    pidfd: &OwnedFd,
    sigfd: &SignalFd,
    master: Option<&OwnedFd>,
    notify: Option<&Notify>,
) -> i32 {
    let _raw = master.map(|m| {
        tty::copy_window_size(m.as_fd());
        tty::RawMode::enter()
    });
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let watchdog = notify.and_then(|n| n.watchdog_interval());
    let timeout = watchdog
        .map(|w| PollTimeout::try_from(w.as_millis().max(1) as i32).unwrap_or(PollTimeout::MAX))
        .unwrap_or(PollTimeout::NONE);
    let notify_fd = notify.and_then(|n| n.container_fd());
    loop {
        if let (Some(n), Some(fd)) = (notify, notify_fd) {
            let mut nfds = [PollFd::new(fd, PollFlags::POLLIN)];
            if matches!(poll(&mut nfds, PollTimeout::ZERO), Ok(k) if k > 0) {
                n.forward_from_container();
            }
        }
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        if let (Some(m), true) = (master, master_open) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open && master_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        if let Some(fd) = notify_fd {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => continue,
            Ok(0) => {
                if let Some(n) = notify {
                    n.ping_watchdog();
                }
                continue;
            }
            Err(_) | Ok(_) => {}
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        if let (Some(m), true) = (master, ready.get(1).copied().unwrap_or(false)) {
            master_open = tty::pump(m.as_fd(), stdout.as_fd());
        }
        if let (Some(m), true) = (master, ready.get(2).copied().unwrap_or(false)) {
            stdin_open = tty::pump(stdin.as_fd(), m.as_fd());
        }
        if !ready[0] {
            continue;
        }
        let Ok(Some(info)) = sigfd.read_signal() else {
            continue;
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        match sig {
            Signal::SIGCHLD => {
                if let Ok(status) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    if let Some(code) = status_code(status) {
                        if let Some(m) = master {
                            tty::drain(m);
                        }
                        if let Some(n) = notify {
                            n.stopping();
                        }
                        return code;
                    }
                }
            }
            Signal::SIGWINCH => {
                if let Some(m) = master {
                    tty::copy_window_size(m.as_fd());
                }
            }
            other => {
                if sys::pidfd_send_signal(pidfd.as_fd(), other as i32).is_err() {
                    let _ = kill(pid, other);
                }
            }
        }
    }
}
