//! Running as a `Type=notify` systemd unit (`NOTIFY_SOCKET` set). kennel
//! stays the unit's main process in every mode:
//!
//! - `exec`: kennel says STATUS= at each stage and READY=1 once the
//!   container's command has been executed; it pings WATCHDOG=1 while the
//!   container lives when the unit has `WatchdogSec=`.
//! - `container`: a socket is bound into the container at
//!   `/run/notify/notify.sock` and its messages are passed on, all but
//!   MAINPID= (kennel stays the main PID) and unknown keys.
//! - `ignore`: nothing is said.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use sd_notify::NotifyState;

/// What kennel tells systemd (see the module's description).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdNotifyMode {
    Exec,
    Container,
    Ignore,
}

/// Where the container finds its notify socket.
pub const CONTAINER_SOCKET: &str = "/run/notify/notify.sock";

/// The keys a container may send to systemd through kennel.
const FORWARDED_KEYS: [&str; 7] = [
    "READY",
    "STATUS",
    "WATCHDOG",
    "EXTEND_TIMEOUT_USEC",
    "RELOADING",
    "STOPPING",
    "ERRNO",
];

pub struct Notify {
    mode: SdNotifyMode,
    /// `container` mode: the socket the container writes to, and its path
    /// on the host (removed on drop).
    container: Option<(UnixDatagram, PathBuf)>,
    watchdog: Option<Duration>,
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notify")
            .field("mode", &self.mode)
            .field("container", &self.container.as_ref().map(|(_, p)| p))
            .field("watchdog", &self.watchdog)
            .finish()
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        if let Some((_, path)) = &self.container {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Keeps the lines of a container's message that may go to systemd.
pub fn filter_message(msg: &str) -> Vec<&str> {
    msg.lines()
        .filter(|l| {
            l.split_once('=')
                .is_some_and(|(k, _)| FORWARDED_KEYS.contains(&k))
        })
        .collect()
}

impl Notify {
    /// None when kennel does not run under a notify unit, or is told to
    /// ignore it.
    pub fn from_env(mode: SdNotifyMode) -> Result<Option<Notify>> {
        if std::env::var_os("NOTIFY_SOCKET").is_none() || mode == SdNotifyMode::Ignore {
            return Ok(None);
        }
        let mut usec = 0;
        let watchdog = (mode == SdNotifyMode::Exec
            && sd_notify::watchdog_enabled(false, &mut usec))
        .then(|| Duration::from_micros(usec));
        let container = match mode {
            SdNotifyMode::Container => Some(bind_container_socket()?),
            _ => None,
        };
        Ok(Some(Notify {
            mode,
            container,
            watchdog,
        }))
    }

    /// The host path to bind at [`CONTAINER_SOCKET`], in container mode.
    pub fn container_socket(&self) -> Option<&PathBuf> {
        self.container.as_ref().map(|(_, p)| p)
    }

    pub fn container_fd(&self) -> Option<BorrowedFd<'_>> {
        self.container.as_ref().map(|(s, _)| s.as_fd())
    }

    fn send(&self, states: &[NotifyState]) {
        // A notify socket that went away must not stop the container.
        let _ = sd_notify::notify(false, states);
    }

    pub fn status(&self, text: &str) {
        if self.mode == SdNotifyMode::Exec {
            self.send(&[NotifyState::Status(text)]);
        }
    }

    /// The command was executed.
    pub fn started(&self, command: &str) {
        if self.mode == SdNotifyMode::Exec {
            let status = format!("running {command}");
            self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// Half the unit's watchdog interval, as systemd recommends.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    pub fn ping_watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// Passes on one datagram from the container, filtered.
    pub fn forward_from_container(&self) {
        let Some((sock, _)) = &self.container else {
            return;
        };
        let mut buf = [0u8; 4096];
        let Ok(n) = sock.recv(&mut buf) else { return };
        let msg = String::from_utf8_lossy(&buf[..n]);
        let lines = filter_message(&msg);
        if !lines.is_empty() {
            let states: Vec<NotifyState> = lines.into_iter().map(NotifyState::Custom).collect();
            self.send(&states);
        }
    }
}

/// A datagram socket the container's processes (any mapped uid) can write.
fn bind_container_socket() -> Result<(UnixDatagram, PathBuf)> {
    let dir = crate::host::runtime_dir::records_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("notify-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path)
        .with_context(|| format!("cannot bind the notify socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
        .with_context(|| format!("cannot open up {}", path.display()))?;
    sock.set_nonblocking(true)?;
    Ok((sock, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_keys_pass_and_mainpid_never() {
        let msg = "READY=1\nMAINPID=4242\nSTATUS=warming up\nX_CUSTOM=1\nWATCHDOG=1\nEXTEND_TIMEOUT_USEC=5000000\nnot a line";
        assert_eq!(
            filter_message(msg),
            vec![
                "READY=1",
                "STATUS=warming up",
                "WATCHDOG=1",
                "EXTEND_TIMEOUT_USEC=5000000"
            ]
        );
        assert!(filter_message("MAINPID=1").is_empty());
    }
}
