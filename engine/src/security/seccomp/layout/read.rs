//! A program read as a table: run over intervals of architecture and
//! syscall number, each path ending in a return or in the rest of the
//! program specialised from its first argument load on.

use std::collections::HashMap;

use super::{
    merge_runs, Graph, Insn, Node, Table, Unsupported, BUDGET, DATA_SIZE, JA, JEQ, JGE, JGT, JSET,
    LD_W_ABS, OFFSET_ARCH, OFFSET_NR, RET_A, RET_K,
};

/// An inclusive interval of u32.
type Span = (u32, u32);

/// What the accumulator holds, as far as the reading knows.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Acc {
    Known(u32),
    Nr,
    Arch,
    /// An argument (or something computed from one): only the new
    /// program knows it.
    Data,
}

fn alu(code: u16, a: u32, k: u32) -> Result<u32, Unsupported> {
    Ok(match u32::from(code) & 0xf0 {
        c if c == libc::BPF_ADD => a.wrapping_add(k),
        c if c == libc::BPF_SUB => a.wrapping_sub(k),
        c if c == libc::BPF_MUL => a.wrapping_mul(k),
        c if c == libc::BPF_AND => a & k,
        c if c == libc::BPF_OR => a | k,
        c if c == libc::BPF_XOR => a ^ k,
        c if c == libc::BPF_LSH && k < 32 => a << k,
        c if c == libc::BPF_RSH && k < 32 => a >> k,
        _ => {
            return Err(Unsupported(
                "an arithmetic instruction the reading does not model",
            ))
        }
    })
}

fn is_alu_k(code: u16) -> bool {
    u32::from(code) & 0x07 == libc::BPF_ALU && u32::from(code) & libc::BPF_X == 0
}

/// Whether a conditional jump is taken with `a` in the accumulator.
fn taken(code: u16, a: u32, k: u32) -> bool {
    match code {
        JEQ => a == k,
        JGT => a > k,
        JGE => a >= k,
        _ => a & k != 0,
    }
}

/// One program, read.
struct Reader<'p> {
    prog: &'p [Insn],
    graph: Graph,
    /// (arch, nr, answer), the intervals of each path.
    leaves: Vec<(Span, Span, usize)>,
    steps: usize,
}

impl Reader<'_> {
    fn at(&mut self, pc: usize) -> Result<Insn, Unsupported> {
        self.steps += 1;
        if self.steps > BUDGET * 20 {
            return Err(Unsupported("the program has too many paths"));
        }
        self.prog
            .get(pc)
            .copied()
            .ok_or(Unsupported("a jump leaves the program"))
    }

    fn jump_target(pc: usize, off: u32) -> usize {
        pc + 1 + off as usize
    }

    /// Follows every path from `pc` over the intervals `arch` and `nr`.
    fn explore(
        &mut self,
        mut pc: usize,
        arch: Span,
        nr: Span,
        mut acc: Acc,
    ) -> Result<(), Unsupported> {
        loop {
            let i = self.at(pc)?;
            match i.code {
                LD_W_ABS if i.k == OFFSET_NR => acc = Acc::Nr,
                LD_W_ABS if i.k == OFFSET_ARCH => acc = Acc::Arch,
                LD_W_ABS => {
                    let mut memo = HashMap::new();
                    let answer = self.specialise(pc, Acc::Data, arch, nr, &mut memo)?;
                    self.leaves.push((arch, nr, answer));
                    return Ok(());
                }
                RET_K => {
                    let answer = self.graph.add(Node::Ret(i.k))?;
                    self.leaves.push((arch, nr, answer));
                    return Ok(());
                }
                JA => {
                    pc = Self::jump_target(pc, i.k);
                    continue;
                }
                code if is_alu_k(code) => {
                    acc = Acc::Known(alu(code, known(acc, arch, nr)?, i.k)?);
                }
                RET_A => {
                    let answer = self.graph.add(Node::Ret(known(acc, arch, nr)?))?;
                    self.leaves.push((arch, nr, answer));
                    return Ok(());
                }
                JEQ | JGT | JGE | JSET => {
                    let t = Self::jump_target(pc, u32::from(i.jt));
                    let f = Self::jump_target(pc, u32::from(i.jf));
                    let span = match acc {
                        Acc::Nr => nr,
                        Acc::Arch => arch,
                        Acc::Known(v) => (v, v),
                        Acc::Data => unreachable!("explore stops at the first argument load"),
                    };
                    let (yes, no) = split(i.code, i.k, span)?;
                    let go = |me: &mut Self, s: Span, to: usize| match acc {
                        Acc::Nr => me.explore(to, arch, s, acc),
                        Acc::Arch => me.explore(to, s, nr, acc),
                        _ => me.explore(to, arch, nr, acc),
                    };
                    for s in yes {
                        go(self, s, t)?;
                    }
                    for s in no {
                        go(self, s, f)?;
                    }
                    return Ok(());
                }
                _ => return Err(Unsupported("an instruction the reading does not model")),
            }
            pc += 1;
        }
    }

    /// The program from `pc` on as a graph node, for the architecture and
    /// number in `arch` and `nr`, which it may read only where they are
    /// single values.
    fn specialise(
        &mut self,
        pc: usize,
        acc: Acc,
        arch: Span,
        nr: Span,
        memo: &mut HashMap<(usize, Acc), usize>,
    ) -> Result<usize, Unsupported> {
        if let Some(&id) = memo.get(&(pc, acc)) {
            return Ok(id);
        }
        let i = self.at(pc)?;
        let next = pc + 1;
        let node = match i.code {
            LD_W_ABS if i.k == OFFSET_NR => {
                let v = known(Acc::Nr, arch, nr)?;
                self.specialise(next, Acc::Known(v), arch, nr, memo)?
            }
            LD_W_ABS if i.k == OFFSET_ARCH => {
                let v = known(Acc::Arch, arch, nr)?;
                self.specialise(next, Acc::Known(v), arch, nr, memo)?
            }
            LD_W_ABS if i.k % 4 == 0 && i.k < DATA_SIZE => {
                let next = self.specialise(next, Acc::Data, arch, nr, memo)?;
                self.graph.add(Node::Load { offset: i.k, next })?
            }
            RET_K => self.graph.add(Node::Ret(i.k))?,
            RET_A => self.graph.add(Node::Ret(known(acc, arch, nr)?))?,
            JA => self.specialise(Self::jump_target(pc, i.k), acc, arch, nr, memo)?,
            code if is_alu_k(code) => match acc {
                Acc::Data => {
                    // Checked here so the new program never meets it.
                    alu(code, 0, i.k)?;
                    let next = self.specialise(next, Acc::Data, arch, nr, memo)?;
                    self.graph.add(Node::Alu { code, k: i.k, next })?
                }
                other => {
                    let v = alu(code, known(other, arch, nr)?, i.k)?;
                    self.specialise(next, Acc::Known(v), arch, nr, memo)?
                }
            },
            JEQ | JGT | JGE | JSET => {
                let t = Self::jump_target(pc, u32::from(i.jt));
                let f = Self::jump_target(pc, u32::from(i.jf));
                match acc {
                    Acc::Data => {
                        let t = self.specialise(t, acc, arch, nr, memo)?;
                        let f = self.specialise(f, acc, arch, nr, memo)?;
                        self.graph.add(Node::Jump {
                            code: i.code,
                            k: i.k,
                            t,
                            f,
                        })?
                    }
                    other => {
                        let v = known(other, arch, nr)?;
                        let to = if taken(i.code, v, i.k) { t } else { f };
                        self.specialise(to, Acc::Known(v), arch, nr, memo)?
                    }
                }
            }
            _ => return Err(Unsupported("an instruction the reading does not model")),
        };
        memo.insert((pc, acc), node);
        Ok(node)
    }
}

/// The value of `acc` where it is one value.
fn known(acc: Acc, arch: Span, nr: Span) -> Result<u32, Unsupported> {
    match acc {
        Acc::Known(v) => Ok(v),
        Acc::Nr if nr.0 == nr.1 => Ok(nr.0),
        Acc::Arch if arch.0 == arch.1 => Ok(arch.0),
        _ => Err(Unsupported(
            "the program computes with the syscall number or architecture over a range",
        )),
    }
}

/// The parts of `span` where the jump is taken and where it is not.
fn split(code: u16, k: u32, (lo, hi): Span) -> Result<(Vec<Span>, Vec<Span>), Unsupported> {
    let mut yes = Vec::new();
    let mut no = Vec::new();
    match code {
        JEQ => {
            if (lo..=hi).contains(&k) {
                yes.push((k, k));
                if k > lo {
                    no.push((lo, k - 1));
                }
                if k < hi {
                    no.push((k + 1, hi));
                }
            } else {
                no.push((lo, hi));
            }
        }
        JGT | JGE => {
            // Taken from `first` on.
            let first = if code == JGT {
                k.checked_add(1)
            } else {
                Some(k)
            };
            match first {
                Some(first) if first <= lo => yes.push((lo, hi)),
                Some(first) if first <= hi => {
                    no.push((lo, first - 1));
                    yes.push((first, hi));
                }
                _ => no.push((lo, hi)),
            }
        }
        _ if lo == hi => {
            if lo & k != 0 {
                yes.push((lo, hi))
            } else {
                no.push((lo, hi))
            }
        }
        _ => {
            return Err(Unsupported(
                "a bit test on the syscall number or architecture over a range",
            ))
        }
    }
    Ok((yes, no))
}

/// Reads `prog` as a table.
pub fn read(prog: &[Insn]) -> Result<Table, Unsupported> {
    let mut r = Reader {
        prog,
        graph: Graph::default(),
        leaves: Vec::new(),
        steps: 0,
    };
    r.explore(0, (0, u32::MAX), (0, u32::MAX), Acc::Known(0))?;
    let mut bounds: Vec<u32> = r.leaves.iter().map(|l| l.0 .0).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut arches = Vec::new();
    for &a in &bounds {
        let mut nrs: Vec<(u32, usize)> = r
            .leaves
            .iter()
            .filter(|l| l.0 .0 <= a && a <= l.0 .1)
            .map(|l| (l.1 .0, l.2))
            .collect();
        nrs.sort_unstable();
        arches.push((a, merge_runs(nrs)));
    }
    Ok(Table {
        graph: r.graph,
        arches: merge_runs(arches),
    })
}
