"""`crashtest explore`: generated programs run in booted guests, many per boot,
each on every filesystem asked for; every crash state checked; findings grouped
by signature, minimized, and written as bundles with standalone reproducers.

A run directory holds `programs/w<N>.jsonl` (one line per finished program, the
journal `--resume` reads), `explore.json` (the summary) and `findings/<slug>/`
(a bundle each). Workers are forked processes, one guest each.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from crashtest_guest.protocol import ExploreOutcome, Op
from harness.explore.findings import write_findings
from harness.explore.guest import Guest
from harness.explore.plan import (
    ExploreOptions,
    Plan,
    program,
    programs,
    programs_digest,
    request,
    validate,
)
from harness.explore.results import (
    ExploreMeta,
    ExploreSummary,
    FindingGroup,
    FsRecord,
    ProgramRecord,
    load_records,
    load_summary,
)
from harness.explore.verdicts import discrepancies, outcome_verdicts
from harness.images.guest import ensure_images
from harness.model import Violation
from harness.report.known import KnownList
from harness.rundir import Run, write_atomic
from harness.version import crashtest_version
from harness.workers import run_jobs

log = logging.getLogger(__name__)


def run_program(guest: Guest, plan: Plan, index: int, ops: tuple[Op, ...]) -> ProgramRecord:
    """One program on every filesystem of the run, judged: its journal line."""
    outcomes: dict[str, ExploreOutcome] = {
        fs: guest.run(request(fs, ops, plan.options, index)) for fs in plan.filesystems
    }
    records: list[FsRecord] = []
    diff = discrepancies(ops, outcomes)
    for fs, out in outcomes.items():
        found = outcome_verdicts(fs, ops, out) + [v for v in diff if v.state.startswith(f"{fs}:")]
        records.append(
            FsRecord(
                fs=fs,
                errnos=list(out.errnos),
                states=len(out.states),
                log_entries=out.log_entries,
                run_s=round(out.run_s, 3),
                check_s=round(out.check_s, 3),
                error=out.error,
                violations=[v.to_json() for v in found],
            )
        )
    return ProgramRecord(index=index, ops=[o.to_json() for o in ops], results=records)


@dataclass(frozen=True)
class Shard:
    plan: Plan
    run_dir: Path
    worker: int
    work: tuple[tuple[int, tuple[Op, ...] | None], ...]
    deadline: float  # time.time() after which no new program starts; 0: none


@dataclass
class ShardDone:
    worker: int
    finished: int = 0
    boots: int = 0


def _cut_short(journal: Path) -> bool:
    with journal.open("rb") as f:
        if f.seek(0, 2) == 0:
            return False
        f.seek(-1, 2)
        return f.read(1) != b"\n"


def run_shard(shard: Shard) -> ShardDone:
    """A worker: one guest, its share of the programs, each journaled as it ends."""
    done = ShardDone(shard.worker)
    plan = shard.plan
    journal = shard.run_dir / "programs" / f"w{shard.worker}.jsonl"
    guest = Guest(
        plan.options.kernel, plan.options.accel, shard.run_dir / f"console-w{shard.worker}"
    )
    try:
        with journal.open("a") as f:
            if _cut_short(journal):  # a line a kill cut short stays one of its own, skipped
                f.write("\n")
            for index, made in shard.work:
                if shard.deadline and time.time() > shard.deadline:
                    break
                record = run_program(guest, plan, index, program(plan, index, made))
                f.write(record.model_dump_json() + "\n")
                f.flush()
                done.finished += 1
    finally:
        guest.stop()
        done.boots = guest.boots
    return done


def _worker_done(done: ShardDone) -> None:
    log.info("worker %d: %d programs, %d guest boots", done.worker, done.finished, done.boots)


def explore(opts: ExploreOptions) -> ExploreSummary:
    """The whole run: validate, run every program not already in the journal,
    group, minimize, bundle, summarize."""
    plan = validate(opts)
    o = plan.options
    run = Run(o.out, o.seed, "explore", resume=o.resume)
    (run.dir / "programs").mkdir(exist_ok=True)
    images = ensure_images(o.kernel)  # before any worker: a bad kernel is one line, exit 2
    # a resumed run goes on with its clock: its rate and time budget are the whole run's
    before = load_summary(o.resume).meta if o.resume is not None else None
    earlier = before.elapsed_s if before is not None else 0.0
    meta = ExploreMeta(
        version=crashtest_version(),
        run_id=run.id,
        kernel_spec=o.kernel or "",
        kernel=images.kernel.version,
        filesystems=list(plan.filesystems),
        mode=o.mode,
        length=o.length,
        seed=o.seed,
        ops=plan.grammar.names(),
        lost=o.lost,
        fsck=o.fsck,
        minimize=o.minimize,
        budget_programs=o.programs,
        budget_minutes=o.minutes,
        programs_digest=programs_digest(plan),
        started=before.started
        if before is not None
        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    started = time.monotonic()

    def write(incomplete: str) -> None:
        elapsed = earlier + time.monotonic() - started
        summary = summarize(run.dir, meta, elapsed, incomplete, plan.known)
        write_atomic(run.dir / "explore.json", summary.model_dump_json(indent=2))

    with run.lifetime(write):
        write("running")
        done = {r.index for r in load_records(run.dir)}
        todo = programs(plan, done)
        deadline = time.time() + o.minutes * 60 - earlier if o.minutes else 0.0
        jobs = max(1, min(o.jobs, len(todo)))
        shards = [Shard(plan, run.dir, w, tuple(todo[w::jobs]), deadline) for w in range(jobs)]
        log.info(
            "%d programs to run (%d done before) on %s, %d guests",
            len(todo),
            len(done),
            ", ".join(plan.filesystems),
            jobs,
        )
        if todo:
            run_jobs(run_shard, shards, jobs, _worker_done)
        if o.minimize:
            write_findings(run.dir, plan, load_records(run.dir))
    return ExploreSummary.model_validate_json((run.dir / "explore.json").read_text())


def summarize(
    run_dir: Path, meta: ExploreMeta, elapsed: float, incomplete: str, known: KnownList
) -> ExploreSummary:
    records = load_records(run_dir)
    groups: dict[str, FindingGroup] = {}
    states = 0
    check_s = 0.0
    for r in records:
        for fsr in r.results:
            states += fsr.states
            check_s += fsr.check_s
            for vd in fsr.violations:
                v = Violation.from_json(vd)
                if v.cls.value == "harness-error":
                    continue
                sig = f"{fsr.fs} | {v.signature()}"
                g = groups.get(sig)
                if g is None:
                    cell = {"backend": fsr.fs, "kernel": meta.kernel, "workload": "explore"}
                    groups[sig] = FindingGroup(
                        signature=sig,
                        fs=fsr.fs,
                        cls=v.cls.value,
                        fails=v.fails,
                        programs=[r.index],
                        example=vd,
                        known=known.match(v, cell),
                    )
                elif r.index not in g.programs:
                    g.programs.append(r.index)
    minimized = run_dir / "findings" / "index.json"
    if minimized.is_file():
        for sig, info in json.loads(minimized.read_text()).items():
            if sig in groups:
                groups[sig].minimized = info["ops"]
                groups[sig].bundle = info["bundle"]
                groups[sig].shape = info["shape"]
    harness_errors = sum(
        1
        for r in records
        for fsr in r.results
        for vd in fsr.violations
        if vd.get("class") == "harness-error"
    )
    hours = elapsed / 3600 if elapsed > 0 else 0.0
    return ExploreSummary(
        known_source=known.source,
        meta=meta.model_copy(update={"incomplete": incomplete, "elapsed_s": round(elapsed, 1)}),
        programs=len(records),
        operations=sum(len(r.ops) for r in records),
        states=states,
        harness_errors=harness_errors,
        programs_per_hour=round(len(records) / hours, 1) if hours else 0.0,
        states_per_s=round(states / check_s, 2) if check_s else 0.0,
        findings=sorted(groups.values(), key=lambda g: (not g.fails, g.signature)),
    )
