"""The package's shape: no import cycle among cnncli's modules, no module over 500 lines, and no
function over 60 lines but the numba kernels.

Imports are read with ast, not run: module-level imports and those inside functions (the lazy
ones that keep `cnncli --help` free of numba) alike, since a lazy import that closes a cycle is
still a cycle. `from .pkg import name` is an edge to pkg/name.py when that is a module, else to
pkg/__init__.py; importing a package is an edge to its __init__ only (not to every module in it).
A module's import of one of its own packages is no edge: Python has initialised them before the
module runs, so a package __init__ importing its children is not taken for a cycle with them."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cnncli"
MAX_LINES = 500


def _modules():
    """{'cnncli.model.graph': path, 'cnncli.model': path of its __init__, ...}"""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name, path, modules):
    """The cnncli modules `name` (at `path`) imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target not in modules:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                edges.add(sub if sub in modules else target)
    # a module's own packages are initialised before it runs, whatever it imports from them
    # (`from . import JIT` in kernels/conv.py): no edge, so that an __init__ importing its children
    # (kernels.dispatchers()) is not a cycle with each of them
    return {e for e in edges if e != name and not name.startswith(e + ".")}


def import_graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan), each as a list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _path(graph, component):
    """One cycle through a component, for the message: a -> b -> ... -> a."""
    members, start = set(component), component[0]
    trail, seen = [start], {start}
    while True:
        step = sorted(w for w in graph[trail[-1]] if w in members)
        nxt = next((w for w in step if w == start), None) or next((w for w in step if w not in seen), step[0])
        trail.append(nxt)
        if nxt == start or nxt in seen:
            return " -> ".join(trail[trail.index(nxt):])
        seen.add(nxt)


def test_no_import_cycle():
    graph = import_graph()
    assert "cnncli.parallel.single" in graph and "cnncli.model" in graph   # the walk found the tree
    found = cycles(graph)
    assert not found, "import cycles among cnncli's modules: " + "; ".join(_path(graph, c) for c in found)


def test_the_cycle_check_sees_a_cycle():
    """The check above would fail on a cycle, lazy imports included."""
    graph = {name: set(edges) for name, edges in import_graph().items()}
    graph["cnncli.parallel.single"].add("cnncli.parallel.mpi")      # world() in single.py, as it once was
    found = cycles(graph)
    # a component holding both (mpi.py reaches single.py through the model: threads -> processes)
    assert any({"cnncli.parallel.mpi", "cnncli.parallel.single"} <= set(c) for c in found), found
    assert _path(graph, found[0]).count("->") >= 2


def test_no_module_over_500_lines():
    long = {str(path.relative_to(ROOT)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"


MAX_FUNCTION_LINES = 60


def _is_kernel(fn):
    """A numba kernel (@njit(...)): hot loops written out, exempt from the length rule."""
    return any("njit" in ast.unparse(d) for d in fn.decorator_list)


def test_no_function_over_60_lines_but_the_numba_kernels():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_kernel(node):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 60 lines: " + "; ".join(long)


def test_the_length_rule_sees_a_long_function_and_spares_a_kernel():
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    plain = ast.parse(f"def f():\n{body}\n").body[0]
    kernel = ast.parse(f"@njit(**JIT)\ndef k():\n{body}\n").body[0]
    assert plain.end_lineno - plain.lineno + 1 > MAX_FUNCTION_LINES and not _is_kernel(plain)
    assert _is_kernel(kernel)
