//! The lifecycle operations, done by kennel's engine.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use kennel_engine::host::ids::Caller;
use kennel_engine::lifecycle::exec::ExecRequest;
use kennel_engine::lifecycle::state::{self, Status, Store};
use kennel_engine::{lifecycle, CgroupManager, Detached, Event, Options};
use oci_spec::runtime::{Process, Spec};
use serde_json::json;

use crate::cli::{
    CreateArgs, DeleteArgs, EventsArgs, ExecArgs, IdArgs, KillArgs, ListArgs, OutputFormat, PsArgs,
    RunArgs, UpdateArgs,
};
use crate::features::Implemented;
use crate::lifecycle::{Context, Lifecycle};
use crate::log::Logger;

/// kennel's engine behind runc's commands.
pub struct Engine;

fn store(ctx: &Context) -> Result<Store> {
    Store::new(Some(&ctx.global.root_dir()?))
}

/// The engine's events in the log: what it decided at debug level (shown
/// with --debug), warnings as warnings.
fn events<'a>(log: &'a Logger) -> Box<dyn Fn(&Event) + 'a> {
    Box::new(move |e| match e {
        Event::Decided(text) => log.debug(text),
        Event::Warning(text) => log.warn(text),
    })
}

/// An engine error as one line: the container's own failures read as
/// kennel's (stage, path, errno).
fn engine_error(e: kennel_engine::Error) -> anyhow::Error {
    match e {
        kennel_engine::Error::Setup(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}

/// A pid file to write, its directory opened now: `exec` writes it from
/// inside the container's mount namespace, where the path means nothing.
struct PidFile {
    dir: std::os::fd::OwnedFd,
    name: String,
    shown: PathBuf,
}

impl PidFile {
    fn open(path: &Path) -> Result<PidFile> {
        let path = std::path::absolute(path)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("bad pid file name {}", path.display()))?
            .to_string();
        let parent = path.parent().unwrap_or(Path::new("/"));
        let dir = nix::fcntl::open(
            parent,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("cannot open the pid file's directory {}", parent.display()))?;
        Ok(PidFile {
            dir,
            name,
            shown: path,
        })
    }

    /// Writes `pid` with no newline, atomically (a reader never sees a
    /// partial file), as runc does.
    fn write(&self, pid: i32) -> Result<()> {
        use nix::fcntl::OFlag;
        let tmp = format!(".{}.tmp", self.name);
        let err = |e: nix::errno::Errno| {
            anyhow::anyhow!(
                "cannot write the pid file {}: {}",
                self.shown.display(),
                e.desc()
            )
        };
        let fd = nix::fcntl::openat(
            &self.dir,
            tmp.as_str(),
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_TRUNC
                | OFlag::O_CLOEXEC
                | OFlag::O_NOFOLLOW,
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .map_err(err)?;
        nix::unistd::write(&fd, pid.to_string().as_bytes()).map_err(err)?;
        nix::fcntl::renameat(&self.dir, tmp.as_str(), &self.dir, self.name.as_str()).map_err(err)
    }
}

/// A socket the caller named (`--console-socket`, `--pidfd-socket`),
/// connected before anything else happens: `exec` looks for the path from
/// inside the container's mount namespace, where it means nothing.
fn connect(path: Option<&Path>, what: &str) -> Result<Option<(UnixStream, PathBuf)>> {
    path.map(|p| {
        UnixStream::connect(p)
            .map(|s| (s, p.to_path_buf()))
            .with_context(|| format!("cannot connect to the {what} socket {}", p.display()))
    })
    .transpose()
}

/// What the caller asked to be handed once the process exists: its
/// terminal (`--console-socket`), a pidfd (`--pidfd-socket`) and its pid
/// (`--pid-file`). All are opened, and the terminal request checked,
/// before the process is made, so a mistake there makes nothing.
struct Handover {
    console: Option<(UnixStream, PathBuf)>,
    pidfd: Option<(UnixStream, PathBuf)>,
    pid_file: Option<PidFile>,
}

impl Handover {
    /// `terminal`: whether the process will have one; `fix` says how to
    /// ask for one.
    fn prepare(
        terminal: bool,
        fix: &str,
        console: Option<&Path>,
        pidfd: Option<&Path>,
        pid_file: Option<&Path>,
    ) -> Result<Handover> {
        match (terminal, console.is_some()) {
            (true, false) => {
                bail!("the process has a terminal but no --console-socket was given to send it to")
            }
            (false, true) => {
                bail!("--console-socket was given but the process has no terminal ({fix})")
            }
            _ => {}
        }
        Ok(Handover {
            console: connect(console, "console")?,
            pidfd: connect(pidfd, "pidfd")?,
            pid_file: pid_file.map(PidFile::open).transpose()?,
        })
    }

    fn give(&self, detached: &Detached) -> Result<()> {
        send_console(self.console.as_ref(), detached)?;
        send_pidfd(self.pidfd.as_ref(), detached)?;
        match &self.pid_file {
            Some(p) => p.write(detached.pid),
            None => Ok(()),
        }
    }
}

/// Sends a pidfd of the process to `--pidfd-socket`, as runc does.
fn send_pidfd(socket: Option<&(UnixStream, PathBuf)>, detached: &Detached) -> Result<()> {
    let Some((sock, path)) = socket else {
        return Ok(());
    };
    let err = |e: nix::errno::Errno| {
        anyhow::anyhow!(
            "cannot send the process's pidfd to {}: {}",
            path.display(),
            e.desc()
        )
    };
    let pidfd = kennel_sys::pidfd_open(detached.pid).map_err(err)?;
    kennel_sys::send_fd(sock.as_fd(), pidfd.as_fd()).map_err(err)
}

/// Sends the pty master to the console socket, the way conmon and
/// containerd's shim receive it (SCM_RIGHTS with one byte of data).
fn send_console(socket: Option<&(UnixStream, PathBuf)>, detached: &Detached) -> Result<()> {
    match (socket, &detached.console) {
        (Some((sock, path)), Some(master)) => kennel_sys::send_fd(sock.as_fd(), master.as_fd())
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot send the terminal to the console socket {}: {}",
                    path.display(),
                    e.desc()
                )
            }),
        // `Handover::prepare` checked that they go together.
        (None, Some(_)) | (Some(_), None) => {
            bail!("internal error: the process's terminal is not what was checked")
        }
        (None, None) => Ok(()),
    }
}

/// Where the container's cgroup goes: linux.cgroupsPath as runc reads it
/// (with --systemd-cgroup, `slice:prefix:name`).
fn cgroup_placement(spec: &Spec, systemd: bool) -> (CgroupManager, Option<PathBuf>) {
    let path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    if systemd {
        let slice = path
            .as_ref()
            .and_then(|p| p.to_str())
            .and_then(|p| p.split(':').next())
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        return (CgroupManager::Systemd, slice);
    }
    let parent = path
        .as_ref()
        .and_then(|p| p.parent())
        .filter(|p| p.as_os_str() != "/" && !p.as_os_str().is_empty())
        .map(Path::to_path_buf);
    (CgroupManager::Auto, parent)
}

impl Engine {
    fn create_detached(&self, ctx: &Context, args: &CreateArgs) -> Result<Detached> {
        let bundle =
            std::path::absolute(args.bundle.clone().unwrap_or_else(|| PathBuf::from(".")))?;
        let loaded = kennel_engine::spec::bundle::load(&bundle)?;
        for warning in &loaded.warnings {
            ctx.log.warn(warning);
        }
        let spec = loaded.spec;
        crate::exe_guard::guard_create(&spec)?;
        if args.no_pivot {
            ctx.log
                .debug("--no-pivot: kennel always enters the root with pivot_root");
        }
        let (cgroup_manager, cgroup_parent) = cgroup_placement(&spec, ctx.global.systemd_cgroup);
        let opts = Options {
            id: Some(args.id.clone()),
            preserve_fds: args.preserve_fds,
            // runc passes the sockets systemd gave it, before --preserve-fds.
            activation: kennel_engine::host::socket_activation::inherited()?,
            cgroup_manager,
            cgroup_parent,
            events: events(ctx.log),
            state_root: Some(ctx.global.root_dir()?),
            bundle: Some(bundle),
            ..Options::new(Caller::current())
        };
        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        let handover = Handover::prepare(
            terminal,
            "set process.terminal",
            args.console_socket.as_deref(),
            args.pidfd_socket.as_deref(),
            args.pid_file.as_deref(),
        )?;
        let detached = kennel_engine::prepare(spec)
            .and_then(|plan| plan.create(opts))
            .and_then(|c| c.detach())
            .map_err(engine_error)?;
        if let Err(e) = handover.give(&detached) {
            // create fails, so its caller forgets the ID: nothing may outlive it.
            if let Err(d) =
                store(ctx).and_then(|s| lifecycle::delete(&s, &args.id, true, &events(ctx.log)))
            {
                ctx.log.warn(&format!(
                    "cannot remove container {:?} after the failed create: {d:#}",
                    args.id
                ));
            }
            return Err(e);
        }
        Ok(detached)
    }
}

/// The state document runc prints.
fn state_json(st: &state::State) -> serde_json::Value {
    let pid = if st.status == Status::Stopped {
        0
    } else {
        st.pid
    };
    json!({
        "ociVersion": st.oci_version,
        "id": st.id,
        "pid": pid,
        "status": st.status.to_string(),
        "bundle": st.bundle,
        "rootfs": st.kennel.rootfs,
        "created": crate::log::rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(st.kennel.created)
        ),
        "annotations": st.annotations,
    })
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// The process `exec` runs: `--process FILE`'s, or the container's own
/// (`own`) with the flags' terminal, capabilities, no_new_privs and
/// groups.
fn exec_process(ctx: &Context, args: &ExecArgs, own: &Process) -> Result<Option<Process>> {
    Ok(match &args.process {
        Some(file) => {
            let text =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let (p, warnings) = kennel_engine::spec::bundle::process_from_json(&text, file)?;
            for warning in &warnings {
                ctx.log.warn(warning);
            }
            Some(p)
        }
        None => {
            let mut p = own.clone();
            // As runc: --tty alone decides, whatever the container's own process has.
            p.set_terminal(Some(args.tty));
            if !args.cap.is_empty() {
                add_capabilities(&mut p, &args.cap)?;
            }
            if let Some(nnp) = args.no_new_privs {
                p.set_no_new_privileges(Some(nnp));
            }
            if !args.additional_gids.is_empty() {
                let mut user = p.user().clone();
                user.set_additional_gids(Some(args.additional_gids.clone()));
                p.set_user(user);
            }
            Some(p)
        }
    })
}

impl Lifecycle for Engine {
    fn create(&self, ctx: &Context, args: &CreateArgs) -> Result<i32> {
        self.create_detached(ctx, args).map(|_| 0)
    }

    fn run(&self, ctx: &Context, args: &RunArgs) -> Result<i32> {
        let created = self.create_detached(ctx, &args.create)?;
        let store = store(ctx)?;
        lifecycle::start(&store, &args.create.id, &events(ctx.log))?;
        if args.detach {
            return Ok(0);
        }
        // Our child: wait for it, then remove it unless asked to keep it.
        let code = match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(created.pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => c,
            Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => 128 + s as i32,
            _ => 255,
        };
        if !args.keep {
            lifecycle::delete(&store, &args.create.id, true, &events(ctx.log))?;
        }
        Ok(code)
    }

    fn start(&self, ctx: &Context, args: &IdArgs) -> Result<i32> {
        lifecycle::start(&store(ctx)?, &args.id, &events(ctx.log))?;
        Ok(0)
    }

    fn state(&self, ctx: &Context, args: &IdArgs) -> Result<i32> {
        let (st, _) = lifecycle::state(&store(ctx)?, &args.id)?;
        print_json(&state_json(&st))?;
        Ok(0)
    }

    fn kill(&self, ctx: &Context, args: &KillArgs) -> Result<i32> {
        lifecycle::kill(&store(ctx)?, args.id(), args.signal()?, args.all)?;
        Ok(0)
    }

    fn delete(&self, ctx: &Context, args: &DeleteArgs) -> Result<i32> {
        lifecycle::delete(&store(ctx)?, &args.id, args.force, &events(ctx.log))?;
        Ok(0)
    }

    fn exec(&self, ctx: &Context, args: &ExecArgs) -> Result<i32> {
        // Never run a process without a confinement it asked for.
        if args.apparmor.is_some() || args.process_label.is_some() {
            bail!("kennel applies no AppArmor profile or SELinux label: remove --apparmor and --process-label");
        }
        if !args.cgroup.is_empty() {
            bail!("--cgroup is not supported: the command runs in the container's own cgroup");
        }
        let store = store(ctx)?;
        let id = args.id().to_string();
        if args.process.is_none() && args.command().is_empty() {
            bail!("exec args cannot be empty");
        }
        let (st, _) = lifecycle::state(&store, &id)?;
        let process = exec_process(ctx, args, &st.kennel.process)?;
        crate::exe_guard::guard_exec(st.pid, st.status == Status::Created, process.as_ref())?;
        let req = ExecRequest {
            id,
            command: args.command().to_vec(),
            tty: args.tty,
            env: args.env.clone(),
            workdir: args.cwd.clone(),
            user: args.user.clone(),
            process,
            preserve_fds: args.preserve_fds,
        };
        let opts = Options {
            events: events(ctx.log),
            state_root: Some(ctx.global.root_dir()?),
            ..Options::new(Caller::current())
        };
        if args.detach {
            let terminal = req.tty
                || req
                    .process
                    .as_ref()
                    .and_then(|p| p.terminal())
                    .unwrap_or(false);
            let handover = Handover::prepare(
                terminal,
                "use --tty",
                args.console_socket.as_deref(),
                args.pidfd_socket.as_deref(),
                args.pid_file.as_deref(),
            )?;
            let detached =
                kennel_engine::lifecycle::exec::exec_detached(&req, &opts).map_err(engine_error)?;
            if let Err(e) = handover.give(&detached) {
                // exec fails, so its caller never learns of the process: it
                // must not outlive us. It is our child, not yet waited for,
                // so the pid is still its own; reaped here, or it would stay
                // a zombie under the container's init.
                let pid = nix::unistd::Pid::from_raw(detached.pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                return Err(e);
            }
            return Ok(0);
        }
        if args.console_socket.is_some() {
            bail!("--console-socket needs --detach (without it the terminal is this one)");
        }
        let exit = kennel_engine::lifecycle::exec::exec(&req, &opts).map_err(engine_error)?;
        Ok(exit.code)
    }

    fn list(&self, ctx: &Context, args: &ListArgs) -> Result<i32> {
        let all = state::list(&store(ctx)?)?;
        if args.quiet {
            for st in &all {
                println!("{}", st.id);
            }
            return Ok(0);
        }
        match args.format {
            OutputFormat::Json => print_json(&serde_json::Value::Array(
                all.iter().map(state_json).collect(),
            ))?,
            OutputFormat::Table => {
                println!(
                    "{:<24} {:>8} {:<10} {:<40} CREATED",
                    "ID", "PID", "STATUS", "BUNDLE"
                );
                for st in &all {
                    let v = state_json(st);
                    println!(
                        "{:<24} {:>8} {:<10} {:<40} {}",
                        st.id,
                        v["pid"],
                        st.status,
                        st.bundle.display(),
                        v["created"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Ok(0)
    }

    fn ps(&self, ctx: &Context, args: &PsArgs) -> Result<i32> {
        let pids = lifecycle::processes(&store(ctx)?, args.id())?;
        if args.format == OutputFormat::Json {
            print_json(&json!(pids))?;
            return Ok(0);
        }
        let ps_args: Vec<String> = match args.ps_args() {
            [] => vec!["-ef".into()],
            given => given.to_vec(),
        };
        let out = std::process::Command::new("ps")
            .args(&ps_args)
            .output()
            .context("cannot run ps")?;
        if !out.status.success() {
            bail!(
                "ps {}: {}",
                ps_args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let Some(header) = lines.next() else {
            return Ok(0);
        };
        let pid_col = header
            .split_whitespace()
            .position(|h| h == "PID")
            .context("ps printed no PID column")?;
        println!("{header}");
        for line in lines {
            let pid = line
                .split_whitespace()
                .nth(pid_col)
                .and_then(|p| p.parse::<i32>().ok());
            if pid.is_some_and(|p| pids.contains(&p)) {
                println!("{line}");
            }
        }
        Ok(0)
    }

    fn pause(&self, ctx: &Context, args: &IdArgs) -> Result<i32> {
        lifecycle::freeze(&store(ctx)?, &args.id, true)?;
        Ok(0)
    }

    fn resume(&self, ctx: &Context, args: &IdArgs) -> Result<i32> {
        lifecycle::freeze(&store(ctx)?, &args.id, false)?;
        Ok(0)
    }

    fn update(&self, ctx: &Context, args: &UpdateArgs) -> Result<i32> {
        let resources = args.requested_resources(std::io::stdin())?;
        lifecycle::update(&store(ctx)?, &args.id, &resources)?;
        Ok(0)
    }

    fn events(&self, _: &Context, _: &EventsArgs) -> Result<i32> {
        bail!("events is not supported by kennel-oci yet (kennel stats shows a container's resource use)")
    }

    fn implemented(&self) -> Implemented {
        Implemented {
            ..Implemented::default()
        }
    }
}

/// `exec --cap`: adds each capability to every set but the ambient one, as
/// runc does.
fn add_capabilities(p: &mut Process, caps: &[String]) -> Result<()> {
    use oci_spec::runtime::Capability;
    let mut all = p.capabilities().clone().unwrap_or_default();
    for name in caps {
        // runc takes the config.json spelling, CAP_SYS_PTRACE; the bare
        // name is accepted too.
        let upper = name.to_ascii_uppercase();
        let cap: Capability = upper
            .strip_prefix("CAP_")
            .unwrap_or(&upper)
            .parse()
            .map_err(|_| anyhow::anyhow!("unknown capability {name:?}"))?;
        for set in [
            all.bounding().clone(),
            all.effective().clone(),
            all.permitted().clone(),
            all.inheritable().clone(),
        ]
        .iter()
        .enumerate()
        {
            let mut s = set.1.clone().unwrap_or_default();
            s.insert(cap);
            match set.0 {
                0 => all.set_bounding(Some(s)),
                1 => all.set_effective(Some(s)),
                2 => all.set_permitted(Some(s)),
                _ => all.set_inheritable(Some(s)),
            };
        }
    }
    p.set_capabilities(Some(all));
    Ok(())
}
