//! Why systemd did not give kennel its scope, and the next step for each
//! way it can fail.

use std::time::Duration;

use super::Bus;

/// Why systemd did not give kennel its scope.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// Neither `DBUS_SESSION_BUS_ADDRESS` nor `XDG_RUNTIME_DIR` is set.
    #[error("cannot find the user's D-Bus to ask systemd for a cgroup: neither DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR is set; {fix}", fix = no_bus_fix(Bus::User))]
    NoUserBus,
    /// The bus address cannot be parsed or is not a unix socket.
    #[error("cannot use the D-Bus address `{address}`: {reason}; use a unix:path= or unix:abstract= address")]
    BadAddress {
        /// The address as found in the environment.
        address: Box<str>,
        /// What is wrong with it.
        reason: Box<str>,
    },
    /// No bus reachable: no socket at the address, or it refused us.
    #[error("cannot reach the {bus} bus at {address} to ask systemd for a cgroup: {error}; {fix}", fix = no_bus_fix(*.bus))]
    NoBus {
        /// The bus kennel tried.
        bus: Bus,
        /// Its address.
        address: Box<str>,
        /// Why the connection failed; `raw_os_error()` has the errno.
        error: std::io::Error,
    },
    /// The socket accepted the connection, but the D-Bus handshake failed.
    #[error("the {bus} bus at {address} refused kennel: {detail}; is kennel running as the user whose bus this is (not under su or sudo without a login session)?")]
    Handshake {
        /// The bus kennel tried.
        bus: Bus,
        /// Its address.
        address: Box<str>,
        /// zbus's description of the failure.
        detail: Box<str>,
    },
    /// systemd answered a method call with a D-Bus error.
    #[error("systemd refused {method} for {unit} on {address}: {name}: {msg}{hint}", msg = .message.trim_end_matches('.'), hint = call_hint(.name, .message, .unit))]
    CallFailed {
        /// The unit asked for.
        unit: Box<str>,
        /// The bus address.
        address: Box<str>,
        /// The method that failed (`StartTransientUnit`, `Subscribe`, ...).
        method: &'static str,
        /// The D-Bus error name, e.g. `org.freedesktop.systemd1.UnitExists`.
        name: Box<str>,
        /// systemd's message.
        message: Box<str>,
    },
    /// The job ran but did not end with `done`.
    #[error("systemd could not start {unit} on {address}: its job {job} ended with result `{result}`{hint}", hint = job_hint(.result))]
    JobFailed {
        /// The unit asked for.
        unit: Box<str>,
        /// The bus address.
        address: Box<str>,
        /// The job's object path.
        job: Box<str>,
        /// The job's result: `failed`, `timeout`, `canceled`, `dependency`, ...
        result: Box<str>,
    },
    /// systemd did not answer, or the job did not end, in time.
    #[error("systemd did not start {unit} on {address} within {timeout:?} (no answer while waiting for {waiting_for}){cleanup}; the manager may be busy: try again", cleanup = cleanup_note(.unit, .cleanup_error))]
    Timeout {
        /// The unit asked for.
        unit: Box<str>,
        /// The bus address.
        address: Box<str>,
        /// The time allowed, [`ScopeRequest::timeout`].
        timeout: Duration,
        /// What kennel was waiting for when time ran out.
        waiting_for: &'static str,
        /// `None` when nothing was left to clean up or systemd agreed to
        /// stop the unit; otherwise why stopping it failed.
        cleanup_error: Option<Box<str>>,
    },
    /// The bus connection closed in the middle of the exchange.
    #[error("lost the D-Bus connection to systemd ({address}) while waiting for {waiting_for} for {unit}: {detail}; if systemd or the bus restarted, try again")]
    Disconnected {
        /// The unit asked for.
        unit: Box<str>,
        /// The bus address.
        address: Box<str>,
        /// What kennel was waiting for.
        waiting_for: &'static str,
        /// What zbus saw (end of stream, broken pipe, ...).
        detail: Box<str>,
    },
    /// systemd's reply did not have the expected shape, or zbus failed in a
    /// way that is neither a D-Bus error nor a closed connection.
    #[error("unexpected answer from systemd to {method} for {unit} on {address}: {detail}")]
    Protocol {
        /// The unit asked for.
        unit: Box<str>,
        /// The bus address.
        address: Box<str>,
        /// The method whose answer was wrong.
        method: &'static str,
        /// zbus's description.
        detail: Box<str>,
    },
    /// The event loop for the call could not be created.
    #[error("cannot set up the D-Bus event loop: {error}")]
    Runtime {
        /// Why tokio failed (usually out of file descriptors).
        error: std::io::Error,
    },
}

impl SystemdError {
    /// Whether systemd could not be reached at all, as opposed to refusing
    /// or failing the scope: no address, no socket, a failed handshake, or
    /// no manager on the bus. `--cgroup-manager=auto` may then go on
    /// without a cgroup when no limit was asked for.
    pub fn is_unreachable(&self) -> bool {
        match self {
            SystemdError::CallFailed { name, .. } => NO_MANAGER.contains(&&**name),
            e => matches!(
                e,
                Self::NoUserBus | Self::NoBus { .. } | Self::Handshake { .. }
            ),
        }
    }
}

/// The D-Bus errors that say no systemd manager is on the bus.
const NO_MANAGER: [&str; 2] = [
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
];

/// What to do when no bus can be reached, the most common failure.
fn no_bus_fix(bus: Bus) -> &'static str {
    match bus {
        Bus::User => "run kennel from a login session of this user (or enable one with `loginctl enable-linger $USER`), or choose --cgroup-manager=cgroupfs or --cgroup-manager=disabled",
        Bus::System => "is dbus running? otherwise choose --cgroup-manager=cgroupfs or --cgroup-manager=disabled",
    }
}

/// The next step for a D-Bus error systemd commonly returns.
fn call_hint(name: &str, message: &str, unit: &str) -> String {
    match name {
        "org.freedesktop.systemd1.UnitExists" => format!("; a unit named {unit} already exists (a container of that name is running or still stopping): pick another --name"),
        name if NO_MANAGER.contains(&name) => {
            "; no systemd manager is on this bus: run kennel from a login session (or `loginctl enable-linger $USER`), or choose --cgroup-manager=cgroupfs or --cgroup-manager=disabled".into()
        }
        "org.freedesktop.DBus.Error.AccessDenied" | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => {
            "; only root may create units in the system manager: run rootless kennel as a user with a session, so it asks the user manager".into()
        }
        // "Cannot set property X, or unknown property."
        "org.freedesktop.DBus.Error.PropertyReadOnly" => {
            "; this systemd may be too old for Delegate= or CollectMode= on scopes (kennel needs systemd 236 or later), or choose --cgroup-manager=cgroupfs".into()
        }
        // "Invalid unit name or type.", "Unit name X is not valid."
        "org.freedesktop.DBus.Error.InvalidArgs" if message.contains("nit name") => {
            "; the container's name becomes part of the unit name, which allows only letters, digits and `:_.-`: pick another --name".into()
        }
        _ => String::new(),
    }
}

/// The next step for a job result other than `done`.
fn job_hint(result: &str) -> &'static str {
    match result {
        "failed" => "; `journalctl -e` (add --user for the user manager) says why, for instance the process left before systemd could move it",
        "timeout" => "; systemd gave up on the job: the manager may be busy, try again",
        "canceled" => "; another job replaced it: try again",
        _ => "",
    }
}

/// How the cleanup after a timeout went.
fn cleanup_note(unit: &str, cleanup_error: &Option<Box<str>>) -> String {
    match cleanup_error {
        None => String::new(),
        Some(e) => format!(
            "; stopping the unit failed too ({e}): stop it with `systemctl [--user] stop {unit}`"
        ),
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
