//! The runner's side of `--tty`: raw mode on our terminal (restored on every
//! exit path by `Drop`), and the byte relay between it and the pty master
//! that the container opened in its own devpts.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::termios::{self, SetArg, Termios};

use crate::sys;

/// Puts stdin in raw mode while alive, if stdin is a terminal.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(orig) = &saved {
            let mut raw = orig.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(orig) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSAFLUSH, orig);
        }
    }
}

/// The settings of the caller's terminal, when the container uses it as
/// plain stdio (no -t): put back when the container is done, whatever it
/// did to them (echo off, raw mode), as a shell does after a job.
pub struct SavedTerminal {
    saved: Option<Termios>,
}

impl SavedTerminal {
    pub fn save() -> SavedTerminal {
        SavedTerminal {
            saved: termios::tcgetattr(std::io::stdin().as_fd()).ok(),
        }
    }
}

impl Drop for SavedTerminal {
    fn drop(&mut self) {
        if let Some(orig) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, orig);
        }
    }
}

/// Copies our terminal's window size onto the container's pty.
pub fn copy_window_size(master: BorrowedFd<'_>) {
    if let Some(ws) = sys::window_size(std::io::stdin().as_fd())
        .or_else(|| sys::window_size(std::io::stdout().as_fd()))
    {
        let _ = sys::set_window_size(master, &ws);
    }
}

/// Moves what is readable from `from` to `to`. Returns false at end of
/// input (EOF, or EIO from a master whose last slave closed).
pub fn pump(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 16 * 1024];
    let n = match nix::unistd::read(from, &mut buf) {
        Ok(0) | Err(Errno::EIO) => return false,
        Ok(n) => n,
        Err(Errno::EINTR) | Err(Errno::EAGAIN) => return true,
        Err(_) => return false,
    };
    let mut rest = &buf[..n];
    while !rest.is_empty() {
        match nix::unistd::write(to, rest) {
            Ok(w) => rest = &rest[w..],
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Reads whatever the container still wrote after it exited.
pub fn drain(master: &OwnedFd) {
    let _ = nix::fcntl::fcntl(
        master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    while pump(master.as_fd(), std::io::stdout().as_fd()) {
        if !readable(master.as_fd()) {
            break;
        }
    }
}

fn readable(fd: BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}
