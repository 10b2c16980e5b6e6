//! The mounts below a path, read from our mountinfo: what a call on one
//! mount must repeat on each of a recursive bind's submounts when no call
//! does it for the whole tree (mount(2) has no recursive remount, and a
//! propagation given only to a bind's own mount leaves the rest).

use std::path::{Path, PathBuf};

use super::mounts::{fail, Step, OLDROOT};
use crate::protocol::{io_errno, Stage};

/// The mount points strictly below `top` (a path in the staging root), in
/// mountinfo's order: a mount before the ones made on it.
pub fn mounts_below(top: &Path) -> Step<Vec<PathBuf>> {
    // Our own procfs is the host's, under the old root until the pivot.
    let mountinfo = std::fs::read_to_string(format!("{OLDROOT}/proc/self/mountinfo"))
        .map_err(|e| fail(Stage::Mount, io_errno(&e), "/proc/self/mountinfo"))?;
    let below = format!("{}/", top.display());
    Ok(mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(unescape_mountinfo))
        .filter(|point| point.starts_with(&below))
        .map(PathBuf::from)
        .collect())
}

/// The optional fields (`shared:N`, `master:N`, `unbindable`) of the top
/// mount at `point` (a path in the staging root), if one is there.
pub fn propagation_of(point: &Path) -> Step<Option<Vec<String>>> {
    let mountinfo = std::fs::read_to_string(format!("{OLDROOT}/proc/self/mountinfo"))
        .map_err(|e| fail(Stage::Mount, io_errno(&e), "/proc/self/mountinfo"))?;
    let wanted = point.display().to_string();
    Ok(mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let end = fields.iter().position(|f| *f == "-")?;
            let at = unescape_mountinfo(fields.get(4)?);
            let optional = fields.get(6..end)?;
            (at == wanted).then(|| optional.iter().map(|f| f.to_string()).collect())
        })
        .next_back())
}

/// A mountinfo path field, with its octal escapes (`\040` for a space)
/// undone.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/stage/1/a\040b"), "/stage/1/a b");
        assert_eq!(unescape_mountinfo(r"/x\134y\011"), "/x\\y\t");
        assert_eq!(unescape_mountinfo(r"/plain\0"), r"/plain\0");
    }
}
