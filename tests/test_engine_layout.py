"""The engine's modules import only down their floors, and never in a circle.

Pure python: reads engine/src/**/*.rs, resolves every `crate::`, `super::`
and `self::` path (in `use` trees and inline) to the module it names, and
checks two things:

- each top-level module of the engine is on a declared floor (FLOORS), and
  imports only from its own floor or the ones below it;
- the graph between modules, down to two levels inside each folder
  (`net::pasta`, `child::rootfs::nodes`), has no circle.

Items of the crate root itself (`Options`, `Error`, `Event`: the API the
front ends hold) are not a module and are left out of the graph.
"""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "engine" / "src"

# Lowest first. A module may import from its own floor and the ones below.
FLOORS = [
    # The floor: system calls, the parent-child protocol, paths resolved
    # inside a root, the test-only stop points.
    {"sys", "protocol", "inroot", "stop_at"},
    # Spec parts every concern shares: mounts, the process, devices.
    {"spec"},
    # The host's side: the caller's ids, helpers, runtime dir, OCI hooks.
    {"host"},
    # Seccomp, Landlock, device rules.
    {"security"},
    # pasta, the bridge, published ports, the network namespace.
    {"net"},
    # The spec turned into one checked plan.
    {"plan"},
    # What runs in the new namespaces.
    {"child"},
    # create, start, wait, exec, delete; the state records.
    {"lifecycle"},
]

# How deep a module is a node of the circle check: a folder's files and
# their own submodules (`security::seccomp::cache`).
DEPTH = 3


def blank_strings(text):
    """`text` with comments, string and char literals blanked (same length),
    so braces and paths inside them are not read as code."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif re.match(r'(b?r(#*)")', text[i:i + 12]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.|\\x..|\\u\{[0-9a-fA-F]+\}|[^\\'])'", text[i:])
            if m:
                out.append(" " * m.end())
                i += m.end()
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(path, root):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return parts


def inline_mods(code):
    """[(start, end, name)] of each `mod name { ... }` in `code`."""
    spans = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        spans.append((m.end(), j, m.group(1)))
    return spans


def use_paths(tree, prefix=()):
    """Each path a `use` tree (the text after `use`) names."""
    tree = tree.strip()
    m = re.match(r"((?:\w+\s*::\s*)*)\{(.*)\}$", tree, re.S)
    if not m:
        head = re.sub(r"\s+as\s+\w+$", "", tree)
        parts = [p.strip() for p in head.split("::") if p.strip()]
        if parts and parts[-1] in ("self", "*"):
            parts.pop()
        return [tuple(prefix) + tuple(parts)]
    head = [p.strip() for p in m.group(1).split("::") if p.strip()]
    inner, out, depth, cur = m.group(2), [], 0, ""
    for ch in inner + ",":
        if ch == "," and depth == 0:
            if cur.strip():
                out += use_paths(cur, tuple(prefix) + tuple(head))
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    return out


def resolve(path, here, local=()):
    """The absolute path `path` names from module `here` (where the modules
    `local` are declared), or None when it is not a path into this crate."""
    if not path:
        return None
    parts = list(path)
    if parts[0] in local:
        return list(here) + parts
    if parts[0] == "crate":
        return parts[1:]
    if parts[0] in ("super", "self"):
        base = list(here)
        while parts and parts[0] in ("super", "self"):
            if parts.pop(0) == "super":
                base = base[:-1]
        return base + parts
    return None


def modules(root):
    """Every module path of the crate (from its files)."""
    mods = set()
    for p in root.rglob("*.rs"):
        mods.add(tuple(module_of(p, root)))
    return mods


def unit(path, mods):
    """The node `path` falls in: its longest module prefix, cut at DEPTH."""
    best = ()
    for k in range(1, len(path) + 1):
        if tuple(path[:k]) in mods:
            best = tuple(path[:k])
    return best[:DEPTH]


def edges(root):
    """{(from, to)}: module nodes, with the file and path that make each."""
    mods = modules(root)
    found = {}
    for p in sorted(root.rglob("*.rs")):
        code = blank_strings(p.read_text())
        here_file = module_of(p, root)
        spans = inline_mods(code)

        def inline_at(pos):
            return [name for (s, e, name) in spans if s <= pos < e]

        def here_at(pos):
            return here_file + inline_at(pos)

        paths = []
        for m in re.finditer(r"\buse\s+([^;]*);", code):
            for u in use_paths(m.group(1)):
                paths.append((m.start(), u))
        no_use = re.sub(r"\buse\s+[^;]*;", lambda m: " " * len(m.group(0)), code)
        # Modules declared here, reached by their bare name (`reaper::run`).
        local = set(re.findall(r"\bmod\s+(\w+)\s*;", code))
        heads = "|".join(["crate", "super", "self"] + sorted(local))
        for m in re.finditer(rf"(?<![\w:])(?:{heads})(?:\s*::\s*\w+)+", no_use):
            paths.append((m.start(), tuple(x.strip() for x in m.group(0).split("::"))))
        src = tuple(here_file[:DEPTH])
        for pos, path in paths:
            target = resolve(path, here_at(pos), local if not inline_at(pos) else ())
            if target is None:
                continue
            dst = unit(target, mods)
            if not dst or not src or dst == src:
                continue
            found.setdefault((src, dst), f"{p.relative_to(root)}: {'::'.join(path)}")
    return found


def circles(graph_edges):
    """One circle through each knot of the graph (each strongly connected
    part of more than one node), as a list of nodes, with the knot's
    nodes."""
    graph = {}
    for a, b in graph_edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, on, stack, parts = {}, {}, set(), [], []

    def connect(n):
        index[n] = low[n] = len(index)
        stack.append(n)
        on.add(n)
        for m in sorted(graph[n]):
            if m not in index:
                connect(m)
                low[n] = min(low[n], low[m])
            elif m in on:
                low[n] = min(low[n], index[m])
        if low[n] == index[n]:
            part = set()
            while True:
                m = stack.pop()
                on.discard(m)
                part.add(m)
                if m == n:
                    break
            if len(part) > 1:
                parts.append(part)

    for n in sorted(graph):
        if n not in index:
            connect(n)
    out = []
    for part in parts:
        start = min(part)
        # The shortest way back to `start` inside the part.
        paths, seen = [[start]], {start}
        while paths:
            path = paths.pop(0)
            for m in sorted(graph[path[-1]] & part):
                if m == start:
                    out.append((path + [start], sorted(part)))
                    paths = []
                    break
                if m not in seen:
                    seen.add(m)
                    paths.append(path + [m])
    return sorted(out)


def floor_of(name):
    for i, floor in enumerate(FLOORS):
        if name in floor:
            return i
    return None


def problems(root):
    """What is wrong with the engine's layout at `root`, said for a person."""
    out = []
    tops = {m[0] for m in modules(root) if m}
    for t in sorted(tops):
        if floor_of(t) is None:
            out.append(f"engine module `{t}` is on no floor: put it in a folder, or add it to FLOORS in {Path(__file__).name}")
    found = edges(root)
    for (a, b), where in sorted(found.items()):
        fa, fb = floor_of(a[0]), floor_of(b[0])
        if fa is not None and fb is not None and fb > fa:
            out.append(f"`{'::'.join(a)}` imports up from `{'::'.join(b)}` ({where}): move what both use down to the lower floor")
    for c, knot in circles(found):
        steps = " -> ".join("::".join(n) for n in c)
        where = "; ".join(found[(c[i], c[i + 1])] for i in range(len(c) - 1))
        rest = ", ".join("::".join(n) for n in knot if n not in c)
        rest = f"; the same knot holds {rest}" if rest else ""
        out.append(f"import circle: {steps} ({where}){rest}: move what they share down into a module both may import")
    return out


def test_the_engine_imports_only_down_and_in_no_circle():
    assert ROOT.is_dir(), ROOT
    found = problems(ROOT)
    assert not found, "\n".join(found)


def write(root, files):
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_the_check_sees_a_circle_and_an_import_up(tmp_path):
    write(tmp_path, {
        "lib.rs": "mod sys;\nmod child;\nmod lifecycle;\n",
        "sys.rs": "use crate::child::x; // an import up\n",
        "child/mod.rs": "pub mod a;\npub mod b;\npub mod c;\nfn f() { c::g(); }\n",
        "child/c.rs": "use super::f;\n",
        "child/a.rs": "use super::b::f;\nconst S: &str = \"crate::lifecycle::no\";\n",
        "child/b.rs": "use crate::{child::{a::{self, g}}, sys};\n",
        "lifecycle/mod.rs": "pub mod run;\n",
        "lifecycle/run.rs": "fn f() { crate::child::a::g(); }\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
    })
    found = problems(tmp_path)
    assert any("`sys` imports up from `child`" in p for p in found), found
    assert any("import circle: child::a -> child::b -> child::a" in p for p in found), found
    assert any("import circle: child -> child::c -> child" in p for p in found), found
    # Paths in strings, `use super::*` in a test module and a folder's own
    # floor are no edges.
    assert not any("lifecycle" in p for p in found), found
    found_edges = edges(tmp_path)
    assert (("lifecycle", "run"), ("child", "a")) in found_edges


def test_the_check_passes_a_tree_without_either(tmp_path):
    write(tmp_path, {
        "lib.rs": "mod sys;\nmod child;\n",
        "sys.rs": "",
        "child/mod.rs": "mod a;\nmod b;\n",
        "child/a.rs": "use crate::sys;\n",
        "child/b.rs": "use super::a;\n",
    })
    assert problems(tmp_path) == []
