//! kennel-docgen: writes the man pages and shell completions that ship
//! with kennel, from the same clap definitions the binaries parse, so a
//! page can never describe a flag the program no longer has.
//!
//! `kennel-docgen DIR` writes
//! `DIR/man/man1/kennel.1`, `DIR/man/man1/kennel-SUBCOMMAND.1`,
//! `DIR/man/man8/kennel-oci.8`, and `DIR/completions/{bash,zsh,fish}/`
//! for kennel and kennel-oci, named as each shell looks them up.
//! kennel-idmap has no clap parser; its page is `packaging/man/kennel-idmap.8`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Command, CommandFactory};
use clap_complete::Shell;

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

fn man_page(cmd: Command, section: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(section)
        .manual("kennel")
        .render(&mut out)
        .context("render a man page")?;
    Ok(out)
}

/// kennel(1), and one page per subcommand at every depth, named by its
/// path as git and podman name theirs (`kennel-run(1)`,
/// `kennel-rootfs-import(1)`).
fn kennel_pages(out: &Path) -> Result<()> {
    let mut cmd = kennel::cli::Cli::command();
    // The subcommands' flags are built lazily (`defer`): build them all.
    cmd.build();
    let dir = out.join("man/man1");
    write(&dir.join("kennel.1"), &man_page(cmd.clone(), "1")?)?;
    subcommand_pages(&dir, &cmd, "kennel")
}

fn subcommand_pages(dir: &Path, parent: &Command, path: &str) -> Result<()> {
    // A hidden subcommand is kennel's own plumbing, not for users to read.
    let shown = |s: &&Command| s.get_name() != "help" && !s.is_hide_set();
    for sub in parent.get_subcommands().filter(shown) {
        // clap takes names as &'static str unless its `string` feature is
        // on, which would change the binaries' clap too; this program
        // lives for a moment.
        let name: &'static str = Box::leak(format!("{path}-{}", sub.get_name()).into_boxed_str());
        let usage: &'static str =
            Box::leak(format!("{} {}", path.replace('-', " "), sub.get_name()).into_boxed_str());
        let page = sub.clone().name(name).bin_name(usage);
        write(&dir.join(format!("{name}.1")), &man_page(page, "1")?)?;
        subcommand_pages(dir, sub, name)?;
    }
    Ok(())
}

fn completions(out: &Path, mut cmd: Command, bin: &str) -> Result<()> {
    cmd.build();
    for (shell, dir, file) in [
        (Shell::Bash, "bash", bin.to_string()),
        (Shell::Zsh, "zsh", format!("_{bin}")),
        (Shell::Fish, "fish", format!("{bin}.fish")),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, bin, &mut script);
        write(&out.join("completions").join(dir).join(file), &script)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [out] = args.as_slice() else {
        bail!("usage: kennel-docgen DIR (writes DIR/man and DIR/completions)");
    };
    kennel_pages(out)?;
    let oci = kennel_oci::cli::Cli::command();
    write(
        &out.join("man/man8/kennel-oci.8"),
        &man_page(oci.clone(), "8")?,
    )?;
    completions(out, kennel::cli::Cli::command(), "kennel")?;
    completions(out, oci, "kennel-oci")?;
    Ok(())
}
