//! Writing the child's uid_map and gid_map, from the parent.
//!
//! Maps that only name our own uid and gid (or any map, when we are real
//! root) we write ourselves. Anything else goes to kennel-idmap, executed
//! once for both maps and started before the child exists (it checks the
//! ranges meanwhile); it then receives the child's pidfd over a socket, so a
//! recycled pid can never receive the maps.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use kennel_idmap::{render_map, MapLine};
use nix::unistd::Pid;

use crate::host::ids::{self, Caller};
use crate::sys;
use crate::Options;

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

/// How the maps will be written, decided (and the helper started) before
/// the child exists.
pub enum MapWriter {
    /// We write them ourselves.
    Direct {
        uid_map: String,
        gid_map: String,
        deny_setgroups: bool,
    },
    /// kennel-idmap is already running, waiting for the child's pidfd.
    Helper(PendingHelper),
    /// No new user namespace (root's container): nothing to write.
    Nothing,
}

impl MapWriter {
    /// Checks the maps and, if they need kennel-idmap, starts it now: its
    /// exec and its checks of /etc/subuid and /etc/subgid overlap our clone.
    pub fn prepare(
        caller: &Caller,
        uid_map: &[MapLine],
        gid_map: &[MapLine],
        opts: &Options<'_>,
        helper: Option<&Path>,
    ) -> Result<MapWriter> {
        if uid_map.is_empty() || gid_map.is_empty() {
            bail!("the spec maps no uids or no gids into the container's user namespace");
        }
        if ids::writable_without_helper(caller, uid_map, gid_map) {
            return Ok(MapWriter::Direct {
                uid_map: render_map(uid_map),
                gid_map: render_map(gid_map),
                // Required before an unprivileged gid_map write (user_namespaces(7)).
                deny_setgroups: caller.uid != 0,
            });
        }
        // The plan already found it; a bundle's own maps look it up here.
        let helper = match helper {
            Some(path) => path.to_path_buf(),
            None => ids::usable_helper(&ids::helper_state(), "these id maps")?,
        };
        PendingHelper::start(&helper, uid_map, gid_map, opts).map(MapWriter::Helper)
    }

    /// Writes the maps of the child `pid` (`pidfd`).
    pub fn write(self, pid: Pid, pidfd: &OwnedFd) -> Result<()> {
        match self {
            MapWriter::Direct {
                uid_map,
                gid_map,
                deny_setgroups,
            } => {
                write_proc(pid, "uid_map", &uid_map)?;
                if deny_setgroups {
                    write_proc(pid, "setgroups", "deny")?;
                }
                write_proc(pid, "gid_map", &gid_map)
            }
            MapWriter::Helper(h) => h.finish(pidfd),
            MapWriter::Nothing => Ok(()),
        }
    }

    /// Whether kennel-idmap writes the maps (they arrive a few hundred
    /// microseconds after the clone, not right away).
    pub fn uses_helper(&self) -> bool {
        matches!(self, MapWriter::Helper(_))
    }

    /// For the child only: our end of kennel-idmap's socket, on which the
    /// helper sends one byte once the maps are written. The child waits on
    /// it, so the news takes one hop, not two (helper, us, child).
    pub fn take_helper_socket(&mut self) -> Option<UnixStream> {
        match self {
            MapWriter::Helper(h) => h.sock.take(),
            MapWriter::Direct { .. } | MapWriter::Nothing => None,
        }
    }
}

/// A started kennel-idmap, given `sock:N`: it checks the ranges, then waits
/// on that socket for the pidfd of the process to map.
pub struct PendingHelper {
    path: PathBuf,
    child: Option<Child>,
    sock: Option<UnixStream>,
}

impl PendingHelper {
    fn start(
        helper: &Path,
        uid_map: &[MapLine],
        gid_map: &[MapLine],
        opts: &Options<'_>,
    ) -> Result<Self> {
        let (ours, theirs) =
            UnixStream::pair().context("cannot create a socket for kennel-idmap")?;
        let fd = theirs.as_raw_fd();
        let mut cmd = Command::new(helper);
        cmd.arg(format!("sock:{fd}"));
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
        opts.decided(&format!("running {cmd:?}"));
        // The socket is the only fd the helper inherits: everything else of
        // ours is close-on-exec.
        sys::set_cloexec(fd, false).context("cannot pass a socket to kennel-idmap")?;
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot execute {}", helper.display()))?;
        drop(theirs);
        Ok(PendingHelper {
            path: helper.to_path_buf(),
            child: Some(child),
            sock: Some(ours),
        })
    }

    /// Hands the helper the pidfd and waits for its verdict.
    fn finish(mut self, pidfd: &OwnedFd) -> Result<()> {
        let sock = self.sock.take().expect("the socket is kept until finish");
        let sent = sys::send_fd(sock.as_fd(), pidfd.as_fd());
        drop(sock);
        let child = self.child.take().expect("the child is kept until finish");
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for {}", self.path.display()))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            let msg = msg.trim();
            bail!(
                "{} refused to write the id maps ({}): {}",
                self.path.display(),
                out.status,
                if msg.is_empty() { "no message" } else { msg }
            );
        }
        // A helper that succeeded has read the pidfd; this cannot fail then.
        sent.context("cannot send the pidfd to kennel-idmap")?;
        Ok(())
    }
}

impl Drop for PendingHelper {
    /// Never used (kennel failed before the maps were written). Closing our
    /// socket is not enough to end the waiting helper: a child cloned since
    /// holds a copy until it dies. Stop it and reap it.
    fn drop(&mut self) {
        drop(self.sock.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
