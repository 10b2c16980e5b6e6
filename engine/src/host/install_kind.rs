//! How kennel came onto this machine, so a fix for its helpers names the
//! step that fits: a source install is redone with `sudo make install`; a
//! distribution package is reinstalled (or reconfigured) with its own
//! tools, since `make install` would put a second kennel beside it.

use std::path::Path;

/// Whether `tool` with `args` runs, succeeds and prints `expected`.
fn lists_kennel(tool: &str, args: &[&str], expected: &str) -> bool {
    std::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout == expected.as_bytes())
}

/// Where this kennel came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Installed {
    /// `make install` from a checkout (the static build), or a build
    /// run from the tree.
    Source,
    /// Debian's package (dpkg knows it).
    Deb,
    /// The RPM package (rpm knows it).
    Rpm,
    /// A distribution build that neither dpkg nor rpm lists.
    Package,
}

/// Whether this binary is the distribution build (packaging/dist-build.sh):
/// linked dynamically, from the source packaging/dist-source.sh made,
/// which builds the real regex crate instead of the static build's shim.
pub fn distribution_build() -> bool {
    !cfg!(target_feature = "crt-static") && env!("KENNEL_REGEX") == "regex"
}

impl Installed {
    /// This kennel's install, from its build and, for the distribution
    /// build, which package manager lists it.
    pub fn this() -> Installed {
        if !distribution_build() {
            return Installed::Source;
        }
        // Asked of the package managers' own tools, never their
        // databases' files, whose layout is theirs to change.
        if lists_kennel(
            "dpkg-query",
            &["--show", "--showformat=${db:Status-Status}", "kennel"],
            "installed",
        ) {
            return Installed::Deb;
        }
        if lists_kennel("rpm", &["-q", "--queryformat=%{NAME}", "kennel"], "kennel") {
            return Installed::Rpm;
        }
        Installed::Package
    }

    /// The fix when the helper `name` is not installed.
    pub fn missing_helper_fix(self, name: &str) -> String {
        match self {
            Installed::Source => "sudo make install (in kennel's source tree)".into(),
            Installed::Deb => {
                format!("reinstall the package, which ships {name}: sudo apt-get install --reinstall kennel")
            }
            Installed::Rpm => {
                format!("reinstall the package, which ships {name}: sudo dnf reinstall kennel")
            }
            Installed::Package => {
                format!("reinstall kennel's package with your package manager: it ships {name}")
            }
        }
    }

    /// The fix when `helper` lacks the file capabilities `caps`
    /// (`cap_net_admin=ep`, say).
    pub fn capabilities_fix(self, helper: &Path, caps: &str) -> String {
        let setcap = format!("sudo setcap {caps} {}", helper.display());
        match self {
            Installed::Source => setcap,
            // The package's postinst sets them; run again, it says why
            // it cannot when the file system keeps no capabilities.
            Installed::Deb => format!("sudo dpkg-reconfigure kennel, or {setcap}"),
            Installed::Rpm => format!("sudo rpm --setcaps kennel, or {setcap}"),
            Installed::Package => setcap,
        }
    }

    /// The fix when `helper` is on a file system mounted nosuid, where
    /// the kernel ignores file capabilities.
    pub fn nosuid_fix(self, helper: &Path) -> String {
        let shown = helper.display();
        match self {
            Installed::Source => format!(
                "install kennel where nosuid is not set (`findmnt -T {shown}` shows the options), e.g. sudo make install LIBEXECDIR=/usr/local/libexec/kennel"
            ),
            _ => format!(
                "the package's helpers must be on a file system mounted without nosuid: remount the one under {shown} without it (`findmnt -T {shown}` shows the options)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Installed; 4] = [
        Installed::Source,
        Installed::Deb,
        Installed::Rpm,
        Installed::Package,
    ];

    #[test]
    fn only_a_source_install_is_told_to_make_install() {
        let helper = Path::new("/usr/libexec/kennel/kennel-idmap");
        for kind in ALL {
            let fixes = [
                kind.missing_helper_fix("kennel-idmap"),
                kind.capabilities_fix(helper, "cap_setuid,cap_setgid=ep"),
                kind.nosuid_fix(helper),
            ];
            let says_make = fixes.iter().filter(|f| f.contains("make install")).count();
            match kind {
                Installed::Source => assert_eq!(says_make, 2, "{fixes:?}"),
                _ => assert_eq!(says_make, 0, "{kind:?}: {fixes:?}"),
            }
        }
        assert!(Installed::Deb
            .missing_helper_fix("kennel-net")
            .contains("apt-get install --reinstall kennel"));
        assert!(Installed::Rpm
            .missing_helper_fix("kennel-net")
            .contains("dnf reinstall kennel"));
        assert!(Installed::Deb
            .capabilities_fix(helper, "cap_setuid,cap_setgid=ep")
            .starts_with("sudo dpkg-reconfigure kennel"));
    }

    #[test]
    fn every_capabilities_fix_names_the_setcap_line() {
        let helper = Path::new("/usr/libexec/kennel/kennel-net");
        for kind in ALL {
            let fix = kind.capabilities_fix(helper, "cap_net_admin=ep");
            assert!(
                fix.contains("sudo setcap cap_net_admin=ep /usr/libexec/kennel/kennel-net"),
                "{kind:?}: {fix}"
            );
        }
    }

    #[test]
    fn a_build_from_this_tree_is_a_source_install() {
        // The checkout's manifest patches regex to the shim.
        assert!(!distribution_build());
        assert_eq!(Installed::this(), Installed::Source);
    }
}
