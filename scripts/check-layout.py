#!/usr/bin/env python3
"""The layout rules of src/, checked from the code itself (README, "Layout"):

1. no import circles between the crate's top-level modules (a module is a
   file or folder directly under src/; its unit tests are left out, since
   test fixtures may be shared across modules);
2. no function longer than 80 lines outside unit tests;
3. only src/ceph/ touches librados.

Prints the module graph with --graph. Exits 1 and names what broke a rule.
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
MAX_FN_LINES = 80


def module_of(path):
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def code_without_tests(text):
    """The file up to its first `#[cfg(test)]` item (tests sit at the end),
    comments blanked (so that a doc comment naming a module is no import)."""
    cut = re.search(r"^\s*#\[cfg\(test\)\]", text, re.M)
    text = text[: cut.start()] if cut else text
    return re.sub(r"//.*", "", text)


def files():
    return sorted(p for p in SRC.rglob("*.rs"))


def graph():
    edges = {}
    for path in files():
        src = module_of(path)
        if src in ("main", "lib"):
            continue
        code = code_without_tests(path.read_text())
        for dst in re.findall(r"\bcrate::(\w+)", code):
            if dst != src:
                edges.setdefault(src, set()).add(dst)
        edges.setdefault(src, set())
    return edges


def circles(edges):
    found, stack, state = [], [], {}

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == "open":
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(edges):
        if n not in state:
            visit(n)
    return found


def long_functions():
    out = []
    for path in files():
        lines = code_without_tests(path.read_text()).split("\n")
        i = 0
        while i < len(lines):
            m = re.match(r"^(\s*)(pub(\([\w:]+\))? )?(async )?(unsafe )?fn (\w+)", lines[i])
            if not m:
                i += 1
                continue
            indent, name = len(m.group(1)), m.group(6)
            j = i
            while j < len(lines) and not lines[j].rstrip().endswith(("{", ";")):
                j += 1
            if j >= len(lines) or lines[j].rstrip().endswith(";"):
                i = j + 1
                continue
            k = j + 1
            close = " " * indent + "}"
            while k < len(lines) and lines[k].rstrip() != close:
                k += 1
            if k - i + 1 > MAX_FN_LINES:
                out.append(f"{path.relative_to(SRC.parent)}:{i + 1}: fn {name} is {k - i + 1} lines")
            i = j + 1
    return out


def librados_outside_ceph():
    out = []
    for path in files():
        if module_of(path) == "ceph":
            continue
        for n, line in enumerate(path.read_text().split("\n"), 1):
            if re.search(r"\brados_(?:create|connect|conf|ioctx|aio|mon_command|shutdown|read|write|omap|exec|watch|stat|release)\w*\s*\(|\blibrados\b|ceph::ffi\b", line.split("//")[0]):
                out.append(f"{path.relative_to(SRC.parent)}:{n}: {line.strip()}")
    return out


def main():
    edges = graph()
    if "--graph" in sys.argv:
        for n in sorted(edges):
            print(f"{n} -> {', '.join(sorted(edges[n])) or '(nothing)'}")
    problems = [f"import circle: {' -> '.join(c)}" for c in circles(edges)]
    problems += long_functions()
    problems += [f"librados outside src/ceph: {p}" for p in librados_outside_ceph()]
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"layout ok: {len(edges)} modules, no import circles, no function over "
          f"{MAX_FN_LINES} lines, librados only in src/ceph/")


main()
