//! pasta's keeper: the process that starts pasta in the container's
//! namespaces, says on its status pipe when pasta is ready, and kills
//! pasta when the container's process ends (see the parent module).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::prepared::Prepared;
use crate::net::default_routes::{Families, Watch};
use crate::sys;

/// How long pasta may take to configure the namespace.
const READY_TIMEOUT_MS: i32 = 10_000;

/// The keeper's whole life: start pasta, report on `status`, and kill
/// pasta when the container ends.
pub(super) fn keep(
    prepared: &Prepared,
    args: &[String],
    container: BorrowedFd<'_>,
    netlink: Option<OwnedFd>,
    status: OwnedFd,
) -> ! {
    let (program, dir) = (prepared.program.as_path(), prepared.dir.as_path());
    let mut kept = vec![container.as_raw_fd(), status.as_raw_fd()];
    kept.extend(netlink.as_ref().map(AsRawFd::as_raw_fd));
    leave_the_runner(&kept);
    let report = |text: &str| {
        let _ = nix::unistd::write(&status, text.as_bytes());
    };
    if let Err(e) = make_dir(prepared) {
        // Not ours to remove: it may be what was in the way.
        report(&format!("{e:#}"));
        sys::exit_now(1);
    }
    // Before "prepared": the child looks for the mount point after that.
    let point = prepared
        .resolv_point_in
        .as_deref()
        .and_then(crate::net::resolv_point::claim);
    report("prepared\n");
    // With published ports, readiness is the pid file (see `pasta`).
    let watch = match (prepared.publishes, netlink) {
        (false, Some(socket)) => {
            Watch::subscribe(socket, Families::with_host_default_route()).unwrap_or(None)
        }
        _ => None,
    };
    // Closing an inotify instance waits for the kernel's SRCU grace
    // period, which takes milliseconds while pasta keeps a CPU busy: the
    // keeper holds it until it exits.
    let started = Inotify::init(InitFlags::IN_CLOEXEC)
        .context("inotify_init")
        .and_then(|inotify| {
            Ok((
                run_until_ready(program, args, dir, &inotify, watch)?,
                inotify,
            ))
        });
    let (pasta, _inotify) = match started {
        Ok(p) => {
            report("ok\n");
            p
        }
        Err(e) => {
            report(&format!("{e:#}"));
            if let Some(point) = point {
                point.release();
            }
            let _ = std::fs::remove_dir_all(dir);
            sys::exit_now(1);
        }
    };
    outlive_the_container(prepared, container, pasta, point, status)
}

/// The keeper's directory, and the container's resolv.conf in it.
fn make_dir(prepared: &Prepared) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&prepared.dir)
        .with_context(|| format!("cannot create {}", prepared.dir.display()))?;
    if let Some(text) = &prepared.resolv_conf {
        let path = prepared.dir.join("resolv.conf");
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// passt's AVX2 build beside `program`, when it is passt (pasta is its
/// other name) and this CPU has AVX2: passt's own start-up would exec it
/// the same way (named by argv[0], which makes it pasta), so running it
/// directly saves that second exec and dynamic link.
fn avx2_build(program: &Path) -> Option<PathBuf> {
    #[cfg(target_arch = "x86_64")]
    {
        let real = std::fs::canonicalize(program).ok()?;
        let name = real.file_name()?.to_str()?;
        if !matches!(name, "passt" | "pasta") || !std::arch::is_x86_feature_detected!("avx2") {
            return None;
        }
        let avx2 = real.with_file_name(format!("{name}.avx2"));
        nix::unistd::access(&avx2, nix::unistd::AccessFlags::X_OK)
            .is_ok()
            .then_some(avx2)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = program;
        None
    }
}

/// Starts pasta and waits until `watch` sees the namespace configured, or
/// pasta has written its pid file, which it does later still; its log if
/// it exits first.
fn run_until_ready(
    program: &Path,
    args: &[String],
    dir: &Path,
    inotify: &Inotify,
    mut watch: Option<Watch>,
) -> Result<std::process::Child> {
    inotify
        .add_watch(dir, AddWatchFlags::IN_CLOSE_WRITE)
        .context("watching pasta's directory")?;
    let stderr = std::fs::File::create(dir.join("stderr")).context("pasta's stderr")?;
    let (binary, arg0) = match avx2_build(program) {
        Some(b) => (b, "pasta"),
        None => (program.to_path_buf(), program.to_str().unwrap_or("pasta")),
    };
    let mut child = Command::new(&binary)
        .arg0(arg0)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let child_fd = sys::pidfd_open(Pid::from_raw(child.id() as i32)).context("pidfd_open")?;
    let pid_file = dir.join("pid");
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(READY_TIMEOUT_MS as u64);
    loop {
        // Also covers a close that came before the watch could see it.
        if std::fs::metadata(&pid_file).is_ok_and(|m| m.len() > 0) {
            return Ok(child);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("pasta did not configure the namespace within {READY_TIMEOUT_MS} ms");
        }
        let mut fds = vec![
            PollFd::new(inotify.as_fd(), PollFlags::POLLIN),
            PollFd::new(child_fd.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(w) = &watch {
            fds.push(PollFd::new(w.fd(), PollFlags::POLLIN));
        }
        let timeout = PollTimeout::try_from(left.as_millis() as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) | Ok(0) => continue,
            Err(e) => bail!("waiting for pasta: {e}"),
            Ok(_) => {}
        }
        let fired = |i: usize| {
            fds.get(i)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        let (pid_file_closed, exited, announced) = (fired(0), fired(1), fired(2));
        drop(fds);
        if pid_file_closed {
            let _ = inotify.read_events();
        }
        if exited {
            return Err(exited_early(&mut child, dir));
        }
        if announced {
            match watch.as_mut().map(Watch::configured) {
                Some(Ok(true)) => return Ok(child),
                Some(Ok(false)) => {}
                // The pid file still says it.
                Some(Err(_)) | None => watch = None,
            }
        }
    }
}

/// Why pasta, reaped here, exited before the network was up: its status
/// and what its log and stderr said (less its banner and syslog notes).
fn exited_early(child: &mut std::process::Child, dir: &Path) -> anyhow::Error {
    let code = child.wait().ok().and_then(|s| s.code());
    let said = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let log: Vec<String> = [said("log"), said("stderr")]
        .iter()
        .flat_map(|t| t.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.contains("syslog") && !l.starts_with("pasta "))
        .collect();
    anyhow::anyhow!(
        "pasta exited ({}) before the network was up: {}",
        code.map_or("killed".to_string(), |c| format!("status {c}")),
        log.join("; ")
    )
}

/// The keeper's own session, so a terminal's ^C reaches the container,
/// not pasta; and only the fds it uses (`kept`): not the runner's channel
/// to the child (whose end-of-file tells the child the runner is gone),
/// nor stdio.
fn leave_the_runner(kept: &[std::os::fd::RawFd]) {
    let _ = nix::unistd::setsid();
    let _ = sys::close_fds_except(kept);
    if let Ok(null) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..=2 {
            let _ = sys::dup_onto(null.as_fd(), fd);
        }
    }
}

/// Waits for the container's process to end, then kills pasta, gives
/// back the resolv.conf mount point, and removes pasta's directory.
fn outlive_the_container(
    prepared: &Prepared,
    container: BorrowedFd<'_>,
    pasta: std::process::Child,
    point: Option<crate::net::resolv_point::Claim>,
    status: OwnedFd,
) -> ! {
    let dir = prepared.dir.as_path();
    // `status` stays open until what the user can see of pasta is gone;
    // its end-of-file lets the runner return.
    let pasta_fd = sys::pidfd_open(Pid::from_raw(pasta.id() as i32)).ok();
    let mut fds = vec![PollFd::new(container, PollFlags::POLLIN)];
    if let Some(fd) = &pasta_fd {
        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
    }
    while let Err(Errno::EINTR) = poll(&mut fds, PollTimeout::NONE) {}
    if let Some(fd) = &pasta_fd {
        let _ = sys::pidfd_send_signal(fd.as_fd(), Signal::SIGKILL as i32);
    }
    if let Some(point) = point {
        point.release();
    }
    // A killed pasta takes a while to end (the kernel removes its tap
    // device as its files are closed), and its published ports may stay
    // bound until it has ended. Without published ports nothing of it is
    // in the user's way, so the
    // runner need not wait: pasta is reaped and its directory removed
    // here, just after.
    let mut status = Some(status);
    if !prepared.publishes {
        drop(status.take());
    }
    let _ = waitpid(Pid::from_raw(pasta.id() as i32), None);
    let _ = std::fs::remove_dir_all(dir);
    drop(status);
    sys::exit_now(0)
}
