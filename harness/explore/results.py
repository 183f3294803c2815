"""An explore run's documents, typed: the journal's program records and the
summary (`explore.json`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from harness.errors import InputError


class FsRecord(BaseModel):
    """One program on one filesystem."""

    fs: str
    errnos: list[int]
    states: int
    log_entries: int = 0
    run_s: float = 0.0
    check_s: float = 0.0
    error: str = ""
    violations: list[dict[str, Any]] = Field(default_factory=list)


class ProgramRecord(BaseModel):
    """One line of a worker's journal: a finished program."""

    index: int
    ops: list[dict[str, Any]]
    results: list[FsRecord]


class ExploreMeta(BaseModel):
    version: str
    run_id: str
    kernel_spec: str
    kernel: str
    filesystems: list[str]
    mode: str
    length: int
    seed: int
    ops: list[str]
    lost: int
    fsck: bool = True  # a resumed run judges its states as it began to
    minimize: bool = True
    budget_programs: int
    budget_minutes: float
    started: str
    elapsed_s: float = 0.0
    incomplete: str = ""  # why it stopped early; empty when it finished
    programs_digest: str = ""  # its first programs' digest: what --resume must make again


class FindingGroup(BaseModel):
    """Every program whose states failed the same way on one filesystem."""

    signature: str
    fs: str
    cls: str
    fails: bool
    programs: list[int]
    example: dict[str, Any]
    minimized: list[str] = Field(default_factory=list)  # the shortest program, in words
    shape: str = ""  # its operations' kinds: the sequence's shape
    bundle: str = ""  # findings/<slug>, relative to the run directory
    known: str = ""  # the known failure's id that matches it; empty: new


class ExploreSummary(BaseModel):
    meta: ExploreMeta
    known_source: str = ""  # the known-failures file, as given
    programs: int
    operations: int = 0  # of every program run
    states: int
    harness_errors: int
    programs_per_hour: float
    states_per_s: float
    findings: list[FindingGroup]

    def new_failures(self) -> list[FindingGroup]:
        """What fails the run: failing findings no known failure matches."""
        return [g for g in self.findings if g.fails and not g.known]


def load_records(run_dir: Path) -> list[ProgramRecord]:
    """Every finished program in a run's journals (a line cut short by a kill
    is skipped: its program runs again on --resume)."""
    found: dict[int, ProgramRecord] = {}
    for journal in sorted((run_dir / "programs").glob("w*.jsonl")):
        for line in journal.read_text().splitlines():
            try:
                r = ProgramRecord.model_validate_json(line)
            except ValidationError:
                continue
            found.setdefault(r.index, r)
    return [found[i] for i in sorted(found)]


def load_summary(run_dir: Path) -> ExploreSummary:
    path = run_dir / "explore.json"
    try:
        return ExploreSummary.model_validate_json(path.read_text())
    except (OSError, ValidationError) as e:
        raise InputError(f"{path}: not an explore summary ({str(e).splitlines()[0]})") from e
