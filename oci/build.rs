//! Records the commit the binary was built from, for `--version` and the
//! features annotations, the way runc reports its own commit.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=KENNEL_GIT_COMMIT");
    // Packagers building from a tarball have no .git; they may set the
    // commit themselves, and that wins over asking git.
    let commit = std::env::var("KENNEL_GIT_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=KENNEL_GIT_COMMIT={commit}");

    // Rebuild when HEAD moves. --git-path resolves correctly inside a
    // worktree, where .git is a file rather than a directory.
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(sym) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(r) = git(&["rev-parse", "--git-path", &sym]) {
            println!("cargo:rerun-if-changed={r}");
        }
    }
}
