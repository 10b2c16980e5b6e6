//! linux.devices: the device nodes the spec asks for, checked in the parent
//! and made by the child in the new root (see `rootfs::nodes`).
//!
//! A node is made with mknod where the kernel allows it (root, no user
//! namespace of ours); where it does not (a user namespace: rootless, or
//! root with a user namespace), the host's node at the same path is bound
//! instead, as runc does, and must be the device asked for. A FIFO is
//! always made: mkfifo needs no privilege.
//!
//! What is checked, as runc checks it and a little more: an absolute path
//! without `..` (anywhere in the root, not only under /dev, as runc allows),
//! no two devices at one path, a type of c, u (c), b or p, and major and
//! minor written for a device. runc takes the permission bits of fileMode
//! (0 when absent) and uid and gid 0 when absent; so does kennel.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use serde_json::Value;

/// What kind of node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Char,
    Block,
    Fifo,
}

impl NodeKind {
    pub fn letter(self) -> char {
        match self {
            NodeKind::Char => 'c',
            NodeKind::Block => 'b',
            NodeKind::Fifo => 'p',
        }
    }
}

/// One device node of linux.devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    /// Absolute, inside the container's root.
    pub path: PathBuf,
    pub kind: NodeKind,
    pub major: u64,
    pub minor: u64,
    /// Permission bits only.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl DevicePlan {
    /// `c 1:3`, as the user wrote it.
    pub fn describe(&self) -> String {
        match self.kind {
            NodeKind::Fifo => "a FIFO".to_string(),
            k => format!("{} {}:{}", k.letter(), self.major, self.minor),
        }
    }
}

/// Checks linux.devices as written in a config.json, before the parse that
/// would turn a missing major into 0 and a bad type into an error naming
/// no field.
pub fn check_written(spec: &Value) -> Result<()> {
    let Some(devices) = spec.pointer("/linux/devices") else {
        return Ok(());
    };
    let Some(devices) = devices.as_array() else {
        if devices.is_null() {
            return Ok(());
        }
        bail!("linux.devices must be an array of devices");
    };
    for (i, d) in devices.iter().enumerate() {
        let typ = d.get("type").and_then(Value::as_str);
        match typ {
            Some("c" | "u" | "b") => {
                for field in ["major", "minor"] {
                    if !d.get(field).is_some_and(Value::is_u64) {
                        bail!(
                            "linux.devices[{i}].{field} is missing or not a number: a {} device needs its major and minor numbers",
                            typ.unwrap_or_default()
                        );
                    }
                }
            }
            Some("p") => {}
            Some(other) => bail!(
                "linux.devices[{i}].type {other:?} is not a device type: use c (character), b (block), u (unbuffered character) or p (FIFO)"
            ),
            None => bail!("linux.devices[{i}].type is missing: use c, b, u or p"),
        }
    }
    Ok(())
}

/// The checked nodes of linux.devices.
pub fn plan(devices: Option<&Vec<LinuxDevice>>) -> Result<Vec<DevicePlan>> {
    let mut out: Vec<DevicePlan> = Vec::new();
    for (i, d) in devices.into_iter().flatten().enumerate() {
        let path = d.path();
        if !path.is_absolute() {
            bail!(
                "linux.devices[{i}].path {} is relative: name the node absolutely, as the container sees it (/dev/NAME)",
                path.display()
            );
        }
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            bail!(
                "linux.devices[{i}].path {} holds `..`: name the node without it",
                path.display()
            );
        }
        if path.parent().is_none() {
            bail!("linux.devices[{i}].path is /: name a node, /dev/NAME say");
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => NodeKind::Char,
            LinuxDeviceType::B => NodeKind::Block,
            LinuxDeviceType::P => NodeKind::Fifo,
            LinuxDeviceType::A => bail!(
                "linux.devices[{i}].type a names every device, which a node cannot be: use c, b, u or p"
            ),
        };
        let number = |n: i64, field: &str| {
            u64::try_from(n).map_err(|_| {
                anyhow::anyhow!(
                    "linux.devices[{i}].{field} {n} is negative: give the device's number"
                )
            })
        };
        let (major, minor) = match kind {
            NodeKind::Fifo => (0, 0),
            _ => (number(d.major(), "major")?, number(d.minor(), "minor")?),
        };
        // The kernel's dev_t holds a 12-bit major and a 20-bit minor.
        if major >= 1 << 12 || minor >= 1 << 20 {
            bail!(
                "linux.devices[{i}] {major}:{minor} is beyond the kernel's device numbers (major below 4096, minor below 1048576)"
            );
        }
        let plan = DevicePlan {
            path: normal(path),
            kind,
            major,
            minor,
            mode: d.file_mode().unwrap_or(0) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        if let Some(j) = out.iter().position(|o| o.path == plan.path) {
            bail!(
                "linux.devices[{i}].path {} is also linux.devices[{j}]'s: keep one",
                plan.path.display()
            );
        }
        out.push(plan);
    }
    Ok(out)
}

/// `path` without `.` components or repeated slashes.
fn normal(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A character device 1:3 at /dev/mydev, mode 0620, owned by 1:2.
    pub(crate) fn mydev() -> DevicePlan {
        DevicePlan {
            path: "/dev/mydev".into(),
            kind: NodeKind::Char,
            major: 1,
            minor: 3,
            mode: 0o620,
            uid: 1,
            gid: 2,
        }
    }

    fn devices(json: &str) -> Vec<LinuxDevice> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_device_is_planned_as_written() {
        let d = devices(
            r#"[{"path": "/dev/./mydev", "type": "u", "major": 1, "minor": 3, "fileMode": 8592, "uid": 1, "gid": 2},
                {"path": "/run/fifo", "type": "p"}]"#,
        );
        let p = plan(Some(&d)).unwrap();
        // fileMode 8592 is 0o20620: the type bits are dropped, as runc
        // drops them.
        assert_eq!(p[0], mydev());
        assert_eq!((p[1].kind, p[1].mode, p[1].uid), (NodeKind::Fifo, 0, 0));
        assert_eq!(p[0].describe(), "c 1:3");
    }

    #[test]
    fn bad_devices_name_their_field_and_index() {
        for (json, says) in [
            (
                r#"[{"path": "dev/x", "type": "c", "major": 1, "minor": 3}]"#,
                "linux.devices[0].path dev/x is relative",
            ),
            (
                r#"[{"path": "/dev/../x", "type": "c", "major": 1, "minor": 3}]"#,
                "linux.devices[0].path /dev/../x holds `..`",
            ),
            (
                r#"[{"path": "/", "type": "c", "major": 1, "minor": 3}]"#,
                "linux.devices[0].path is /",
            ),
            (
                r#"[{"path": "/dev/x", "type": "a"}]"#,
                "linux.devices[0].type a",
            ),
            (
                r#"[{"path": "/dev/x", "type": "c", "major": -1, "minor": 3}]"#,
                "linux.devices[0].major -1",
            ),
            (
                r#"[{"path": "/dev/x", "type": "b", "major": 4096, "minor": 0}]"#,
                "beyond",
            ),
            (
                r#"[{"path": "/dev/x", "type": "p"}, {"path": "/dev//x", "type": "p"}]"#,
                "linux.devices[1].path /dev/x is also linux.devices[0]'s",
            ),
        ] {
            let e = plan(Some(&devices(json))).unwrap_err().to_string();
            assert!(e.contains(says), "{json}: {e}");
        }
    }

    #[test]
    fn what_the_parse_would_hide_is_named() {
        for (json, says) in [
            (
                r#"{"linux": {"devices": [{"path": "/dev/x", "type": "x"}]}}"#,
                "linux.devices[0].type \"x\" is not a device type",
            ),
            (
                r#"{"linux": {"devices": [{"path": "/dev/y", "type": "p"}, {"path": "/dev/x", "type": "c", "minor": 3}]}}"#,
                "linux.devices[1].major is missing",
            ),
            (
                r#"{"linux": {"devices": [{"path": "/dev/x"}]}}"#,
                "linux.devices[0].type is missing",
            ),
        ] {
            let v: Value = serde_json::from_str(json).unwrap();
            let e = check_written(&v).unwrap_err().to_string();
            assert!(e.contains(says), "{json}: {e}");
        }
        let ok: Value = serde_json::from_str(
            r#"{"linux": {"devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3}, {"path": "/f", "type": "p"}]}}"#,
        )
        .unwrap();
        check_written(&ok).unwrap();
    }
}
