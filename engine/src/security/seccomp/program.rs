//! What the parts of seccomp/ share about a program: its instructions
//! from bytes, and the ids that name a compiled program in the cache.

/// `struct sock_filter`s from their bytes, in the machine's byte order, as
/// libseccomp exports them and the cache keeps them (a partial last one
/// is dropped).
pub fn instructions(bytes: &[u8]) -> Vec<libc::sock_filter> {
    bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

/// FNV-1a of `bytes`, at compile time.
pub const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Tells one build of the code that turns profiles into programs from
/// another, for the kept programs' names: a changed compiler must not
/// reuse what an older one compiled.
pub const COMPILER_ID: u64 = fnv1a(include_str!("compile.rs").as_bytes())
    ^ fnv1a(include_str!("profile.rs").as_bytes()).rotate_left(1)
    ^ fnv1a(include_str!("layout/mod.rs").as_bytes()).rotate_left(2)
    ^ fnv1a(include_str!("layout/read.rs").as_bytes()).rotate_left(5)
    ^ fnv1a(include_str!("layout/stack.rs").as_bytes()).rotate_left(6)
    ^ fnv1a(include_str!("layout/emit.rs").as_bytes()).rotate_left(7)
    ^ fnv1a(include_str!("keys.rs").as_bytes()).rotate_left(3)
    ^ fnv1a(include_str!("cache.rs").as_bytes()).rotate_left(4);

/// seccomp(2)'s SECCOMP_FILTER_FLAG_LOG.
pub const FLAG_LOG: u32 = 1 << 1;
