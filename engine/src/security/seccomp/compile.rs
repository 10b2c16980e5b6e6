//! An OCI `linux.seccomp` profile compiled to the classic BPF program the
//! kernel runs, in the parent, before the clone.
//!
//! libseccomp does the compiling, as it does for runc, crun and youki: it
//! knows every architecture's syscall numbers (x86-64 with its i386 and x32
//! personalities, aarch64 with arm), splits 64-bit argument comparisons
//! into the 32-bit halves BPF compares, and checks the architecture before
//! the number, so a syscall made through `int 0x80` or with the x32 bit is
//! judged by its own table. seccompiler, the pure Rust alternative, holds
//! one architecture and one match/mismatch action per filter, which cannot
//! express the profiles podman and Docker send. libseccomp is linked
//! statically (Debian's libseccomp-dev ships the archive), so kennel stays
//! one file with no library to load at each start.
//!
//! The semantics follow runc's, which every client's profile is written
//! for: ERRNO and TRACE without `errnoRet` return EPERM; a rule whose
//! action is the default action is dropped (libseccomp refuses it); a name
//! no architecture knows is skipped (profiles list syscalls newer than the
//! running libseccomp), unless the default action allows it, where
//! skipping would let it through; conditions on different arguments must all hold,
//! while several conditions on the same argument are alternatives, each
//! its own rule.

use std::io::{Read, Seek};
use std::os::fd::AsFd;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::spec::process::Filter;

/// seccomp(2)'s flags for SECCOMP_SET_MODE_FILTER.
const FLAG_TSYNC: u32 = 1;
use super::program::FLAG_LOG;
const FLAG_SPEC_ALLOW: u32 = 1 << 2;

fn action(a: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction> {
    let errno = |ret: Option<u32>| -> Result<i32> {
        let e = ret.unwrap_or(libc::EPERM as u32);
        // The kernel keeps 16 bits of SECCOMP_RET_DATA for the errno.
        if e > u32::from(u16::MAX) {
            bail!("errnoRet {e} does not fit the kernel's 16 bits");
        }
        Ok(e as i32)
    };
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno(errno_ret)?),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno(errno_ret)? as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => bail!(
            "SCMP_ACT_NOTIFY hands syscalls to a seccomp agent at linux.seccomp.listenerPath, which kennel does not run; drop those rules, or use runc or crun for this bundle"
        ),
    })
}

fn condition(arg: &LinuxSeccompArg) -> Result<ScmpArgCompare> {
    let index = arg.index();
    if index > 5 {
        bail!("argument index {index} is out of range: a syscall has arguments 0 to 5");
    }
    let value = arg.value();
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // value is the mask, valueTwo what the masked argument must equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return Ok(ScmpArgCompare::new(
                index as u32,
                ScmpCompareOp::MaskedEqual(value),
                arg.value_two().unwrap_or(0),
            ))
        }
    };
    Ok(ScmpArgCompare::new(index as u32, op, value))
}

/// The conditions of one syscalls[] entry as the rules to add: one rule
/// with all of them, or, when an argument is named more than once, one
/// rule per condition.
fn rules(args: &[LinuxSeccompArg]) -> Result<Vec<Vec<ScmpArgCompare>>> {
    let conditions = args.iter().map(condition).collect::<Result<Vec<_>>>()?;
    let mut seen = [false; 6];
    let repeated = args
        .iter()
        .any(|a| std::mem::replace(&mut seen[a.index()], true));
    Ok(if repeated {
        conditions.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![conditions]
    })
}

/// Compiles `profile`. Errors name the field at fault.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter> {
    let default = action(profile.default_action(), profile.default_errno_ret())
        .context("linux.seccomp.defaultAction")?;
    let mut ctx = ScmpFilterContext::new(default).context("libseccomp: making a filter")?;
    // no_new_privs is the spec's to ask for (process.noNewPrivileges), and
    // kennel installs the program itself.
    ctx.set_ctl_nnp(false).context("libseccomp: no_new_privs")?;
    // A binary tree of syscall numbers rather than a list: the kernel runs
    // the filter over every syscall number when it is installed (to learn
    // which ones it may always allow) and at each call not so learned, and
    // a list makes each of those walks hundreds of instructions long.
    ctx.set_ctl_optimize(2)
        .context("libseccomp: the binary tree layout")?;
    for arch in profile.architectures().iter().flatten() {
        let name = arch.to_string();
        let scmp = ScmpArch::from_str(&name)
            .with_context(|| format!("linux.seccomp.architectures: {name} is unknown"))?;
        if !ctx.is_arch_present(scmp).unwrap_or(false) {
            ctx.add_arch(scmp)
                .with_context(|| format!("linux.seccomp.architectures: adding {name}"))?;
        }
    }
    for (i, entry) in profile.syscalls().iter().flatten().enumerate() {
        let act = action(entry.action(), entry.errno_ret())
            .with_context(|| format!("linux.seccomp.syscalls[{i}].action"))?;
        if act == default {
            continue;
        }
        let sets = rules(entry.args().as_deref().unwrap_or_default())
            .with_context(|| format!("linux.seccomp.syscalls[{i}].args"))?;
        for name in entry.names() {
            // Skipped, as runc skips it; `unknown_name_warnings` says so
            // where that lets the call through.
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                continue;
            };
            for conditions in &sets {
                ctx.add_rule_conditional(act, nr, conditions)
                    .with_context(|| {
                        format!("linux.seccomp.syscalls[{i}]: adding the rule for {name}")
                    })?;
            }
        }
    }
    let mut flags = 0;
    for flag in profile.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            // The container's process has one thread when it installs the
            // filter; asking for TSYNC changes nothing and costs nothing.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
        };
    }
    Ok(Filter {
        program: export(&ctx)?,
        flags,
        includes_keys: false,
    })
}

/// A warning for each rule of `profile` that names a syscall this
/// libseccomp does not know, where skipping it (as runc does) lets that
/// call through: the profile's default allows what no rule names. Under a
/// default that refuses, a skipped name is refused anyway, and goes
/// unmentioned.
pub fn unknown_name_warnings(profile: &LinuxSeccomp) -> Vec<String> {
    let Ok(default) = action(profile.default_action(), profile.default_errno_ret()) else {
        return Vec::new();
    };
    if !matches!(default, ScmpAction::Allow | ScmpAction::Log) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, entry) in profile.syscalls().iter().flatten().enumerate() {
        let act = action(entry.action(), entry.errno_ret());
        if act.as_ref().is_ok_and(|a| *a == default) {
            continue;
        }
        for name in entry.names() {
            if ScmpSyscall::from_name(name).is_err() {
                out.push(format!(
                    "linux.seccomp.syscalls[{i}]: {name} is unknown to this libseccomp, so its rule is skipped (as runc skips it) and the profile's defaultAction lets {name} through; to refuse it, make defaultAction refuse and allow what the container needs"
                ));
            }
        }
    }
    out
}

/// The program libseccomp generated, as `struct sock_filter`s. Exported
/// through a memfd: bookworm's libseccomp (2.5) has no export to memory.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>> {
    let fd =
        nix::sys::memfd::memfd_create(c"kennel-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .context("memfd_create for the seccomp program")?;
    ctx.export_bpf(fd.as_fd())
        .context("libseccomp: exporting the program")?;
    let mut file = std::fs::File::from(fd);
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(super::program::instructions(&bytes))
}
