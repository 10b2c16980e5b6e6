//! A transient scope with `Delegate=yes`, asked of systemd over D-Bus.
//!
//! An unprivileged user may not write to the cgroup tree, but systemd hands
//! out subtrees: [`start_scope`] asks the user manager (as root, the system
//! manager) for `kennel-NAME.scope` holding one pid, its cgroup delegated to
//! us. As in systemd-run and nspawn, over one connection: a match rule for
//! `Manager.JobRemoved` and `Manager.Subscribe` *before* the job exists, so
//! its end cannot be missed; `StartTransientUnit(unit, "fail", properties,
//! [])`, which returns a job path; then the `JobRemoved` of that job, others'
//! ignored, whose result must be `done`, all within [`ScopeRequest::timeout`].
//! A job that does not end in time has its unit stopped; a scope that failed
//! needs nothing, `CollectMode=inactive-or-failed` lets systemd unload it.
//!
//! Threads: the runner later clones the container with `clone3` and no
//! `CLONE_VM`, only safe while it has one thread. So the call runs on a
//! current-thread tokio runtime living only inside [`start_scope`], connects
//! the socket itself (zbus would use a blocking-pool thread for that) and
//! uses nothing else that needs tokio's blocking pool: when [`start_scope`]
//! returns, the caller's thread is the only one.

use std::ffi::OsStr;
use std::fmt;
use std::future::poll_fn;
use std::io::ErrorKind;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::{timeout_at, Instant};
use zbus::address::transport::{Transport, UnixSocket};
use zbus::export::futures_core::Stream;
use zbus::message::Type as MessageType;
use zbus::zvariant::{OwnedObjectPath, Value};
use zbus::{Connection, MatchRule, MessageStream};

mod address;
mod error;

pub use address::{bus_address, host_uid};
pub use error::SystemdError;

/// The systemd manager's name on the bus.
const DESTINATION: &str = "org.freedesktop.systemd1";
/// The manager object.
const PATH: &str = "/org/freedesktop/systemd1";
/// The manager interface.
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// How many `JobRemoved` signals may queue while kennel waits for a reply.
/// When the queue is full zbus stops reading the socket, which would hold
/// back our own reply; other clients' jobs must never get there.
const SIGNAL_QUEUE: usize = 1024;
/// Stands for the bus address in errors from [`start_scope_on`], which only
/// sees a connection.
const GIVEN_CONNECTION: &str = "the caller's connection";

/// Which systemd manager to ask for the scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// The user's own manager (`systemd --user`) on the session bus: rootless.
    User,
    /// The system manager (PID 1) on the system bus: root.
    System,
}

impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bus::User => "user",
            Bus::System => "system",
        })
    }
}

/// What to ask systemd for.
#[derive(Debug, Clone, Copy)]
pub struct ScopeRequest<'a> {
    /// The unit's name, `kennel-NAME.scope`.
    pub unit: &'a str,
    /// The process systemd moves into the scope (`PIDs=`).
    pub pid: u32,
    /// The unit's `Description=`, shown by `systemctl status`.
    pub description: &'a str,
    /// How long the whole exchange may take: connecting, the call and the
    /// job. Stopping a scope that did not start gets the same time again.
    pub timeout: Duration,
}

/// Ask the `bus`'s systemd manager for the scope `req` describes, and wait
/// until it is running with `req.pid` in it.
///
/// One connection serves the whole call. The call runs on its own
/// current-thread runtime, dropped before returning, so no thread but the
/// caller's exists afterwards, whatever the outcome.
///
/// # Panics
///
/// When called inside an async runtime (tokio refuses to nest one); the
/// runner calls it from plain synchronous code.
pub fn start_scope(bus: Bus, req: &ScopeRequest) -> Result<(), SystemdError> {
    let address = bus_address(bus)?;
    start_scope_at(bus, &address, req)
}

/// [`start_scope`] on an explicit address.
pub(crate) fn start_scope_at(
    bus: Bus,
    address: &str,
    req: &ScopeRequest,
) -> Result<(), SystemdError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| SystemdError::Runtime { error })?;
    let result = runtime.block_on(async {
        let deadline = Instant::now() + req.timeout;
        // Every zbus object is created and dropped inside this block, on the
        // runtime: dropping some of them spawns a task.
        let conn = connect(bus, address, req.timeout, deadline).await?;
        run(&conn, req, deadline, address).await
    });
    // Dropping the runtime joins its blocking pool (empty: nothing here uses
    // it), so returning leaves the caller's thread alone.
    drop(runtime);
    result
}

/// Ask systemd for the scope over an existing connection: the logic of
/// [`start_scope`], usable over any connection (tests use a peer-to-peer one
/// to a fake manager). Errors name the bus "the caller's connection".
pub async fn start_scope_on(
    conn: &zbus::Connection,
    req: &ScopeRequest<'_>,
) -> Result<(), SystemdError> {
    run(conn, req, Instant::now() + req.timeout, GIVEN_CONNECTION).await
}

/// Open the one bus connection of this call: connect, authenticate, Hello.
///
/// The socket is connected here rather than by zbus, because zbus connects
/// a unix socket on tokio's blocking pool, that is, on a second thread.
async fn connect(
    bus: Bus,
    address: &str,
    timeout: Duration,
    deadline: Instant,
) -> Result<Connection, SystemdError> {
    let bad = |reason: String| SystemdError::BadAddress {
        address: address.into(),
        reason: reason.into(),
    };
    let mut last_error = std::io::Error::other("the address is empty");
    // An address may list several, separated by ';', to be tried in order.
    for one in address.split(';').filter(|a| !a.is_empty()) {
        let parsed = zbus::Address::from_str(one).map_err(|e| bad(e.to_string()))?;
        let path = match parsed.transport() {
            Transport::Unix(unix) => match unix.path() {
                UnixSocket::File(path) => path.as_os_str().to_owned(),
                // tokio takes a leading NUL for the abstract namespace.
                UnixSocket::Abstract(name) => [OsStr::new("\0"), name].join(OsStr::new("")),
                _ => return Err(bad("unix:dir= and unix:tmpdir= are for servers".into())),
            },
            _ => return Err(bad("kennel talks to systemd over a unix socket only".into())),
        };
        let connecting = timeout_at(deadline, tokio::net::UnixStream::connect(&path)).await;
        let stream = match connecting.unwrap_or_else(|_| Err(ErrorKind::TimedOut.into())) {
            Ok(stream) => stream,
            Err(error) => {
                last_error = error;
                continue;
            }
        };
        let mut builder = zbus::connection::Builder::unix_stream(stream)
            // A no-op with tokio, which zbus runs on the caller's runtime;
            // it matters if Cargo feature unification ever adds zbus's
            // async-io backend, which would start an executor thread.
            .internal_executor(false);
        // In a user namespace the bus sees the uid we map to, and EXTERNAL
        // must claim that one, not ours.
        if let Some(uid) = host_uid() {
            builder = builder.user_id(uid);
        }
        let build = builder.build();
        let detail = match timeout_at(deadline, build).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        return Err(SystemdError::Handshake {
            bus,
            address: address.into(),
            detail: detail.into(),
        });
    }
    Err(SystemdError::NoBus {
        bus,
        address: address.into(),
        error: last_error,
    })
}

/// The properties of the scope, as `StartTransientUnit` takes them.
fn scope_properties<'a>(req: &ScopeRequest<'a>) -> Vec<(&'static str, Value<'a>)> {
    vec![
        ("PIDs", Value::from(vec![req.pid])),
        ("Delegate", Value::from(true)),
        ("CollectMode", Value::from("inactive-or-failed")),
        ("Description", Value::from(req.description)),
        ("DefaultDependencies", Value::from(false)),
    ]
}

/// The steps common to [`start_scope`] and [`start_scope_on`]; `address`
/// only names the bus in errors.
async fn run(
    conn: &Connection,
    req: &ScopeRequest<'_>,
    deadline: Instant,
    address: &str,
) -> Result<(), SystemdError> {
    let call = Call {
        conn,
        req,
        address,
        deadline,
    };

    // 1. Listen for JobRemoved before any job exists. On a bus this sends
    //    AddMatch to the daemon (which then only forwards the signal from
    //    the owner of org.freedesktop.systemd1); zbus skips it on p2p.
    let rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .sender(DESTINATION)
        .and_then(|b| b.path(PATH))
        .and_then(|b| b.interface(MANAGER))
        .and_then(|b| b.member("JobRemoved"))
        .map(|b| b.build())
        .map_err(|e| call.error("AddMatch", e))?;
    let listen = MessageStream::for_match_rule(rule, conn, Some(SIGNAL_QUEUE));
    let stream = (call.within("AddMatch", listen).await?).map_err(|e| call.error("AddMatch", e))?;

    // 2. Ask systemd to send its signals. A manager that already counts this
    //    connection as subscribed says so with an error that is fine here.
    match call.method("Subscribe", &()).await {
        Err(SystemdError::CallFailed { ref name, .. })
            if &**name == "org.freedesktop.systemd1.AlreadySubscribed" => {}
        other => drop(other?),
    }

    // 3. Create the unit; systemd answers with the job that starts it.
    let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
    let body = (req.unit, "fail", scope_properties(req), aux);
    let reply = match call.method("StartTransientUnit", &body).await {
        Ok(reply) => reply,
        Err(e @ SystemdError::Timeout { .. }) => {
            // The job may exist even though its path never arrived.
            return Err(call.clean_up(e).await);
        }
        Err(e) => return Err(e),
    };
    let job: OwnedObjectPath = reply
        .body()
        .deserialize()
        .map_err(|e| call.error("StartTransientUnit", e))?;

    // 4. Wait for that job's end; other jobs' signals go by.
    match call.wait_for_job(stream, &job).await {
        Ok(result) if result == "done" => Ok(()),
        Ok(result) => Err(SystemdError::JobFailed {
            unit: req.unit.into(),
            address: address.into(),
            job: job.as_str().into(),
            result: result.into(),
        }),
        Err(e @ SystemdError::Timeout { .. }) => Err(call.clean_up(e).await),
        Err(e) => Err(e),
    }
}

/// One `start_scope` exchange: what errors need to name, and the deadline.
struct Call<'c> {
    conn: &'c Connection,
    req: &'c ScopeRequest<'c>,
    address: &'c str,
    deadline: Instant,
}

impl Call<'_> {
    /// Await `fut`, the answer to `method`, until the deadline.
    async fn within<T>(
        &self,
        method: &'static str,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, SystemdError> {
        timeout_at(self.deadline, fut)
            .await
            .map_err(|_| SystemdError::Timeout {
                unit: self.req.unit.into(),
                address: self.address.into(),
                timeout: self.req.timeout,
                waiting_for: waiting_for(method),
                cleanup_error: None,
            })
    }

    /// Call a manager method and wait, until the deadline, for its reply.
    async fn method<B>(&self, method: &'static str, body: &B) -> Result<zbus::Message, SystemdError>
    where
        B: zbus::export::serde::Serialize + zbus::zvariant::DynamicType,
    {
        let call = self
            .conn
            .call_method(Some(DESTINATION), PATH, Some(MANAGER), method, body);
        (self.within(method, call).await?).map_err(|e| self.error(method, e))
    }

    /// Translate a zbus error from `method` into ours.
    fn error(&self, method: &'static str, e: zbus::Error) -> SystemdError {
        let unit = self.req.unit.into();
        let address = self.address.into();
        match e {
            zbus::Error::MethodError(name, message, _) => SystemdError::CallFailed {
                unit,
                address,
                method,
                name: name.as_str().into(),
                message: message.unwrap_or_default().into(),
            },
            zbus::Error::FDO(e) => {
                use zbus::DBusError;
                SystemdError::CallFailed {
                    unit,
                    address,
                    method,
                    name: e.name().as_str().into(),
                    message: e.description().unwrap_or_default().into(),
                }
            }
            zbus::Error::InputOutput(io) => SystemdError::Disconnected {
                unit,
                address,
                waiting_for: waiting_for(method),
                detail: io.to_string().into(),
            },
            other => SystemdError::Protocol {
                unit,
                address,
                method,
                detail: other.to_string().into(),
            },
        }
    }

    /// Read `JobRemoved` signals until the one for `job`, and return its
    /// result.
    async fn wait_for_job(
        &self,
        mut stream: MessageStream,
        job: &OwnedObjectPath,
    ) -> Result<String, SystemdError> {
        loop {
            let next = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx));
            let msg = match self.within("JobRemoved", next).await? {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => return Err(self.error("JobRemoved", e)),
                None => {
                    return Err(SystemdError::Disconnected {
                        unit: self.req.unit.into(),
                        address: self.address.into(),
                        waiting_for: waiting_for("JobRemoved"),
                        detail: "end of stream".into(),
                    })
                }
            };
            // JobRemoved(u id, o job, s unit, s result). A signal of another
            // shape cannot be ours: skip it like any other job's.
            let body = msg.body();
            let Ok((_id, removed, _unit, result)) =
                body.deserialize::<(u32, OwnedObjectPath, String, String)>()
            else {
                continue;
            };
            if &removed == job {
                return Ok(result);
            }
        }
    }

    /// After a timeout: ask systemd to stop the unit and forget it if it
    /// failed, within the same time again, and note in `e` whether that
    /// worked.
    ///
    /// The mode is "replace", not "fail": our start job may still be queued,
    /// and "fail" refuses a stop that would cancel a pending start.
    async fn clean_up(&self, mut e: SystemdError) -> SystemdError {
        let cleanup = Call {
            deadline: Instant::now() + self.req.timeout,
            ..*self
        };
        let stopped = match cleanup
            .method("StopUnit", &(self.req.unit, "replace"))
            .await
        {
            Ok(_) => Ok(()),
            // Never loaded, or already gone: nothing left behind.
            Err(SystemdError::CallFailed { name, .. })
                if &*name == "org.freedesktop.systemd1.NoSuchUnit" =>
            {
                Ok(())
            }
            Err(SystemdError::CallFailed { name, message, .. }) => {
                Err(format!("{name}: {message}"))
            }
            Err(SystemdError::Timeout { timeout, .. }) => {
                Err(format!("no answer within {timeout:?}"))
            }
            Err(SystemdError::Disconnected { detail, .. }) => {
                Err(format!("connection closed: {detail}"))
            }
            Err(e) => Err(e.to_string()),
        };
        // A failed unit is unloaded by CollectMode already; this only helps
        // a manager that ignores it, so its outcome does not matter.
        let _ = cleanup.method("ResetFailedUnit", &(self.req.unit,)).await;
        if let (SystemdError::Timeout { cleanup_error, .. }, Err(why)) = (&mut e, stopped) {
            *cleanup_error = Some(why.into());
        }
        e
    }
}

/// What kennel waits for after calling `method` (or for the signal
/// `JobRemoved`), for errors.
fn waiting_for(method: &str) -> &'static str {
    match method {
        "JobRemoved" => "the JobRemoved signal",
        "AddMatch" => "the reply to AddMatch",
        "Subscribe" => "the reply to Subscribe",
        "StartTransientUnit" => "the reply to StartTransientUnit",
        "StopUnit" => "the reply to StopUnit",
        "ResetFailedUnit" => "the reply to ResetFailedUnit",
        _ => "a reply",
    }
}

#[cfg(test)]
#[path = "systemd_tests.rs"]
mod tests;
