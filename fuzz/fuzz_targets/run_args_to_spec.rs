//! Fuzzes `kennel run`'s flags to spec builder (runner/src/spec_build.rs):
//! the input, split at NUL bytes, is the argv after `kennel run`. Any argv
//! gives a spec or an error, never a panic; a spec built runs a command
//! and as a user that its own id maps contain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::LinuxIdMapping;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<String> = text.split('\0').map(String::from).collect();
    let Ok(spec) = kennel::spec_for_run_args(&args) else {
        return;
    };
    let process = spec.process().as_ref().expect("a built spec has a process");
    assert!(process.args().as_ref().is_some_and(|a| !a.is_empty()));
    let (uid, gid) = (process.user().uid(), process.user().gid());
    let linux = spec.linux().as_ref().expect("a built spec has linux");
    let mapped = |maps: &Option<Vec<LinuxIdMapping>>, id: u32| {
        maps.iter().flatten().any(|m| {
            id >= m.container_id() && u64::from(id) < u64::from(m.container_id()) + u64::from(m.size())
        })
    };
    assert!(mapped(linux.uid_mappings(), uid), "uid {uid} not mapped");
    assert!(mapped(linux.gid_mappings(), gid), "gid {gid} not mapped");
});
