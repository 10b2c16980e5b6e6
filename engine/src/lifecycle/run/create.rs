//! `Plan::create`: what is checked before anything exists, the cgroup,
//! the id maps and the namespaces, the clone, and what the parent does
//! for the child until its root is built.

use kennel_idmap::MapLine;
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signalfd::SignalFd;

use super::{Container, LeafGuard, Plan};
use crate::child;
use crate::child::options::{preserved_fds, ChildOptions};
use crate::child::tty::SavedTerminal;
use crate::host::maps::MapWriter;
use crate::lifecycle::cgroup;
use crate::lifecycle::sdnotify::Notify;
use crate::lifecycle::state;
use crate::lifecycle::supervise::block_signals;
use crate::net::netns::NetnsMaker;
use crate::plan::config::Config;
use crate::protocol::{Channel, ToChild};
use crate::stop_at::{self, StopPoint};
use crate::sys::{self, Forked};
use crate::{Error, Options};

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

/// The namespaces clone3 makes: a pid namespace can only be entered at
/// birth, and the user namespace owns the others.
const AT_CLONE: CloneFlags = CloneFlags::CLONE_NEWUSER.union(CloneFlags::CLONE_NEWPID);

/// The child's options that follow from the plan alone; `create` adds
/// what the clone's preparation made (fds, the helper's socket).
fn child_options(cfg: &Config, opts: &Options<'_>, single: sys::SingleThreaded) -> ChildOptions {
    ChildOptions {
        init: opts.init,
        preserve_fds: opts.preserve_fds,
        activation: opts.activation.clone(),
        // The network namespace has its own path (see `netns`).
        unshare: cfg.clone_flags
            - AT_CLONE
            - CloneFlags::CLONE_NEWCGROUP
            - CloneFlags::CLONE_NEWNET,
        new_cgroupns: cfg.clone_flags.contains(CloneFlags::CLONE_NEWCGROUP),
        join_cgroupns: None,
        helper_socket: None,
        ignored_signals: single.ignored_signals(),
        single,
        outlives_parent: false,
        start_fifo: None,
        become_root: false,
        stop_at: opts.stop_at,
    }
}

/// The network namespace's maker, forked now; without it the container
/// makes its network namespace itself, which is said, not refused.
fn start_netns_maker(single: &sys::SingleThreaded, opts: &Options<'_>) -> Option<NetnsMaker> {
    NetnsMaker::start(single)
        .inspect_err(|e| {
            opts.decided(&format!(
                "cannot fork the network namespace's maker ({}); the container makes it itself",
                e.desc()
            ))
        })
        .ok()
}

/// What `Plan::check` found, for the steps after the clone.
struct Checked {
    pasta_prepared: Option<crate::net::pasta::Prepared>,
    bridge_helper: Option<std::path::PathBuf>,
    /// The sockets systemd passed.
    listen_fds: u32,
}

impl Plan {
    /// What is decided and checked before anything exists: Landlock
    /// against the kernel, pasta and kennel-net found, the user namespace,
    /// the inherited fds, seccomp.
    fn check(&mut self, opts: &Options<'_>) -> Result<Checked, Error> {
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
        Ok(Checked {
            pasta_prepared,
            bridge_helper,
            listen_fds,
        })
    }

    /// Makes the container: its cgroup, namespaces and maps; the child then
    /// builds its root filesystem and waits (see `Container::start`).
    pub fn create<'a>(mut self, mut opts: Options<'a>) -> Result<Container<'a>, Error> {
        let checked = self.check(&opts)?;
        let listen_fds = checked.listen_fds;
        let cfg = &self.cfg;
        let BeforeClone {
            reservation,
            start_fifo,
            sigfd,
            saved_terminal,
            notify,
            leaf,
            mut map_writer,
            fork_joins,
            single,
            mut netns_maker,
            parent_end,
            child_end,
        } = before_clone(cfg, &mut opts)?;

        if let Some(n) = &notify {
            n.status("creating the container's namespaces");
        }
        // clone3 makes only the user and pid namespaces (a pid namespace can
        // only be entered at birth). The child unshares the others itself,
        // in parallel with our map writing (kennel-idmap's start-up above
        // all), and its cgroup namespace once it sits in its leaf, so that
        // namespace is rooted there on either path below.
        let become_root = cfg.clone_flags.contains(CloneFlags::CLONE_NEWUSER)
            && runner_unmapped(&cfg.uid_map, &cfg.gid_map);
        let flags = (cfg.clone_flags & AT_CLONE).bits() as u64;
        let (forked, born_in_leaf) = clone_child(cfg, &opts, flags, fork_joins, &leaf, &single)?;
        let (pid, pidfd) = match forked {
            Ok(Forked::Child(single)) => {
                drop(parent_end);
                let child_opts = ChildOptions {
                    preserve_fds: listen_fds + opts.preserve_fds,
                    helper_socket: map_writer.take_helper_socket(),
                    outlives_parent: start_fifo.is_some(),
                    start_fifo,
                    become_root,
                    ..child_options(cfg, &opts, single)
                };
                let maker = netns_maker.as_mut().and_then(NetnsMaker::take_part);
                child::run(cfg, child_end, &child_opts, maker);
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
        container.bring_up(cfg, &checked, map_writer, born_in_leaf, &single, &opts)?;
        Ok(container)
    }
}

impl Container<'_> {
    /// After the clone: the child joins its cgroup and gets its maps, then
    /// its network and the createRuntime hooks while it builds its root.
    fn bring_up(
        &mut self,
        cfg: &Config,
        checked: &Checked,
        map_writer: MapWriter,
        born_in_leaf: bool,
        single: &sys::SingleThreaded,
        opts: &Options<'_>,
    ) -> Result<(), Error> {
        let pid = self.pid;
        let parent_end = &self.chan;

        // cgroup v1 hierarchies cannot be entered at birth: the child
        // moves into them here, before its maps let it go on.
        let moved = match (&self.leaf.0, born_in_leaf) {
            (Some(p), false) => p.add_process(pid.as_raw()).map_err(anyhow::Error::from),
            (Some(p), true) => p.add_v1(pid.as_raw()).map_err(anyhow::Error::from),
            (None, _) => Ok(()),
        };
        // kennel-idmap tells the child itself (see `take_helper_socket`).
        let child_told = map_writer.uses_helper();
        if let Err(e) = moved.and_then(|()| map_writer.write(pid, &self.pidfd)) {
            // A child that failed on its own (creating its namespaces) has
            // already said why, and that is the cause worth reporting.
            if let Some(f) = crate::protocol::reported_failure(parent_end, pid) {
                return Err(Error::Container(f));
            }
            return Err(e.context("preparing the container").into());
        }
        if let Some(n) = &self.notify {
            n.status("setting up the root filesystem");
        }
        // A child that is gone has left its reason on the channel, which
        // `start` reads next.
        if !child_told {
            let _ = parent_end.send_to_child(&ToChild::MapsWritten);
        }
        stop_at::stop_if(opts.stop_at, StopPoint::MapsWritten);
        self.start_network(cfg, checked, single)?;
        if cfg.hooks.during_create() {
            self.run_create_hooks()?;
        }
        Ok(())
    }

    /// pasta, or the veth on a bridge, once the child asks for it from its
    /// network namespace.
    fn start_network(
        &mut self,
        cfg: &Config,
        checked: &Checked,
        single: &sys::SingleThreaded,
    ) -> Result<(), Error> {
        if let (Some(plan), Some(prepared)) = (&cfg.pasta, checked.pasta_prepared.as_ref()) {
            if let Some(n) = &self.notify {
                n.status("starting the container's network (pasta)");
            }
            self.pasta = Some(crate::net::pasta::start_when_asked(
                &self.chan,
                self.pid,
                self.pidfd.as_fd(),
                plan,
                prepared,
                single,
            )?);
        }
        if let (Some(plan), Some(helper)) = (&cfg.bridge, checked.bridge_helper.as_ref()) {
            if let Some(n) = &self.notify {
                n.status("linking the container to its bridge (kennel-net)");
            }
            let attached = crate::net::bridge::attach_when_asked(
                &self.chan,
                self.pid,
                self.pidfd.as_fd(),
                plan,
                helper,
            )?;
            (self.events)(&crate::Event::Decided(&format!(
                "network: eth0 {}/{} via {} on bridge {} (host end {})",
                attached.address,
                attached.prefix,
                attached.gateway,
                plan.bridge,
                attached.host_link
            )));
            self.bridge = Some(attached);
        }
        Ok(())
    }
}

/// What `create` makes before the clone, which the child inherits or the
/// parent keeps.
struct BeforeClone {
    reservation: Option<state::Reservation>,
    start_fifo: Option<OwnedFd>,
    sigfd: SignalFd,
    saved_terminal: Option<SavedTerminal>,
    notify: Option<Notify>,
    leaf: LeafGuard,
    map_writer: MapWriter,
    fork_joins: bool,
    single: sys::SingleThreaded,
    netns_maker: Option<NetnsMaker>,
    parent_end: Channel,
    child_end: Channel,
}

/// The record's reservation and start fifo, the blocked signals, the
/// cgroup leaf, the map writer, the namespaces joined, the network
/// namespace's maker and the sync channel, in the order they must come.
fn before_clone(cfg: &Config, opts: &mut Options<'_>) -> Result<BeforeClone, Error> {
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
    if let Some(n) = &notify {
        n.status("creating the container's cgroup");
    }
    let id = opts
        .id
        .clone()
        .unwrap_or_else(|| std::process::id().to_string());
    let leaf = LeafGuard(cgroup::place(cfg, opts, &id)?);
    if let (Some(res), Some(p)) = (&reservation, &leaf.0) {
        state::record_cgroups(res, &p.leaf, &p.v1)?;
    }
    // After the placement: a helper still in a delegated unit's cgroup
    // would keep kennel from enabling controllers there (no internal
    // processes).
    let map_writer = match cfg.clone_flags.contains(CloneFlags::CLONE_NEWUSER) {
        true => MapWriter::prepare(
            &opts.caller,
            &cfg.uid_map,
            &cfg.gid_map,
            opts,
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
    let netns_maker = match cfg.new_net() && !map_writer.uses_helper() {
        true => start_netns_maker(&single, opts),
        false => None,
    };
    let (parent_end, child_end) = Channel::pair().context("cannot create the sync socketpair")?;
    Ok(BeforeClone {
        reservation,
        start_fifo,
        sigfd,
        saved_terminal,
        notify,
        leaf,
        map_writer,
        fork_joins,
        single,
        netns_maker,
        parent_end,
        child_end,
    })
}

/// Clones the child: into its cgroup leaf where it has one (and again
/// outside it, to be moved in before it starts, if the kernel refuses),
/// through a copy of us when a namespace to join needs one (see `join`).
/// Says whether the child was born in the leaf.
fn clone_child(
    cfg: &Config,
    opts: &Options<'_>,
    flags: u64,
    fork_joins: bool,
    leaf: &LeafGuard,
    single: &sys::SingleThreaded,
) -> anyhow::Result<(Result<Forked, Errno>, bool)> {
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
    let forked = match clone(single, leaf_fd)? {
        Err(e) if born_in_leaf => {
            opts.decided(&format!(
                "clone3 into the cgroup failed ({}); moving the child before it starts",
                e.desc()
            ));
            born_in_leaf = false;
            clone(single, None)?
        }
        other => other,
    };
    Ok((forked, born_in_leaf))
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
