//! The container lifecycle operations, which need the engine. The front
//! end calls them through `Lifecycle`, so it builds and is tested without
//! the engine, and the engine side is one impl of this trait.
//!
//! Each method returns the process exit status on success: `run` and
//! `exec` without `--detach` exit with the container process's status,
//! the rest normally with 0. An error becomes one log line and a non-zero
//! exit (see `crate::run`).

use crate::cli::{
    CreateArgs, DeleteArgs, EventsArgs, ExecArgs, GlobalOpts, IdArgs, KillArgs, ListArgs, PsArgs,
    RunArgs, UpdateArgs,
};
use crate::features::Implemented;
use crate::log::Logger;

/// What every operation gets besides its own arguments.
pub struct Context<'a> {
    /// The global flags (`--root`, `--systemd-cgroup`, `--rootless`, ...).
    pub global: &'a GlobalOpts,
    /// The logger the command line set up; debug and warning lines go
    /// here, never straight to stderr, so `--log` captures them.
    pub log: &'a Logger,
}

/// One method per lifecycle subcommand.
pub trait Lifecycle {
    fn create(&self, ctx: &Context, args: &CreateArgs) -> anyhow::Result<i32>;
    fn run(&self, ctx: &Context, args: &RunArgs) -> anyhow::Result<i32>;
    fn start(&self, ctx: &Context, args: &IdArgs) -> anyhow::Result<i32>;
    fn state(&self, ctx: &Context, args: &IdArgs) -> anyhow::Result<i32>;
    fn kill(&self, ctx: &Context, args: &KillArgs) -> anyhow::Result<i32>;
    fn delete(&self, ctx: &Context, args: &DeleteArgs) -> anyhow::Result<i32>;
    fn exec(&self, ctx: &Context, args: &ExecArgs) -> anyhow::Result<i32>;
    fn list(&self, ctx: &Context, args: &ListArgs) -> anyhow::Result<i32>;
    fn ps(&self, ctx: &Context, args: &PsArgs) -> anyhow::Result<i32>;
    fn pause(&self, ctx: &Context, args: &IdArgs) -> anyhow::Result<i32>;
    fn resume(&self, ctx: &Context, args: &IdArgs) -> anyhow::Result<i32>;
    fn update(&self, ctx: &Context, args: &UpdateArgs) -> anyhow::Result<i32>;
    fn events(&self, ctx: &Context, args: &EventsArgs) -> anyhow::Result<i32>;

    /// What the engine supports, for `features`. Kept beside the
    /// operations so the document changes with the implementation.
    fn implemented(&self) -> Implemented {
        Implemented::default()
    }
}

/// The stand-in until the engine provides the operations: every one fails
/// with "<subcommand> is not implemented yet".
pub struct Unimplemented;

fn not_yet(name: &str) -> anyhow::Result<i32> {
    anyhow::bail!("{name} is not implemented yet")
}

impl Lifecycle for Unimplemented {
    fn create(&self, _: &Context, _: &CreateArgs) -> anyhow::Result<i32> {
        not_yet("create")
    }
    fn run(&self, _: &Context, _: &RunArgs) -> anyhow::Result<i32> {
        not_yet("run")
    }
    fn start(&self, _: &Context, _: &IdArgs) -> anyhow::Result<i32> {
        not_yet("start")
    }
    fn state(&self, _: &Context, _: &IdArgs) -> anyhow::Result<i32> {
        not_yet("state")
    }
    fn kill(&self, _: &Context, _: &KillArgs) -> anyhow::Result<i32> {
        not_yet("kill")
    }
    fn delete(&self, _: &Context, _: &DeleteArgs) -> anyhow::Result<i32> {
        not_yet("delete")
    }
    fn exec(&self, _: &Context, _: &ExecArgs) -> anyhow::Result<i32> {
        not_yet("exec")
    }
    fn list(&self, _: &Context, _: &ListArgs) -> anyhow::Result<i32> {
        not_yet("list")
    }
    fn ps(&self, _: &Context, _: &PsArgs) -> anyhow::Result<i32> {
        not_yet("ps")
    }
    fn pause(&self, _: &Context, _: &IdArgs) -> anyhow::Result<i32> {
        not_yet("pause")
    }
    fn resume(&self, _: &Context, _: &IdArgs) -> anyhow::Result<i32> {
        not_yet("resume")
    }
    fn update(&self, _: &Context, _: &UpdateArgs) -> anyhow::Result<i32> {
        not_yet("update")
    }
    fn events(&self, _: &Context, _: &EventsArgs) -> anyhow::Result<i32> {
        not_yet("events")
    }
}
