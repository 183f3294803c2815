"""The nouns every layer shares, with no I/O: verdict classes and faults, promises
and the ledger of promises in force, violations and state results.

Everything here is plain data: it pickles (parallel units) and round-trips
through JSON (summary.json, bundles).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from crashtest_guest.protocol import Fault, PromiseCheck, PromiseKind, ViolationClass

__all__ = ["Fault", "PromiseKind", "ViolationClass"]  # the guest's vocabulary, shared


class UnitKind(StrEnum):
    LIVE = "live"  # a power cut of a running guest
    REPLAY = "replay"  # lost-cache crash states replayed from a write log


class CutKind(StrEnum):
    AFTER = "after"  # right after the step returned (and its barrier)
    DURING = "during"  # some seconds into the step
    RETURNED = "returned"  # after the step's commands returned, before its own sync


class Barrier(StrEnum):
    """How a step makes its promises durable."""

    NONE = ""  # it promises nothing
    SYNC = "sync"  # the harness runs `sync` after the step's commands
    FSYNC = "fsync"  # the step's own commands fsync what they promise


class InvariantKind(StrEnum):
    DOCKER_INTACT = "docker-intact"  # every image docker restores has intact layers
    DOCKERD_STARTS = "dockerd-starts"  # dockerd starts on any recovered disk
    COMMAND = "command"  # a user command succeeds on any recovered disk


class Stage(StrEnum):
    """Where a check runs on a recovered disk."""

    OFFLINE = "offline"  # the store mounted read-only, no dockerd
    DAEMON = "daemon"  # dockerd running on the recovered store


CLASSES = tuple(c.value for c in ViolationClass)
FAULTS: dict[str, str] = {
    Fault.FILESYSTEM: "the filesystem lost or damaged what sync/fsync had made durable, or "
    "its recovery left it inconsistent",
    Fault.KERNEL: "the kernel failed (BUG, Oops, panic, hung task) outside filesystem code",
    Fault.DOCKER: "docker left an object it lists as usable with content or metadata that "
    "was never made durable, or did not restore or clean up its own state",
    Fault.CONFIGURATION: "the filesystem was told not to flush the disk cache (barrier=0, "
    "nobarrier), so a power cut may lose anything written since mount",
    Fault.HARNESS: "the harness could not decide",
    Fault.UNKNOWN: "no durability point is known for this disk (crashtest check), or only the "
    "kernel console speaks of damage (console-only), so it cannot be laid at "
    "anyone's door",
}
# Whose promise a class breaks by default: a workload promise is made by sync/fsync,
# so breaking it is the filesystem's fault; docker's own promises say so explicitly.
_DEFAULT_FAULT = {
    ViolationClass.FS_CORRUPTION: Fault.FILESYSTEM,
    ViolationClass.FS_DURABILITY: Fault.FILESYSTEM,
    ViolationClass.DOCKER_CORRUPTION: Fault.FILESYSTEM,
    ViolationClass.DOCKER_LOST: Fault.FILESYSTEM,
    ViolationClass.LEAK: Fault.DOCKER,
    ViolationClass.HARNESS_ERROR: Fault.HARNESS,
    ViolationClass.CONSOLE_ONLY: Fault.UNKNOWN,
    ViolationClass.DISCREPANCY: Fault.FILESYSTEM,
}


def is_clean(found: list[Violation]) -> bool:
    """The one rule for a failing state: any violation but a leak fails it (a leak
    wastes space but breaks no promise)."""
    return not failing(found)


def failing(found: list[Violation]) -> list[Violation]:
    """The violations that fail their state."""
    return [v for v in found if v.fails]


_IDS = re.compile(r"(sha256:)?[0-9a-f]{12,}")
_RESTORED = re.compile(
    r"^(image .*|an untagged image), which docker restores, has intact "
    r"layers \((.*)\)$"
)


def _stable(text: str) -> str:
    return _IDS.sub("<id>", text)


@dataclass(frozen=True, init=False)
class Violation:
    """A broken promise. `check` is the stable id of the check that saw it
    (`fs.mount`, `promise.file`, `docker.save`, ...) and `subject` the object it is
    about: ids and subjects, never the prose, decide what matches on repro."""

    cls: ViolationClass
    state: str
    promise: str
    evidence: dict[str, str]
    fault: Fault
    check: str
    subject: str

    def __init__(
        self,
        cls: ViolationClass | str,
        state: str,
        promise: str,
        evidence: dict[str, str] | None = None,
        fault: Fault | str | None = None,
        check: str = "",
        subject: str = "",
    ) -> None:
        """`fault` None or empty: the class's usual one. Strings (results files,
        bundles) must name a known class and fault."""
        if cls not in CLASSES:
            raise ValueError(f"unknown verdict class {cls!r}")
        if fault and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        vc = ViolationClass(cls)
        for name, value in (
            ("cls", vc),
            ("state", state),
            ("promise", promise),
            ("evidence", dict(evidence or {})),
            ("fault", Fault(fault) if fault else _DEFAULT_FAULT[vc]),
            ("check", check),
            ("subject", subject),
        ):
            object.__setattr__(self, name, value)

    @property
    def fails(self) -> bool:
        return self.cls.fails

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["class"] = d.pop("cls")
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Violation:
        ev = d.get("evidence") or {}
        return cls(
            str(d["class"]),
            str(d.get("state") or ""),  # old bundles' verdicts do not repeat it
            str(d["promise"]),
            {str(k): str(v) for k, v in dict(ev).items()},  # type: ignore[call-overload]
            str(d.get("fault") or ""),
            str(d.get("check") or ""),
            str(d.get("subject") or ""),
        )

    def headline(self) -> str:
        return f"[{self.cls}, {self.fault}'s fault] {self.state}: {self.promise}"

    def signature(self) -> str:
        """What failed, the same in every run that sees it: the check, class and
        fault, and what the check is about in words that carry no run's ids, tags,
        state or evidence (`check | class | fault | object`). Known-failure files,
        `crashtest diff` and the report group findings by it."""
        return f"{self.check} | {self.cls} | {self.fault} | {self.object()}"

    def object(self) -> str:
        """The failing object's kind (and a file's place, which the workload names),
        or for docker's store what about it broke."""
        kind, _, rest = self.subject.partition(":")
        if self.check.startswith(("promise.", "docker.")) and rest:
            return f"file {rest}" if kind == "file" else kind
        if self.check.startswith(("store.", "invariant.docker-intact")):
            return _stable(_RESTORED.sub(r"\2", self.promise))
        if self.check.startswith("invariant."):
            return "command"
        return _stable(self.subject)

    def with_evidence(self, **extra: str) -> Violation:
        return Violation(
            self.cls,
            self.state,
            self.promise,
            {**self.evidence, **extra},
            self.fault,
            self.check,
            self.subject,
        )


def blame_configuration(found: list[Violation], option: str) -> list[Violation]:
    """A lost disk cache under `option` (which turns flushes off): what the
    filesystem could not keep is the configuration's fault."""
    if not option:
        return found
    return [
        Violation(
            v.cls,
            v.state,
            v.promise,
            {**v.evidence, "configuration": option},
            Fault.CONFIGURATION,
            v.check,
            v.subject,
        )
        if v.fault == Fault.FILESYSTEM
        else v
        for v in found
    ]


@dataclass(frozen=True)
class Promise:
    """What must survive once the step `step` and its barrier have returned.

    Targets: an image ref (image, absent-image), a container name (container,
    absent-container), or a file: `container:NAME:/path` (in the container's
    writable layer), `volume:NAME:/path`, `disk:/path` (on the test filesystem).
    Empty expected values (`sha256`, `manifest`) are derived on the live guest
    when the barrier has returned."""

    kind: str
    target: str
    step: str = ""
    how: str = ""  # the barrier that made it durable: "sync" or "fsync"
    sha256: str = ""  # file: its content
    run: str = ""  # image: a command a fresh container of it must pass (daemon stage)
    manifest: str = ""  # image: "sha256  /path" lines its files must match
    paths: tuple[str, ...] = ()  # image: the paths a derived manifest covers (all: ())
    image_id: str = ""  # image: the id the ref must still name (derived)
    state: str = ""  # container: "STATUS EXITCODE" dockerd must restore, e.g. "exited 255"
    meta: str = ""  # file: "MODE UID GID" (octal mode) it must have; "derive": as on the live guest
    origin: str = field(default="", compare=False)  # file:line that declared it

    def key(self) -> str:
        """Later promises about the same object replace earlier ones."""
        return f"{self.kind.removeprefix('absent-')}:{self.target}"

    @property
    def removes(self) -> bool:
        return self.kind in (PromiseKind.ABSENT_IMAGE, PromiseKind.ABSENT_CONTAINER)

    def describe(self) -> str:
        t = self.target
        text = {
            PromiseKind.IMAGE: f"image {t} exists, saves and runs",
            PromiseKind.CONTAINER: f"container {t} exists"
            + (f" ({self.state})" if self.state else ""),
            PromiseKind.FILE: f"{t} has "
            + (f"sha256 {self.sha256[:16]}" if self.sha256 else "its content at the barrier")
            + (
                ""
                if not self.meta
                else " and its mode/owner then"
                if self.meta == "derive"
                else f" and mode/owner {self.meta}"
            ),
            PromiseKind.ABSENT_FILE: f"removed file {t} stays removed",
            PromiseKind.ABSENT_IMAGE: f"removed image {t} stays removed",
            PromiseKind.ABSENT_CONTAINER: f"removed container {t} stays removed",
        }[PromiseKind(self.kind)]
        return f"{text} (after {self.how} in {self.step})"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["paths"] = list(self.paths)
        return d

    def to_check(self) -> PromiseCheck:
        """What the guest's offline check needs of it."""
        return PromiseCheck(
            PromiseKind(self.kind),
            self.target,
            self.describe(),
            self.key(),
            self.sha256,
            self.manifest,
            self.image_id,
            self.meta,
            self.paths,
        )

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Promise:
        d = dict(d)
        if "check" in d:  # bundles before the split of `check` into run/state
            check = d.pop("check")
            d["state" if d.get("kind") == PromiseKind.CONTAINER else "run"] = check
        names = {f.name for f in fields(cls)}
        d["paths"] = tuple(d.get("paths") or ())
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Observation:
    """Not a promise: what a file turns out to be in crash states taken while the
    step `step` may have changed it and before a later promise covers it. Each
    outcome names a fingerprint ("absent", or "SHA256 MODE UID GID"); a state's
    file is the first outcome it matches, else "empty" (0 bytes) or "other"."""

    target: str
    outcomes: tuple[tuple[str, str], ...]
    step: str = ""
    origin: str = field(default="", compare=False)

    def key(self) -> str:
        return f"file:{self.target}"

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "outcomes": dict(self.outcomes),
            "step": self.step,
            "origin": self.origin,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Observation:
        return cls(
            str(d["target"]),
            tuple((str(k), str(v)) for k, v in d["outcomes"].items()),
            str(d.get("step", "")),
            str(d.get("origin", "")),
        )


@dataclass(frozen=True)
class SourceEdit:
    """A change to a kernel source file: `old`, found exactly once in `path`
    (relative to the tree's top), becomes `new` (the known-bug corpus undoes
    fixes this way)."""

    path: str
    old: str
    new: str


@dataclass
class Ledger:
    """Promises in force: the latest one for each object."""

    promises: dict[str, Promise] = field(default_factory=dict)
    last_point: str = ""  # the last durability point reached

    def grant(self, step: str, promises: list[Promise]) -> None:
        for p in promises:
            self.promises[p.key()] = p
        if promises:
            self.last_point = step

    def revoke(self, keys: list[str]) -> None:
        for k in keys:
            self.promises.pop(k, None)

    def in_force(self) -> list[Promise]:
        return list(self.promises.values())


@dataclass
class StateResult:
    state: str
    backend: str
    plan: str
    kind: str = UnitKind.LIVE
    actual: str = ""
    last_durability_point: str = ""
    promises: int = 0
    violations: list[Violation] = field(default_factory=list)
    harness_error: str = ""
    wall_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    bundle: str = ""  # reproducer bundle, relative to the run directory
    started: str = ""  # how its guests started: resumed from a saved guest, or booted
    observed: dict[str, str] = field(default_factory=dict)  # observation target -> outcome

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "kind": str(self.kind),
            "backend": self.backend,
            "plan": self.plan,
            "actual": self.actual,
            "last_durability_point": self.last_durability_point,
            "promises": self.promises,
            "verdict": self.verdict,
            "violations": [v.to_json() for v in self.violations],
            "harness_error": self.harness_error,
            "wall_s": self.wall_s,
            "timings": self.timings,
            "bundle": self.bundle,
            "started": self.started,
            "observed": self.observed,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StateResult:
        return cls(
            d["state"],
            d["backend"],
            d["plan"],
            d["kind"],
            d["actual"],
            d["last_durability_point"],
            d["promises"],
            [Violation.from_json(v) for v in d["violations"]],
            d["harness_error"],
            d["wall_s"],
            d["timings"],
            d.get("bundle", ""),
            d.get("started", ""),
            dict(d.get("observed") or {}),
        )

    @property
    def verdict(self) -> str:
        if not is_clean(self.violations):
            return "violation"
        if self.harness_error:
            return "harness-error"
        return "leak" if self.violations else "pass"
