//! The child (container init) side: runs in the new namespaces from the
//! moment clone3 returns until it execs the command. Every failure goes back
//! to the parent as a `ChildFailure`; the child then exits.
//!
//! This file takes the child from its birth to a finished root
//! (namespaces, maps, network, hooks, then `rootfs`, with `copy_up` for
//! tmpcopyup); `start` takes it from there to the command (terminal,
//! limits, user, the confinement of `security`), through `exec` or, with
//! `--init`, the `reaper` that reaps and forwards signals. `options` is
//! what the runner tells the child; `tty` is the parent's side of its
//! terminal.
//!
//! May import: `sys`, `protocol`, `inroot`, `stop_at`, `spec`, `host`,
//! `security`, `net` and `plan`. Inside: this file over `start` over
//! `reaper` over `exec`; `options` below them all; none of them imports
//! this file.

pub(crate) mod copy_up;
pub(crate) mod exec;
pub(crate) mod options;
pub(crate) mod reaper;
pub(crate) mod rootfs;
pub(crate) mod start;
pub(crate) mod tty;

use std::convert::Infallible;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::prctl;
use nix::sys::signal::Signal;

use crate::child::options::ChildOptions;
use crate::child::start::{exit_if_parent_gone, run_hooks, start_process};
use crate::net::netns::{Maker, Netns};
use crate::plan::config::Config;
use crate::protocol::{
    io_errno, namespace_failure, Channel, ChildFailure, Stage, ToChild, ToParent,
};
use crate::security::apply::{drop_bounding, isolate_keys};
use crate::spec::process::ProcessPlan;
use crate::stop_at::{stop_if, StopPoint};
use crate::sys;

type Step<T = ()> = Result<T, ChildFailure>;

/// Entry point after clone for `run`, with the maker of our network
/// namespace when the runner started one. Never returns.
pub fn run(cfg: &Config, chan: Channel, opts: &ChildOptions, maker: Option<Maker>) -> ! {
    report_and_exit(&chan, setup_and_exec(cfg, &chan, opts, maker))
}

/// Entry point after the fork for `exec`, already in the container's
/// namespaces. Never returns.
pub fn run_process(p: &ProcessPlan, chan: Channel, opts: &ChildOptions) -> ! {
    sys::reset_signals_default(opts.ignored_signals);
    let keys_filter = needs_keys_filter(p, opts, false);
    let started = join_cgroupns(opts)
        .and_then(|()| isolate_keys(keys_filter))
        .and_then(|()| start_process(p, &chan, opts, false, None));
    report_and_exit(&chan, started)
}

fn join_cgroupns(opts: &ChildOptions) -> Step<()> {
    let Some(fd) = opts.join_cgroupns else {
        return Ok(());
    };
    sys::setns_raw(fd, CloneFlags::CLONE_NEWCGROUP).map_err(|e| {
        ChildFailure::new(Stage::Namespaces, e, None).with_detail("joining its cgroup namespace")
    })
}

fn report_and_exit(chan: &Channel, result: Step<Infallible>) -> ! {
    let failure = match result {
        Ok(never) => match never {},
        Err(f) => f,
    };
    // A runner that has gone (it created the container for another to
    // start) cannot say it: the container's stderr is where it is read.
    if chan
        .send_to_parent(&ToParent::Failed(failure.clone()), None)
        .is_err()
    {
        let line = format!("kennel: {failure}\n");
        let _ = nix::unistd::write(std::io::stderr(), line.as_bytes());
    }
    sys::exit_now(match failure.errno() {
        Errno::ENOENT if failure.stage == Stage::Exec => 127,
        Errno::EACCES | Errno::ENOEXEC | Errno::EPERM if failure.stage == Stage::Exec => 126,
        _ => 125,
    });
}

/// From birth until the maps are written and after: die with the runner,
/// reset the signals, isolate the keyring, make the namespaces (the
/// network one by the runner's maker or by us), set the hostname, then,
/// mapped, become the namespace's root and unshare the cgroup namespace.
fn make_namespaces(
    cfg: &Config,
    chan: &Channel,
    opts: &ChildOptions,
    maker: Option<Maker>,
) -> Step<Option<Netns>> {
    // Die with the runner. Set before waiting, so a parent that dies from
    // here on takes us with it; one that died before makes recv see EOF.
    prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| ChildFailure::new(Stage::WaitForMaps, e, None))?;
    exit_if_parent_gone(chan);
    stop_if(opts.stop_at, StopPoint::ChildBorn);
    // Here, while the parent writes the maps, rather than just before exec.
    sys::reset_signals_default(opts.ignored_signals);
    isolate_keys(needs_keys_filter(
        &cfg.process,
        opts,
        cfg.hooks.during_create(),
    ))?;
    // Unmapped, we still hold every capability in our new user namespace,
    // which is all that creating namespaces and naming the host take: done
    // here, it overlaps the parent's map writing. The network namespace is
    // made beside us by the runner's maker (see `netns`), or by us.
    let netns = match cfg.new_net() {
        true => Some(Netns::start(maker)?),
        false => None,
    };
    // One at a time, so a failure names the namespace (and its limit).
    for flag in opts.unshare.iter() {
        nix::sched::unshare(flag).map_err(|e| namespace_failure(e, flag))?;
    }
    if let Some(name) = &cfg.hostname {
        nix::unistd::sethostname(name)
            .map_err(|e| ChildFailure::new(Stage::Hostname, e, Some(name.clone())))?;
    }
    if !maps_written(chan, opts.helper_socket.as_ref()) {
        // The parent failed to write the maps (and says why) or died.
        sys::exit_now(125);
    }
    stop_if(opts.stop_at, StopPoint::ChildMapped);
    if opts.become_root {
        become_namespace_root()?;
    }
    if opts.new_cgroupns {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| namespace_failure(e, CloneFlags::CLONE_NEWCGROUP))?;
    }
    Ok(netns)
}

fn setup_and_exec(
    cfg: &Config,
    chan: &Channel,
    opts: &ChildOptions,
    maker: Option<Maker>,
) -> Step<Infallible> {
    let mut netns = make_namespaces(cfg, chan, opts, maker)?;
    // The network comes up before anything of the container's can run
    // (hooks included), so its first connect() finds a route; it is
    // asked for here, and the rootfs is built while it comes.
    let mut network_pending = false;
    if cfg.pasta.is_some() || cfg.bridge.is_some() {
        if let Some(n) = netns.as_mut() {
            n.join()?;
        }
        ask_for_network(chan)?;
        network_pending = true;
    }
    let mut network_up = || match std::mem::take(&mut network_pending) {
        true => wait_for_network(chan),
        false => Ok(()),
    };
    // sysfs shows the network namespace it is mounted in: join before. The
    // namespace may still be on its way, so first do what needs nothing
    // further: shrink the bounding set.
    let mut bounding_dropped = false;
    let mut join_netns = || {
        if !bounding_dropped {
            drop_bounding(&cfg.process)?;
            bounding_dropped = true;
        }
        netns.as_mut().map_or(Ok(()), Netns::join)
    };
    // Written through the runner's /proc, which shows the namespaces of
    // the process that opens a file: the network one must be joined first.
    // Not while pasta or kennel-net configures the namespace.
    if !cfg.sysctl.is_empty() {
        join_netns()?;
        network_up()?;
        write_sysctls(&cfg.sysctl)?;
    }
    // Hooks see the namespaces complete: the network one joined too.
    let hook_state = match cfg.hooks.during_create() {
        true => {
            join_netns()?;
            network_up()?;
            let state = hooks_ran(chan)?;
            run_hooks("createContainer", &cfg.hooks.create_container, &state)?;
            Some(state)
        }
        false => None,
    };
    crate::child::rootfs::setup(cfg, &mut join_netns)?;
    // A spec without a sysfs mount still gets its network namespace.
    if let Some(mut n) = netns {
        n.join()?;
    }
    network_up()?;
    stop_if(opts.stop_at, StopPoint::RootBuilt);

    let start_hooks = hook_state.map(|s| (cfg.hooks.start_container.clone(), s));
    start_process(&cfg.process, chan, opts, bounding_dropped, start_hooks)
}

/// Asks the runner to run the createRuntime hooks and waits until it has;
/// returns the state document for the container's own hooks.
fn hooks_ran(chan: &Channel) -> Step<String> {
    let err = |e: Errno| ChildFailure::new(Stage::Hooks, e, None);
    chan.send_to_parent(&ToParent::RunHooks, None)
        .map_err(err)?;
    match chan.recv_to_child() {
        Ok(Some(ToChild::HooksRan(state))) => Ok(state),
        // The runner says why (a hook failed) and kills us.
        Ok(_) => sys::exit_now(125),
        Err(e) => Err(err(e)),
    }
}

/// Asks the runner to start pasta for our network namespace, or to have
/// kennel-net link it to a bridge, and waits until what the rootfs takes
/// from it exists. The request carries a NETLINK_ROUTE socket made here:
/// kennel-net configures eth0 through it, and pasta's keeper watches
/// through it for the routes that say the interface is configured.
fn ask_for_network(chan: &Channel) -> Step {
    let err = |e: Errno| ChildFailure::new(Stage::UserNetwork, e, None);
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Netlink,
        nix::sys::socket::SockType::Raw,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        nix::sys::socket::SockProtocol::NetlinkRoute,
    )
    .map_err(err)?;
    chan.send_to_parent(
        &ToParent::StartNetwork,
        Some(std::os::fd::AsRawFd::as_raw_fd(&socket)),
    )
    .map_err(err)?;
    drop(socket);
    wait_for(chan, |m| matches!(m, ToChild::NetworkStarted))
}

/// Waits until the runner says the interface is configured.
fn wait_for_network(chan: &Channel) -> Step {
    wait_for(chan, |m| matches!(m, ToChild::NetworkUp))
}

fn wait_for(chan: &Channel, wanted: impl Fn(&ToChild) -> bool) -> Step {
    match chan.recv_to_child() {
        Ok(Some(m)) if wanted(&m) => Ok(()),
        // The runner says why (pasta failed) and kills us.
        Ok(_) => sys::exit_now(125),
        Err(e) => Err(ChildFailure::new(Stage::UserNetwork, e, None)),
    }
}

/// linux.sysctl, each already checked to belong to a namespace of the
/// container's own.
fn write_sysctls(sysctl: &[(String, String)]) -> Step {
    for (key, value) in sysctl {
        let err = |e: Errno| ChildFailure::new(Stage::Sysctl, e, Some(format!("{key}={value}")));
        // Their files answer only the host's root; the system calls answer
        // the owner of the uts namespace, which we are.
        match key.as_str() {
            "kernel.hostname" => nix::unistd::sethostname(value).map_err(err)?,
            "kernel.domainname" => sys::set_domainname(value).map_err(err)?,
            _ => {
                let path = format!("/proc/sys/{}", key.replace('.', "/"));
                std::fs::write(&path, value).map_err(|e| err(io_errno(&e)))?;
            }
        }
    }
    Ok(())
}

/// Whether the keys filter goes in early, on its own: unless the process's
/// filter includes it and nothing of the container's (a hook, or whoever
/// the start waits for) runs before that one is installed, just before
/// exec. One filter instead of two is the cheaper start.
fn needs_keys_filter(p: &ProcessPlan, opts: &ChildOptions, hooks_in_container: bool) -> bool {
    let includes = p.seccomp.as_ref().is_some_and(|f| f.includes_keys);
    !includes || hooks_in_container || opts.start_fifo.is_some()
}

/// Takes uid and gid 0 of our user namespace. Unmapped, we still hold our
/// capabilities there, but the kernel refuses to create a file for an
/// owner it cannot write down (EOVERFLOW); 0 keeps them, being root there.
fn become_namespace_root() -> Step {
    let root = |e: Errno, what: &str| {
        ChildFailure::new(Stage::User, e, Some(what.to_string()))
            .with_detail("becoming root of the user namespace, the runner's ids being unmapped")
    };
    nix::unistd::setresgid(0.into(), 0.into(), 0.into()).map_err(|e| root(e, "gid 0"))?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into()).map_err(|e| root(e, "uid 0"))
}

/// Waits until the maps are written: the parent says so, or kennel-idmap
/// does on `helper_socket`. False if the parent died, or the helper ended
/// without writing them (the parent reports why).
fn maps_written(chan: &Channel, helper_socket: Option<&UnixStream>) -> bool {
    let Some(helper) = helper_socket else {
        return matches!(chan.recv_to_child(), Ok(Some(ToChild::MapsWritten)));
    };
    loop {
        let mut fds = [
            PollFd::new(chan.as_fd(), PollFlags::POLLIN),
            PollFd::new(helper.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
            Ok(_) => {}
        }
        let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        if ready(1) {
            let mut byte = [0u8; 1];
            return matches!(nix::unistd::read(helper.as_fd(), &mut byte), Ok(1) if byte == *b"k");
        }
        if ready(0) {
            return matches!(chan.recv_to_child(), Ok(Some(ToChild::MapsWritten)));
        }
    }
}
