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

/// A program read back: for each architecture interval (by its first
/// value, ascending from 0), the syscall number intervals (the same) with
/// their answers, in `graph`.
pub struct Table {
    graph: Graph,
    arches: Vec<(u32, Vec<(u32, usize)>)>,
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

/// The bounds of both partitions, each with the answer of either side.
fn overlay<A: Clone, B: Clone>(a: &[(u32, A)], b: &[(u32, B)]) -> Vec<(u32, A, B)> {
    let mut starts: Vec<u32> = a.iter().map(|x| x.0).chain(b.iter().map(|x| x.0)).collect();
    starts.sort_unstable();
    starts.dedup();
    starts
        .into_iter()
        .map(|s| {
            let ia = a.partition_point(|x| x.0 <= s) - 1;
            let ib = b.partition_point(|x| x.0 <= s) - 1;
            (s, a[ia].1.clone(), b[ib].1.clone())
        })
        .collect()
}

/// The one answer of two filters installed one after the other, `older`
/// first: the kernel takes the action that comes first in its order
/// (KILL_PROCESS, KILL_THREAD, TRAP, ERRNO, USER_NOTIF, TRACE, LOG,
/// ALLOW), and on equal actions the newer filter's value.
fn stacked(older: u32, newer: u32) -> u32 {
    let action = |r: u32| (r & 0xffff_0000) as i32;
    if action(older) < action(newer) {
        older
    } else {
        newer
    }
}

/// One table answering as `older` and `newer` installed in that order.
pub fn stack(older: &Table, newer: &Table) -> Result<Table, Unsupported> {
    let mut graph = Graph::default();
    let mut copied_old = HashMap::new();
    let mut copied_new = HashMap::new();
    let mut both = HashMap::new();
    let mut arches = Vec::new();
    for (a, old_nrs, new_nrs) in overlay(&older.arches, &newer.arches) {
        let mut nrs = Vec::new();
        for (n, o, w) in overlay(&old_nrs, &new_nrs) {
            let o = copy(&older.graph, o, &mut graph, &mut copied_old)?;
            let w = copy(&newer.graph, w, &mut graph, &mut copied_new)?;
            nrs.push((n, combine(&mut graph, o, w, &mut both)?));
        }
        arches.push((a, merge_runs(nrs)));
    }
    Ok(Table {
        graph,
        arches: merge_runs(arches),
    })
}

fn copy(
    from: &Graph,
    id: usize,
    to: &mut Graph,
    memo: &mut HashMap<usize, usize>,
) -> Result<usize, Unsupported> {
    if let Some(&c) = memo.get(&id) {
        return Ok(c);
    }
    let n = match from.nodes[id] {
        Node::Ret(k) => Node::Ret(k),
        Node::Load { offset, next } => Node::Load {
            offset,
            next: copy(from, next, to, memo)?,
        },
        Node::Alu { code, k, next } => Node::Alu {
            code,
            k,
            next: copy(from, next, to, memo)?,
        },
        Node::Jump { code, k, t, f } => Node::Jump {
            code,
            k,
            t: copy(from, t, to, memo)?,
            f: copy(from, f, to, memo)?,
        },
    };
    let c = to.add(n)?;
    memo.insert(id, c);
    Ok(c)
}

/// Runs `old`, then at each of its returns `new` from its start (an
/// answer's start never reads the accumulator: it is a return or a load),
/// returning what the two stacked return.
fn combine(
    g: &mut Graph,
    old: usize,
    new: usize,
    memo: &mut HashMap<(usize, usize), usize>,
) -> Result<usize, Unsupported> {
    if let Some(&c) = memo.get(&(old, new)) {
        return Ok(c);
    }
    let n = match (g.nodes[old], g.nodes[new]) {
        (Node::Ret(a), Node::Ret(b)) => Node::Ret(stacked(a, b)),
        (Node::Ret(_), Node::Load { offset, next }) => Node::Load {
            offset,
            next: combine(g, old, next, memo)?,
        },
        (Node::Ret(_), Node::Alu { code, k, next }) => Node::Alu {
            code,
            k,
            next: combine(g, old, next, memo)?,
        },
        (Node::Ret(_), Node::Jump { code, k, t, f }) => Node::Jump {
            code,
            k,
            t: combine(g, old, t, memo)?,
            f: combine(g, old, f, memo)?,
        },
        (Node::Load { offset, next }, _) => Node::Load {
            offset,
            next: combine(g, next, new, memo)?,
        },
        (Node::Alu { code, k, next }, _) => Node::Alu {
            code,
            k,
            next: combine(g, next, new, memo)?,
        },
        (Node::Jump { code, k, t, f }, _) => Node::Jump {
            code,
            k,
            t: combine(g, t, new, memo)?,
            f: combine(g, f, new, memo)?,
        },
    };
    let c = g.add(n)?;
    memo.insert((old, new), c);
    Ok(c)
}

impl Table {
    /// The table as a program: the architecture, then the syscall number,
    /// each found by a balanced search over interval bounds.
    pub fn program(mut self) -> Result<Vec<Insn>, Unsupported> {
        let arches = std::mem::take(&mut self.arches);
        let mut per_arch = Vec::new();
        for (a, nrs) in arches {
            let search = self.search(&nrs)?;
            let start = match self.graph.nodes[search] {
                // One answer for every number: no need to load it.
                Node::Ret(_) | Node::Load { .. } => search,
                _ => self.graph.add(Node::Load {
                    offset: OFFSET_NR,
                    next: search,
                })?,
            };
            per_arch.push((a, start));
        }
        let search = self.search(&per_arch)?;
        let root = match self.graph.nodes[search] {
            Node::Ret(_) | Node::Load { .. } => search,
            _ => self.graph.add(Node::Load {
                offset: OFFSET_ARCH,
                next: search,
            })?,
        };
        emit(&self.graph, root)
    }

    /// A search over `items` (interval starts ascending from 0, answers)
    /// on the accumulator. A single value whose neighbours have one answer
    /// (a refused call among allowed ones) is an exception of theirs,
    /// one comparison where two bounds would cost two.
    fn search(&mut self, items: &[(u32, usize)]) -> Result<usize, Unsupported> {
        let mut folded: Vec<Folded> = Vec::new();
        let mut i = 0;
        while i < items.len() {
            let (lo, answer) = items[i];
            if let (Some(last), Some(&(after, resumed))) = (folded.last_mut(), items.get(i + 1)) {
                if after.checked_sub(1) == Some(lo) && last.1 == resumed {
                    last.2.push((lo, answer));
                    i += 2;
                    continue;
                }
            }
            folded.push((lo, answer, Vec::new()));
            i += 1;
        }
        let mut leaves = Vec::with_capacity(folded.len());
        for (lo, answer, exceptions) in folded {
            let mut node = answer;
            for &(v, other) in exceptions.iter().rev() {
                node = self.graph.add(Node::Jump {
                    code: JEQ,
                    k: v,
                    t: other,
                    f: node,
                })?;
            }
            leaves.push((lo, node));
        }
        self.balanced(&leaves)
    }

    fn balanced(&mut self, items: &[(u32, usize)]) -> Result<usize, Unsupported> {
        match items {
            [] => Err(Unsupported("an empty table")),
            [(_, only)] => Ok(*only),
            _ => {
                let mid = items.len() / 2;
                let f = self.balanced(&items[..mid])?;
                let t = self.balanced(&items[mid..])?;
                self.graph.add(Node::Jump {
                    code: JGE,
                    k: items[mid].0,
                    t,
                    f,
                })
            }
        }
    }
}

/// An interval's start, its answer, and the single values inside it with
/// answers of their own.
type Folded = (u32, usize, Vec<(u32, usize)>);

/// The graph from `root` as instructions: every node after all that lead
/// to it (jumps only go forward), each node's likely successor right
/// after it, and a jump too far for an 8-bit offset made through a copy
/// of the return or an unconditional jump placed just after it.
fn emit(g: &Graph, root: usize) -> Result<Vec<Insn>, Unsupported> {
    // Reverse postorder, the false way visited last so it comes next.
    let mut order = Vec::new();
    let mut seen = vec![false; g.nodes.len()];
    let mut stack = vec![(root, false)];
    while let Some((id, done)) = stack.pop() {
        if done {
            order.push(id);
            continue;
        }
        if std::mem::replace(&mut seen[id], true) {
            continue;
        }
        stack.push((id, true));
        match g.nodes[id] {
            Node::Ret(_) => {}
            Node::Load { next, .. } | Node::Alu { next, .. } => stack.push((next, false)),
            Node::Jump { t, f, .. } => {
                stack.push((f, false));
                stack.push((t, false));
            }
        }
    }
    // `order` is postorder: built from the program's end backwards, each
    // instruction's place counted from the end.
    let mut out: Vec<Insn> = Vec::new();
    let mut place: HashMap<usize, usize> = HashMap::new();
    let insn = |code: u16, jt: u8, jf: u8, k: u32| Insn { code, jt, jf, k };
    for &id in &order {
        match g.nodes[id] {
            Node::Ret(k) => out.push(insn(RET_K, 0, 0, k)),
            Node::Load { offset: k, next } | Node::Alu { k, next, .. } => {
                let code = match g.nodes[id] {
                    Node::Alu { code, .. } => code,
                    _ => LD_W_ABS,
                };
                let to = place[&next];
                if to + 1 != out.len() {
                    goto(g, &mut out, &mut place, next);
                }
                out.push(insn(code, 0, 0, k));
            }
            Node::Jump { code, k, t, f } => {
                // Room for two trampolines, decided before either is placed.
                let far = |p: usize| out.len() + 2 - p - 1 > usize::from(u8::MAX);
                let (far_t, far_f) = (far(place[&t]), far(place[&f]));
                if far_f {
                    goto(g, &mut out, &mut place, f);
                }
                let f_at = if far_f { out.len() - 1 } else { place[&f] };
                if far_t {
                    goto(g, &mut out, &mut place, t);
                }
                let t_at = if far_t { out.len() - 1 } else { place[&t] };
                let here = out.len();
                out.push(insn(
                    code,
                    (here - t_at - 1) as u8,
                    (here - f_at - 1) as u8,
                    k,
                ));
            }
        }
        place.insert(id, out.len() - 1);
        if out.len() > MAX_LEN {
            return Err(Unsupported(
                "the program would be longer than the kernel takes",
            ));
        }
    }
    out.reverse();
    Ok(out)
}

/// Places, at the front, a way to `to`: a copy of it if it is a return
/// (later jumps to it may use the nearer copy), else a long jump.
fn goto(g: &Graph, out: &mut Vec<Insn>, place: &mut HashMap<usize, usize>, to: usize) {
    let here = out.len();
    match g.nodes[to] {
        Node::Ret(k) => {
            out.push(Insn {
                code: RET_K,
                jt: 0,
                jf: 0,
                k,
            });
            place.insert(to, here);
        }
        _ => out.push(Insn {
            code: JA,
            jt: 0,
            jf: 0,
            k: (here - place[&to] - 1) as u32,
        }),
    }
}
