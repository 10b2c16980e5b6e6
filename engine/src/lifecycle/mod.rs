//! The OCI lifecycle's operations on a container that exists: start,
//! kill, pause, resume, delete, and what a front end reads (its state and
//! processes). Each works from the container's record, so it works from
//! any process, including after the one that created it is gone.
//!
//! Owns the container's life from the parent's side: `run` prepares the
//! plan, creates the container (`run::create`) and starts and waits for
//! it; `supervise` watches a process to its end; `exec` runs a command
//! in a running one; `state` writes and reads the records;
//! `cgroup` places it, `join` enters namespaces named by path, `sdnotify`
//! speaks systemd's notify protocol.
//!
//! May import every other module: it is the top floor.

pub(crate) mod cgroup;
pub mod exec;
pub(crate) mod join;
pub(crate) mod run;
pub mod sdnotify;
pub mod state;
pub(crate) mod supervise;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use crate::{sys, Event};
use state::{State, Status, Store, START_FIFO};

/// How long `delete` waits for a killed container to be gone.
const DEATH_TIMEOUT: Duration = Duration::from_secs(10);

/// The record of `id` with its status as it is now, and a pidfd of its
/// process while it lives.
pub fn state(store: &Store, id: &str) -> Result<(State, Option<OwnedFd>)> {
    state::lookup(store, id)?.with_context(|| format!("container {id:?} does not exist"))
}

/// Runs hooks whose failure the spec says to report and go on from.
fn run_warned(st: &State, point: &str, events: &dyn Fn(&Event)) {
    let hooks = match point {
        "poststart" => &st.kennel.hooks.poststart,
        _ => &st.kennel.hooks.poststop,
    };
    if hooks.is_empty() {
        return;
    }
    let state = crate::host::hooks::state_json(
        &st.id,
        &st.status.to_string(),
        st.pid,
        &st.bundle,
        &st.annotations,
    );
    if let Err(e) = crate::host::hooks::run(point, hooks, &state) {
        events(&Event::Warning(&format!("{e:#}")));
    }
}

/// Lets a created container's process exec its command, then runs the
/// poststart hooks.
pub fn start(store: &Store, id: &str, events: &dyn Fn(&Event)) -> Result<()> {
    let (mut st, _) = state(store, id)?;
    if st.status != Status::Created {
        bail!(
            "cannot start container {id:?}: it is {}, and only a created container can be started",
            st.status
        );
    }
    let dir = store.dir(id);
    let fifo = dir.join(START_FIFO);
    // Without blocking: the container's process holds the fifo open while
    // it waits, so there is a reader unless it has died (ENXIO).
    let fd = nix::fcntl::open(
        &fifo,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENXIO => anyhow::anyhow!("cannot start container {id:?}: its process has exited"),
        e => anyhow::anyhow!("cannot open {}: {}", fifo.display(), e.desc()),
    })?;
    nix::unistd::write(&fd, b"0").with_context(|| format!("cannot start container {id:?}"))?;
    let _ = std::fs::remove_file(&fifo);
    st.status = Status::Running;
    state::write_record(&dir, &st)?;
    run_warned(&st, "poststart", events);
    Ok(())
}

/// A signal as runc takes it: a number, or a name with or without "SIG",
/// in any case.
pub fn parse_signal(raw: &str) -> anyhow::Result<i32> {
    if let Ok(n) = raw.parse::<i32>() {
        // Beyond the kernel's range kill(2) would only say EINVAL; saying
        // which argument was wrong is more useful.
        if (0..=libc::SIGRTMAX()).contains(&n) {
            return Ok(n);
        }
        anyhow::bail!("unknown signal {raw:?}");
    }
    let upper = raw.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    <nix::sys::signal::Signal as std::str::FromStr>::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| {
            anyhow::anyhow!("unknown signal {raw:?} (try TERM, KILL, HUP, INT or a number)")
        })
}

/// Sends `signal` to the container's process, or with `all` to every
/// process of the container.
pub fn kill(store: &Store, id: &str, signal: i32, all: bool) -> Result<()> {
    let (st, pidfd) = state(store, id)?;
    let Some(pidfd) = pidfd else {
        bail!("cannot signal container {id:?}: it is {}", st.status);
    };
    if all {
        signal_each(&processes_of(&st, &pidfd)?, signal);
        return Ok(());
    }
    sys::pidfd_send_signal(pidfd.as_fd(), signal)
        .with_context(|| format!("cannot send signal {signal} to container {id:?}"))
}

/// Removes the container: its processes (a created or, with `force`, a
/// running one), its cgroup and its record, then runs the poststop hooks.
/// A missing container is an error unless `force`.
pub fn delete(store: &Store, id: &str, force: bool, events: &dyn Fn(&Event)) -> Result<()> {
    state::remove_stale_claims(store, id);
    let Some((mut st, pidfd)) = state::lookup(store, id)? else {
        return delete_unreadable(store, id, force);
    };
    if let Some(pidfd) = pidfd {
        if !force && st.status != Status::Created {
            bail!(
                "cannot delete container {id:?}: it is {}; stop it first, or delete it with --force",
                st.status
            );
        }
        kill_and_wait(&st, &pidfd)?;
    }
    if let Some(leaf) = &st.kennel.cgroup {
        remove_cgroup(leaf)?;
    }
    cgroup_delegate::v1::remove(&st.kennel.cgroup_v1)
        .with_context(|| format!("cannot remove the cgroups of container {id:?}"))?;
    let dir = store.dir(id);
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    st.status = Status::Stopped;
    run_warned(&st, "poststop", events);
    Ok(())
}

/// `delete` of a container whose record cannot be read: a half-made one
/// (its creator killed before the first record) or a damaged one. With
/// `force`, its first process (from the `init` file) is killed and the
/// directory removed; a container still being created is left alone.
fn delete_unreadable(store: &Store, id: &str, force: bool) -> Result<()> {
    let dir = store.dir(id);
    if !dir.exists() {
        if force {
            return Ok(());
        }
        bail!("container {id:?} does not exist");
    }
    if !force {
        bail!(
            "the record of container {id:?} ({}) cannot be read; delete it with --force",
            dir.join("state.json").display()
        );
    }
    if state::creator_alive(&dir) && !dir.join("state.json").exists() {
        bail!("container {id:?} is still being created; try again once that is done");
    }
    if let Some(pidfd) = state::recorded_init(&dir) {
        kill_first_and_wait(id, &pidfd)?;
    }
    if let Some((leaf, v1)) = state::recorded_cgroups(&dir) {
        remove_cgroup(&leaf)?;
        cgroup_delegate::v1::remove(&v1)
            .with_context(|| format!("cannot remove the cgroups of container {id:?}"))?;
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// Kills every process of the container (a pid namespace of its own goes
/// with its first process; without one, each process found by its mount
/// namespace while the first still holds it; the cgroup, when it has one,
/// catches any other) and waits until its first process is gone.
fn kill_and_wait(st: &State, pidfd: &OwnedFd) -> Result<()> {
    if let Some(leaf) = &st.kennel.cgroup {
        let _ = std::fs::write(leaf.join("cgroup.kill"), "1");
        // Frozen processes die of SIGKILL only once thawed on older kernels.
        let _ = std::fs::write(leaf.join("cgroup.freeze"), "0");
    }
    // A first process that died meanwhile holds nothing: then nothing can
    // be told apart safely, and its SIGKILL below is all there is to do.
    if !st.kennel.own_pid_namespace {
        if let Ok(pids) = processes_of(st, pidfd) {
            signal_each(&pids, libc::SIGKILL);
        }
    }
    kill_first_and_wait(&st.id, pidfd)
}

/// Signals each of `pids` through a pidfd: any signal number (real-time
/// ones too), and never a process that took a listed pid since.
fn signal_each(pids: &[i32], signal: i32) {
    for &pid in pids {
        if let Ok(fd) = sys::pidfd_open(nix::unistd::Pid::from_raw(pid)) {
            let _ = sys::pidfd_send_signal(fd.as_fd(), signal);
        }
    }
}

/// SIGKILLs the container's first process (`pidfd`), and with it its pid
/// namespace, and waits until it is gone.
fn kill_first_and_wait(id: &str, pidfd: &OwnedFd) -> Result<()> {
    let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
    let deadline = Instant::now() + DEATH_TIMEOUT;
    loop {
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => bail!("cannot wait for container {id:?}: {}", e.desc()),
        }
        if Instant::now() > deadline {
            bail!(
                "container {id:?} is still alive {}s after SIGKILL; its record is kept, delete it again",
                DEATH_TIMEOUT.as_secs()
            );
        }
    }
}

/// Removes a container's cgroup leaf once its processes are gone.
fn remove_cgroup(leaf: &Path) -> Result<()> {
    let deadline = Instant::now() + DEATH_TIMEOUT;
    loop {
        match std::fs::remove_dir(leaf) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                let _ = std::fs::write(leaf.join("cgroup.kill"), "1");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot remove the cgroup {}", leaf.display()))
            }
        }
    }
}

/// Freezes (`true`) or thaws the container's cgroup.
pub fn freeze(store: &Store, id: &str, frozen: bool) -> Result<()> {
    let (st, pidfd) = state(store, id)?;
    if pidfd.is_none() {
        bail!("container {id:?} is not running");
    }
    let Some(leaf) = &st.kennel.cgroup else {
        bail!("container {id:?} has no cgroup of its own, so it cannot be paused or resumed; run it where kennel gets a cgroup v2 subtree (see `kennel doctor`)");
    };
    let file = leaf.join("cgroup.freeze");
    std::fs::write(&file, if frozen { "1" } else { "0" })
        .with_context(|| format!("cannot write {}", file.display()))
}

/// The host pids of the container's processes.
pub fn processes(store: &Store, id: &str) -> Result<Vec<i32>> {
    let (st, pidfd) = state(store, id)?;
    match pidfd {
        Some(pidfd) => processes_of(&st, &pidfd),
        None => Ok(vec![]),
    }
}

/// Every process of the container, found by comparing a namespace of
/// each process with its first process's (so it works with and without a
/// cgroup of its own): its pid namespace when that is the container's
/// own; otherwise its mount namespace, which kennel always makes for the
/// container and which the first process, alive, holds (so no other can
/// have taken its number). `first` is the first process's pidfd.
fn processes_of(st: &State, first: &OwnedFd) -> Result<Vec<i32>> {
    let kind = match st.kennel.own_pid_namespace {
        true => "pid",
        false => "mnt",
    };
    let ns =
        |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/{kind}")).map(|m| (m.dev(), m.ino()));
    let theirs = ns(&st.pid.to_string())
        .with_context(|| format!("cannot read the {kind} namespace of pid {}", st.pid))?;
    // Read by pid: only if the first process still lives was it its own,
    // not a namespace of a process that took the pid since.
    sys::pidfd_send_signal(first.as_fd(), 0).with_context(|| {
        format!(
            "container {:?} stopped while its processes were listed",
            st.id
        )
    })?;
    if ns("self").is_ok_and(|ours| ours == theirs) {
        bail!(
            "container {:?} shares our {kind} namespace, so its processes cannot be told from ours",
            st.id
        );
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc")
        .context("cannot read /proc")?
        .flatten()
    {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if ns(&pid.to_string()).is_ok_and(|n| n == theirs) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// `update`: new limits for a running container's cgroup. A resource
/// kennel does not implement is refused, named, as in config.json.
pub fn update(
    store: &Store,
    id: &str,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<()> {
    let (st, pidfd) = state(store, id)?;
    if pidfd.is_none() {
        bail!("container {id:?} is not running");
    }
    let mut linux = oci_spec::runtime::Linux::default();
    linux.set_resources(Some(resources.clone()));
    let mut spec = oci_spec::runtime::Spec::default();
    spec.set_linux(Some(linux));
    let unsupported: Vec<String> = crate::spec::spec_fields::unsupported(&spec)
        .into_iter()
        .filter(|f| f.starts_with("linux.resources"))
        .collect();
    if !unsupported.is_empty() {
        bail!(
            "unsupported in the update: {}; kennel changes nothing rather than part of it",
            unsupported.join(", ")
        );
    }
    let Some(leaf) = &st.kennel.cgroup else {
        bail!("container {id:?} has no cgroup of its own, so its limits cannot be changed");
    };
    let limits = crate::plan::config::limits(Some(resources))?;
    match st.kennel.cgroup_v1.is_empty() {
        true => limits.apply(leaf),
        false => cgroup_delegate::v1::apply(&limits, &st.kennel.cgroup_v1),
    }
    .with_context(|| format!("cannot update the limits of container {id:?}"))
}
