//! A table written out as instructions: a balanced search over the
//! interval bounds, each jump within reach of its target.

use std::collections::HashMap;

use super::{
    Graph, Insn, Node, Table, Unsupported, JA, JEQ, JGE, LD_W_ABS, MAX_LEN, OFFSET_ARCH, OFFSET_NR,
    RET_K,
};

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
