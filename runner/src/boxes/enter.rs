//! `kennel box enter NAME [-- CMD...]`: the first enter starts the box's
//! init detached; every enter then joins it through `kennel exec`'s path
//! (the record, one setns on a pidfd, a fork), as the user, with the
//! terminal's and locale's variables, in the same directory when it is
//! shared. Nothing on this path parses a spec or calls the id helper.

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{container_name, load, BoxConfig};
use crate::cli::BoxEnterArgs;
use kennel_engine::{lifecycle::exec::ExecRequest, lifecycle::state, Options};

/// Variables an enter passes from the caller: the terminal's and the locale's.
fn passed_through(key: &str) -> bool {
    matches!(key, "TERM" | "COLORTERM" | "LANG" | "LANGUAGE") || key.starts_with("LC_")
}

/// The directory inside that is the caller's current one, when it is shared.
fn workdir(c: &BoxConfig) -> String {
    let home = c.user_home.to_string_lossy().into_owned();
    let Ok(cwd) = std::env::current_dir() else {
        return home;
    };
    if c.home_shared && cwd.starts_with(&c.user_home) {
        return cwd.to_string_lossy().into_owned();
    }
    if c.host_root {
        return Path::new("/run/host")
            .join(cwd.strip_prefix("/").unwrap_or(&cwd))
            .to_string_lossy()
            .into_owned();
    }
    home
}

pub fn enter(args: &BoxEnterArgs, verbose: bool) -> Result<i32> {
    let (dir, c) = load(&args.name)?;
    let id = container_name(&args.name);
    let store = state::Store::new(None)?;
    if state::find(&store, &id)?.is_none() {
        start(&c, &dir, &store, &id, verbose)?;
    }
    let mut env: Vec<String> = std::env::vars()
        .filter(|(k, _)| passed_through(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let user = std::env::var("USER").unwrap_or_default();
    for (k, v) in [
        ("HOME", c.user_home.to_string_lossy().into_owned()),
        ("SHELL", c.shell.clone()),
        ("USER", user.clone()),
        ("LOGNAME", user),
    ] {
        env.push(format!("{k}={v}"));
    }
    let command = match args.command.is_empty() {
        true => vec![c.shell.clone(), "-l".into()],
        false => args.command.clone(),
    };
    let req = ExecRequest {
        id,
        command,
        tty: std::io::stdin().is_terminal(),
        env,
        workdir: Some(workdir(&c)),
        user: Some(format!("{}:{}", c.uid, c.gid)),
        ..Default::default()
    };
    let opts = Options {
        events: crate::events(verbose),
        ..Options::new(crate::spec_build::Host::current()?.caller)
    };
    crate::finish(kennel_engine::lifecycle::exec::exec(&req, &opts))
}

/// `kennel box start NAME`: the box running, without entering it.
pub fn start_detached(name: &str, verbose: bool) -> Result<i32> {
    let (dir, c) = load(name)?;
    let id = container_name(name);
    let store = state::Store::new(None)?;
    match state::find(&store, &id)? {
        Some(_) => println!("box {name}: running already"),
        None => {
            start(&c, &dir, &store, &id, verbose)?;
            println!("box {name}: running");
        }
    }
    Ok(0)
}

/// Runs `kennel box start NAME --foreground` in its own process group,
/// out of the caller's terminal, and waits until its record says it runs.
fn start(c: &BoxConfig, dir: &Path, store: &state::Store, id: &str, verbose: bool) -> Result<()> {
    let log = dir.join("start.log");
    let out = std::fs::File::create(&log)
        .with_context(|| format!("box enter: cannot write {}", log.display()))?;
    let exe: PathBuf =
        std::env::current_exe().context("box enter: cannot find kennel's own binary")?;
    let mut child = std::process::Command::new(&exe)
        .args(verbose.then_some("--verbose"))
        .args(["box", "start", &c.name, "--foreground"])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("box enter: cannot run {}", exe.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if state::find(store, id)?.is_some() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!(
                "box enter: box {:?} did not start ({status}): {}",
                c.name,
                text.trim()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "box enter: box {:?} was not running after 30 s; see {}",
                c.name,
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::passed_through;

    #[test]
    fn terminal_and_locale_pass_and_nothing_else() {
        for k in ["TERM", "LANG", "LC_ALL", "LC_CTYPE", "COLORTERM"] {
            assert!(passed_through(k), "{k}");
        }
        for k in ["PATH", "LD_PRELOAD", "HOME", "SSH_AUTH_SOCK"] {
            assert!(!passed_through(k), "{k}");
        }
    }
}
