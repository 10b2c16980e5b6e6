//! A container's name claimed atomically, and given up on the way out
//! unless it is kept.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::json::load;
use super::store::{
    checked_state_root, find, own_identity, owner_alive, validate_name, Store, OWNER,
};

/// A claimed name; the directory is removed when this is dropped, unless
/// it was kept (`keep`).
pub struct Reservation {
    pub(super) dir: PathBuf,
    pub(super) name: String,
    /// What we wrote to its owner file (`own_identity`).
    owner: String,
    kept: bool,
}

impl Reservation {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leaves the record in place for `delete` to remove.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    /// Removes the record only while it is still ours: once our container
    /// has exited, another runner may have found it stale and claimed the
    /// name before we got here.
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let ours = std::fs::read_to_string(self.dir.join(OWNER)).is_ok_and(|o| o == self.owner);
        if ours {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Claims `name` atomically: a directory holding our identity is made
/// aside and renamed into place. A stale record of the same name (its
/// container gone, or its runner killed while starting) is cleaned first;
/// a live one is an error.
pub fn reserve(store: &Store, name: &str) -> Result<Reservation> {
    /// The claim made aside: removed on every way out, unless it was
    /// renamed into place (then there is nothing left to remove).
    struct Aside(PathBuf);
    impl Drop for Aside {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    validate_name(name)?;
    let root = checked_state_root(store.root(), true)?.context("no state directory")?;
    let dir = root.join(name);
    let aside = Aside(root.join(format!(".{name}.{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&aside.0);
    std::fs::create_dir(&aside.0)
        .with_context(|| format!("cannot create {}", aside.0.display()))?;
    let owner = own_identity();
    std::fs::write(aside.0.join(OWNER), &owner)
        .with_context(|| format!("cannot write {}", aside.0.join(OWNER).display()))?;
    for _ in 0..3 {
        match std::fs::rename(&aside.0, &dir) {
            Ok(()) => {
                return Ok(Reservation {
                    dir,
                    name: name.to_string(),
                    owner,
                    kept: false,
                })
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                if let Some(r) = find(store, name)? {
                    bail!(
                        "a container named {name:?} already exists (pid {}, {}); pick another name, or remove it first",
                        r.state.pid,
                        r.state.status
                    );
                }
                if load(&dir).is_some_and(|s| s.kennel.kept) {
                    bail!("a container named {name:?} already exists (stopped); delete it first");
                }
                if dir.exists() && !dir.join("state.json").exists() && owner_alive(&dir) {
                    bail!("a container named {name:?} is being started by another kennel; pick another --name");
                }
                // find() removed the stale record; try again.
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    bail!(
        "cannot claim the name {name:?}: {} keeps reappearing",
        dir.display()
    )
}
