//! linux.resources.devices on cgroup v2: an eBPF device program, built
//! here as instructions (no compiler at run time), loaded and attached to
//! the container's leaf before the container is born into it, as runc and
//! crun do.
//!
//! The rules are the spec's followed by the devices every container gets
//! (runc's list: mknod of any node, /dev/null, zero, full, random, urandom,
//! tty, ptmx and the pty slaves), and the last rule that matches an access
//! decides it; none matching denies. A spec with no rules gets no program:
//! kennel leaves device access as it was.
//!
//! Where the program cannot be loaded for want of privilege (the kernel
//! wants CAP_BPF or CAP_SYS_ADMIN in the initial user namespace, so a
//! rootless kennel, or one in rootless podman's user namespace), the rules
//! are skipped, as runc skips them: in a user namespace no device node can
//! be made, and the nodes there are the host's, bound, which the container
//! opens with no more than its user's own permissions on the host. As root
//! the rules are applied or the container does not start.

use anyhow::{bail, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::sys::Insn;

/// The kernel's access bits (`BPF_DEVCG_ACC_*`).
pub const MKNOD: u32 = 1;
pub const READ: u32 = 2;
pub const WRITE: u32 = 4;
/// The kernel's device types (`BPF_DEVCG_DEV_*`).
pub const BLOCK: u32 = 1;
pub const CHAR: u32 = 2;

/// One rule: None matches any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// BLOCK or CHAR.
    pub kind: Option<u32>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Access bits the rule covers.
    pub access: u32,
}

const fn char_rule(major: u32, minor: Option<u32>) -> Rule {
    Rule {
        allow: true,
        kind: Some(CHAR),
        major: Some(major),
        minor,
        access: MKNOD | READ | WRITE,
    }
}

/// What every container may reach, appended after the spec's rules.
pub const DEFAULTS: [Rule; 10] = [
    Rule {
        allow: true,
        kind: Some(CHAR),
        major: None,
        minor: None,
        access: MKNOD,
    },
    Rule {
        allow: true,
        kind: Some(BLOCK),
        major: None,
        minor: None,
        access: MKNOD,
    },
    char_rule(1, Some(3)),
    char_rule(1, Some(5)),
    char_rule(1, Some(7)),
    char_rule(1, Some(8)),
    char_rule(1, Some(9)),
    char_rule(5, Some(0)),
    char_rule(5, Some(2)),
    char_rule(136, None),
];

/// linux.resources.devices, checked; empty when the spec has none.
pub fn plan(rules: Option<&Vec<LinuxDeviceCgroup>>) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    for (i, r) in rules.into_iter().flatten().enumerate() {
        let kind = match r.typ() {
            None | Some(LinuxDeviceType::A) => None,
            Some(LinuxDeviceType::B) => Some(BLOCK),
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some(CHAR),
            Some(LinuxDeviceType::P) => bail!(
                "linux.resources.devices[{i}].type p: a FIFO is no device a cgroup rule can name; use a, b or c"
            ),
        };
        let number = |n: Option<i64>, field: &str| -> Result<Option<u32>> {
            match n {
                None | Some(-1) => Ok(None),
                Some(n) => u32::try_from(n).map(Some).map_err(|_| {
                    anyhow::anyhow!("linux.resources.devices[{i}].{field} {n} is not a device number (-1 for any)")
                }),
            }
        };
        let mut access = 0;
        let written = r.access().as_deref().unwrap_or("");
        for c in written.chars() {
            access |= match c {
                'r' => READ,
                'w' => WRITE,
                'm' => MKNOD,
                other => bail!(
                    "linux.resources.devices[{i}].access {written:?} holds {other:?}: use r, w and m"
                ),
            };
        }
        out.push(Rule {
            allow: r.allow(),
            kind,
            major: number(r.major(), "major")?,
            minor: number(r.minor(), "minor")?,
            // Unwritten: every access, as runc reads it.
            access: if written.is_empty() {
                MKNOD | READ | WRITE
            } else {
                access
            },
        });
    }
    Ok(out)
}

/// Whether `rules` (a `plan`) asks for anything to be enforced.
pub fn wanted(rules: &[Rule]) -> bool {
    !rules.is_empty()
}

/// What became of the rules on a leaf.
pub enum Applied {
    Enforced,
    /// Skipped for want of privilege; the reason, for `--verbose`.
    Skipped(String),
}

/// Whether this process lacks the privilege the kernel asks of a device
/// program: not root, or root only in a user namespace of its own.
fn unprivileged() -> bool {
    let initial = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(false);
    !nix::unistd::geteuid().is_root() || !initial
}

/// Loads the program for `rules` and attaches it to the cgroup v2 leaf.
pub fn apply(rules: &[Rule], leaf: &std::path::Path) -> Result<Applied> {
    use anyhow::Context;
    use std::os::fd::AsFd;
    let skipped = |e: nix::errno::Errno| {
        Applied::Skipped(format!(
            "linux.resources.devices not enforced: the kernel refuses a device program to this user ({}), as it refuses runc rootless; in a user namespace the container reaches only the device nodes bound into it, with your own permissions on the host",
            e.desc()
        ))
    };
    let cgroup = nix::fcntl::open(
        leaf,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| {
        format!(
            "cannot open the cgroup {} for its device rules",
            leaf.display()
        )
    })?;
    let prog = match crate::sys::load_device_program(&program(rules)) {
        Ok(fd) => fd,
        Err((e, _)) if e == nix::errno::Errno::EPERM && unprivileged() => return Ok(skipped(e)),
        Err((e, log)) => bail!(
            "linux.resources.devices: the kernel refused kennel's device program ({}): {log}; this is a bug in kennel, please report it with the rules",
            e.desc()
        ),
    };
    match crate::sys::attach_device_program(cgroup.as_fd(), prog.as_fd()) {
        Ok(()) => Ok(Applied::Enforced),
        Err(e) if e == nix::errno::Errno::EPERM && unprivileged() => Ok(skipped(e)),
        Err(e) => bail!(
            "linux.resources.devices: attaching the device program to {} failed: {}",
            leaf.display(),
            e.desc()
        ),
    }
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// The opcodes used, as <linux/bpf.h> composes them.
const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_X: u8 = 0xbc;
const ALU64_MOV_K: u8 = 0xb7;
const JNE_K: u8 = 0x55;
const EXIT: u8 = 0x95;

/// The program for `rules` followed by the defaults. It reads
/// `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
/// (access_type: the access bits above the type's) into r2 (type), r3
/// (access), r4 (major) and r5 (minor), then tries the rules last to first:
/// each is a block that jumps to the next on a mismatch, and returns its
/// verdict on a match.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut out = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().chain(DEFAULTS.iter()).rev() {
        // Each test: (instructions before the jump, register, value).
        let mut tests: Vec<Vec<Insn>> = Vec::new();
        if let Some(k) = r.kind {
            tests.push(vec![insn(JNE_K, 2, 0, 0, k as i32)]);
        }
        if r.access != MKNOD | READ | WRITE {
            // An access asking for a bit the rule lacks does not match.
            tests.push(vec![
                insn(ALU32_MOV_X, 1, 3, 0, 0),
                insn(ALU32_AND_K, 1, 0, 0, !r.access as i32),
                insn(JNE_K, 1, 0, 0, 0),
            ]);
        }
        if let Some(m) = r.major {
            tests.push(vec![insn(JNE_K, 4, 0, 0, m as i32)]);
        }
        if let Some(m) = r.minor {
            tests.push(vec![insn(JNE_K, 5, 0, 0, m as i32)]);
        }
        let matches_all = tests.is_empty();
        let mut block: Vec<Insn> = tests.into_iter().flatten().collect();
        block.push(insn(ALU64_MOV_K, 0, 0, 0, r.allow as i32));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K {
                // To the first instruction after this block.
                ins.off = (len - i - 1) as i16;
            }
        }
        out.extend(block);
        if matches_all {
            // The verifier refuses instructions no path reaches.
            return out;
        }
    }
    out.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    out.push(insn(EXIT, 0, 0, 0, 0));
    out
}

/// What the program decides, computed the same way: the last matching
/// rule wins, none denies. (cgroup v1's rules are checked against it.)
pub fn decide(rules: &[Rule], kind: u32, major: u32, minor: u32, access: u32) -> bool {
    rules
        .iter()
        .chain(DEFAULTS.iter())
        .rev()
        .find(|r| {
            r.kind.is_none_or(|k| k == kind)
                && access & !r.access == 0
                && r.major.is_none_or(|m| m == major)
                && r.minor.is_none_or(|m| m == minor)
        })
        .is_some_and(|r| r.allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<Rule> {
        let spec: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
        plan(Some(&spec)).unwrap()
    }

    /// Runs the program on one access: enough of an eBPF interpreter for
    /// the instructions `program` emits.
    fn run(prog: &[Insn], kind: u32, major: u32, minor: u32, access: u32) -> bool {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = ctx[i.off as usize / 4] as u64,
                ALU32_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[dst] = (r[dst] as u32 >> i.imm) as u64,
                ALU32_MOV_X => r[dst] = r[src] as u32 as u64,
                ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                JNE_K => {}
                EXIT => return r[0] == 1,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_program_decides_as_the_rules_say() {
        for spec in [
            // podman's and containerd's: deny all, then the defaults.
            r#"[{"allow": false, "access": "rwm"}]"#,
            r#"[{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}]"#,
            r#"[{"allow": true, "type": "a"}, {"allow": false, "type": "b", "major": 8, "access": "w"}]"#,
            r#"[{"allow": false}, {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}]"#,
            r#"[]"#,
        ] {
            let rules = rules(spec);
            let prog = program(&rules);
            for kind in [BLOCK, CHAR] {
                for (major, minor) in [
                    (1, 3),
                    (1, 5),
                    (8, 0),
                    (8, 1),
                    (10, 229),
                    (136, 4),
                    (4095, 7),
                ] {
                    for access in 1..8 {
                        assert_eq!(
                            run(&prog, kind, major, minor, access),
                            decide(&rules, kind, major, minor, access),
                            "{spec}: {kind} {major}:{minor} {access}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_defaults_follow_the_spec_rules() {
        let deny_all = rules(r#"[{"allow": false, "access": "rwm"}]"#);
        assert!(decide(&deny_all, CHAR, 1, 3, READ | WRITE));
        assert!(!decide(&deny_all, CHAR, 1, 3 + 1, READ));
        assert!(!decide(&deny_all, BLOCK, 8, 0, READ));
        assert!(decide(&deny_all, BLOCK, 8, 0, MKNOD));
        let fuse = rules(
            r#"[{"allow": false}, {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}]"#,
        );
        assert!(decide(&fuse, CHAR, 10, 229, READ | WRITE));
        assert!(!decide(&fuse, CHAR, 10, 228, READ));
    }

    #[test]
    fn bad_rules_name_their_field_and_index() {
        for (json, says) in [
            (
                r#"[{"allow": true, "type": "p"}]"#,
                "linux.resources.devices[0].type p",
            ),
            (
                r#"[{"allow": true, "access": "rwx"}]"#,
                "linux.resources.devices[0].access \"rwx\" holds 'x'",
            ),
            (
                r#"[{"allow": true}, {"allow": true, "major": -2}]"#,
                "linux.resources.devices[1].major -2",
            ),
        ] {
            let spec: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
            let e = plan(Some(&spec)).unwrap_err().to_string();
            assert!(e.contains(says), "{json}: {e}");
        }
    }

    /// The program on this kernel: loaded, attached to a cgroup v2 of the
    /// test's own, and a shell in that cgroup refused /dev/kmsg (c 1:11,
    /// no default) but not /dev/null. Needs root and a cgroup2 mount (a hybrid host's
    /// /sys/fs/cgroup/unified will do: device programs need no controller).
    #[test]
    fn the_kernel_enforces_the_program() {
        let base = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .find(|b| {
                nix::sys::statfs::statfs(*b)
                    .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            });
        let (true, Some(base)) = (nix::unistd::geteuid().is_root(), base) else {
            eprintln!("SKIPPED the_kernel_enforces_the_program: needs root and a cgroup2 mount");
            return;
        };
        let leaf =
            std::path::Path::new(base).join(format!("kennel-devtest-{}", std::process::id()));
        std::fs::create_dir(&leaf).unwrap();
        let rules = rules(r#"[{"allow": false, "access": "rwm"}]"#);
        let applied = apply(&rules, &leaf);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs; (: < /dev/kmsg) 2>/dev/null && echo KMSG-OPEN || echo KMSG-REFUSED; echo x > /dev/null && echo NULL-OPEN",
                leaf.display()
            ))
            .output()
            .unwrap();
        std::fs::remove_dir(&leaf).unwrap();
        assert!(matches!(applied.unwrap(), Applied::Enforced));
        let out = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out, "KMSG-REFUSED\nNULL-OPEN\n");
    }
}
