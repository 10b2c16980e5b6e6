//! The D-Bus exchange against a fake systemd manager.
//!
//! A real systemd will not fail a job, hang, or drop the bus on demand, so a
//! small `org.freedesktop.systemd1.Manager` stands in for it. Most tests talk
//! to it peer-to-peer through [`start_scope_on`]; the thread test goes the
//! whole way through [`start_scope_at`] (address, socket, handshake, Hello,
//! AddMatch) to a fake that also answers for the bus daemon.

use super::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant as StdInstant;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedValue};

/// How the fake manager treats `StartTransientUnit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Reply with a job, then `JobRemoved(.., "done")`.
    Done,
    /// Reply with a job, then `JobRemoved(.., "failed")`.
    Failed,
    /// Reply with a job that never ends.
    Never,
    /// As `Never`, and `StopUnit` never answers either.
    NeverAndStopHangs,
    /// Another job's `JobRemoved` ("failed"), then ours ("done").
    OtherJobFirst,
    /// Our `JobRemoved` ("done") goes out before the method reply.
    SignalBeforeReply,
    /// Close the connection instead of replying.
    CloseBeforeReply,
    /// Reply, then close the connection instead of sending `JobRemoved`.
    CloseAfterReply,
    /// Answer with `org.freedesktop.systemd1.UnitExists`.
    UnitExists,
}

/// What the fake saw, in order.
#[derive(Debug, Default)]
struct Seen {
    /// Every method called, in order, as `Interface.Member`-less names.
    calls: Vec<String>,
    /// `StartTransientUnit`'s arguments.
    start: Option<(String, String, HashMap<String, OwnedValue>, usize)>,
    /// `StopUnit`'s arguments.
    stops: Vec<(String, String)>,
    /// `AddMatch` rules (only over the bus path).
    matches: Vec<String>,
    /// `/proc/self/task` entries while `StartTransientUnit` was served.
    threads_mid_call: Option<usize>,
}

type Log = Arc<Mutex<Seen>>;

const OUR_JOB: &str = "/org/freedesktop/systemd1/job/42";
const OTHER_JOB: &str = "/org/freedesktop/systemd1/job/41";

/// Errors the fake answers with.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.systemd1")]
enum FakeError {
    #[zbus(error)]
    ZBus(zbus::Error),
    UnitExists(String),
}

/// The fake `org.freedesktop.systemd1.Manager`.
struct FakeManager {
    scenario: Scenario,
    log: Log,
}

fn job_path(path: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(path).unwrap()
}

/// Emit `JobRemoved` a little later, after the reply has gone out.
fn job_removed_later(
    emitter: &SignalEmitter<'_>,
    id: u32,
    job: &'static str,
    unit: &str,
    result: &'static str,
) {
    let emitter = emitter.to_owned();
    let unit = unit.to_owned();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let job = ObjectPath::try_from(job).unwrap();
        FakeManager::job_removed(&emitter, id, job, &unit, result)
            .await
            .unwrap();
    });
}

/// Close `conn` a little later, whatever is in flight.
fn close_later(conn: &zbus::Connection) {
    let conn = conn.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = conn.close().await;
    });
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl FakeManager {
    async fn subscribe(&self) {
        self.log.lock().unwrap().calls.push("Subscribe".into());
    }

    async fn start_transient_unit(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        name: String,
        mode: String,
        properties: Vec<(String, OwnedValue)>,
        aux: Vec<(String, Vec<(String, OwnedValue)>)>,
    ) -> Result<OwnedObjectPath, FakeError> {
        {
            let mut log = self.log.lock().unwrap();
            log.calls.push("StartTransientUnit".into());
            log.start = Some((
                name.clone(),
                mode,
                properties.into_iter().collect(),
                aux.len(),
            ));
            log.threads_mid_call = Some(task_count());
        }
        match self.scenario {
            Scenario::Done => job_removed_later(&emitter, 42, OUR_JOB, &name, "done"),
            Scenario::Failed => job_removed_later(&emitter, 42, OUR_JOB, &name, "failed"),
            Scenario::Never | Scenario::NeverAndStopHangs => {}
            Scenario::OtherJobFirst => {
                job_removed_later(&emitter, 41, OTHER_JOB, "other.service", "failed");
                let emitter = emitter.to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(60)).await;
                    let job = ObjectPath::try_from(OUR_JOB).unwrap();
                    FakeManager::job_removed(&emitter, 42, job, &name, "done")
                        .await
                        .unwrap();
                });
            }
            Scenario::SignalBeforeReply => {
                let job = ObjectPath::try_from(OUR_JOB).unwrap();
                FakeManager::job_removed(&emitter, 42, job, &name, "done").await?;
            }
            Scenario::CloseBeforeReply => {
                close_later(conn);
                std::future::pending::<()>().await;
            }
            Scenario::CloseAfterReply => close_later(conn),
            Scenario::UnitExists => {
                return Err(FakeError::UnitExists(format!(
                    "Unit {name} was already loaded or has a fragment file."
                )))
            }
        }
        Ok(job_path(OUR_JOB))
    }

    async fn stop_unit(&self, name: String, mode: String) -> OwnedObjectPath {
        {
            let mut log = self.log.lock().unwrap();
            log.calls.push("StopUnit".into());
            log.stops.push((name, mode));
        }
        if self.scenario == Scenario::NeverAndStopHangs {
            std::future::pending::<()>().await;
        }
        job_path("/org/freedesktop/systemd1/job/43")
    }

    async fn reset_failed_unit(&self, _name: String) {
        self.log
            .lock()
            .unwrap()
            .calls
            .push("ResetFailedUnit".into());
    }

    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

/// The bus daemon's part, for a client that is not p2p (Hello, AddMatch).
struct FakeDaemon {
    log: Log,
}

#[zbus::interface(name = "org.freedesktop.DBus")]
impl FakeDaemon {
    fn hello(&self) -> String {
        self.log.lock().unwrap().calls.push("Hello".into());
        ":1.42".into()
    }

    fn add_match(&self, rule: String) {
        let mut log = self.log.lock().unwrap();
        log.calls.push("AddMatch".into());
        log.matches.push(rule);
    }
}

/// Serve the fake on the server end of a connected socket.
async fn serve(stream: tokio::net::UnixStream, scenario: Scenario, log: Log) -> zbus::Connection {
    zbus::connection::Builder::unix_stream(stream)
        .server(zbus::Guid::generate())
        .unwrap()
        .p2p()
        .serve_at(
            PATH,
            FakeManager {
                scenario,
                log: log.clone(),
            },
        )
        .unwrap()
        .serve_at("/org/freedesktop/DBus", FakeDaemon { log })
        .unwrap()
        .build()
        .await
        .unwrap()
}

fn request(timeout: Duration) -> ScopeRequest<'static> {
    ScopeRequest {
        unit: "kennel-test.scope",
        pid: 4242,
        description: "kennel container test",
        timeout,
    }
}

/// Run `start_scope_on` over a p2p connection to a fake playing `scenario`;
/// return the outcome, what the fake saw, and how long it took.
async fn against(
    scenario: Scenario,
    timeout: Duration,
) -> (Result<(), SystemdError>, Seen, Duration) {
    let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
    let log = Log::default();
    let client = zbus::connection::Builder::unix_stream(ours).p2p().build();
    let (client, server) = tokio::join!(client, serve(theirs, scenario, log.clone()));
    let client = client.unwrap();
    let started = StdInstant::now();
    let result = start_scope_on(&client, &request(timeout)).await;
    let took = started.elapsed();
    drop(server);
    let seen = std::mem::take(&mut *log.lock().unwrap());
    (result, seen, took)
}

const SHORT: Duration = Duration::from_millis(200);
const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn success_sends_the_scope_properties_after_subscribing() {
    let (result, seen, _) = against(Scenario::Done, LONG).await;
    result.unwrap();
    assert_eq!(seen.calls, ["Subscribe", "StartTransientUnit"]);
    let (name, mode, props, aux) = seen.start.unwrap();
    assert_eq!(name, "kennel-test.scope");
    assert_eq!(mode, "fail");
    assert_eq!(aux, 0);
    let pids: Vec<u32> = props["PIDs"].try_clone().unwrap().try_into().unwrap();
    assert_eq!(pids, [4242]);
    assert!(bool::try_from(&props["Delegate"]).unwrap());
    assert_eq!(
        <&str>::try_from(&props["CollectMode"]).unwrap(),
        "inactive-or-failed"
    );
    assert_eq!(
        <&str>::try_from(&props["Description"]).unwrap(),
        "kennel container test"
    );
    assert!(!bool::try_from(&props["DefaultDependencies"]).unwrap());
    assert_eq!(props.len(), 5, "unexpected properties: {props:?}");
    assert!(seen.stops.is_empty());
}

#[tokio::test]
async fn a_failed_job_is_an_error_naming_the_result() {
    let (result, seen, _) = against(Scenario::Failed, LONG).await;
    let e = result.unwrap_err();
    assert!(
        matches!(&e, SystemdError::JobFailed { result, job, unit, .. }
            if &**result == "failed" && &**job == OUR_JOB && &**unit == "kennel-test.scope"),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("ended with result `failed`"), "{text}");
    assert!(text.contains("journalctl"), "{text}");
    assert!(
        seen.stops.is_empty(),
        "a failed scope is collected by systemd"
    );
}

#[tokio::test]
async fn a_job_that_never_ends_times_out_and_the_unit_is_stopped() {
    let (result, seen, took) = against(Scenario::Never, SHORT).await;
    let e = result.unwrap_err();
    assert!(
        matches!(&e, SystemdError::Timeout { timeout, cleanup_error: None, waiting_for, .. }
            if *timeout == SHORT && *waiting_for == "the JobRemoved signal"),
        "{e:?}"
    );
    assert!(e.to_string().contains("within 200ms"), "{e}");
    assert_eq!(
        seen.stops,
        [("kennel-test.scope".to_string(), "replace".to_string())]
    );
    assert_eq!(
        seen.calls.last().map(String::as_str),
        Some("ResetFailedUnit")
    );
    assert!(
        took >= SHORT && took < Duration::from_secs(2),
        "took {took:?}"
    );
}

#[tokio::test]
async fn cleanup_after_a_timeout_is_bounded_by_the_timeout_too() {
    let (result, seen, took) = against(Scenario::NeverAndStopHangs, SHORT).await;
    let e = result.unwrap_err();
    assert!(
        matches!(
            &e,
            SystemdError::Timeout {
                cleanup_error: Some(_),
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("stopping the unit failed too"), "{text}");
    assert!(
        text.contains("systemctl [--user] stop kennel-test.scope"),
        "{text}"
    );
    assert_eq!(seen.stops.len(), 1);
    // The work, then StopUnit and ResetFailedUnit, all in the same budget.
    assert!(
        took >= 2 * SHORT && took < 2 * SHORT + Duration::from_secs(1),
        "took {took:?}"
    );
}

#[tokio::test]
async fn the_bus_closing_before_the_reply_is_disconnected() {
    let (result, _, took) = against(Scenario::CloseBeforeReply, LONG).await;
    let e = result.unwrap_err();
    assert!(
        matches!(&e, SystemdError::Disconnected { waiting_for, .. }
            if *waiting_for == "the reply to StartTransientUnit"),
        "{e:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}: the close was not noticed"
    );
}

#[tokio::test]
async fn the_bus_closing_before_the_job_ends_is_disconnected() {
    let (result, _, took) = against(Scenario::CloseAfterReply, LONG).await;
    let e = result.unwrap_err();
    assert!(
        matches!(&e, SystemdError::Disconnected { waiting_for, .. }
            if *waiting_for == "the JobRemoved signal"),
        "{e:?}"
    );
    assert!(e.to_string().contains("try again"), "{e}");
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}: the close was not noticed"
    );
}

#[tokio::test]
async fn unit_exists_names_the_error_and_suggests_another_name() {
    let (result, seen, _) = against(Scenario::UnitExists, LONG).await;
    let e = result.unwrap_err();
    assert!(
        matches!(&e, SystemdError::CallFailed { name, method, .. }
            if &**name == "org.freedesktop.systemd1.UnitExists" && *method == "StartTransientUnit"),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("already exists"), "{text}");
    assert!(text.ends_with("pick another --name"), "{text}");
    assert!(
        seen.stops.is_empty(),
        "someone else's unit must not be stopped"
    );
}

#[tokio::test]
async fn other_jobs_are_ignored_until_ours_ends() {
    let (result, seen, took) = against(Scenario::OtherJobFirst, LONG).await;
    result.unwrap();
    assert!(
        took >= Duration::from_millis(60),
        "returned before our job ended: {took:?}"
    );
    assert!(seen.stops.is_empty());
}

#[tokio::test]
async fn a_job_that_ends_before_the_reply_arrives_is_not_missed() {
    let (result, _, _) = against(Scenario::SignalBeforeReply, LONG).await;
    result.unwrap();
}

/// Run one `start_scope_at` against a fake listening on a unix socket.
fn start_at(address: &str) -> Result<(), SystemdError> {
    start_scope_at(Bus::User, address, &request(SHORT))
}

#[test]
fn no_socket_is_unreachable_and_names_the_address_errno_and_fix() {
    let address = "unix:path=/nonexistent/kennel-test/bus";
    let e = start_at(address).unwrap_err();
    assert!(
        matches!(&e, SystemdError::NoBus { error, .. } if error.raw_os_error() == Some(libc::ENOENT)),
        "{e:?}"
    );
    assert!(e.is_unreachable());
    let text = e.to_string();
    assert!(text.contains(address), "{text}");
    assert!(text.contains("os error 2"), "{text}");
    assert!(text.contains("loginctl enable-linger"), "{text}");
    assert!(text.contains("--cgroup-manager=cgroupfs"), "{text}");
}

#[test]
fn addresses_kennel_cannot_use_are_refused_before_connecting() {
    for address in ["tcp:host=localhost,port=1", "nonsense", "unix:tmpdir=/tmp"] {
        let e = start_at(address).unwrap_err();
        assert!(
            matches!(&e, SystemdError::BadAddress { .. }),
            "{address}: {e:?}"
        );
        assert!(e.to_string().contains(address), "{e}");
    }
}

#[test]
fn the_next_of_several_addresses_is_tried() {
    let e = start_at("unix:path=/nonexistent/a;unix:path=/nonexistent/b").unwrap_err();
    assert!(matches!(&e, SystemdError::NoBus { .. }), "{e:?}");
}

/// The count of this process's threads.
fn task_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// A fake systemd, bus daemon part included, listening on a socket, served
/// by a thread of its own. Its tokio blocking pool (zbus's server side
/// reads the peer's credentials there) is started up front and kept, so the
/// process's thread count stays put while clients come and go.
fn fake_listening(scenario: Scenario, log: Log) -> String {
    use std::os::linux::net::SocketAddrExt;
    // An abstract socket: nothing is left behind in the file system.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("kennel-systemd-fake-{}-{n}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let std_listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let (ready, is_ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(1)
            .thread_keep_alive(Duration::from_secs(3600))
            .build()
            .unwrap();
        runtime.block_on(async move {
            tokio::task::spawn_blocking(|| ()).await.unwrap();
            let listener = tokio::net::UnixListener::from_std(std_listener).unwrap();
            ready.send(()).unwrap();
            let mut served = Vec::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                served.push(serve(stream, scenario, log.clone()).await);
            }
        });
    });
    is_ready.recv().unwrap();
    format!("unix:abstract={name}")
}

/// Set in the child process the thread test runs in.
const PROBE: &str = "KENNEL_SYSTEMD_THREAD_PROBE";

/// The runner clones the container right after `start_scope`, which is only
/// safe with one thread: no thread may outlive the call, and zbus must
/// start none during it. Other tests' threads would blur the count, so this
/// test runs itself again, alone, in a child process.
#[test]
fn start_scope_leaves_only_the_callers_thread() {
    if std::env::var_os(PROBE).is_none() {
        let name = "systemd::tests::start_scope_leaves_only_the_callers_thread";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1", "--nocapture"])
            .env(PROBE, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the probe failed:\n{text}");
        assert!(text.contains("1 passed"), "the probe did not run:\n{text}");
        return;
    }
    let log = Log::default();
    let address = fake_listening(Scenario::Done, log.clone());
    let before = task_count();
    start_at(&address).unwrap();
    let after = task_count();
    let seen = std::mem::take(&mut *log.lock().unwrap());
    eprintln!(
        "threads: before {before}, during {:?}, after {after}",
        seen.threads_mid_call
    );
    assert_eq!(after, before, "start_scope left a thread behind");
    assert_eq!(
        seen.threads_mid_call,
        Some(before),
        "a thread existed during the call"
    );
    // The real-bus path: Hello, then AddMatch for JobRemoved before the unit.
    assert_eq!(
        seen.calls,
        ["Hello", "AddMatch", "Subscribe", "StartTransientUnit"]
    );
    let rule = &seen.matches[0];
    for part in [
        "type='signal'",
        "sender='org.freedesktop.systemd1'",
        "path='/org/freedesktop/systemd1'",
        "interface='org.freedesktop.systemd1.Manager'",
        "member='JobRemoved'",
    ] {
        assert!(rule.contains(part), "{part} missing from {rule}");
    }
    // A failing call must leave no thread behind either.
    let log = Log::default();
    let address = fake_listening(Scenario::Never, log.clone());
    let before = task_count();
    let e = start_at(&address).unwrap_err();
    assert!(matches!(e, SystemdError::Timeout { .. }), "{e:?}");
    assert_eq!(
        task_count(),
        before,
        "a failed start_scope left a thread behind"
    );
    assert_eq!(log.lock().unwrap().stops.len(), 1);
}

#[test]
fn abstract_addresses_are_connected_to() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("kennel-systemd-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    // A listener that never answers: reaching it ends in a handshake timeout,
    // not in "no such socket".
    let _listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    let e = start_at(&format!("unix:abstract={name}")).unwrap_err();
    assert!(
        matches!(&e, SystemdError::Handshake { detail, .. } if detail.contains("200ms")),
        "{e:?}"
    );
    assert!(e.is_unreachable());
}
