//! Where the bus is, and whose uid kennel stands for on it.

use super::{Bus, SystemdError};

/// The address of `bus`, from the environment.
///
/// User: `$DBUS_SESSION_BUS_ADDRESS`, else `unix:path=$XDG_RUNTIME_DIR/bus`,
/// else [`SystemdError::NoUserBus`]. System: `$DBUS_SYSTEM_BUS_ADDRESS`, else
/// `unix:path=/run/dbus/system_bus_socket`.
pub fn bus_address(bus: Bus) -> Result<String, SystemdError> {
    address_from_env(bus, |name| std::env::var(name).ok())
}

/// [`bus_address`] with the environment passed in, so tests need not change
/// the process's. Empty values count as unset, and so does a relative
/// `XDG_RUNTIME_DIR` (the XDG spec says to ignore it).
pub(crate) fn address_from_env(
    bus: Bus,
    var: impl Fn(&str) -> Option<String>,
) -> Result<String, SystemdError> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    match bus {
        Bus::User => {
            if let Some(address) = set("DBUS_SESSION_BUS_ADDRESS") {
                return Ok(address);
            }
            match set("XDG_RUNTIME_DIR") {
                Some(dir) if dir.starts_with('/') => {
                    let dir = dir.trim_end_matches('/');
                    Ok(format!("unix:path={}/bus", escape_address_value(dir)))
                }
                _ => Err(SystemdError::NoUserBus),
            }
        }
        Bus::System => Ok(set("DBUS_SYSTEM_BUS_ADDRESS")
            .unwrap_or_else(|| "unix:path=/run/dbus/system_bus_socket".into())),
    }
}

/// Escape a value for a D-Bus address: bytes outside `[-0-9A-Za-z_/.\*]` are
/// written `%XX` (D-Bus specification, "Server Addresses").
fn escape_address_value(value: &str) -> String {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-_/.\\*".contains(b);
    let escape = |b: u8| match plain(&b) {
        true => char::from(b).to_string(),
        false => format!("%{b:02x}"),
    };
    value.bytes().map(escape).collect()
}

/// The uid our effective uid maps to in the initial user namespace, when
/// we run in another one (None in the initial one, or if unreadable).
pub fn host_uid() -> Option<u32> {
    let map = std::fs::read_to_string("/proc/self/uid_map").ok()?;
    host_uid_in(&map, nix::unistd::geteuid().as_raw())
}

fn host_uid_in(map: &str, euid: u32) -> Option<u32> {
    let lines: Vec<(u32, u32, u32)> = map
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(str::parse::<u32>);
            Some((f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?))
        })
        .collect();
    if lines == [(0, 0, u32::MAX)] {
        return None;
    }
    lines
        .iter()
        .find(|(inner, _, count)| euid >= *inner && euid - inner < *count)
        .map(|(inner, outer, _)| outer + (euid - inner))
}

#[cfg(test)]
#[path = "address_tests.rs"]
mod tests;
