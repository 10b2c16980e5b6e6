//! `kennel box create NAME --unit`: a systemd user unit for the box.
//!
//! Why a unit written by `create` and not `Box=` in a `.container` file:
//! the generator turns `[Container]` keys into `kennel run` flags at
//! `daemon-reload`, but a box's flags come from its `box.json` and from
//! the share sockets of the environment it starts in, both read by the
//! runner. A `Box=` key would make the generator either learn box.json (a
//! second writer of the box's start) or refuse every other key. So the
//! unit runs `kennel box start NAME --foreground`, the one command that
//! starts a box (the first enter runs it too, detached), with the
//! generator's own service settings, and `kennel box stop NAME` to stop.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use kennel_generator::unit::SERVICE_DEFAULTS;
use kennel_generator::words::exec_word;

/// `kennel-box-NAME.service`.
pub fn unit_name(name: &str) -> String {
    format!("kennel-box-{name}.service")
}

/// `$XDG_CONFIG_HOME/systemd/user/kennel-box-NAME.service`, where the
/// user manager looks for units the user wrote.
pub fn unit_path(name: &str) -> Result<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .context("box create --unit: neither XDG_CONFIG_HOME nor HOME is set, so there is no ~/.config/systemd/user; set HOME")?;
    Ok(config.join("systemd/user").join(unit_name(name)))
}

/// An `Environment=` assignment that systemd reads back unchanged: quoted,
/// with C escapes for `"` and `\`, and `%` doubled (specifiers); systemd
/// expands no `$` there.
fn environment(key: &str, value: &str) -> String {
    let mut out = String::from("\"");
    for c in format!("{key}={value}").chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The unit's text. `data` is the XDG data directory the box lives under,
/// pinned so that the user manager (whose environment may differ from the
/// shell that ran `create`) finds the same box.
pub fn text(name: &str, kennel: &Path, data: &Path) -> String {
    let kennel = exec_word(&kennel.to_string_lossy());
    let name_word = exec_word(name);
    format!(
        "# Written by `kennel box create {name} --unit`; `kennel box rm {name}` removes it.\n\
         [Unit]\n\
         Description=kennel box {name}\n\
         \n\
         [Service]\n\
         {SERVICE_DEFAULTS}\
         # `kennel box stop` ends the box with SIGKILL to its init: a clean stop.\n\
         SuccessExitStatus=137\n\
         Environment={}\n\
         ExecStart={kennel} box start {name_word} --foreground\n\
         ExecStop={kennel} box stop {name_word}\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        environment("XDG_DATA_HOME", &data.to_string_lossy()),
    )
}

/// Refuses before anything is made when the unit file exists already: a
/// unit the user wrote (or another box's leftover) is never overwritten.
pub fn check_free(name: &str) -> Result<PathBuf> {
    let path = unit_path(name)?;
    if std::fs::symlink_metadata(&path).is_ok() {
        bail!(
            "box create --unit: {} exists already; remove it (or create the box without --unit)",
            path.display()
        );
    }
    Ok(path)
}

pub fn write(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().expect("a unit path has a directory");
    std::fs::create_dir_all(dir)
        .with_context(|| format!("box create --unit: cannot create {}", dir.display()))?;
    std::fs::write(path, text)
        .with_context(|| format!("box create --unit: cannot write {}", path.display()))
}

/// Removes the unit `create` wrote, when it is still there.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("box rm: cannot remove the unit {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_starts_and_stops_through_the_box_commands() {
        let t = text(
            "dev",
            Path::new("/usr/local/bin/kennel"),
            Path::new("/home/a/.local/share"),
        );
        assert!(t.contains("\nExecStart=/usr/local/bin/kennel box start dev --foreground\n"));
        assert!(t.contains("\nExecStop=/usr/local/bin/kennel box stop dev\n"));
        assert!(t.contains("\nType=notify\n"), "{t}");
        assert!(t.contains("\nEnvironment=\"XDG_DATA_HOME=/home/a/.local/share\"\n"));
    }

    #[test]
    fn environment_values_survive_systemd_quoting() {
        assert_eq!(
            environment("X", r#"/a b/100%/"q"\z"#),
            r#""X=/a b/100%%/\"q\"\\z""#
        );
    }
}
