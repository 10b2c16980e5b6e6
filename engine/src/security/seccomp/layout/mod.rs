//! A shorter program with the same answers: libseccomp's program read back
//! as a table, then laid out again.
//!
//! The kernel's cost of installing a filter grows with the program's
//! length (it checks, converts and JIT-compiles every instruction) and
//! with the length of the path each syscall number takes through it (it
//! runs the program once per number of the native and compat tables, to
//! learn which ones it may always allow). libseccomp's binary tree still
//! compares each syscall number on its own, over a thousand instructions
//! for kennel's default profile.
//!
//! Here the program is run over intervals instead of values: wherever it
//! compares the architecture or the syscall number, the interval at hand
//! splits in two, and every path ends in a return or in the first load of
//! an argument. That gives, per architecture, the syscall numbers as
//! intervals, each with one answer: a return value, or the rest of the
//! program from that load on, specialised to the known architecture and
//! number (the argument comparisons). Neighbouring intervals with the same
//! answer become one; the new program then finds the interval by a
//! balanced search over their bounds. Nothing is re-derived from the
//! profile: libseccomp keeps deciding what every syscall means on every
//! architecture (numbers, socketcall, 32-bit arguments), and the new
//! program returns exactly what its program returns for every input.
//!
//! Two programs read back this way can also be stacked into one with the
//! answer the kernel gives when both are installed (see `stack`).
//!
//! The parts: `read` turns a program into a `Table`, `stack` joins two
//! tables, `emit` writes a table out as instructions. They share the BPF
//! opcodes below, the hash-consed `Graph` of answers and the `Table`; the
//! module imports nothing from the crate.

mod emit;
mod read;
mod stack;

use std::collections::HashMap;

type Insn = libc::sock_filter;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const RET_A: u16 = (libc::BPF_RET | libc::BPF_A) as u16;
/// `struct seccomp_data`: nr, arch, instruction_pointer, args[6].
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const DATA_SIZE: u32 = 64;
/// The kernel's limit on a program's length (BPF_MAXINSNS).
const MAX_LEN: usize = 4096;
/// Paths and nodes explored before giving up on a program.
const BUDGET: usize = 200_000;

/// Why a program was left as it was: it uses what the reading does not
/// model, or the new one would not be shorter.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsupported(pub &'static str);

/// What the program does from some point on, as a function of the
/// accumulator and the syscall's data. Kept hash-consed in a `Graph`, so
/// equal behaviour is one node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Node {
    Ret(u32),
    Load {
        offset: u32,
        next: usize,
    },
    Alu {
        code: u16,
        k: u32,
        next: usize,
    },
    Jump {
        code: u16,
        k: u32,
        t: usize,
        f: usize,
    },
}

#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    ids: HashMap<Node, usize>,
}

impl Graph {
    fn add(&mut self, n: Node) -> Result<usize, Unsupported> {
        if let Some(&id) = self.ids.get(&n) {
            return Ok(id);
        }
        if self.nodes.len() >= BUDGET {
            return Err(Unsupported("the program has too many distinct paths"));
        }
        // A jump both of whose ways lead to one place is that place.
        if let Node::Jump { t, f, .. } = n {
            if t == f {
                return Ok(t);
            }
        }
        self.nodes.push(n);
        self.ids.insert(n, self.nodes.len() - 1);
        Ok(self.nodes.len() - 1)
    }
}

/// A program read back: for each architecture interval (by its first
/// value, ascending from 0), the syscall number intervals (the same) with
/// their answers, in `graph`.
pub struct Table {
    graph: Graph,
    arches: Vec<(u32, Vec<(u32, usize)>)>,
}

/// Neighbours with the same answer as one.
fn merge_runs<T: PartialEq>(items: Vec<(u32, T)>) -> Vec<(u32, T)> {
    let mut out: Vec<(u32, T)> = Vec::with_capacity(items.len());
    for (lo, v) in items {
        if out.last().is_some_and(|(_, last)| *last == v) {
            continue;
        }
        out.push((lo, v));
    }
    out
}

pub use read::read;
pub use stack::stack;
