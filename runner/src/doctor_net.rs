//! `kennel doctor`'s checks for `--net bridge`: kennel-net installed with
//! its capability on a filesystem that honours it, a line for this user in
//! the policy file, and each bridge it names. All warnings: containers
//! run without a bridge.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kennel_engine::host::ids::Caller;
use kennel_engine::host::install_kind::Installed;
use kennel_engine::net::bridge::HELPER;
use kennel_net::{parse_policy, Requester, POLICY_FILE};

use crate::doctor_check::{fail, ok, warn, Check};

const HELPER_CHECK: &str = "kennel-net helper (--net bridge)";
const POLICY_CHECK: &str = "kennel-net policy";
const BRIDGE_CHECK: &str = "bridge";

/// The names of this process's groups, from /etc/group.
fn group_names() -> Vec<String> {
    let mut gids = nix::unistd::getgroups().unwrap_or_default();
    gids.push(nix::unistd::getgid());
    std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let gid: u32 = f.get(2)?.parse().ok()?;
            gids.iter()
                .any(|g| g.as_raw() == gid)
                .then(|| f[0].to_string())
        })
        .collect()
}

fn helper_check() -> Check {
    let installed = Installed::this();
    let Some(path) = kennel_engine::host::ids::find_helper_program(HELPER) else {
        return warn(
            HELPER_CHECK,
            format!(
                "not found next to kennel, in {} or on PATH: --net bridge is unavailable",
                kennel_engine::host::ids::libexec_dir().display()
            ),
            installed.missing_helper_fix(HELPER),
        );
    };
    let shown = path.display().to_string();
    let setuid = std::fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o6000 != 0)
        .unwrap_or(false);
    if setuid {
        return fail(
            HELPER_CHECK,
            format!("{shown} is setuid or setgid; kennel-net refuses to run that way"),
            format!("sudo chmod ug-s {shown}"),
        );
    }
    if kennel_engine::host::ids::on_nosuid_mount(&path) {
        return warn(
            HELPER_CHECK,
            format!("{shown} is on a filesystem mounted nosuid, where the kernel ignores file capabilities"),
            installed.nosuid_fix(&path),
        );
    }
    match kennel_engine::net::bridge::usable_helper() {
        Ok(_) => ok(HELPER_CHECK, format!("{shown} has cap_net_admin=ep")),
        Err(e) => warn(
            HELPER_CHECK,
            format!("{e:#}"),
            installed.capabilities_fix(&path, "cap_net_admin=ep"),
        ),
    }
}

pub fn bridge_checks(caller: &Caller) -> Vec<Check> {
    let mut out = vec![helper_check()];
    let text = match std::fs::read_to_string(POLICY_FILE) {
        Ok(t) => t,
        Err(_) => {
            out.push(warn(
                POLICY_CHECK,
                format!("{POLICY_FILE} does not exist: no one may use --net bridge"),
                format!(
                    "as root, write `bridge kennel0 10.88.0.0/24` and `{} veth kennel0 4` to {POLICY_FILE}",
                    caller.name
                ),
            ));
            return out;
        }
    };
    let policy = parse_policy(&text);
    for bad in &policy.bad_lines {
        out.push(warn(
            POLICY_CHECK,
            format!("{bad} (ignored)"),
            format!("fix or remove that line of {POLICY_FILE}"),
        ));
    }
    let groups = group_names();
    let me = Requester {
        name: &caller.name,
        uid: caller.uid,
        groups: &groups,
    };
    let mut granted = false;
    for b in &policy.bridges {
        let Some(count) = policy.quota(&me, &b.name) else {
            continue;
        };
        granted = true;
        out.push(ok(
            POLICY_CHECK,
            format!(
                "{} may attach {count} veth(s) to {} ({})",
                caller.name, b.name, b.subnet
            ),
        ));
        if Path::new("/sys/class/net")
            .join(&b.name)
            .join("bridge")
            .is_dir()
        {
            out.push(ok(BRIDGE_CHECK, format!("{} exists", b.name)));
        } else {
            out.push(warn(
                BRIDGE_CHECK,
                format!("{} is not a bridge in this network namespace", b.name),
                format!("sudo kennel-net setup-bridge {} {}", b.name, b.subnet),
            ));
        }
    }
    if !granted {
        let example = policy
            .bridges
            .first()
            .map_or("kennel0", |b| b.name.as_str());
        out.push(warn(
            POLICY_CHECK,
            format!(
                "no line in {POLICY_FILE} lets {} attach veths to a bridge it defines",
                caller.name
            ),
            format!(
                "as root, add `{} veth {example} 4` to {POLICY_FILE}",
                caller.name
            ),
        ));
    }
    out
}
