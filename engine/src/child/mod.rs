//! The child (container init) side: runs in the new namespaces from the
//! moment clone3 returns until it execs the command. Every failure goes back
//! to the parent as a `ChildFailure`; the child then exits.
//!
//! `setup` takes the child from its birth to a finished root (namespaces,
//! maps, network, hooks, `rootfs` with `copy_up` for tmpcopyup); `start`
//! takes it from there to the command (terminal, limits, user, the
//! confinement of `security`), through `exec` or, with `--init`, the
//! `reaper` that reaps and forwards signals. `options` is what the runner
//! tells the child; `tty` is the parent's side of its terminal.
//!
//! May import: `sys`, `protocol`, `inroot`, `stop_at`, `spec`, `host`,
//! `security`, `net` and `plan`. Inside: `setup` over `start` over
//! `reaper` over `exec`; `options` below them all.

pub(crate) mod copy_up;
pub(crate) mod exec;
pub(crate) mod options;
pub(crate) mod reaper;
pub(crate) mod rootfs;
pub(crate) mod setup;
pub(crate) mod start;
pub(crate) mod tty;
