//! The small seccomp filter every container process gets, whatever its
//! profile (`unconfined` included): the caller's keyrings and the terminal
//! injection ioctls stay out of reach.
//!
//! - add_key, request_key and keyctl answer ENOSYS, as if the kernel had no
//!   keyrings. The fresh session keyring hides the caller's keys from a
//!   search, but the container's root is the caller's uid on the host, so
//!   the caller's user keyring, found by its serial number, would still be
//!   its to link and read. Docker's default profile refuses the same three.
//! - ioctl TIOCSTI and TIOCLINUX answer EPERM, whatever the upper 32 bits
//!   of the request (the kernel ignores them; bubblewrap's CVE-2017-5226
//!   fix once did not): a second line behind the new session, in case a
//!   terminal that is the container's controlling one is also the caller's.
//!
//! Classic BPF over `struct seccomp_data`: nr at offset 0, arch at 4, the
//! low 32 bits of args[1] at 24.

/// One instruction, as `struct sock_filter`.
pub type Insn = libc::sock_filter;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const X32_BIT: u32 = 0x4000_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541c;

fn stmt(code: u32, k: u32) -> Insn {
    Insn {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> Insn {
    Insn {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

fn load(offset: u32) -> Insn {
    stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset)
}

fn ret(k: u32) -> Insn {
    stmt(libc::BPF_RET | libc::BPF_K, k)
}

/// The program. Jump offsets count from the next instruction; the labels
/// are in the comments, and the tests run the program. The x32 numbers
/// are compared whole rather than with the x32 bit masked off, so that
/// `layout` can read the program and stack it into a profile's.
pub fn program() -> Vec<Insn> {
    vec![
        /* 0 */ load(4),
        /* 1 */ jeq(AUDIT_ARCH_X86_64, 1, 0), // -> 3
        /* 2 */ jeq(AUDIT_ARCH_I386, 11, 21), // -> 14, else -> 24 allow
        // x86-64, and x32 (the x32 bit set): keys 248-250, ioctl 16 and
        // x32's own ioctl 514.
        /* 3 */
        load(0),
        /* 4 */ jeq(248, 17, 0), // -> 22
        /* 5 */ jeq(249, 16, 0), // -> 22
        /* 6 */ jeq(250, 15, 0), // -> 22
        /* 7 */ jeq(X32_BIT | 248, 14, 0), // -> 22
        /* 8 */ jeq(X32_BIT | 249, 13, 0), // -> 22
        /* 9 */ jeq(X32_BIT | 250, 12, 0), // -> 22
        /* 10 */ jeq(16, 8, 0), // -> 19
        /* 11 */ jeq(514, 7, 0), // -> 19
        /* 12 */ jeq(X32_BIT | 16, 6, 0), // -> 19
        /* 13 */ jeq(X32_BIT | 514, 5, 10), // -> 19, else -> 24
        // i386: keys 286-288, ioctl 54.
        /* 14 */ load(0),
        /* 15 */ jeq(286, 6, 0), // -> 22
        /* 16 */ jeq(287, 5, 0), // -> 22
        /* 17 */ jeq(288, 4, 0), // -> 22
        /* 18 */ jeq(54, 0, 5), // -> 19, else -> 24
        // ioctl: the request's low 32 bits.
        /* 19 */ load(24),
        /* 20 */ jeq(TIOCSTI, 2, 0), // -> 23
        /* 21 */ jeq(TIOCLINUX, 1, 2), // -> 23, else -> 24
        /* 22 */ ret(RET_ERRNO | libc::ENOSYS as u32),
        /* 23 */ ret(RET_ERRNO | libc::EPERM as u32),
        /* 24 */ ret(RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on (arch, nr, args[1]) as the kernel would.
    fn run(prog: &[Insn], arch: u32, nr: u32, arg1: u64) -> u32 {
        let data = super::super::emulate::Data::new(arch, nr, [0, arg1, 0, 0, 0, 0]);
        super::super::emulate::run(prog, &data)
    }

    #[test]
    fn keys_and_injection_are_refused_everything_else_allowed() {
        let p = program();
        let nosys = RET_ERRNO | libc::ENOSYS as u32;
        let perm = RET_ERRNO | libc::EPERM as u32;
        for (arch, nr, arg, want) in [
            (AUDIT_ARCH_X86_64, 250, 0, nosys),
            (AUDIT_ARCH_X86_64, 248, 0, nosys),
            (AUDIT_ARCH_X86_64, 249, 0, nosys),
            (AUDIT_ARCH_X86_64, X32_BIT | 250, 0, nosys),
            (AUDIT_ARCH_I386, 288, 0, nosys),
            (AUDIT_ARCH_I386, 286, 0, nosys),
            (AUDIT_ARCH_X86_64, 16, u64::from(TIOCSTI), perm),
            (AUDIT_ARCH_X86_64, 16, 1 << 32 | u64::from(TIOCSTI), perm),
            (AUDIT_ARCH_X86_64, 16, u64::from(TIOCLINUX), perm),
            (AUDIT_ARCH_X86_64, X32_BIT | 514, u64::from(TIOCSTI), perm),
            (AUDIT_ARCH_X86_64, X32_BIT | 16, u64::from(TIOCSTI), perm),
            (AUDIT_ARCH_X86_64, 514, u64::from(TIOCSTI), perm),
            (AUDIT_ARCH_X86_64, 0x8000_00f8, 0, RET_ALLOW),
            (AUDIT_ARCH_I386, 54, u64::from(TIOCSTI), perm),
            (AUDIT_ARCH_X86_64, 16, 0x5413, RET_ALLOW), // TIOCGWINSZ
            (AUDIT_ARCH_X86_64, 0, 0, RET_ALLOW),
            (AUDIT_ARCH_X86_64, 59, 0, RET_ALLOW),
            (AUDIT_ARCH_X86_64, 288, 0, RET_ALLOW), // accept4, not keyctl
            (AUDIT_ARCH_I386, 250, 0, RET_ALLOW),
            (AUDIT_ARCH_I386, 16, u64::from(TIOCSTI), RET_ALLOW), // lchown
            (0xc000_00b7, 219, 0, RET_ALLOW),                     // aarch64: not filtered
        ] {
            assert_eq!(
                run(&p, arch, nr, arg),
                want,
                "arch {arch:#x} nr {nr} arg {arg:#x}"
            );
        }
    }
}
