//! OCI hooks: programs the spec names, run at points of the container's
//! life with its state as JSON on stdin. createRuntime (and the older
//! prestart) run in the runtime's namespaces while the container is being
//! created; createContainer in the container's, before it enters its root;
//! startContainer in the container's root, just before the command;
//! poststart after `start`; poststop after `delete`.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::{Hook, Hooks};
use serde::{Deserialize, Serialize};

/// One hook, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookPlan {
    pub path: PathBuf,
    /// argv, its first element included (the path when none is given).
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<Duration>,
}

/// The spec's hooks by the point they run at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookPlans {
    /// prestart, then createRuntime.
    pub create_runtime: Vec<HookPlan>,
    pub create_container: Vec<HookPlan>,
    pub start_container: Vec<HookPlan>,
    pub poststart: Vec<HookPlan>,
    pub poststop: Vec<HookPlan>,
}

impl HookPlans {
    pub fn from_spec(hooks: Option<&Hooks>) -> Result<HookPlans> {
        let Some(h) = hooks else {
            return Ok(HookPlans::default());
        };
        let plans = |name: &str, list: &Option<Vec<Hook>>| -> Result<Vec<HookPlan>> {
            list.iter()
                .flatten()
                .map(|hook| {
                    if !hook.path().is_absolute() {
                        bail!(
                            "hooks.{name}: the path {} must be absolute",
                            hook.path().display()
                        );
                    }
                    let timeout = match hook.timeout() {
                        Some(t) if t <= 0 => {
                            bail!(
                                "hooks.{name}: the timeout of {} must be more than 0",
                                hook.path().display()
                            )
                        }
                        Some(t) => Some(Duration::from_secs(t as u64)),
                        None => None,
                    };
                    Ok(HookPlan {
                        path: hook.path().clone(),
                        args: hook
                            .args()
                            .clone()
                            .filter(|a| !a.is_empty())
                            .unwrap_or_else(|| vec![hook.path().display().to_string()]),
                        env: hook.env().clone().unwrap_or_default(),
                        timeout,
                    })
                })
                .collect()
        };
        #[allow(deprecated)]
        let mut create_runtime = plans("prestart", h.prestart())?;
        create_runtime.extend(plans("createRuntime", h.create_runtime())?);
        Ok(HookPlans {
            create_runtime,
            create_container: plans("createContainer", h.create_container())?,
            start_container: plans("startContainer", h.start_container())?,
            poststart: plans("poststart", h.poststart())?,
            poststop: plans("poststop", h.poststop())?,
        })
    }

    /// Whether a hook runs while the container is being created.
    pub fn during_create(&self) -> bool {
        !self.create_runtime.is_empty()
            || !self.create_container.is_empty()
            || !self.start_container.is_empty()
    }
}

/// Runs `hooks` in order with `state` on stdin; the first that fails (a
/// non-zero exit, a signal, its timeout) stops the rest, and says which.
pub fn run(point: &str, hooks: &[HookPlan], state: &str) -> Result<()> {
    for hook in hooks {
        run_one(hook, state)
            .map_err(|e| anyhow::anyhow!("{point} hook {}: {e}", hook.path.display()))?;
    }
    Ok(())
}

fn run_one(hook: &HookPlan, state: &str) -> Result<()> {
    let mut cmd = Command::new(&hook.path);
    cmd.arg0(&hook.args[0])
        .args(&hook.args[1..])
        .env_clear()
        .envs(hook.env.iter().filter_map(|e| e.split_once('=')))
        .stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot execute it: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its state may close stdin: not an error.
        let _ = stdin.write_all(state.as_bytes());
    }
    let pidfd = crate::sys::pidfd_open(nix::unistd::Pid::from_raw(child.id() as i32))
        .map_err(|e| anyhow::anyhow!("cannot watch it: {}", e.desc()))?;
    let deadline = hook.timeout.map(|t| Instant::now() + t);
    loop {
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "timed out after {}s",
                        hook.timeout.unwrap_or_default().as_secs()
                    );
                }
                PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, wait) {
            Ok(n) if n > 0 => break,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("cannot wait for it: {}", e.desc()),
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("failed ({status})");
    }
    Ok(())
}

/// The state document a hook reads on stdin.
pub fn state_json(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &std::path::Path,
    annotations: &std::collections::BTreeMap<String, String>,
) -> String {
    serde_json::json!({
        "ociVersion": crate::spec::OCI_VERSION,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": annotations,
    })
    .to_string()
}
