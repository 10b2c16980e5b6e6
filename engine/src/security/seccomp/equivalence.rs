//! The laid-out programs answer exactly as libseccomp's with the keys
//! filter installed before it: both run in the emulator over every
//! architecture that matters and one nobody filters, every syscall number
//! below 1024 with and without the x32 bit (and the extremes), and, where
//! either program reads arguments, values on each side of every constant
//! the profile compares them with.

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompOperator};
use proptest::prelude::*;

use super::emulate::{run, Data};
use super::{compile, default_profile, keys_program, layout, profile_for, shorten};

const X86_64: u32 = 0xc000_003e;
const I386: u32 = 0x4000_0003;
const X32_BIT: u32 = 0x4000_0000;
const ARCHES: [u32; 7] = [
    X86_64,
    I386,
    0xc000_00b7, // aarch64, in no profile here
    0,
    u32::MAX,
    I386 + 1,
    X86_64 - 1,
];

/// What the kernel answers with `older` then `newer` installed.
fn stacked(older: u32, newer: u32) -> u32 {
    if ((older & 0xffff_0000) as i32) < ((newer & 0xffff_0000) as i32) {
        older
    } else {
        newer
    }
}

/// The argument values worth trying for `profile`, and the arguments it
/// compares (with the keys filter's ioctl request).
fn argument_values(profile: &LinuxSeccomp) -> (Vec<u64>, Vec<usize>) {
    let mut v: Vec<u64> = vec![0, 1, u64::MAX, 0xffff_ffff, 1 << 32, 0x5412, 0x541c];
    v.push(1 << 32 | 0x5412);
    let mut indexes = vec![1];
    for rule in profile.syscalls().iter().flatten() {
        for arg in rule.args().iter().flatten() {
            indexes.push(arg.index());
            for x in [arg.value(), arg.value_two().unwrap_or(0)] {
                v.extend([
                    x,
                    x.wrapping_sub(1),
                    x.wrapping_add(1),
                    x | 1 << 32,
                    x | 0xffff_ffff_0000_0000,
                    x & 0xffff_ffff,
                    !x,
                ]);
                if arg.op() == LinuxSeccompOperator::ScmpCmpMaskedEq {
                    v.extend((0..64).filter(|b| x >> b & 1 == 1).map(|b| 1u64 << b));
                }
            }
        }
    }
    v.sort_unstable();
    v.dedup();
    indexes.sort_unstable();
    indexes.dedup();
    (v, indexes)
}

/// `prog` with each load of an argument (or of the instruction pointer)
/// made a return of `MARK`: where it returns that, `prog` reads one.
fn marked(prog: &[libc::sock_filter]) -> Vec<libc::sock_filter> {
    prog.iter()
        .map(|i| {
            let load = u32::from(i.code) == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
            if load && i.k >= 8 {
                libc::sock_filter {
                    code: (libc::BPF_RET | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 0,
                    k: MARK,
                }
            } else {
                *i
            }
        })
        .collect()
}

const MARK: u32 = 0xdead_beef;

fn numbers() -> Vec<u32> {
    let mut n: Vec<u32> = (0..1024).chain((0..1024).map(|n| n | X32_BIT)).collect();
    n.extend([
        X32_BIT - 1,
        0x7fff_ffff,
        0x8000_0000,
        0xbfff_ffff,
        0xc000_0000,
        u32::MAX,
    ]);
    n
}

/// Asserts that `shorten` of `profile`'s program answers as the keys
/// filter and that program stacked, and the layout of the program alone
/// as the program.
fn assert_equivalent(what: &str, profile: &LinuxSeccomp) {
    let compiled = compile(profile).unwrap();
    let alone = layout::read(&compiled.program)
        .and_then(layout::Table::program)
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let short = shorten(compiled.clone());
    assert!(short.includes_keys, "{what}: not laid out");
    let keys = keys_program();
    let (values, indexes) = argument_values(profile);
    let readers = [&compiled.program, &short.program, &alone, &keys].map(|p| marked(p));
    let mut swept = 0;
    for arch in ARCHES {
        for nr in numbers() {
            let zero = Data::new(arch, nr, [0; 6]);
            let sweep = readers.iter().any(|p| run(p, &zero) == MARK);
            let mut inputs = vec![zero];
            if sweep {
                swept += 1;
                for (n, &i) in indexes.iter().enumerate() {
                    for &j in &indexes[n..] {
                        for &x in &values {
                            for &y in &values {
                                let mut args = [0; 6];
                                args[j] = y;
                                args[i] = x;
                                inputs.push(Data::new(arch, nr, args));
                            }
                        }
                    }
                }
            }
            for d in &inputs {
                let theirs = run(&compiled.program, d);
                assert_eq!(run(&alone, d), theirs, "{what}: alone, {d:x?}");
                assert_eq!(
                    run(&short.program, d),
                    stacked(run(&keys, d), theirs),
                    "{what}: with the keys, {d:x?}"
                );
            }
        }
    }
    assert!(
        swept > 0 || values.len() < 10,
        "{what}: no argument was swept"
    );
    eprintln!(
        "{what}: {} instructions for libseccomp's {} and the keys' {}; {swept} calls swept",
        short.program.len(),
        compiled.program.len(),
        keys.len()
    );
}

fn caps(extra: &[&str]) -> Vec<String> {
    [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn the_default_profile_with_kennels_capabilities() {
    assert_equivalent("default", &default_profile(&caps(&[]), "x86_64").unwrap());
}

#[test]
fn the_default_profile_with_sys_admin_and_sys_ptrace() {
    let p = default_profile(&caps(&["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]), "x86_64").unwrap();
    assert_equivalent("default + SYS_ADMIN, SYS_PTRACE", &p);
}

#[test]
fn the_default_profile_without_audit_write() {
    // socket's rules on its arguments hold only without CAP_AUDIT_WRITE.
    let p = default_profile(&["CAP_CHOWN".to_string()], "x86_64").unwrap();
    assert_equivalent("default, no AUDIT_WRITE", &p);
}

/// tests/test_seccomp.py's profiles.
#[test]
fn the_profiles_of_the_seccomp_tests() {
    let custom = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
          {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
          {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
           "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
          {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 14,
           "args": [{"index": 0, "value": 262152, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 131080, "op": "SCMP_CMP_EQ"}]},
          {"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS"}]}"#;
    let docker = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
          {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42,
           "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]}"#;
    let allow_list = r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
          {"names": ["no_such_syscall_kennel"], "action": "SCMP_ACT_ALLOW"},
          {"names": ["getpid", "mkdir", "mkdirat", "write", "exit_group", "exit", "execve",
                     "execveat", "brk", "arch_prctl", "rt_sigprocmask", "rt_sigaction", "close",
                     "close_range", "set_tid_address", "set_robust_list", "rseq", "prlimit64",
                     "mprotect", "readlink", "getrandom", "mmap", "munmap", "newfstatat",
                     "fstat", "ioctl", "uname"], "action": "SCMP_ACT_ALLOW"}]}"#;
    for (what, text) in [
        ("custom", custom),
        ("docker", docker),
        ("allow list", allow_list),
    ] {
        let p = profile_for(text, &caps(&[]), "x86_64").unwrap();
        assert_equivalent(what, &p);
    }
}

const NAMES: [&str; 8] = [
    "read",
    "personality",
    "socket",
    "ioctl",
    "mkdir",
    "clone",
    "keyctl",
    "getpid",
];
const ACTIONS: [&str; 6] = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_LOG",
    "SCMP_ACT_TRACE",
];
const OPS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

fn rule() -> impl Strategy<Value = String> {
    let arg = (
        0..3usize,
        0..OPS.len(),
        prop::sample::select(vec![0u64, 8, 16, 0xffff_ffff, 1 << 33, 0x7e02_0000]),
    )
        .prop_map(|(index, op, value)| {
            format!(
                r#"{{"index": {index}, "value": {value}, "valueTwo": 0, "op": "{}"}}"#,
                OPS[op]
            )
        });
    (
        prop::sample::subsequence(NAMES.to_vec(), 1..3),
        0..ACTIONS.len(),
        1..60u32,
        prop::collection::vec(arg, 0..3),
    )
        .prop_map(|(names, action, errno, args)| {
            format!(
                r#"{{"names": {names:?}, "action": "{}", "errnoRet": {errno}, "args": [{}]}}"#,
                ACTIONS[action],
                args.join(",")
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn small_random_profiles(default in 0..2usize, rules in prop::collection::vec(rule(), 1..4)) {
        let default = ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"][default];
        let text = format!(
            r#"{{"defaultAction": "{default}", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": [{}]}}"#,
            rules.join(",")
        );
        let p = profile_for(&text, &[], "x86_64").unwrap();
        // libseccomp refuses some combinations (a rule it finds redundant
        // or conflicting); those are not this test's.
        if compile(&p).is_ok() {
            assert_equivalent(&text, &p);
        }
    }
}
