//! Two tables stacked into one with the answer the kernel gives when both
//! filters are installed.

use std::collections::HashMap;

use super::{merge_runs, Graph, Node, Table, Unsupported};

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
