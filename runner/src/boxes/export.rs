//! `kennel box export NAME BIN [--app]`: a launcher on the host's PATH
//! that runs BIN in the box, and a .desktop entry for it with --app.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::load;
use crate::cli::BoxExportArgs;

/// `s` quoted for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("box export: HOME is not set")
}

pub fn export(args: &BoxExportArgs) -> Result<i32> {
    let (_, c) = load(&args.name)?;
    let base = std::path::Path::new(&args.bin)
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .filter(|b| !b.is_empty() && !b.starts_with('.'))
        .with_context(|| format!("box export: {:?} names no program", args.bin))?;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => home()?.join(".local/bin"),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("box export: cannot create {}", dir.display()))?;
    let launcher = dir.join(&base);
    if launcher.exists() {
        bail!(
            "box export: {} exists already; remove it, or export into another --dir",
            launcher.display()
        );
    }
    let kennel = std::env::current_exe().context("box export: cannot find kennel's own binary")?;
    let script = format!(
        "#!/bin/sh\n# Made by `kennel box export {name} {bin}`: runs {bin} in box {name}.\nexec {} box enter {} -- {} \"$@\"\n",
        quote(&kennel.to_string_lossy()),
        quote(&c.name),
        quote(&args.bin),
        name = c.name,
        bin = args.bin,
    );
    std::fs::write(&launcher, script)
        .with_context(|| format!("box export: cannot write {}", launcher.display()))?;
    std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755))?;
    println!("{}", launcher.display());
    if args.app {
        let apps = home()?.join(".local/share/applications");
        std::fs::create_dir_all(&apps)
            .with_context(|| format!("box export: cannot create {}", apps.display()))?;
        let desktop = apps.join(format!("kennel-box-{}-{base}.desktop", c.name));
        let entry = format!(
            "[Desktop Entry]\nType=Application\nName={base} ({name})\nExec={} %F\nTerminal=false\nComment=Runs {base} in kennel box {name}\n",
            launcher.display(),
            name = c.name
        );
        std::fs::write(&desktop, entry)
            .with_context(|| format!("box export: cannot write {}", desktop.display()))?;
        println!("{}", desktop.display());
    }
    Ok(0)
}
