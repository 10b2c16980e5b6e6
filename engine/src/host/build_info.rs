//! How this binary was built, for `kennel --version` and
//! `kennel-oci --version`: a bug report then says which build it came from.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short commit the binary was built from: git's answer, the packager's
/// `KENNEL_GIT_COMMIT`, or "unknown" (see build.rs).
pub const GIT_COMMIT: &str = env!("KENNEL_GIT_COMMIT");

/// The lines after the version line: what was compiled in and how it was
/// linked, one `key: value` a line.
pub fn features() -> String {
    let binary = if cfg!(target_feature = "crt-static") {
        "static"
    } else {
        "dynamic (system C library)"
    };
    let seccomp = match libseccomp::ScmpVersion::current() {
        Ok(v) => format!(
            "libseccomp {}.{}.{}, linked {}",
            v.major,
            v.minor,
            v.micro,
            env!("KENNEL_SECCOMP_LINK")
        ),
        Err(e) => format!("libseccomp version unknown ({e})"),
    };
    format!(
        "binary: {binary}\nseccomp: {seccomp}\nlandlock: compiled in (used where the kernel has it)\nregex: {}\nhelper directory: {}\n",
        env!("KENNEL_REGEX"),
        crate::host::ids::libexec_dir().display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_name_each_part() {
        let text = features();
        for key in [
            "binary: ",
            "seccomp: libseccomp ",
            "landlock: ",
            "regex: ",
            "helper directory: /",
        ] {
            assert!(text.lines().any(|l| l.starts_with(key)), "{key} in {text}");
        }
        assert!(!GIT_COMMIT.is_empty());
    }
}
