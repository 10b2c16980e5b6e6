//! Writing the child's uid_map and gid_map, from the parent.
//!
//! Maps that only name our own uid and gid (or any map, when we are real
//! root) we write ourselves. Anything else goes to kennel-idmap, executed
//! once for both maps with the child's pidfd, so a recycled pid can never
//! receive them.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use kennel_idmap::{render_map, MapLine};
use nix::unistd::Pid;

use crate::idmap::{self, Caller};
use crate::sys;

fn write_proc(pid: Pid, file: &str, text: &str) -> Result<()> {
    let path = format!("/proc/{pid}/{file}");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {path}"))?;
    // The kernel takes a map in a single write.
    f.write_all(text.as_bytes())
        .with_context(|| format!("the kernel refused {path} = {:?}", text.trim_end()))
}

pub fn write(
    caller: &Caller,
    pid: Pid,
    pidfd: &OwnedFd,
    uid_map: &[MapLine],
    gid_map: &[MapLine],
    verbose: bool,
    helper: Option<&Path>,
) -> Result<()> {
    if uid_map.is_empty() || gid_map.is_empty() {
        bail!("the spec maps no uids or no gids into the container's user namespace");
    }
    if idmap::writable_without_helper(caller, uid_map, gid_map) {
        write_proc(pid, "uid_map", &render_map(uid_map))?;
        if caller.uid != 0 {
            // Required before an unprivileged gid_map write (user_namespaces(7)).
            write_proc(pid, "setgroups", "deny")?;
        }
        write_proc(pid, "gid_map", &render_map(gid_map))?;
        return Ok(());
    }
    // The plan already found it; a bundle's own maps look it up here.
    let helper = match helper {
        Some(path) => path.to_path_buf(),
        None => idmap::usable_helper(&idmap::helper_state(), "these id maps")?,
    };
    run_helper(&helper, pidfd, uid_map, gid_map, verbose)
}

fn run_helper(
    helper: &Path,
    pidfd: &OwnedFd,
    uid_map: &[MapLine],
    gid_map: &[MapLine],
    verbose: bool,
) -> Result<()> {
    let fd = pidfd.as_raw_fd();
    let mut cmd = Command::new(helper);
    cmd.arg(format!("fd:{fd}"));
    for l in uid_map {
        cmd.arg("--uid")
            .arg(format!("{}:{}:{}", l.inner, l.outer, l.count));
    }
    for l in gid_map {
        cmd.arg("--gid")
            .arg(format!("{}:{}:{}", l.inner, l.outer, l.count));
    }
    cmd.env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if verbose {
        eprintln!("kennel: running {cmd:?}");
    }
    // The pidfd is the only fd the helper inherits: everything else of ours
    // is close-on-exec.
    sys::set_cloexec(fd, false).context("cannot pass the pidfd to kennel-idmap")?;
    let out = cmd.output();
    let _ = sys::set_cloexec(fd, true);
    let out = out.with_context(|| format!("cannot execute {}", helper.display()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg.trim();
        bail!(
            "{} refused to write the id maps ({}): {}",
            helper.display(),
            out.status,
            if msg.is_empty() { "no message" } else { msg }
        );
    }
    Ok(())
}
