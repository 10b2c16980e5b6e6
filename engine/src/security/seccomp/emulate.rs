//! The kernel's classic BPF over `struct seccomp_data`, for the tests: the
//! instructions seccomp programs use, every other one a panic.

/// `struct seccomp_data` as the program reads it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

impl Data {
    pub fn new(arch: u32, nr: u32, args: [u64; 6]) -> Data {
        Data {
            nr,
            arch,
            instruction_pointer: 0,
            args,
        }
    }

    fn bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&self.nr.to_ne_bytes());
        b[4..8].copy_from_slice(&self.arch.to_ne_bytes());
        b[8..16].copy_from_slice(&self.instruction_pointer.to_ne_bytes());
        for (i, a) in self.args.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        b
    }
}

/// What `prog` returns for `data`.
pub fn run(prog: &[libc::sock_filter], data: &Data) -> u32 {
    let bytes = data.bytes();
    let (mut pc, mut a) = (0usize, 0u32);
    loop {
        let i = prog[pc];
        let code = u32::from(i.code);
        pc += 1;
        match code & 0x07 {
            libc::BPF_LD => {
                assert_eq!(
                    code,
                    libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
                    "load {code:#x}"
                );
                let k = i.k as usize;
                assert!(k % 4 == 0 && k < 64, "load from {k}");
                a = u32::from_ne_bytes(bytes[k..k + 4].try_into().unwrap());
            }
            libc::BPF_ALU => {
                assert_eq!(code & libc::BPF_X, 0, "alu on X {code:#x}");
                a = match code & 0xf0 {
                    libc::BPF_ADD => a.wrapping_add(i.k),
                    libc::BPF_SUB => a.wrapping_sub(i.k),
                    libc::BPF_MUL => a.wrapping_mul(i.k),
                    libc::BPF_AND => a & i.k,
                    libc::BPF_OR => a | i.k,
                    libc::BPF_XOR => a ^ i.k,
                    libc::BPF_LSH => a << i.k,
                    libc::BPF_RSH => a >> i.k,
                    op => panic!("alu op {op:#x}"),
                };
            }
            libc::BPF_JMP => {
                let taken = match code & 0xf0 {
                    libc::BPF_JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    libc::BPF_JEQ => a == i.k,
                    libc::BPF_JGT => a > i.k,
                    libc::BPF_JGE => a >= i.k,
                    libc::BPF_JSET => a & i.k != 0,
                    op => panic!("jump op {op:#x}"),
                };
                assert_eq!(code & libc::BPF_X, 0, "jump on X {code:#x}");
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            libc::BPF_RET if code & 0x18 == libc::BPF_A => return a,
            libc::BPF_RET => return i.k,
            _ => panic!("instruction {code:#x}"),
        }
    }
}
