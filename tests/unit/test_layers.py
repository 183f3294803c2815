"""Imports run one way: each part of the harness imports only parts below it, so
the house reads as its flow (workload + config -> plan -> units -> checks ->
results -> report) and no package cycle can come back."""

import ast
import sys
from pathlib import Path

HARNESS = Path(__file__).parents[2] / "harness"

# Bottom first. A part may import itself and anything in a lower layer.
LAYERS: list[set[str]] = [
    {"errors", "model", "version"},
    {"rundir", "workers"},
    {"hosttools", "report"},
    {"images", "storage"},
    {"guest"},
    {"vm"},
    {"workloads"},
    {"power", "writelog"},
    {"oracles"},
    {"repro"},
    {"campaign", "explore"},
    {"bench", "compare", "corpus"},
    {"cli"},
]


def part_of(module: str) -> str:
    """`harness.oracles.docker` -> `oracles`; `harness.model` -> `model`."""
    return module.split(".")[1]


def imports() -> list[tuple[str, str, str]]:
    """(importing file, its part, the part it imports) for every harness import."""
    found = []
    for path in sorted(HARNESS.rglob("*.py")):
        rel = path.relative_to(HARNESS)
        if rel.parts == ("__init__.py",):
            continue
        here = rel.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "harness":
                    names = [f"harness.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("harness."):
                    found.append((str(rel), here, part_of(name)))
    return found


def test_every_part_has_a_layer() -> None:
    parts = {
        p.name.removesuffix(".py")
        for p in HARNESS.iterdir()
        if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").exists())
    }
    assert parts == set().union(*LAYERS)


def test_imports_point_down_only() -> None:
    layer = {part: i for i, parts in enumerate(LAYERS) for part in parts}
    wrong = [
        f"{f}: {here} (layer {layer[here]}) imports {there} (layer {layer[there]})"
        for f, here, there in imports()
        if there != here and layer[there] >= layer[here]
    ]
    assert wrong == []


def module_imports(root: Path, package: str) -> dict[str, set[str]]:
    """Module name -> the modules of the same project it imports, type-checking
    imports included (a circle drawn only for mypy is still a circle to a reader)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m.startswith(package + ".")}
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_in_a_circle() -> None:
    """Within a part too: no two files (vm/machine and vm/snapshot were) lean on
    each other, so each file reads after the ones it uses."""
    for root in (HARNESS, HARNESS.parent / "crashtest_guest"):
        assert circles(module_imports(root, root.name)) == []


def test_the_circle_check_sees_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def logic_in_inits(root: Path) -> list[str]:
    """Functions and classes defined in a package's __init__.py under `root`."""
    heavy = []
    for init in sorted(root.rglob("__init__.py")):
        tree = ast.parse(init.read_text())
        logic = [
            n.name
            for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        if logic:
            heavy.append(f"{init.relative_to(root)}: {', '.join(logic)}")
    return heavy


def test_package_init_files_hold_no_logic(tmp_path: Path) -> None:
    """A package's __init__ says what the package is (and may re-export its public
    names); its logic lives in named modules."""
    assert logic_in_inits(HARNESS) == []
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/__init__.py").write_text('"""A package."""\nfrom x import y\n')
    assert logic_in_inits(tmp_path) == []
    (tmp_path / "pkg/__init__.py").write_text("def run() -> None:\n    pass\n")
    assert logic_in_inits(tmp_path) == ["pkg/__init__.py: run"]


def test_guest_code_needs_only_the_standard_library() -> None:
    """crashtest_guest runs on the guest's python3, where nothing else is installed."""
    guest = HARNESS.parent / "crashtest_guest"
    stdlib = set(sys.stdlib_module_names)
    outside = []
    for path in sorted(guest.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            top = {n.split(".")[0] for n in names}
            outside += [f"{path.name}: {t}" for t in top - stdlib - {"crashtest_guest"}]
    assert outside == []


def prints(root: Path) -> list[str]:
    """Calls of print() in modules under `root` but cli.py, outside `__main__` blocks."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text())
        main_blocks = [
            n for n in ast.walk(tree) if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)
        ]
        skip = {id(c) for n in main_blocks for c in ast.walk(n)}
        found += [
            f"{path.relative_to(root)}:{n.lineno}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and n.func.id == "print"
            and id(n) not in skip
        ]
    return found


def test_libraries_log_and_only_the_cli_prints(tmp_path: Path) -> None:
    """What a user sees is the CLI's choice: the rest of the harness logs (or
    reports through a progress callback it is given)."""
    assert prints(HARNESS) == []
    (tmp_path / "cli.py").write_text("print('the CLI may')\n")
    (tmp_path / "lib.py").write_text(
        "import logging\nlogging.getLogger(__name__).info('fine')\n"
        "if __name__ == '__main__':\n    print('a script may')\n"
    )
    assert prints(tmp_path) == []
    (tmp_path / "lib.py").write_text("def f() -> None:\n    print('a library may not')\n")
    assert prints(tmp_path) == ["lib.py:2"]
