//! The spec's mounts as the engine acts on them: checked, their OCI
//! options split into mount(2) flags, filesystem data and kennel's own
//! extensions.

use anyhow::{bail, Result};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;

use crate::spec::propagation::{self, Propagation};

/// One mount, with its options already split into flags and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    pub destination: String,
    pub fstype: String,
    pub source: String,
    pub flags: MsFlags,
    /// Filesystem-specific options (e.g. `mode=755`).
    pub data: String,
    /// A bind mount (flags contain MS_BIND); read-only is applied by remount.
    pub bind: bool,
    pub readonly: bool,
    /// `tmpcopyup` (a tmpfs only): what the image has at the destination
    /// is copied into the fresh tmpfs before it covers it (see `copy_up`).
    pub copy_up: bool,
    /// The propagation its options name; None: private, kennel's default.
    pub propagation: Option<Propagation>,
}

/// A mount's OCI options, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// mount(2) flags.
    pub flags: MsFlags,
    /// Filesystem-specific options, comma-separated (mount(2)'s data).
    pub data: String,
    pub readonly: bool,
    /// `tmpcopyup`: runc's and crun's extension, never given to mount(2).
    pub copy_up: bool,
}

/// The OCI mount options that are mount(2) flags: name, flags set,
/// flags cleared; later options override earlier ones.
const FLAG_OPTIONS: &[(&str, MsFlags, MsFlags)] = &[
    ("ro", MsFlags::MS_RDONLY, MsFlags::empty()),
    ("rw", MsFlags::empty(), MsFlags::MS_RDONLY),
    ("bind", MsFlags::MS_BIND, MsFlags::empty()),
    (
        "rbind",
        MsFlags::MS_BIND.union(MsFlags::MS_REC),
        MsFlags::empty(),
    ),
    ("nosuid", MsFlags::MS_NOSUID, MsFlags::empty()),
    ("suid", MsFlags::empty(), MsFlags::MS_NOSUID),
    ("nodev", MsFlags::MS_NODEV, MsFlags::empty()),
    ("dev", MsFlags::empty(), MsFlags::MS_NODEV),
    ("noexec", MsFlags::MS_NOEXEC, MsFlags::empty()),
    ("exec", MsFlags::empty(), MsFlags::MS_NOEXEC),
    ("noatime", MsFlags::MS_NOATIME, MsFlags::empty()),
    ("nodiratime", MsFlags::MS_NODIRATIME, MsFlags::empty()),
    ("relatime", MsFlags::MS_RELATIME, MsFlags::empty()),
    ("norelatime", MsFlags::empty(), MsFlags::MS_RELATIME),
    ("strictatime", MsFlags::MS_STRICTATIME, MsFlags::empty()),
    ("sync", MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
];

/// Every mount option the engine acts on itself rather than handing to the
/// filesystem as data: what `kennel-oci features` reports.
pub fn mount_option_names() -> Vec<&'static str> {
    FLAG_OPTIONS
        .iter()
        .map(|(name, ..)| *name)
        .chain(crate::spec::propagation::all().map(Propagation::name))
        .chain(["tmpcopyup"])
        .collect()
}

/// Splits OCI mount options into mount(2) flags and data, as runc and crun
/// do, and takes out their extensions (`tmpcopyup`).
pub fn parse_mount_options(options: &[String]) -> MountOptions {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    let mut readonly = false;
    let mut copy_up = false;
    for o in options {
        if let Some((_, set, clear)) = FLAG_OPTIONS.iter().find(|(name, ..)| name == o) {
            flags |= *set;
            flags &= !*clear;
            readonly = flags.contains(MsFlags::MS_RDONLY);
        } else if o == "tmpcopyup" {
            copy_up = true;
        } else if Propagation::parse(o).is_none() {
            // Propagation is not a flag of the mount itself: applied apart,
            // after it is made (see `propagation::of_options` and `rootfs`).
            data.push(o.to_string());
        }
    }
    MountOptions {
        flags,
        data: data.join(","),
        readonly,
        copy_up,
    }
}

/// Whether the spec's mount `m` is a bind mount: its type says so, or one
/// of its options (`bind`, `rbind`).
pub fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || parse_mount_options(m.options().as_deref().unwrap_or(&[]))
            .flags
            .contains(MsFlags::MS_BIND)
}

/// The spec's mounts as the child makes them. An idmapped mount, a
/// relative bind source or tmpcopyup on anything but a tmpfs is refused;
/// a `cgroup` mount becomes what a user namespace can have.
pub fn plan(spec: &Spec, clone_flags: CloneFlags) -> Result<Vec<MountPlan>> {
    refuse_unsupported(spec)?;
    spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| {
            let MountOptions {
                flags,
                data,
                readonly,
                copy_up,
            } = parse_mount_options(m.options().as_deref().unwrap_or(&[]));
            let destination = m.destination().display().to_string();
            let propagation =
                propagation::of_options(m.options().as_deref().unwrap_or(&[]), &destination)?;
            let fstype = m.typ().clone().unwrap_or_else(|| "bind".into());
            let source = m
                .source()
                .as_ref()
                .map(|s| s.display().to_string())
                .unwrap_or_else(|| fstype.clone());
            let (fstype, source, flags) = match fstype.as_str() {
                "cgroup" => cgroup_view(
                    flags,
                    clone_flags.contains(CloneFlags::CLONE_NEWCGROUP),
                    cgroup_delegate::cgroup2_mounted(),
                ),
                _ => (fstype, source, flags),
            };
            let bind = flags.contains(MsFlags::MS_BIND) || fstype == "bind";
            if copy_up && (bind || fstype != "tmpfs") {
                bail!(
                    "the mount on {} has the option tmpcopyup, which only a tmpfs takes (this one is {})",
                    m.destination().display(),
                    if bind { "a bind mount".to_string() } else { format!("of type {fstype}") }
                );
            }
            Ok(MountPlan {
                destination,
                source,
                fstype,
                flags: if bind {
                    flags | MsFlags::MS_BIND
                } else {
                    flags
                },
                data,
                bind,
                readonly,
                copy_up,
                propagation,
            })
        })
        .collect::<Result<Vec<_>>>()
}

/// An idmapped mount, or a bind mount with a relative source.
fn refuse_unsupported(spec: &Spec) -> Result<()> {
    for m in spec.mounts().iter().flatten() {
        if let Some(o) = m
            .options()
            .iter()
            .flatten()
            .find(|o| matches!(o.as_str(), "idmap" | "ridmap"))
        {
            bail!(
                "the mount on {} asks for an idmapped mount ({o}), which kennel does not implement yet; remove the option",
                m.destination().display()
            );
        }
        if let Some(src) = m
            .source()
            .as_ref()
            .filter(|s| is_bind(m) && s.is_relative())
        {
            bail!(
                "the bind mount on {} has a relative source {}: name it absolutely (in a bundle, relative to the bundle)",
                m.destination().display(),
                src.display()
            );
        }
    }
    Ok(())
}

/// A mount of type `cgroup` (what `runc spec` writes) as kennel can make
/// it in a user namespace: the unified hierarchy of the container's own
/// cgroup namespace where it has one on a cgroup v2 host, else the host's
/// /sys/fs/cgroup bound with the same options (read-only in runc's specs),
/// as runc does without a cgroup namespace. A v1 hierarchy cannot be
/// mounted from a user namespace at all.
fn cgroup_view(
    flags: MsFlags,
    own_namespace: bool,
    cgroup2_host: bool,
) -> (String, String, MsFlags) {
    if own_namespace && cgroup2_host {
        ("cgroup2".into(), "cgroup2".into(), flags)
    } else {
        (
            "bind".into(),
            "/sys/fs/cgroup".into(),
            flags | MsFlags::MS_BIND | MsFlags::MS_REC,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_reported_names_are_the_ones_acted_on() {
        for name in mount_option_names() {
            let parsed = parse_mount_options(&opts(&[name]));
            assert_eq!(parsed.data, "", "{name} would reach the filesystem as data");
        }
        assert!(mount_option_names().contains(&"rslave"));
    }

    #[test]
    fn mount_options_split_into_flags_and_data() {
        let o = parse_mount_options(&opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]));
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!o.readonly && !o.copy_up);
        let o = parse_mount_options(&opts(&["rbind", "ro", "rprivate"]));
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
        assert!(o.readonly);
        let o = parse_mount_options(&opts(&["ro", "rw"]));
        assert!(!o.readonly && !o.flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn tmpcopyup_is_taken_out_of_the_mount_data() {
        // What podman sends for --read-only's tmpfs mounts.
        let o = parse_mount_options(&opts(&["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]));
        assert!(o.copy_up);
        assert_eq!(o.data, "");
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
        let o = parse_mount_options(&opts(&["tmpcopyup", "size=1m"]));
        assert!(o.copy_up);
        assert_eq!(o.data, "size=1m");
    }

    #[test]
    fn a_cgroup_mount_becomes_what_a_user_namespace_can_have() {
        let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
        let own = cgroup_view(ro, true, true);
        assert_eq!(own, ("cgroup2".into(), "cgroup2".into(), ro));
        for (ns, v2) in [(false, true), (true, false), (false, false)] {
            let (t, src, f) = cgroup_view(ro, ns, v2);
            assert_eq!((t.as_str(), src.as_str()), ("bind", "/sys/fs/cgroup"));
            assert_eq!(f, ro | MsFlags::MS_BIND | MsFlags::MS_REC);
        }
    }
}
