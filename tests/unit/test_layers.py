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
    {"hosttools", "report"},
    {"images", "storage"},
    {"guest"},
    {"vm"},
    {"workloads"},
    {"power", "writelog"},
    {"oracles"},
    {"repro"},
    {"campaign"},
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
