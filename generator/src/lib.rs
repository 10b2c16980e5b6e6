//! kennel-generator: a systemd generator that turns `.container` files
//! into `Type=notify` service units running `kennel run`, at every
//! `daemon-reload` (see kennel.container(5) and
//! packaging/user-services.md).
//!
//! A generator runs early and for the whole manager: it only reads the
//! `.container` files and writes units into the directory systemd gives
//! it. A file it cannot use gets one message naming the file, line and
//! key, and no unit; the other files still get theirs.

pub mod container;
pub mod ini;
pub mod unit;
pub mod words;

use std::fs;
use std::io;
use std::path::Path;

pub use container::Scope;

/// Files larger than this are not `.container` files someone wrote.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// What is wrong with a `.container` file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl Error {
    pub fn at(line: usize, key: Option<&str>, message: impl Into<String>) -> Error {
        Error {
            line: Some(line),
            key: key.map(str::to_string),
            message: message.into(),
        }
    }

    /// An error of the file as a whole (a missing key, its name).
    pub fn file(key: Option<&str>, message: impl Into<String>) -> Error {
        Error {
            line: None,
            key: key.map(str::to_string),
            message: message.into(),
        }
    }
}

impl Error {
    /// As the journal shows it: `PATH:LINE: KEY: message`.
    pub fn report(&self, path: &Path) -> String {
        let mut text = path.display().to_string();
        if let Some(line) = self.line {
            text.push_str(&format!(":{line}"));
        }
        if let Some(key) = &self.key {
            text.push_str(&format!(": {key}"));
        }
        format!("{text}: {}", self.message)
    }
}

/// The unit for one `.container` file, from its path and text.
pub fn generate_one(
    path: &Path,
    text: &str,
    scope: &Scope,
    kennel: &str,
) -> Result<unit::Unit, Error> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| Error::file(None, "the file's name is not UTF-8"))?;
    if stem.contains('@') {
        return Err(Error::file(
            None,
            "template units (NAME@.container) are not supported: write one file per instance",
        ));
    }
    if !unit::valid_unit_name(&format!("{stem}.service")) {
        return Err(Error::file(
            None,
            format!("{stem:?} cannot name a unit: use letters, digits and ':', '_', '.', '-'"),
        ));
    }
    if text.contains('\0') {
        return Err(Error::file(None, "the file contains a NUL byte"));
    }
    let entries = ini::parse(text)?;
    let container = container::build(stem, &entries, scope)?;
    unit::write(stem, &path.to_string_lossy(), &entries, &container, kennel)
}

/// Writes a unit into `out` for each `*.container` file in `source`
/// (none when `source` does not exist), and reports each file it could not
/// use through `log`. Returns how many units it wrote.
pub fn generate(
    source: &Path,
    out: &Path,
    scope: &Scope,
    kennel: &str,
    log: &mut dyn FnMut(String),
) -> usize {
    let listing = match fs::read_dir(source) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return 0,
        Err(e) => {
            log(format!(
                "cannot list {}: {e}; no .container file there was read",
                source.display()
            ));
            return 0;
        }
    };
    let mut paths: Vec<_> = listing
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "container"))
        .collect();
    paths.sort();
    let mut written = 0;
    for path in paths {
        let unit_name = path
            .file_stem()
            .map(|s| format!("{}.service", s.to_string_lossy()))
            .unwrap_or_default();
        let result = read(&path)
            .and_then(|text| generate_one(&path, &text, scope, kennel))
            .and_then(|unit| install(out, &unit).map_err(|e| Error::file(None, e)));
        match result {
            Ok(()) => written += 1,
            Err(e) => log(format!(
                "{}; no unit written for {unit_name}",
                e.report(&path)
            )),
        }
    }
    written
}

fn read(path: &Path) -> Result<String, Error> {
    let meta = fs::metadata(path).map_err(|e| Error::file(None, format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(Error::file(None, "not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::file(
            None,
            format!("larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    let bytes = fs::read(path).map_err(|e| Error::file(None, format!("cannot read it: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::file(None, format!("not UTF-8 text ({e})")))
}

/// Writes the unit and its `.wants`/`.requires` links into `out`.
fn install(out: &Path, unit: &unit::Unit) -> Result<(), String> {
    let path = out.join(&unit.name);
    fs::write(&path, &unit.text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    for dir in &unit.links {
        let dir = out.join(dir);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let link = dir.join(&unit.name);
        match std::os::unix::fs::symlink(format!("../{}", unit.name), &link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot link {}: {e}", link.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "generate_tests.rs"]
mod tests;
