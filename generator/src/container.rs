//! The `[Container]` section: each key checked and turned into the
//! `kennel run` flags it stands for. Everything a key means is decided
//! here, so a mistake is reported with its line and key at
//! `daemon-reload`, not when the unit starts.

use std::collections::BTreeMap;
use std::path::Path;

use crate::ini::Entry;
use crate::words;
use crate::Error;

/// Whose manager the units are for: it decides what `~/` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The user manager; `~/` is this home directory.
    User { home: String },
    /// The system manager; `~/` is refused (a system unit has no home).
    System,
}

/// What `kennel run` is asked to do for one `.container` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The container's name (`kennel ps`, `kennel exec`).
    pub name: String,
    /// `kennel run`'s flags, then `--` and the command.
    pub run_args: Vec<String>,
}

/// Keys that may be given once.
const SINGLE: &[&str] = &[
    "Rootfs",
    "Image",
    "Exec",
    "Name",
    "ReadOnly",
    "NoHome",
    "Network",
    "Memory",
    "MemorySwap",
    "Pids",
    "CPUs",
    "CPUWeight",
    "IOWeight",
    "Notify",
    "WorkingDir",
    "User",
    "UserNS",
    "Init",
    "Hostname",
    "Landlock",
];

/// Keys that may be repeated; an empty assignment clears what came before,
/// as in systemd.
const LISTS: &[&str] = &[
    "Volume",
    "Tmpfs",
    "PublishPort",
    "Environment",
    "EnvironmentFile",
    "AddCapability",
    "DropCapability",
    "Ulimit",
    "SecurityOpt",
    "KennelArgs",
];

type Values<'a> = BTreeMap<&'a str, Vec<&'a Entry>>;

/// The `[Container]` entries of the file whose unit is `stem`.service.
pub fn build(stem: &str, entries: &[Entry], scope: &Scope) -> Result<Container, Error> {
    let mut values: Values = BTreeMap::new();
    for e in entries.iter().filter(|e| e.section == "Container") {
        let key = e.key.as_str();
        if SINGLE.contains(&key) {
            if let Some(first) = values.get(key).and_then(|v| v.first()) {
                return Err(Error::at(
                    e.line,
                    Some(key),
                    format!("given twice (first on line {}); keep one", first.line),
                ));
            }
        } else if !LISTS.contains(&key) {
            return Err(Error::at(
                e.line,
                Some(key),
                format!(
                    "unknown key in [Container]; the keys are {} (see kennel.container(5))",
                    SINGLE
                        .iter()
                        .chain(LISTS)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let list = values.entry(key).or_default();
        if e.value.is_empty() && LISTS.contains(&key) {
            list.clear();
        } else {
            list.push(e);
        }
    }
    if !entries.iter().any(|e| e.section == "Container") {
        return Err(Error::file(
            None,
            "no [Container] section: a .container file needs at least [Container] with Exec=",
        ));
    }
    Builder {
        values,
        scope,
        args: Vec::new(),
    }
    .finish(stem)
}

struct Builder<'a> {
    values: Values<'a>,
    scope: &'a Scope,
    args: Vec<String>,
}

impl<'a> Builder<'a> {
    fn one(&self, key: &str) -> Option<&'a Entry> {
        self.values.get(key).and_then(|v| v.first().copied())
    }

    fn all(&self, key: &str) -> Vec<&'a Entry> {
        self.values.get(key).cloned().unwrap_or_default()
    }

    fn flag(&mut self, flag: &str, value: impl Into<String>) {
        self.args.push(flag.to_string());
        self.args.push(value.into());
    }

    /// A host path: absolute, or `~/...` for the user's home.
    fn host_path(&self, e: &Entry, path: &str) -> Result<String, Error> {
        if let Some(rest) = path.strip_prefix("~/") {
            return match self.scope {
                Scope::User { home } => Ok(format!("{}/{rest}", home.trim_end_matches('/'))),
                Scope::System => Err(e.error(format!(
                    "{path:?}: ~/ means your home, and a system unit has none; write the full path"
                ))),
            };
        }
        if !Path::new(path).is_absolute() {
            return Err(e.error(format!(
                "{path:?} is relative: write an absolute path{}",
                match self.scope {
                    Scope::User { .. } => ", or ~/... for one in your home",
                    Scope::System => "",
                }
            )));
        }
        Ok(path.to_string())
    }

    fn finish(mut self, stem: &str) -> Result<Container, Error> {
        self.refuse_image()?;
        let name = self.name(stem)?;
        self.flag("--name", name.clone());
        self.root_and_user()?;
        self.network()?;
        self.switches()?;
        self.mounts()?;
        self.process()?;
        self.security()?;
        self.limits()?;
        self.notify_and_kennel_args()?;
        let command = self.command()?;
        self.args.push("--".to_string());
        self.args.extend(command);
        Ok(Container {
            name,
            run_args: self.args,
        })
    }

    fn refuse_image(&self) -> Result<(), Error> {
        if let Some(e) = self.one("Image") {
            return Err(e.error(
                "kennel cannot pull or run images: unpack the image into a directory \
                 (docs/run.md, \"A root filesystem\") and name it with Rootfs=",
            ));
        }
        Ok(())
    }

    /// Name=, or else the file's name.
    fn name(&self, stem: &str) -> Result<String, Error> {
        Ok(match self.one("Name") {
            Some(e) if valid_name(&e.value) => e.value.clone(),
            Some(e) => return Err(e.error(format!("{:?}: {NAME_RULE}", e.value))),
            None if valid_name(stem) => stem.to_string(),
            None => {
                return Err(Error::file(
                    None,
                    format!("the file's name makes the container name {stem:?}, but {NAME_RULE}; rename the file or set Name="),
                ))
            }
        })
    }

    /// Rootfs=, UserNS=, User=, WorkingDir= and Hostname=.
    fn root_and_user(&mut self) -> Result<(), Error> {
        if let Some(e) = self.one("Rootfs") {
            let path = self.host_path(e, &e.value)?;
            self.flag("--rootfs", path);
        }
        if let Some(e) = self.one("UserNS") {
            let mode = one_of(e, &["auto", "keep-id", "single", "subids"])?;
            self.flag("--userns", mode);
        }
        for (key, flag) in [
            ("User", "--user"),
            ("WorkingDir", "--workdir"),
            ("Hostname", "--hostname"),
        ] {
            if let Some(e) = self.one(key) {
                self.flag(flag, e.value.clone());
            }
        }
        Ok(())
    }

    /// Network= and PublishPort=.
    fn network(&mut self) -> Result<(), Error> {
        if let Some(e) = self.one("Network") {
            if e.value == "bridge" {
                return Err(e.error(
                    "bridge networking is not yet implemented in kennel; use pasta or private",
                ));
            }
            let mode = one_of(e, &["private", "host", "pasta"])?;
            self.flag("--net", mode);
        }
        for e in self.all("PublishPort") {
            self.flag("--publish", e.value.clone());
        }
        Ok(())
    }

    /// The booleans ReadOnly=, NoHome= and Init=.
    fn switches(&mut self) -> Result<(), Error> {
        for (key, flag) in [("ReadOnly", "--read-only"), ("NoHome", "--no-home")] {
            if let Some(e) = self.one(key) {
                if boolean(e)? {
                    self.args.push(flag.to_string());
                }
            }
        }
        // On by default, unlike `kennel run`'s --init: a PID 1 without a
        // SIGTERM handler ignores the stop's SIGTERM, so the stop would
        // wait out TimeoutStopSec= and end in a kill and a failed unit.
        if self.one("Init").map(boolean).transpose()?.unwrap_or(true) {
            self.args.push("--init".to_string());
        }
        Ok(())
    }

    /// Volume= and Tmpfs=.
    fn mounts(&mut self) -> Result<(), Error> {
        for e in self.all("Volume") {
            let volume = self.volume(e)?;
            self.flag("--volume", volume);
        }
        for e in self.all("Tmpfs") {
            if !e.value.starts_with('/') {
                return Err(e.error(format!(
                    "{:?} is not an absolute path in the container",
                    e.value
                )));
            }
            self.flag("--tmpfs", e.value.clone());
        }
        Ok(())
    }

    /// Environment=, EnvironmentFile= and Ulimit=.
    fn process(&mut self) -> Result<(), Error> {
        for e in self.all("Environment") {
            for word in split(e)? {
                match word.split_once('=') {
                    Some((k, _)) if !k.is_empty() => self.flag("--env", word),
                    _ => return Err(e.error(format!("{word:?} is not NAME=VALUE"))),
                }
            }
        }
        for e in self.all("EnvironmentFile") {
            let path = self.host_path(e, &e.value)?;
            self.flag("--env-file", path);
        }
        for e in self.all("Ulimit") {
            self.flag("--ulimit", e.value.clone());
        }
        Ok(())
    }

    /// AddCapability=, DropCapability=, SecurityOpt= and Landlock=.
    fn security(&mut self) -> Result<(), Error> {
        for (key, flag) in [
            ("AddCapability", "--cap-add"),
            ("DropCapability", "--cap-drop"),
        ] {
            for e in self.all(key) {
                for cap in split(e)? {
                    self.flag(flag, cap);
                }
            }
        }
        for e in self.all("SecurityOpt") {
            self.flag("--security-opt", e.value.clone());
        }
        if let Some(e) = self.one("Landlock") {
            let on = boolean(e)?;
            self.args.push(format!("--landlock={on}"));
        }
        Ok(())
    }

    /// Notify=, then KennelArgs= as given.
    fn notify_and_kennel_args(&mut self) -> Result<(), Error> {
        if let Some(e) = self.one("Notify") {
            if boolean(e)? {
                self.flag("--sdnotify", "container");
            }
        }
        for e in self.all("KennelArgs") {
            self.args.extend(split(e)?);
        }
        Ok(())
    }

    /// Exec=, split into words: the command after `--`.
    fn command(&self) -> Result<Vec<String>, Error> {
        let Some(exec) = self.one("Exec") else {
            return Err(Error::file(
                Some("Exec"),
                "missing: [Container] needs Exec=, the command to run",
            ));
        };
        let command = split(exec)?;
        if command.is_empty() {
            return Err(exec.error("is empty: name the command to run"));
        }
        Ok(command)
    }

    fn volume(&self, e: &Entry) -> Result<String, Error> {
        let parts: Vec<&str> = e.value.split(':').collect();
        let (src, dst, mode) = match parts[..] {
            [s, d] => (s, d, None),
            [s, d, m @ ("ro" | "rw")] => (s, d, Some(m)),
            _ => {
                return Err(e.error(format!(
                    "{:?} is not SOURCE:DEST or SOURCE:DEST:ro",
                    e.value
                )))
            }
        };
        let src = self.host_path(e, src)?;
        if !dst.starts_with('/') {
            return Err(e.error(format!("{dst:?} is not an absolute path in the container")));
        }
        Ok(match mode {
            Some(m) => format!("{src}:{dst}:{m}"),
            None => format!("{src}:{dst}"),
        })
    }

    fn limits(&mut self) -> Result<(), Error> {
        if let Some(e) = self.one("Memory") {
            size(e, &e.value)?;
            self.flag("--memory", e.value.clone());
        }
        if let Some(e) = self.one("MemorySwap") {
            if e.value != "-1" {
                size(e, &e.value)?;
            }
            self.flag("--memory-swap", e.value.clone());
        }
        if let Some(e) = self.one("Pids") {
            match e.value.parse::<u64>() {
                Ok(n) if n > 0 => self.flag("--pids-limit", e.value.clone()),
                _ => {
                    return Err(e.error(format!(
                        "{:?} is not a positive number of processes",
                        e.value
                    )))
                }
            }
        }
        if let Some(e) = self.one("CPUs") {
            match e.value.parse::<f64>() {
                Ok(n) if n.is_finite() && n > 0.0 => self.flag("--cpus", e.value.clone()),
                _ => {
                    return Err(e.error(format!(
                        "{:?} is not a positive number of CPUs, e.g. 0.5 or 2",
                        e.value
                    )))
                }
            }
        }
        for (key, flag) in [("CPUWeight", "--cpu-weight"), ("IOWeight", "--io-weight")] {
            if let Some(e) = self.one(key) {
                match e.value.parse::<u64>() {
                    Ok(1..=10000) => self.flag(flag, e.value.clone()),
                    _ => {
                        return Err(
                            e.error(format!("{:?} is not a weight from 1 to 10000", e.value))
                        )
                    }
                }
            }
        }
        Ok(())
    }
}

impl Entry {
    fn error(&self, message: impl Into<String>) -> Error {
        Error::at(self.line, Some(&self.key), message)
    }
}

fn split(e: &Entry) -> Result<Vec<String>, Error> {
    words::split(&e.value).map_err(|m| e.error(m))
}

/// systemd's booleans.
fn boolean(e: &Entry) -> Result<bool, Error> {
    match e.value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(e.error(format!("{:?} is not a boolean: yes or no", e.value))),
    }
}

fn one_of(e: &Entry, choices: &[&str]) -> Result<String, Error> {
    if choices.contains(&e.value.as_str()) {
        Ok(e.value.clone())
    } else {
        Err(e.error(format!(
            "{:?} is not one of {}",
            e.value,
            choices.join(", ")
        )))
    }
}

/// A size as kennel reads it: bytes, or k, m, g or t (binary), with an
/// optional b or ib.
fn size(e: &Entry, text: &str) -> Result<(), Error> {
    let lower = text.to_ascii_lowercase();
    let number = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let number = number.strip_suffix(['k', 'm', 'g', 't']).unwrap_or(number);
    if number.is_empty()
        || !number.bytes().all(|b| b.is_ascii_digit())
        || number.bytes().all(|b| b == b'0')
    {
        return Err(e.error(format!("{text:?} is not a size such as 512k, 64M or 1G")));
    }
    Ok(())
}

const NAME_RULE: &str =
    "a container name has letters, digits, '_', '.' and '-', and starts with a letter or digit";

/// kennel's rule for container names (`kennel run --name`).
fn valid_name(name: &str) -> bool {
    name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

#[cfg(test)]
#[path = "container_tests.rs"]
mod tests;
