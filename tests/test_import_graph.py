"""Dependencies between metafast's modules run one way: no import circle, not even one hidden
by function-level imports (every ``import`` statement counts, wherever it is; importing a.b.c
also imports the packages a.b)."""

import ast
import pathlib

import metafast

ROOT = pathlib.Path(metafast.__file__).parent


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the metafast modules and packages it imports (the root package excluded: it
    re-exports everything and imports nothing back)."""
    mods = _modules()

    def owner(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("metafast"):
                targets = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("metafast")]
            else:
                continue
            for target in targets:
                dep = owner(target)
                while dep and dep != "metafast":  # a.b.c imports a.b too
                    if dep != mod and not mod.startswith(dep + "."):
                        graph[mod].add(dep)
                    dep = dep.rpartition(".")[0]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_metafast_has_no_import_circle():
    graph = import_graph()
    assert "metafast.tasks._taskset" in graph and graph["metafast.basis"]
    assert cycles(graph) == []


def test_plugins_import_none_of_the_packages_they_serve():
    served = ("metafast.basis", "metafast.tasks", "metafast.bench", "metafast.learners")
    assert not [d for d in import_graph()["metafast.plugins"] if d.startswith(served)]
