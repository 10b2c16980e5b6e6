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
/// are in the comments, and the tests run the program.
pub fn program() -> Vec<Insn> {
    vec![
        /* 0 */ load(4),
        /* 1 */ jeq(AUDIT_ARCH_X86_64, 1, 0), // -> 3
        /* 2 */ jeq(AUDIT_ARCH_I386, 7, 17), // -> 10, else -> 20 allow
        // x86-64 and x32 (the x32 bit cleared): keys 248-250, ioctl 16 and
        // x32's own ioctl 514.
        /* 3 */
        load(0),
        /* 4 */ stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, !X32_BIT),
        /* 5 */ jeq(248, 12, 0), // -> 18
        /* 6 */ jeq(249, 11, 0), // -> 18
        /* 7 */ jeq(250, 10, 0), // -> 18
        /* 8 */ jeq(16, 6, 0), // -> 15
        /* 9 */ jeq(514, 5, 10), // -> 15, else -> 20
        // i386: keys 286-288, ioctl 54.
        /* 10 */ load(0),
        /* 11 */ jeq(286, 6, 0), // -> 18
        /* 12 */ jeq(287, 5, 0), // -> 18
        /* 13 */ jeq(288, 4, 0), // -> 18
        /* 14 */ jeq(54, 0, 5), // -> 15, else -> 20
        // ioctl: the request's low 32 bits.
        /* 15 */ load(24),
        /* 16 */ jeq(TIOCSTI, 2, 0), // -> 19
        /* 17 */ jeq(TIOCLINUX, 1, 2), // -> 19, else -> 20
        /* 18 */ ret(RET_ERRNO | libc::ENOSYS as u32),
        /* 19 */ ret(RET_ERRNO | libc::EPERM as u32),
        /* 20 */ ret(RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on (arch, nr, args[1]) as the kernel would.
    fn run(prog: &[Insn], arch: u32, nr: u32, arg1: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[24..32].copy_from_slice(&arg1.to_ne_bytes());
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            let code = u32::from(i.code);
            pc += 1;
            if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                let k = i.k as usize;
                a = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
            } else if code == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K {
                a &= i.k;
            } else if code == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K {
                pc += usize::from(if a == i.k { i.jt } else { i.jf });
            } else if code == libc::BPF_RET | libc::BPF_K {
                return i.k;
            } else {
                panic!("unexpected instruction {code:#x}");
            }
        }
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
