"""The result documents as types: summary.json (what a run writes, and what
every reader (the CLI, diff, merge, the report, bench, compare, the corpus,
upstream reports) reads back) and corpus.json. Their JSON Schemas in
docs/schema/ are generated from these types (`python -m harness.report.summary
[summary|corpus]`), and a test keeps them equal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import InputError
from harness.model import Fault, StateResult, UnitKind, Violation, ViolationClass
from harness.rundir import write_atomic

SUMMARY_JSON = "summary.json"
SCHEMA_BASE = "https://crashtest.invalid/schema"


class _Doc(BaseModel):
    # `class` is a Python keyword: fields spell it `cls` and JSON `class`.
    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class RecordedViolation(_Doc):
    """A violation as the results record it: with its signature and, when a
    known-failures entry matches it, that entry's id."""

    @model_validator(mode="before")
    @classmethod
    def _complete(cls, d: Any) -> Any:
        """Results written before faults or signatures were recorded: the
        violation's own rules fill them in."""
        if isinstance(d, dict) and "class" in d and not (d.get("fault") and d.get("signature")):
            v = Violation.from_json(d)
            d = {**d, "fault": v.fault, "signature": d.get("signature") or v.signature()}
        return d

    cls: ViolationClass = Field(alias="class")
    state: str
    promise: str
    evidence: dict[str, str] = {}
    fault: Fault
    check: str = ""
    subject: str = ""
    signature: str = ""
    known: str = ""

    @property
    def fails(self) -> bool:
        return self.cls.fails

    def violation(self) -> Violation:
        return Violation(
            self.cls, self.state, self.promise, self.evidence, self.fault, self.check, self.subject
        )

    @classmethod
    def of(cls, v: Violation, known: str = "") -> RecordedViolation:
        return cls(
            cls=v.cls,
            state=v.state,
            promise=v.promise,
            evidence=v.evidence,
            fault=v.fault,
            check=v.check,
            subject=v.subject,
            signature=v.signature(),
            known=known,
        )


class StateRecord(_Doc):
    """One checked crash state (a live cut or a replayed lost-cache state)."""

    state: str
    kind: UnitKind
    backend: str
    plan: str
    actual: str = ""
    last_durability_point: str = ""
    promises: int = 0
    verdict: str
    violations: list[RecordedViolation] = []
    harness_error: str = ""
    wall_s: float = 0.0
    timings: dict[str, float] = {}
    bundle: str = ""  # its reproducer bundle, relative to the run directory
    started: str = ""
    observed: dict[str, str] = {}

    def result(self) -> StateResult:
        return StateResult(
            self.state,
            self.backend,
            self.plan,
            self.kind,
            self.actual,
            self.last_durability_point,
            self.promises,
            [v.violation() for v in self.violations],
            self.harness_error,
            self.wall_s,
            self.timings,
            self.bundle,
            self.started,
            self.observed,
        )


class HarnessErrorRecord(_Doc):
    state: str
    error: str


class BackendRecord(_Doc):
    """One cell of the run (workload x release x kernel) on one backend."""

    backend: str
    kernel: str
    image: str
    release: str = ""
    workload: str = ""
    docker: dict[str, str] = {}  # the driver and versions dockerd reported
    accel: str
    cuts: int
    options: dict[str, str] = {}
    states_checked: int
    violations: list[RecordedViolation] = []
    harness_errors: list[HarnessErrorRecord] = []
    wall_s: float = 0.0
    mean_timings_s: dict[str, float] = {}
    live_cuts: int = 0
    replayed_states: int = 0
    replay: dict[str, Any] = {}
    observed: dict[str, dict[str, int]] = {}
    states: list[StateRecord] = []


class Example(_Doc):
    state: str
    promise: str
    evidence: dict[str, str]
    bundle: str


class FindingGroup(_Doc):
    """One distinct failure of the run: a signature in a cell, how many states
    showed it, and the first state (with a bundle, where one exists) that does."""

    signature: str
    check: str
    cls: ViolationClass = Field(alias="class")
    fault: Fault
    workload: str
    release: str
    kernel: str
    kernel_series: str
    backend: str
    known: str = ""
    count: int = 0
    states: int = 0
    example: Example


class Totals(_Doc):
    @model_validator(mode="before")
    @classmethod
    def _older(cls, d: Any) -> Any:
        """Summaries written before known failures: every violation failed the run."""
        if isinstance(d, dict) and "failing" not in d:
            d = {"new": d.get("violations", 0), "known": 0, **d, "failing": d.get("violations", 0)}
        return d

    states_checked: int
    violations: int  # failing violations (leaks are counted apart)
    new: int
    known: int
    new_signatures: list[str] = []
    known_seen: dict[str, int] = {}
    known_not_seen: list[str] = []
    failing: int  # the violations that fail the run (new ones, or any: fail_on)
    leaks: int = 0
    harness_errors: int = 0
    faults: dict[str, int] = {}  # failing violations by whose fault they are


class Shard(_Doc):
    index: int = 1
    count: int = 1
    units: list[int] = []
    total_units: int = 0
    merged_from: list[str] = []


class WorkloadInfo(_Doc):
    name: str
    source: str
    digest: str
    steps: list[str] = []
    description: str = ""


class CellInfo(_Doc):
    dir: str
    workload: str
    release: str
    kernel: str


class RunMeta(_Doc):
    """What a run was: its plan, and the exact software it ran on."""

    run_id: str = ""
    crashtest_version: str = ""
    seed: int = 1
    workload: str = ""
    workload_source: str = ""
    workload_digest: str = ""
    workload_steps: list[str] = []
    workloads: list[WorkloadInfo] = []
    releases: dict[str, dict[str, str]] = {}  # release -> docker's key package versions
    cells: list[CellInfo] = []
    kernel_info: dict[str, Any] = {}
    kernels: list[dict[str, Any]] = []
    image_manifest: dict[str, Any] = {}
    image_packages: dict[str, str] = {}
    images: dict[str, str] = {}
    host: str = ""
    qemu: str = ""
    qemu_version: str = ""
    accel: str = ""
    injected: str = ""
    jobs: int = 1
    campaign: dict[str, Any] = {}
    shard: Shard = Shard()
    units_done: list[int] = []
    incomplete: str | None = None  # why the run stopped before its end (absent: it ended)
    resume: str | None = None  # the command that finishes it


class Summary(RunMeta):
    """summary.json."""

    known_failures: dict[str, Any] = {}
    fail_on: str = "any"
    backends: list[BackendRecord] = []
    findings: list[FindingGroup] = []
    totals: Totals

    @model_validator(mode="after")
    def _grouped(self) -> Summary:
        if not self.findings:  # written before findings were grouped: group them
            self.findings = findings(self.backends)
        return self

    def meta(self) -> RunMeta:
        return RunMeta.model_validate(self.model_dump(include=set(RunMeta.model_fields)))

    def write(self, run_dir: Path) -> None:
        write_atomic(
            run_dir / SUMMARY_JSON, self.model_dump_json(indent=1, exclude_none=True) + "\n"
        )


def kernel_series(version: str) -> str:
    """6.12.117+deb13-cloud-amd64 -> 6.12-cloud-amd64: findings carry over a
    kernel's point releases (a nightly run's kernel moves) but not across series."""
    head, *rest = version.split("-")
    series = ".".join(head.split("+")[0].split(".")[:2])
    flavour = "-".join(p for p in rest if not p.isdigit())  # drop Debian's ABI number
    return f"{series}-{flavour}" if flavour else series


def findings(backends: list[BackendRecord]) -> list[FindingGroup]:
    """Each distinct failure of the run: a signature in a cell, with how many states
    showed it, whether it is known, and the first state and bundle that show it."""
    out: dict[tuple[str, ...], FindingGroup] = {}
    for b in backends:
        series = kernel_series(b.kernel)
        cell = (b.workload, b.release, series, b.backend)
        for s in b.states:
            seen = set()
            for v in s.violations:
                if not v.fails:
                    continue
                example = Example(
                    state=s.state, promise=v.promise, evidence=v.evidence, bundle=s.bundle
                )
                f = out.setdefault(
                    (*cell, v.signature),
                    FindingGroup(
                        signature=v.signature,
                        check=v.check,
                        cls=v.cls,
                        fault=v.fault,
                        workload=b.workload,
                        release=b.release,
                        kernel=b.kernel,
                        kernel_series=series,
                        backend=b.backend,
                        known=v.known,
                        example=example,
                    ),
                )
                f.count += 1
                if not f.example.bundle and s.bundle:
                    f.example = example  # prefer an example with a reproducer
                if v.signature not in seen:
                    seen.add(v.signature)
                    f.states += 1
    return sorted(
        out.values(),
        key=lambda f: (f.known != "", f.fault, f.signature, f.workload, f.release, f.backend),
    )


CORPUS_JSON = "corpus.json"


class CorpusViolation(_Doc):
    """One distinct signature of a corpus campaign, with its first state."""

    signature: str
    cls: ViolationClass = Field(alias="class")
    fault: Fault
    promise: str
    state: str
    states: int = 0
    evidence: dict[str, str] = {}
    bundle: str = ""


class CorpusRun(_Doc):
    """One campaign of one entry on one kernel: caught, clean or error."""

    seed: int
    run_dir: str
    verdict: str
    wall_s: float
    violations: list[CorpusViolation] = []
    error: str = ""


class CorpusBuild(_Doc):
    kernel: str  # a bzImage path or a Debian package
    version: str = ""
    build_s: float = 0.0
    edits: int = 0


class CorpusRate(_Doc):
    caught: int
    runs: int
    rate: float


class SourceEditDoc(_Doc):
    path: str
    old: str
    new: str


class CorpusEntry(_Doc):
    """One known bug: what it is (corpus.entries) and how its runs went."""

    id: str
    fs: str
    kind: str
    fix: str
    title: str
    landed: str
    fstests: str
    backend: str
    expected: str
    mount_options: str = ""
    note: str = ""
    edits: list[SourceEditDoc] = []
    variants: dict[str, list[SourceEditDoc]] = {}
    result: str
    as_expected: bool
    builds: dict[str, CorpusBuild] = {}
    runs: dict[str, list[CorpusRun]] = {}
    rate: dict[str, CorpusRate] = {}
    harness_failed: bool = False


class Corpus(_Doc):
    """corpus.json: a `crashtest corpus run`."""

    run_id: str
    crashtest_version: str = ""
    tree: str = ""
    tree_key: str = ""
    kernel: str = ""
    runs: int
    baseline_runs: int
    states: int
    cuts: int
    seed: int
    caught_rate: float
    wall_s: float
    complete: bool
    incomplete: str = ""
    entries: list[CorpusEntry] = []

    def write(self, run_dir: Path) -> None:
        write_atomic(run_dir / CORPUS_JSON, self.model_dump_json(indent=1) + "\n")


def load_corpus(run_dir: Path) -> Corpus | None:
    """RUN_DIR/corpus.json; None when the directory holds none; bad input when it
    holds one that is not."""
    path = run_dir / CORPUS_JSON
    if not path.is_file():
        return None
    try:
        return Corpus.model_validate_json(path.read_text())
    except (OSError, ValidationError) as e:
        raise InputError(f"{path} is not a crashtest corpus document ({e})") from e


def load_summary(run_dir: Path) -> Summary:
    """RUN_DIR/summary.json; bad input (one line) when it is missing or is not one."""
    path = run_dir / SUMMARY_JSON
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror})") from e
    try:
        return Summary.model_validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the document"
        raise InputError(f"{path} is not a crashtest summary ({where}: {first['msg']})") from e


SCHEMAS: dict[str, type[_Doc]] = {"summary": Summary, "corpus": Corpus}


def schema(name: str = "summary") -> dict[str, Any]:
    doc = SCHEMAS[name].model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE}/{name}.schema.json",
        **doc,
    }


if __name__ == "__main__":
    import sys

    print(json.dumps(schema(sys.argv[1] if len(sys.argv) > 1 else "summary"), indent=1))
