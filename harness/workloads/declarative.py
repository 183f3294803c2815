"""The declarative form: a TOML file of steps, barriers, promises and invariants,
compiled to the same data as a Python workload. Errors name file:line.

    name = "my-scenario"

    [[step]]
    name = "write"
    run = ["docker volume create v",
           "docker run --rm -v v:/v crashtest/base sh -c 'echo hi > /v/f && sync /v/f'"]
    barrier = "fsync"
    needs = []

    [[step.promise]]
    kind = "file"
    target = "volume:v:/f"

    [[invariant]]
    kind = "command"
    command = "test -d /var/lib/docker/volumes"

`{seed}` in a command, target or file text stands for the campaign's seed.
Everything a Python workload says can be said here: a file promise's
`metadata = true`, `[[step.observe]]` (target, outcomes = {label = "..."}), and
the top-level `cuts` (CUT_AT specs where live cuts land by default).
"""

from __future__ import annotations

import base64
import re
import tomllib
from pathlib import Path
from typing import Any

from harness.model import Observation, Promise
from harness.workloads.api import (
    DEFAULT_INVARIANTS,
    GuestFile,
    Invariant,
    Step,
    Workload,
    WorkloadError,
)

TOP_KEYS = {
    "name",
    "description",
    "damage_target",
    "default_invariants",
    "step",
    "promise",
    "invariant",
    "cuts",
}
STEP_KEYS = {"name", "run", "barrier", "needs", "promise", "file", "check", "timeout_s", "observe"}
PROMISE_KEYS = {"kind", "target", "sha256", "run", "manifest", "paths", "state", "metadata"}
OBSERVE_KEYS = {"target", "outcomes"}
FILE_KEYS = {"path", "text", "base64", "mode"}
INVARIANT_KEYS = {"kind", "command", "stage", "class"}
_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z_.]+)\s*\]\]")


class _Lines:
    """Where each table of the file starts: tomllib gives no positions."""

    def __init__(self, text: str) -> None:
        self.tables: dict[str, list[int]] = {}
        self.lines = text.splitlines()
        self.step_of: dict[str, list[int]] = {}  # nested table -> the step index of each
        for n, line in enumerate(self.lines, 1):
            m = _HEADER.match(line)
            if m:
                name = m.group(1)
                self.tables.setdefault(name, []).append(n)
                if name.startswith("step."):
                    self.step_of.setdefault(name, []).append(len(self.tables["step"]) - 1)

    def table(self, name: str, index: int) -> int:
        found = self.tables.get(name, [])
        return found[index] if index < len(found) else 1

    def nested(self, name: str, step: int, index: int) -> int:
        lines = [
            ln
            for ln, s in zip(self.tables.get(name, []), self.step_of.get(name, []), strict=False)
            if s == step
        ]
        return lines[index] if index < len(lines) else self.table("step", step)

    def key(self, start: int, key: str) -> int:
        """The line of `key = ...` in the table that starts at `start`."""
        for n in range(start, len(self.lines) + 1):
            line = self.lines[n - 1]
            if n > start and _HEADER.match(line):
                break
            if re.match(rf"^\s*{re.escape(key)}\s*=", line):
                return n
        return start


def _expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if not isinstance(value, kind):
        names = (kind,) if isinstance(kind, type) else kind
        raise WorkloadError(
            f"{where}: {what} must be a {' or '.join(t.__name__ for t in names)}, not {value!r}"
        )
    return value


def _strings(value: Any, where: str, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    _expect(value, list, where, what)
    for v in value:
        _expect(v, str, where, f"each of {what}")
    return tuple(value)


def _unknown(table: dict[str, Any], allowed: set[str], where: str, what: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise WorkloadError(
            f"{where}: unknown key {extra[0]!r} in {what} (known: {', '.join(sorted(allowed))})"
        )


def _promise(d: Any, where: str, seed: str, step: str = "") -> Promise:
    _expect(d, dict, where, "a promise")
    _unknown(d, PROMISE_KEYS | ({"after"} if step == "" else set()), where, "a promise")
    for k in ("kind", "target"):
        if k not in d:
            raise WorkloadError(f"{where}: a promise needs `{k}`")
    values = {
        k: _expect(d[k], str, where, k).replace("{seed}", seed)
        for k in ("kind", "target", "sha256", "run", "manifest", "state")
        if k in d
    }
    if values.get("kind") == "image" and "run" not in values:
        values["run"] = "true"
    paths = _strings(d.get("paths", []), where, "paths")
    if _expect(d.get("metadata", False), bool, where, "metadata"):
        values["meta"] = "derive"  # mode, owner and group as on the live guest
    return Promise(values.pop("kind"), values.pop("target"), paths=paths, origin=where, **values)


def _observe(d: Any, where: str, seed: str) -> Observation:
    _expect(d, dict, where, "an observation")
    _unknown(d, OBSERVE_KEYS, where, "an observation")
    target = _expect(d.get("target"), str, where, "target").replace("{seed}", seed)
    outcomes = _expect(d.get("outcomes", {}), dict, where, "outcomes")
    for v in outcomes.values():
        _expect(v, str, where, "each outcome")
    return Observation(target, tuple(outcomes.items()), origin=where)


def _file(d: Any, where: str, seed: str) -> GuestFile:
    _expect(d, dict, where, "a file")
    _unknown(d, FILE_KEYS, where, "a file")
    path = _expect(d.get("path"), str, where, "path")
    if ("text" in d) == ("base64" in d):
        raise WorkloadError(f"{where}: a file needs exactly one of `text` or `base64`")
    if "text" in d:
        data = _expect(d["text"], str, where, "text").replace("{seed}", seed).encode()
    else:
        try:
            data = base64.b64decode(_expect(d["base64"], str, where, "base64"), validate=True)
        except ValueError as e:
            raise WorkloadError(f"{where}: base64 is not valid base64") from e
    mode = _expect(d.get("mode", 0o644), int, where, "mode")
    return GuestFile(path, data, mode)


def _step(d: Any, index: int, lines: _Lines, path: Path, seed: str, extra: list[Promise]) -> Step:
    start = lines.table("step", index)
    where = f"{path}:{start}"
    _expect(d, dict, where, "a step")
    _unknown(d, STEP_KEYS, where, "a step")
    name = _expect(d.get("name", ""), str, where, "name")
    if not name:
        raise WorkloadError(f"{where}: a step needs a `name`")
    promises = [
        _promise(p, f"{path}:{lines.nested('step.promise', index, i)}", seed, name)
        for i, p in enumerate(_expect(d.get("promise", []), list, where, "promise"))
    ]
    files = tuple(
        _file(f, f"{path}:{lines.nested('step.file', index, i)}", seed)
        for i, f in enumerate(_expect(d.get("file", []), list, where, "file"))
    )
    run = tuple(
        c.replace("{seed}", seed)
        for c in _strings(d.get("run", []), f"{path}:{lines.key(start, 'run')}", "run")
    )
    timeout = float(_expect(d.get("timeout_s", 600.0), (int, float), where, "timeout_s"))
    observes = tuple(
        _observe(o, f"{path}:{lines.nested('step.observe', index, i)}", seed)
        for i, o in enumerate(_expect(d.get("observe", []), list, where, "observe"))
    )
    return Step(
        name,
        run,
        _expect(d.get("barrier", ""), str, where, "barrier"),
        _strings(d.get("needs", []), f"{path}:{lines.key(start, 'needs')}", "needs"),
        (*promises, *extra),
        files,
        _strings(d.get("check", []), where, "check"),
        timeout,
        where,
        observes,
    )


def _invariant(d: Any, where: str, seed: str) -> Invariant:
    _expect(d, dict, where, "an invariant")
    _unknown(d, INVARIANT_KEYS, where, "an invariant")
    kind = _expect(d.get("kind", "command"), str, where, "kind")
    cmd = _expect(d.get("command", ""), str, where, "command").replace("{seed}", seed)
    stage = _expect(
        d.get("stage", "daemon" if kind == "dockerd-starts" else "offline"), str, where, "stage"
    )
    return Invariant(kind, cmd, stage, _expect(d.get("class", ""), str, where, "class"), where)


def load_toml(path: Path, seed: int) -> Workload:
    try:
        text = path.read_text()
    except OSError as e:
        raise WorkloadError(f"{path}: cannot read it ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise WorkloadError(f"{path}:1: not UTF-8 text") from e
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"at line (\d+)", str(e))
        raise WorkloadError(
            f"{path}:{m.group(1) if m else 1}: not valid TOML ({str(e).split(' (at')[0]})"
        ) from e
    lines = _Lines(text)
    _unknown(doc, TOP_KEYS, f"{path}:1", "the workload")
    s = str(seed)
    steps_raw = _expect(doc.get("step", []), list, f"{path}:1", "step")
    names = [st.get("name") for st in steps_raw if isinstance(st, dict)]
    # Top-level promises name the step whose barrier makes them durable.
    extra: dict[str, list[Promise]] = {}
    for i, p in enumerate(_expect(doc.get("promise", []), list, f"{path}:1", "promise")):
        where = f"{path}:{lines.table('promise', i)}"
        after = _expect(p.get("after", "") if isinstance(p, dict) else "", str, where, "after")
        if after not in names:
            raise WorkloadError(
                f"{where}: promise about step {after!r}, which does not exist"
                if after
                else f"{where}: a top-level promise needs `after`, the step that makes it durable"
            )
        extra.setdefault(after, []).append(
            _promise({k: v for k, v in p.items() if k != "after"}, where, s)
        )
    steps = tuple(
        _step(
            st, i, lines, path, s, extra.get(st.get("name", ""), []) if isinstance(st, dict) else []
        )
        for i, st in enumerate(steps_raw)
    )
    invariants = tuple(
        _invariant(d, f"{path}:{lines.table('invariant', i)}", s)
        for i, d in enumerate(_expect(doc.get("invariant", []), list, f"{path}:1", "invariant"))
    )
    if _expect(doc.get("default_invariants", True), bool, f"{path}:1", "default_invariants"):
        invariants = (*DEFAULT_INVARIANTS, *invariants)
    return Workload(
        _expect(doc.get("name", path.stem), str, f"{path}:1", "name"),
        steps,
        seed,
        invariants,
        _expect(doc.get("description", ""), str, f"{path}:1", "description"),
        _expect(doc.get("damage_target", ""), str, f"{path}:1", "damage_target"),
        str(path),
        _strings(doc.get("cuts", []), f"{path}:{lines.key(1, 'cuts')}", "cuts"),
    )
