#!/usr/bin/env python3
"""Find file-level import cycles inside each crate of the workspace; exit 1 if there is any.

A file imports another when it names an item through `crate::...`, `super::...` or `self::...`
(in a `use` tree, braces expanded, or inline in code) that resolves to a module held in that other
file. The module tree is read from `mod x;` declarations starting at each crate root (`src/lib.rs`,
`src/main.rs`, `src/bin/*.rs`, `tests/*/main.rs`, `tests/*.rs`, `examples/*.rs`, `benches/*.rs`).
A module root file (`lib.rs`, `main.rs`, `mod.rs`) naming its own descendants (`pub use`
re-exports, `mod` declarations) is its job and is not counted; a descendant naming an item defined
in its root file is. Comments and string literals are skipped; inline `mod x { .. }` blocks (e.g.
`mod tests`) count as part of their file, with `super::` resolved from inside them.

    scripts/check-import-cycles.py            # the whole workspace
    scripts/check-import-cycles.py crates/lepton-photon
    scripts/check-import-cycles.py --self-test   # checks the checker on made-up crates
"""
import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(src):
    """Source with comments, string and char literals blanked (newlines kept)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * src.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and (i == 0 or not re.match(r"\w", src[i - 1])):
            hashes = re.match(r'r(#*)"', src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * src.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", src[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", src[i:i + 12])
            out.append("' '")
            i += m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand(tree):
    """`a::{b, c::{d, e}}` -> [[a, b], [a, c, d], [a, c, e]] (aliases and globs dropped)."""
    tree = re.sub(r"\s+", "", tree)

    def parse(s, i):
        prefix, paths = [], []
        while i < len(s):
            m = re.match(IDENT + r"|\*", s[i:])
            if s[i] == "{":
                i += 1
                while s[i] != "}":
                    sub, i = parse(s, i)
                    paths += [prefix + p for p in sub]
                    if s[i] == ",":
                        i += 1
                return (paths or [prefix]), i + 1
            if s.startswith("::", i):
                i += 2
            elif m:
                if m.group(0) == "as":
                    i += 2
                    i += re.match(IDENT, s[i:]).end()
                    continue
                prefix.append(m.group(0))
                i += m.end()
            else:
                break
        return [prefix], i

    return parse(tree, 0)[0]


class Module:
    def __init__(self, file, path, is_root):
        self.file, self.path, self.is_root = file, path, is_root
        self.children = {}


def load_tree(root_file, modules, files):
    """Walk `mod x;` from a crate root; fill modules {path tuple: Module}, files {file: Module}."""

    def visit(file, path, is_root):
        mod = Module(file, path, is_root)
        modules[path], files[file] = mod, mod
        src = strip(file.read_text(encoding="utf-8"))
        base = file.parent if is_root else file.parent / file.stem
        for m in re.finditer(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", src):
            name = m.group(1)
            for cand, root in ((base / f"{name}.rs", False), (base / name / "mod.rs", True)):
                if cand.exists():
                    mod.children[name] = visit(cand, path + (name,), root)
                    break
        return mod

    visit(root_file, (), True)


def resolve(modules, segs):
    """The longest module path prefix of `segs` that is a module held in a file."""
    best = ()
    for k in range(1, len(segs) + 1):
        if tuple(segs[:k]) in modules:
            best = tuple(segs[:k])
        else:
            break
    return modules[best]


def edges_of(mod, modules):
    src = strip(mod.file.read_text(encoding="utf-8"))
    # Inline module blocks: spans [(start, end, depth)] so `super` inside them is resolved.
    inline = []
    for m in re.finditer(r"\bmod\s+" + IDENT + r"\s*\{", src):
        depth, j = 1, m.end()
        while j < len(src) and depth:
            depth += {"{": 1, "}": -1}.get(src[j], 0)
            j += 1
        inline.append((m.end(), j))
    paths = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)\b[^;]*);", src):
        for p in expand(m.group(1)):
            paths.append((m.start(), p))
    for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::(?:" + IDENT + r"))+)", src):
        if not re.search(r"\buse\s+[^;]*$", src[max(0, m.start() - 200):m.start()]):
            paths.append((m.start(), m.group(1).split("::")))
    out = set()
    for pos, p in paths:
        depth = sum(1 for a, b in inline if a <= pos < b)
        here = list(mod.path)
        if p[0] == "crate":
            segs = p[1:]
        else:
            segs, rest = list(here), list(p)
            while rest and rest[0] in ("self", "super"):
                if rest.pop(0) == "super":
                    if depth:
                        depth -= 1
                    elif segs:
                        segs.pop()
            segs += rest
            if depth:  # still inside an inline module: names its own file
                continue
        target = resolve(modules, [s for s in segs if s != "*"])
        if target is mod:
            continue
        # A root file naming its own descendants (re-exports, declarations) is not an edge.
        if mod.is_root and target.path[: len(mod.path)] == mod.path:
            continue
        out.add(target.file)
    return out


def cycles(graph):
    """Strongly connected components with more than one file (Tarjan)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            strong(v)
    return comps


def roots(crate):
    for pattern in ("src/lib.rs", "src/main.rs", "src/bin/*.rs", "tests/*/main.rs", "tests/*.rs",
                    "examples/*.rs", "benches/*.rs"):
        yield from sorted(crate.glob(pattern))


def crate_cycles(crate):
    """Every cycle in one crate, as lists of files."""
    out = []
    for root in roots(crate):
        modules, files = {}, {}
        load_tree(root, modules, files)
        graph = {m.file: edges_of(m, modules) for m in files.values()}
        out += [(root, comp, graph) for comp in cycles(graph)]
    return out


def self_test():
    import tempfile

    cases = {
        # Siblings through `use crate::` and an inline path: a cycle.
        "sibling": ({"lib.rs": "mod a;\nmod b;\npub use a::A;\n",
                     "a.rs": "use crate::b::B;\npub struct A;\n",
                     "b.rs": "pub struct B;\nfn f() { let _ = crate::a::A; }\n"}, 1),
        # Nested siblings through `super::` (a tree with renames) and an absolute path.
        "nested": ({"lib.rs": "mod m;\n", "m/mod.rs": "mod j;\nmod k;\npub use k::K;\n",
                    "m/j.rs": "use super::{k::K as Q, super::m};\npub struct J;\n",
                    "m/k.rs": "pub struct K;\nimpl K { fn j() -> crate::m::j::J { todo!() } }\n"}, 1),
        # Re-exports by the root, `super::*` in a test module, comments and strings: no cycle.
        "clean": ({"lib.rs": "mod a;\nmod b;\npub use a::A;\npub use b::B;\npub struct C;\n",
                   "a.rs": "use crate::{b::B, C};\npub struct A;\n// use crate::b; crate::b::x\n"
                           "#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::a::A;\n}\n",
                   "b.rs": "pub struct B;\nconst S: &str = \"crate::a::A\";\n"}, 0),
    }
    failed = 0
    for name, (files, want) in cases.items():
        with tempfile.TemporaryDirectory() as d:
            crate = Path(d)
            (crate / "Cargo.toml").write_text("")
            for f, text in files.items():
                (crate / "src" / f).parent.mkdir(parents=True, exist_ok=True)
                (crate / "src" / f).write_text(text)
            got = len(crate_cycles(crate))
            if got != want:
                failed += 1
                print(f"self-test {name}: {got} cycle(s), expected {want}")
    print("self-test " + ("failed" if failed else "passed"))
    return 1 if failed else 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    repo = Path(__file__).resolve().parent.parent
    crates = [Path(a).resolve() for a in sys.argv[1:]] or sorted((repo / "crates").iterdir())
    found = 0
    for crate in crates:
        if not (crate / "Cargo.toml").exists():
            continue
        for root, comp, graph in crate_cycles(crate):
            found += 1
            names = [str(f.relative_to(repo)) for f in comp]
            print(f"import cycle in {crate.name} ({root.relative_to(crate)}): " + " <-> ".join(names))
            for f in comp:
                for g in sorted(graph[f] & set(comp)):
                    print(f"    {f.relative_to(repo)} uses {g.relative_to(repo)}")
    if found:
        print(f"{found} import cycle(s)")
        return 1
    print("no import cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
