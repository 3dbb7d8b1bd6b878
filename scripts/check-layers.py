#!/usr/bin/env python3
"""The layering rules, checked from the sources and from `cargo tree`.

1. The core crate (crates/core) depends on no HTTP, TLS, SQLite, mio or
   serial crate, and the driver host (crates/host), the serial line
   parsers (crates/lines), the MQTT codec (crates/mqtt) and the ingest
   parsers (crates/ingest) on no async runtime either, and the fuzz crate
   (fuzz/) not on the daemon: `cargo tree -p CRATE` (normal dependencies)
   must name none of them.
2. No module cycle in any crate. A module is a file (`a/b.rs` or
   `a/b/mod.rs` is `a::b`); it depends on every module it names with a
   `crate::` or `super::` path, in a `use` or inline. A module naming its
   own descendants is containment (declaring and re-exporting them), not a
   dependency; a descendant naming an ancestor is. Unit tests at the end
   of a file (`#[cfg(test)] mod tests`) are left out. Any cycle fails.

Usage: scripts/check-layers.py  (from anywhere; prints what it checked)
"""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOCKETS = ["axum", "hyper", "rustls", "tokio-rustls", "rusqlite", "mio", "serialport"]
FORBIDDEN = {
    "sensegate-core": SOCKETS,
    "sensegate-host": SOCKETS + ["tokio", "sensegate-gateway", "sensegate-core"],
    "sensegate-lines": SOCKETS + ["tokio", "sensegate-gateway", "sensegate-core"],
    "sensegate-mqtt": SOCKETS + ["tokio", "sensegate-gateway", "sensegate-core"],
    "sensegate-ingest": SOCKETS + ["tokio", "sensegate-gateway", "sensegate-core"],
    # The fuzz crate fuzzes the parsers that stand alone; what only the
    # daemon parses is fuzzed from crates/gateway/fuzz.
    "sensegate-fuzz": ["sensegate-gateway", "sensegate-core"] + SOCKETS,
}
MANIFEST = {"sensegate-fuzz": "fuzz/Cargo.toml"}


def check_dependencies():
    ok = True
    for crate, forbidden in FORBIDDEN.items():
        args = ["cargo", "tree", "-p", crate, "-e", "normal", "--prefix", "none", "--locked"]
        if crate in MANIFEST:
            args += ["--manifest-path", MANIFEST[crate]]
        out = subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True).stdout
        names = {line.split()[0] for line in out.splitlines() if line.strip()}
        bad = sorted(n for n in names if n in forbidden)
        if bad:
            print(f"{crate} depends on {', '.join(bad)} (see `cargo tree -p {crate} -i NAME`)",
                  file=sys.stderr)
            ok = False
        else:
            print(f"{crate}: {len(names)} crates in its tree, none of {', '.join(forbidden)}")
    return ok


def module_of(src, path):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments_and_tests(text):
    """Comments go, and so does a trailing `#[cfg(test)] mod tests`: a
    test naming a test helper of its crate is no layering dependency."""
    m = re.search(r"^#\[cfg\(test\)\]\s*\n\s*mod\s+\w+\s*\{", text, flags=re.M)
    if m:
        text = text[: m.start()]
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def expand_use_groups(text):
    """Yields every `crate::...`/`super::...` path, with `use a::{b, c::d}`
    groups expanded (one level of nesting at a time, repeatedly)."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text, flags=re.S):
        stack = [m.group(1).replace("\n", " ").replace(" ", "")]
        while stack:
            item = stack.pop()
            g = re.match(r"^(.*?)\{(.*)\}$", item)
            if not g:
                paths.append(item)
                continue
            prefix, inner = g.group(1), g.group(2)
            depth, start = 0, 0
            for i, ch in enumerate(inner + ","):
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                elif ch == "," and depth == 0:
                    part = inner[start:i]
                    if part:
                        stack.append(prefix + part)
                    start = i + 1
    for m in re.finditer(r"\b((?:crate|super)(?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))+)", text):
        paths.append(m.group(1))
    return paths


def resolve(module, path, modules):
    parts = path.split("::")
    if parts[0] == "crate":
        base, rest = (), parts[1:]
    elif parts[0] == "super":
        base = module
        while parts and parts[0] == "super":
            base = base[:-1]
            parts = parts[1:]
        rest = parts
    else:
        return None
    target = base
    for p in rest:
        if target + (p,) in modules:
            target = target + (p,)
        else:
            break
    return target


def find_cycle(graph):
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {n: WHITE for n in graph}
    stack = []

    def visit(n):
        colour[n] = GREY
        stack.append(n)
        for m in sorted(graph[n]):
            if colour[m] == GREY:
                return stack[stack.index(m):] + [m]
            if colour[m] == WHITE:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        colour[n] = BLACK
        return None

    for n in sorted(graph):
        if colour[n] == WHITE:
            found = visit(n)
            if found:
                return found
    return None


def check_module_cycles():
    ok = True
    for src in sorted(ROOT.glob("crates/*/src")):
        files = sorted(src.rglob("*.rs"))
        modules = {module_of(src, f): f for f in files}
        graph = {m: set() for m in modules}
        for m, f in modules.items():
            for path in expand_use_groups(strip_comments_and_tests(f.read_text())):
                t = resolve(m, path, modules)
                if t is None or t == m or t[: len(m)] == m:
                    continue  # itself, or one of its descendants
                graph[m].add(t)
        cycle = find_cycle(graph)
        name = src.parent.name
        if cycle:
            shown = " -> ".join("::".join(c) or "(crate root)" for c in cycle)
            print(f"module cycle in crates/{name}: {shown}", file=sys.stderr)
            ok = False
        else:
            edges = sum(len(v) for v in graph.values())
            print(f"crates/{name}: {len(modules)} modules, {edges} dependencies, no cycle")
    return ok


if __name__ == "__main__":
    results = [check_dependencies(), check_module_cycles()]
    sys.exit(0 if all(results) else 1)
