//! Mount propagation as a spec names it: `linux.rootfsPropagation` and a
//! mount's propagation option, with runc's meanings (mount(2)'s MS_PRIVATE,
//! MS_SLAVE, MS_SHARED and MS_UNBINDABLE; the r-forms with MS_REC). How
//! `rootfs` applies them, and in what order, is told there.

use anyhow::{bail, Result};
use nix::mount::MsFlags;

/// The names a spec may use, for errors.
pub const NAMES: &str =
    "private, rprivate, slave, rslave, shared, rshared, unbindable, runbindable";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Private,
    Slave,
    Shared,
    Unbindable,
}

/// Every propagation a spec may name.
pub fn all() -> impl Iterator<Item = Propagation> {
    [Kind::Private, Kind::Slave, Kind::Shared, Kind::Unbindable]
        .into_iter()
        .flat_map(|kind| [false, true].map(|recursive| Propagation { kind, recursive }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Propagation {
    pub kind: Kind,
    /// The r-form: the mounts below take it too, not only the mount itself.
    pub recursive: bool,
}

impl Propagation {
    /// The propagation `name` means, if it names one.
    pub fn parse(name: &str) -> Option<Propagation> {
        let (recursive, base) = match name.strip_prefix('r') {
            Some(base) if !base.is_empty() => (true, base),
            _ => (false, name),
        };
        let kind = match base {
            "private" => Kind::Private,
            "slave" => Kind::Slave,
            "shared" => Kind::Shared,
            "unbindable" => Kind::Unbindable,
            _ => return None,
        };
        Some(Propagation { kind, recursive })
    }

    /// mount(2)'s flags for it, MS_REC for an r-form.
    pub fn flags(self) -> MsFlags {
        let kind = self.kind_flag();
        match self.recursive {
            true => kind | MsFlags::MS_REC,
            false => kind,
        }
    }

    /// The flag of its kind alone.
    pub fn kind_flag(self) -> MsFlags {
        match self.kind {
            Kind::Private => MsFlags::MS_PRIVATE,
            Kind::Slave => MsFlags::MS_SLAVE,
            Kind::Shared => MsFlags::MS_SHARED,
            Kind::Unbindable => MsFlags::MS_UNBINDABLE,
        }
    }

    /// Whether it ties the mount to the host's copy of it (slave: events
    /// come in; shared: they go both ways), which only a copy made before
    /// kennel makes the host's tree private can still have.
    pub fn follows_host(self) -> bool {
        matches!(self.kind, Kind::Slave | Kind::Shared)
    }

    pub fn name(self) -> &'static str {
        match (self.kind, self.recursive) {
            (Kind::Private, false) => "private",
            (Kind::Private, true) => "rprivate",
            (Kind::Slave, false) => "slave",
            (Kind::Slave, true) => "rslave",
            (Kind::Shared, false) => "shared",
            (Kind::Shared, true) => "rshared",
            (Kind::Unbindable, false) => "unbindable",
            (Kind::Unbindable, true) => "runbindable",
        }
    }
}

/// linux.rootfsPropagation, checked: None when unset (kennel's default,
/// private).
pub fn of_root(value: Option<&str>) -> Result<Option<Propagation>> {
    match value {
        None | Some("") => Ok(None),
        Some(v) => match Propagation::parse(v) {
            Some(p) => Ok(Some(p)),
            None => bail!(
                "linux.rootfsPropagation is {v:?}, which is not a mount propagation; use one of {NAMES}, or leave it out for private"
            ),
        },
    }
}

/// The one propagation a mount's `options` name, if any. Two different
/// ones are refused: mount(2) would apply them in turn, and which one the
/// bundle means is not for kennel to guess.
pub fn of_options(options: &[String], destination: &str) -> Result<Option<Propagation>> {
    let mut found: Option<Propagation> = None;
    for p in options.iter().filter_map(|o| Propagation::parse(o)) {
        match found {
            Some(q) if q != p => bail!(
                "the mount on {destination} names two propagations, {} and {}; keep one",
                q.name(),
                p.name()
            ),
            _ => found = Some(p),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_and_names_itself() {
        for name in NAMES.split(", ") {
            let p = Propagation::parse(name).unwrap();
            assert_eq!(p.name(), name);
            assert_eq!(p.recursive, p.flags().contains(MsFlags::MS_REC), "{name}");
        }
        for other in ["", "r", "rbind", "bind", "Slave", "rrslave", "master"] {
            assert_eq!(Propagation::parse(other), None, "{other}");
        }
        let rslave = Propagation::parse("rslave").unwrap();
        assert_eq!(rslave.flags(), MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert!(rslave.follows_host());
        assert!(!Propagation::parse("runbindable").unwrap().follows_host());
    }

    #[test]
    fn an_unknown_root_propagation_is_named() {
        assert_eq!(of_root(None).unwrap(), None);
        assert_eq!(
            of_root(Some("rshared")).unwrap(),
            Some(Propagation {
                kind: Kind::Shared,
                recursive: true
            })
        );
        let err = of_root(Some("rslaved")).unwrap_err().to_string();
        assert!(
            err.contains("\"rslaved\"") && err.contains("rslave,"),
            "{err}"
        );
    }

    #[test]
    fn a_mount_names_one_propagation() {
        let opts = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(of_options(&opts(&["rbind", "ro"]), "/d").unwrap(), None);
        let p = of_options(&opts(&["rbind", "rslave", "rslave"]), "/d").unwrap();
        assert_eq!(p.map(Propagation::name), Some("rslave"));
        let err = of_options(&opts(&["rslave", "rprivate"]), "/d")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/d") && err.contains("rslave and rprivate"),
            "{err}"
        );
    }
}
