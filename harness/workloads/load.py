"""Finding a workload: a Python module file, a TOML file, or a registered name
(built in, or registered by another package under the entry-point group
`crashtest.workloads` as `name = "module:function"`)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from harness.workloads.api import Workload, WorkloadError
from harness.workloads.declarative import load_toml
from harness.workloads.known_bugs import WORKLOADS as KNOWN_BUG_WORKLOADS
from harness.workloads.scenarios import SCENARIOS

ENTRY_POINT_GROUP = "crashtest.workloads"
BUILTIN = {"default": "harness.workloads.default:workload", **SCENARIOS, **KNOWN_BUG_WORKLOADS}


def registered() -> dict[str, str]:
    """Every workload name this installation knows, and where its factory lives."""
    names = dict(BUILTIN)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        names.setdefault(ep.name, ep.value)
    return names


def _factory(ref: str) -> Callable[[int], Workload]:
    module, _, func = ref.partition(":")
    factory: Callable[[int], Workload] = getattr(importlib.import_module(module), func)
    return factory


def _user_frame(exc: BaseException, path: Path) -> int:
    """The line of `path` that the exception went through last."""
    line = 1
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve() and frame.lineno:
            line = frame.lineno
    return line


def load_python(path: Path, seed: int) -> Workload:
    """Import a workload module from a file anywhere and call its `workload(seed)`."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"crashtest_user_workload_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise WorkloadError(f"{path}:1: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        factory = getattr(module, "workload", None)
        if not callable(factory):
            raise WorkloadError(f"{path}:1: defines no function `workload(seed)`")
        wl = factory(seed)
    except WorkloadError:
        raise
    except SyntaxError as e:
        raise WorkloadError(f"{path}:{e.lineno or 1}: syntax error: {e.msg}") from e
    except Exception as e:
        raise WorkloadError(f"{path}:{_user_frame(e, path)}: {type(e).__name__}: {e}") from e
    finally:
        sys.modules.pop(name, None)
    if not isinstance(wl, Workload):
        raise WorkloadError(
            f"{path}:1: workload(seed) returned {type(wl).__name__}, not a Workload"
        )
    return wl


def load_workload(spec: str, seed: int) -> Workload:
    """`spec`: a path ending in .py or .toml, or a registered name."""
    if spec.endswith((".py", ".toml")) or "/" in spec:
        path = Path(spec)
        if not path.is_file():
            raise WorkloadError(f"WORKLOAD {spec}: no such file")
        if path.suffix == ".toml":
            wl = load_toml(path, seed)
        elif path.suffix == ".py":
            wl = load_python(path, seed)
        else:
            raise WorkloadError(f"WORKLOAD {spec}: a workload file ends in .py or .toml")
        return wl if wl.source else _with_source(wl, str(path))
    names = registered()
    if spec not in names:
        raise WorkloadError(
            f"WORKLOAD {spec!r}: not a file and not a registered workload "
            f"({', '.join(sorted(names))})"
        )
    try:
        wl = _factory(names[spec])(seed)
    except WorkloadError:
        raise
    except Exception as e:
        raise WorkloadError(f"workload {spec} ({names[spec]}): {type(e).__name__}: {e}") from e
    return wl if wl.source else _with_source(wl, spec)


def _with_source(wl: Workload, source: str) -> Workload:
    return replace(wl, source=source)
