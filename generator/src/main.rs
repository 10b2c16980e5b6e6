//! kennel-generator NORMAL_DIR [EARLY_DIR LATE_DIR]
//!
//! Installed in systemd's user-generators directory, it reads
//! `$XDG_CONFIG_HOME/kennel/*.container` (`~/.config/kennel`); in
//! system-generators, `/etc/kennel/*.container`. Units go into NORMAL_DIR.
//! It exits 0 even when a file is bad: one bad file must not fail a
//! `daemon-reload`, and its message is in the journal.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kennel_generator::{generate, Scope};

/// Where `make install` put kennel (its BINDIR, given at build time).
fn kennel_path() -> String {
    format!(
        "{}/kennel",
        option_env!("KENNEL_BINDIR").unwrap_or("/usr/local/bin")
    )
}

/// systemd (251 and later) says which manager runs us; older ones are told
/// apart by the directory we were run from.
fn scope_is_user(argv0: &str) -> bool {
    match std::env::var("SYSTEMD_SCOPE").as_deref() {
        Ok("user") => true,
        Ok("system") => false,
        _ => argv0.contains("/user-generators/"),
    }
}

/// The user's config directory, as the XDG base directory spec defines it.
fn user_dirs() -> Result<(PathBuf, String), &'static str> {
    let home = std::env::var("HOME")
        .map_err(|_| "HOME is not set, so ~/.config/kennel cannot be found")?;
    let config = match std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => Path::new(&home).join(".config"),
    };
    Ok((config.join("kennel"), home))
}

/// Generators log to the kernel's log when they run for the system manager
/// (the journal may not be up yet); a user manager's generators have its
/// stderr, which goes to the journal.
fn logger(user: bool) -> Box<dyn FnMut(String)> {
    let kmsg = if user {
        None
    } else {
        OpenOptions::new().write(true).open("/dev/kmsg").ok()
    };
    match kmsg {
        Some(mut kmsg) => Box::new(move |line| {
            if writeln!(kmsg, "<3>kennel-generator: {line}").is_err() {
                eprintln!("kennel-generator: {line}");
            }
        }),
        None => Box::new(|line| eprintln!("kennel-generator: {line}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(argv0), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: kennel-generator NORMAL_DIR [EARLY_DIR LATE_DIR] (systemd runs it at daemon-reload)");
        return ExitCode::from(2);
    };
    let user = scope_is_user(argv0);
    let mut log = logger(user);
    let (source, scope) = if user {
        match user_dirs() {
            Ok((source, home)) => (source, Scope::User { home }),
            Err(why) => {
                log(format!("{why}; no unit written"));
                return ExitCode::SUCCESS;
            }
        }
    } else {
        (PathBuf::from("/etc/kennel"), Scope::System)
    };
    generate(&source, Path::new(out), &scope, &kennel_path(), &mut *log);
    ExitCode::SUCCESS
}
