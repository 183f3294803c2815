"""The workload API: steps, promises and invariants as plain data.

A workload is an ordered list of steps. A step puts files into the guest, runs
shell commands there (docker, sh, anything in the guest image), and may end in a
barrier (`sync` run by the harness, or an fsync inside the step's own commands).
Only a step with a barrier may promise anything: its promises hold in every
crash state taken after its barrier returned. Invariants hold in every crash
state, barrier or not.

Everything is data (tuples, strings, bytes): a workload pickles into parallel
units and serialises into reproducer bundles, which replay it after the file
that wrote it is gone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from harness.errors import InputError
from harness.model import (
    Barrier,
    CutKind,
    InvariantKind,
    Observation,
    Promise,
    PromiseKind,
    Stage,
    ViolationClass,
)

_API_FILES = (
    os.path.abspath(__file__),
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "declarative.py"),
)


class WorkloadError(InputError):
    """A workload is malformed; the message starts with the file:line that says so."""


def caller_origin() -> str:
    """`file:line` of the first frame outside this API: where a workload file built
    this object (error messages point there)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if name not in _API_FILES and not name.startswith("<"):
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return ""


def _tuple(value: Iterable[Any] | str | None) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


# ------------------------------------------------------------------ promises


def _promise(kind: PromiseKind, target: str, **values: Any) -> Promise:
    return Promise(str(kind), target, origin=caller_origin(), **values)


def file(target: str, sha256: str = "", metadata: bool = False) -> Promise:
    """`container:NAME:/path` (what the container sees: its writable layer over its
    image), `volume:NAME:/path` or `disk:/path` has this content (by default: the
    content it had on the live guest when the barrier returned); with `metadata`,
    also the mode, owner and group it had there. A `disk:` or `volume:` directory's
    content is its sorted list of entry names (`ls -1 DIR` after a power cut)."""
    return _promise(PromiseKind.FILE, target, sha256=sha256, meta="derive" if metadata else "")


def absent_file(target: str) -> Promise:
    """A removed (or renamed-away) file stays removed: in a container, a whiteout
    over its image's copy."""
    return _promise(PromiseKind.ABSENT_FILE, target)


def image(ref: str, run: str = "true", manifest: str = "", paths: Iterable[str] = ()) -> Promise:
    """The image exists, `docker save` re-hashes it, and `run` succeeds in a fresh
    container of it. `manifest` ("sha256  /path" lines) is derived on the live guest
    when empty: every regular file of the image, or those under `paths`."""
    return _promise(PromiseKind.IMAGE, ref, run=run, manifest=manifest, paths=tuple(paths))


def container(name: str, state: str = "") -> Promise:
    """The container exists; with `state` ("STATUS EXITCODE"), dockerd restores it so."""
    return _promise(PromiseKind.CONTAINER, name, state=state)


def absent_image(ref: str) -> Promise:
    """A removed image stays removed."""
    return _promise(PromiseKind.ABSENT_IMAGE, ref)


def absent_container(name: str) -> Promise:
    """A removed container stays removed."""
    return _promise(PromiseKind.ABSENT_CONTAINER, name)


def observe(target: str, **outcomes: str) -> Observation:
    """Record, without judging, what the file `target` is in the crash states taken
    while its step may have changed it and before a later promise covers it.
    `outcomes`: label = "absent", or "SHA256 MODE UID GID" (octal permission bits),
    e.g. `observe("container:c:/f", old=..., new=...)`; a state matching none
    counts as "empty" (0 bytes) or "other"."""
    return Observation(target, tuple(outcomes.items()), origin=caller_origin())


# ---------------------------------------------------------------- invariants


@dataclass(frozen=True)
class Invariant:
    """Holds in every crash state. `command` (kind COMMAND) runs in the checking
    guest: at the offline stage with the recovered store mounted read-only at
    /var/lib/docker, at the daemon stage with dockerd running on it."""

    kind: str
    command: str = ""
    stage: str = Stage.OFFLINE
    cls: str = ""  # the verdict class when it fails (default: by stage)
    origin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.origin:
            object.__setattr__(self, "origin", caller_origin())
        if not self.cls:
            cls = (
                ViolationClass.DOCKER_CORRUPTION
                if self.stage == Stage.DAEMON
                else ViolationClass.FS_CORRUPTION
            )
            object.__setattr__(self, "cls", str(cls))

    @property
    def id(self) -> str:
        if self.kind == InvariantKind.COMMAND:
            return "invariant.command:" + hashlib.sha256(self.command.encode()).hexdigest()[:8]
        return f"invariant.{self.kind}"

    def describe(self) -> str:
        if self.kind == InvariantKind.DOCKER_INTACT:
            return "every image docker restores has intact layers"
        if self.kind == InvariantKind.DOCKERD_STARTS:
            return "dockerd starts on the recovered disk"
        return f"`{self.command}` succeeds on any recovered disk ({self.stage} stage)"

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "command": self.command,
            "stage": self.stage,
            "cls": self.cls,
            "origin": self.origin,
        }


def docker_intact() -> Invariant:
    return Invariant(str(InvariantKind.DOCKER_INTACT))


def dockerd_starts() -> Invariant:
    return Invariant(str(InvariantKind.DOCKERD_STARTS), stage=str(Stage.DAEMON))


def command(cmd: str, stage: str = Stage.OFFLINE, cls: str = "") -> Invariant:
    return Invariant(str(InvariantKind.COMMAND), cmd, str(stage), cls)


DEFAULT_INVARIANTS = (
    Invariant(str(InvariantKind.DOCKER_INTACT), origin="crashtest"),
    Invariant(str(InvariantKind.DOCKERD_STARTS), stage=str(Stage.DAEMON), origin="crashtest"),
)


# --------------------------------------------------------------------- steps


@dataclass(frozen=True)
class GuestFile:
    """A file the harness writes into the guest before a step's commands run."""

    path: str
    data: bytes
    mode: int = 0o644

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "mode": self.mode,
            "base64": base64.b64encode(self.data).decode(),
        }


@dataclass(frozen=True, init=False)
class Step:
    """`run`: shell commands run in order in the guest (any failure fails the step).
    `barrier`: SYNC (the harness runs `sync` after them; a cut may land between),
    FSYNC (the commands fsync what they promise), or NONE. `needs`: earlier steps
    this one depends on (kept together when a failing workload is shrunk).
    `check`: commands run through a testinfra host on the live guest after the
    step; one that fails means the step did not do what it should (a harness error,
    not a finding)."""

    name: str
    run: tuple[str, ...] = ()
    barrier: str = Barrier.NONE
    needs: tuple[str, ...] = ()
    promises: tuple[Promise, ...] = ()
    files: tuple[GuestFile, ...] = ()
    check: tuple[str, ...] = ()
    timeout_s: float = 600.0
    origin: str = field(default="", compare=False)
    observes: tuple[Observation, ...] = ()

    def __init__(
        self,
        name: str,
        run: str | Iterable[str] = (),
        barrier: str = Barrier.NONE,
        needs: str | Iterable[str] = (),
        promises: Iterable[Promise] = (),
        files: Iterable[GuestFile] = (),
        check: str | Iterable[str] = (),
        timeout_s: float = 600.0,
        origin: str = "",
        observes: Iterable[Observation] = (),
    ) -> None:
        values = {
            "name": name,
            "run": _tuple(run),
            "barrier": str(barrier or ""),
            "needs": _tuple(needs),
            "promises": _tuple(promises),
            "files": _tuple(files),
            "check": _tuple(check),
            "timeout_s": float(timeout_s),
            "origin": origin or caller_origin(),
            "observes": _tuple(observes),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @property
    def syncs(self) -> bool:
        return self.barrier == Barrier.SYNC

    @property
    def removes(self) -> list[str]:
        """Keys of the docker objects this step removes (it promises their absence)."""
        return [p.key() for p in self.promises if p.removes]

    @property
    def withdraws(self) -> list[str]:
        """Keys of earlier promises this step's writes may break before its barrier:
        the objects it promises anew (it changes them) or removes."""
        return [p.key() for p in self.promises]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run": list(self.run),
            "barrier": self.barrier,
            "needs": list(self.needs),
            "promises": [p.to_json() for p in self.promises],
            "files": [f.to_json() for f in self.files],
            "check": list(self.check),
            "timeout_s": self.timeout_s,
            "origin": self.origin,
            "observes": [o.to_json() for o in self.observes],
        }


@dataclass(frozen=True, init=False)
class Workload:
    name: str
    steps: tuple[Step, ...]
    seed: int = 0
    invariants: tuple[Invariant, ...] = DEFAULT_INVARIANTS
    description: str = ""
    # A file of a promised image that `--inject zero-layer-file` damages (self-test).
    damage_target: str = ""
    source: str = ""  # where it was loaded from (a path or a registered name)
    # Where live cuts land by default, as CUT_AT specs ("during:pull:1.5",
    # "returned:pull", "after:pull"): the moments the workload is about. None: seeded
    # random steps.
    cuts: tuple[str, ...] = ()

    def __init__(
        self,
        name: str,
        steps: Iterable[Step],
        seed: int = 0,
        invariants: Iterable[Invariant] = DEFAULT_INVARIANTS,
        description: str = "",
        damage_target: str = "",
        source: str = "",
        cuts: Iterable[str] = (),
    ) -> None:
        # Each step's promises name the step and the barrier that made them durable.
        named = tuple(
            replace(
                s,
                promises=tuple(
                    replace(p, step=p.step or s.name, how=p.how or s.barrier) for p in s.promises
                ),
                observes=tuple(replace(o, step=s.name) for o in s.observes),
            )
            for s in steps
        )
        values = {
            "name": name,
            "steps": named,
            "seed": int(seed),
            "invariants": _tuple(invariants),
            "description": description,
            "damage_target": damage_target,
            "source": source,
            "cuts": _tuple(cuts),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)
        validate(self)

    @property
    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    @property
    def synced(self) -> list[str]:
        """Steps that end in a `sync` of their own (a cut may land before it)."""
        return [s.name for s in self.steps if s.syncs]

    def keeping(self, names: set[str]) -> Workload:
        """The workload with only these steps and the steps they need, in order."""
        by_name = {s.name: s for s in self.steps}
        keep: set[str] = set()
        todo = [n for n in names if n in by_name]
        while todo:
            n = todo.pop()
            if n not in keep:
                keep.add(n)
                todo.extend(by_name[n].needs)
        return replace(self, steps=tuple(s for s in self.steps if s.name in keep))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "description": self.description,
            "damage_target": self.damage_target,
            "source": self.source,
            "cuts": list(self.cuts),
            "steps": [s.to_json() for s in self.steps],
            "invariants": [i.to_json() for i in self.invariants],
        }

    @property
    def digest(self) -> str:
        """What the workload does, whatever file or name it came from."""
        doc = self.to_json()
        doc.pop("source")
        if not doc["cuts"]:  # fields added later stay out while unused: old digests hold
            doc.pop("cuts")
        for s in doc["steps"]:
            s.pop("origin")
            for p in s["promises"]:
                p.pop("origin")
                if not p["meta"]:
                    p.pop("meta")
            if s["observes"]:
                for o in s["observes"]:
                    o.pop("origin")
            else:
                s.pop("observes")
        for i in doc["invariants"]:
            i.pop("origin")
        raw = json.dumps(doc, sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Workload:
        steps = tuple(
            Step(
                s["name"],
                tuple(s["run"]),
                s["barrier"],
                tuple(s["needs"]),
                tuple(Promise.from_json(p) for p in s["promises"]),
                tuple(
                    GuestFile(f["path"], base64.b64decode(f["base64"]), int(f["mode"]))
                    for f in s["files"]
                ),
                tuple(s.get("check", ())),
                float(s.get("timeout_s", 600.0)),
                s.get("origin") or f"step {s['name']}",
                tuple(Observation.from_json(o) for o in s.get("observes", ())),
            )
            for s in d["steps"]
        )
        invariants = tuple(
            Invariant(
                i["kind"],
                i.get("command", ""),
                i.get("stage", "offline"),
                i.get("cls", ""),
                i.get("origin") or "bundle",
            )
            for i in d["invariants"]
        )
        return cls(
            d["name"],
            steps,
            int(d.get("seed", 0)),
            invariants,
            d.get("description", ""),
            d.get("damage_target", ""),
            d.get("source", ""),
            tuple(d.get("cuts", ())),
        )


# ---------------------------------------------------------------- validation

_FILE_PREFIXES = ("container:", "volume:", "disk:")


def _check_promise(p: Promise, step: Step, where: str) -> None:
    kinds = [k.value for k in PromiseKind]
    if p.kind not in kinds:
        raise WorkloadError(f"{where}: unknown promise kind {p.kind!r} (one of {', '.join(kinds)})")
    if not p.target:
        raise WorkloadError(f"{where}: a {p.kind} promise needs a target")
    if p.kind in (PromiseKind.FILE, PromiseKind.ABSENT_FILE):
        parts = p.target.split(":", 2)
        ok = (
            p.target.startswith(("container:", "volume:"))
            and len(parts) == 3
            and parts[1]
            and parts[2].startswith("/")
        ) or (p.target.startswith("disk:/"))
        if not ok:
            raise WorkloadError(
                f"{where}: file target {p.target!r} must be "
                "container:NAME:/path, volume:NAME:/path or disk:/path"
            )
    if step.barrier == Barrier.NONE:
        raise WorkloadError(
            f"{where}: step {step.name!r} promises {p.kind} {p.target} but "
            'has no barrier: set barrier to "sync" or "fsync"'
        )


def _check_observation(o: Observation, where: str) -> None:
    if not o.target.startswith(_FILE_PREFIXES) or not o.outcomes:
        raise WorkloadError(
            f"{where}: observe {o.target!r}: a file target "
            "(container:NAME:/path, volume:NAME:/path or disk:/path) and "
            "at least one outcome"
        )
    for label, value in o.outcomes:
        parts = value.split()
        if label in ("empty", "other") or not (
            value == "absent" or (len(parts) == 4 and len(parts[0]) == 64)
        ):
            raise WorkloadError(
                f"{where}: observe {o.target!r}: outcome {label}={value!r} "
                'must be "absent" or "SHA256 MODE UID GID" (labels '
                "empty and other are taken)"
            )


def _cycle(steps: tuple[Step, ...]) -> list[str] | None:
    needs = {s.name: [n for n in s.needs] for s in steps}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in needs.get(n, []):
            if state.get(m) == 1:
                return [*path[path.index(m) :], m]
            if m in needs and m not in state:
                found = visit(m)
                if found:
                    return found
        path.pop()
        state[n] = 2
        return None

    for s in steps:
        if s.name not in state:
            found = visit(s.name)
            if found:
                return found
    return None


def _check_cut(spec: str, w: Workload, here: str) -> None:
    kinds = [k.value for k in CutKind]
    kind, _, rest = spec.partition(":")
    step, _, delay = rest.partition(":")
    if kind not in kinds or step not in w.step_names:
        raise WorkloadError(
            f"{here}: cut {spec!r} must be KIND:STEP[:SECONDS] with KIND one "
            f"of {', '.join(kinds)} and STEP one of {', '.join(w.step_names)}"
        )
    if kind == CutKind.RETURNED and step not in w.synced:
        raise WorkloadError(
            f'{here}: cut {spec!r}: only a step with barrier "sync" can be '
            "cut after its commands returned and before its sync"
        )
    try:
        seconds = float(delay or 0)
    except ValueError:
        seconds = -1.0
    if seconds < 0 or (delay and kind != CutKind.DURING):
        raise WorkloadError(f'{here}: cut {spec!r}: only a "during" cut takes SECONDS (>= 0)')


def validate(w: Workload) -> None:
    """Every mistake a workload file can hold, as one WorkloadError naming file:line."""
    here = (
        f"{w.source}:1" if w.source.endswith((".py", ".toml")) else f"workload {w.name or w.source}"
    )
    if not w.name:
        raise WorkloadError(f"{here}: the workload has no name")
    if not w.steps:
        raise WorkloadError(f"{here}: the workload has no steps")
    seen: dict[str, int] = {}
    for i, s in enumerate(w.steps):
        where = s.origin or f"{here}: step {i + 1}"
        if not s.name or any(c.isspace() or c in ":/" for c in s.name):
            raise WorkloadError(
                f"{where}: step name {s.name!r} must be non-empty, with no spaces, ':' or '/'"
            )
        if s.name in seen:
            raise WorkloadError(f"{where}: a second step named {s.name!r}")
        seen[s.name] = i
        if s.barrier not in [b.value for b in Barrier]:
            raise WorkloadError(f'{where}: unknown barrier {s.barrier!r} ("sync", "fsync" or none)')
        if not s.run and not s.files:
            raise WorkloadError(f"{where}: step {s.name!r} runs nothing")
        for p in s.promises:
            _check_promise(p, s, p.origin or where)
        for o in s.observes:
            _check_observation(o, o.origin or where)
    for spec in w.cuts:
        _check_cut(spec, w, here)
    cycle = _cycle(w.steps)
    if cycle:
        first = next(s for s in w.steps if s.name == cycle[0])
        raise WorkloadError(
            f"{first.origin or here}: steps form a cycle in `needs`: " + " -> ".join(cycle)
        )
    for s in w.steps:
        where = s.origin or here
        for n in s.needs:
            if n not in seen:
                raise WorkloadError(f"{where}: step {s.name!r} needs unknown step {n!r}")
            if seen[n] >= seen[s.name]:
                raise WorkloadError(f"{where}: step {s.name!r} needs {n!r}, which runs after it")
    for inv in w.invariants:
        where = inv.origin or here
        kinds = [k.value for k in InvariantKind]
        if inv.kind not in kinds:
            raise WorkloadError(
                f"{where}: unknown invariant kind {inv.kind!r} (one of {', '.join(kinds)})"
            )
        if inv.stage not in [s.value for s in Stage]:
            raise WorkloadError(f"{where}: unknown stage {inv.stage!r} (offline or daemon)")
        if inv.kind == InvariantKind.COMMAND and not inv.command.strip():
            raise WorkloadError(f"{where}: a command invariant needs a command")
        if inv.cls not in [c.value for c in ViolationClass]:
            raise WorkloadError(f"{where}: unknown verdict class {inv.cls!r}")
