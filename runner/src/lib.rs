//! kennel's flags and the spec they build, as a library: the binary
//! (`main.rs`) and the fuzz target for the CLI-to-spec builder
//! (`fuzz/fuzz_targets/run_args_to_spec.rs`) share this one copy.

pub mod cli;
pub mod idmap;
pub mod resource_flags;
pub mod security_opt;
pub mod spec_build;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use oci_spec::runtime::Spec;

use cli::{Cli, Command};
use idmap::{Caller, HelperState, SubIds};
use kennel_idmap::IdRange;
use spec_build::Host;

/// The spec `kennel run ARGS` builds for a fixed caller (uid 1000, one
/// subordinate range, a usable kennel-idmap), reading nothing of the
/// environment but the files the flags name. For fuzzing: any argv must
/// give a spec or an error, never a panic.
pub fn spec_for_run_args(args: &[String]) -> Result<Spec> {
    let argv = ["kennel", "run"].into_iter().map(String::from);
    let cli = Cli::try_parse_from(argv.chain(args.iter().cloned()))?;
    let Command::Run(run) = cli.command else {
        bail!("not a run command");
    };
    let caller = Caller {
        uid: 1000,
        gid: 1000,
        name: "fuzz".into(),
        nested: None,
    };
    let range = IdRange {
        start: 100000,
        count: 65536,
    };
    let subids = SubIds {
        uids: vec![range],
        gids: vec![range],
        free: None,
    };
    let helper = HelperState::Usable("/nonexistent/kennel-idmap".into());
    let plan = idmap::plan(spec_build::default_userns(&run), &caller, &subids, &helper)?;
    let host = Host {
        caller,
        home: PathBuf::from("/nonexistent/home"),
        cwd: None,
    };
    match &run.bundle {
        Some(_) => bail!("--bundle reads a file; not built from flags"),
        None => spec_build::build(&run, &host, &plan),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn flags_build_a_spec_or_an_error() {
        let spec = spec_for_run_args(&argv(&["--rootfs", "/", "-u", "5:6", "--", "true"])).unwrap();
        let user = spec.process().as_ref().unwrap().user().clone();
        assert_eq!((user.uid(), user.gid()), (5, 6));
        for bad in [
            &["--"][..],
            &["--rootfs", "/", "-u", "4294967296", "--", "true"],
            &["--rootfs", "/", "--ulimit", "nofile=2:1", "--", "true"],
            &["--rootfs", "/", "-v", "relative", "--", "true"],
        ] {
            assert!(spec_for_run_args(&argv(bad)).is_err(), "{bad:?}");
        }
    }
}
