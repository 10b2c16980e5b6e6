//! Who is asking: the privilege checks that come first, the caller's
//! names, and the policy that says what they may do.

use std::collections::HashSet;
use std::io::Read;
use std::os::fd::AsFd;

use caps::Capability;
use kennel_net::{parse_policy, Policy, Requester, POLICY_FILE};
use nix::sys::stat::fstat;

use crate::failure::{io_errno, sys, Failure};
use crate::NET;

/// The caller: their real ids and what the policy knows them by.
pub(crate) struct Caller {
    pub(crate) uid: u32,
    pub(crate) name: String,
    pub(crate) groups: Vec<String>,
}

impl Caller {
    pub(crate) fn requester(&self) -> Requester<'_> {
        Requester {
            name: &self.name,
            uid: self.uid,
            groups: &self.groups,
        }
    }
}

/// Refuses stray privilege, explains missing privilege, and finds the
/// caller's names.
pub(crate) fn check_privileges() -> Result<Caller, Failure> {
    let ids =
        kennel_sys::cap_helper::check_privileges(&NET, |_| [Capability::CAP_NET_ADMIN].into())
            .map_err(Failure::SelfCheck)?;
    let uid = ids.uid;
    let mut gid_list = nix::unistd::getgroups().unwrap_or_default();
    gid_list.push(nix::unistd::Gid::from_raw(ids.gid));
    let group_file = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let groups = group_file
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let gid: u32 = f.get(2)?.parse().ok()?;
            gid_list
                .iter()
                .any(|g| g.as_raw() == gid)
                .then(|| f[0].to_string())
        })
        .collect();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| uid.to_string());
    Ok(Caller { uid, name, groups })
}

/// Narrows our capabilities to `permitted`, of which `effective` are in
/// effect (see `kennel_sys::cap_helper::limit_caps`).
pub(crate) fn limit_caps(
    permitted: &HashSet<Capability>,
    effective: &HashSet<Capability>,
) -> Result<(), Failure> {
    kennel_sys::cap_helper::limit_caps(permitted, effective).map_err(sys("capset"))
}

/// Reads the policy, refusing one that someone but root could have written.
pub(crate) fn read_policy() -> Result<Policy, Failure> {
    let file = match std::fs::File::open(POLICY_FILE) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Policy::default()),
        Err(e) => return Err(sys(format!("reading {POLICY_FILE}"))(io_errno(e))),
    };
    let st = fstat(file.as_fd()).map_err(sys(format!("fstat {POLICY_FILE}")))?;
    if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
        return Err(Failure::UnsafePolicy);
    }
    let mut text = String::new();
    std::io::BufReader::new(file)
        .read_to_string(&mut text)
        .map_err(|e| sys(format!("reading {POLICY_FILE}"))(io_errno(e)))?;
    Ok(parse_policy(&text))
}
