//! Records how the binaries were built, for `kennel --version`,
//! `kennel-oci --version` and the features annotations: the commit (as runc
//! reports its own), how libseccomp was linked, and whether the workspace
//! serves `regex` with the regex-lite shim (the static build's manifest)
//! or the real crate (the distribution's).

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

    // libseccomp-sys reads the same variable to choose its link.
    println!("cargo:rerun-if-env-changed=LIBSECCOMP_LINK_TYPE");
    let seccomp_link = match std::env::var("LIBSECCOMP_LINK_TYPE").as_deref() {
        Ok("static") => "static",
        _ => "dynamic",
    };
    println!("cargo:rustc-env=KENNEL_SECCOMP_LINK={seccomp_link}");

    // The distribution's source has no [patch] section: the shim is in use
    // exactly when the workspace manifest patches `regex` to it.
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    println!("cargo:rerun-if-changed={manifest}");
    let shim = std::fs::read_to_string(manifest)
        .map(|m| {
            m.lines().any(|l| {
                l.trim_start()
                    .starts_with("regex = { path = \"shims/regex\"")
            })
        })
        .unwrap_or(false);
    println!(
        "cargo:rustc-env=KENNEL_REGEX={}",
        if shim { "regex-lite shim" } else { "regex" }
    );

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
