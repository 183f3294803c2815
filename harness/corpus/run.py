"""The known-bug corpus runner: for each entry, the kernel tree with its fix undone
(built and cached), the entry's campaign N times (lost-cache replay of every
flush boundary, a live cut right after the fsync), and the same workload on the
unmodified tree as the false-positive baseline. Results: corpus.json and
corpus.html beside one ordinary run directory per campaign."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.campaign.plan import RunOptions
from harness.campaign.run import run_campaign
from harness.corpus.entries import CORPUS, Kind, KnownBug, by_id
from harness.errors import InputError
from harness.images.buildlog import tree_series
from harness.images.kernel import (
    apply_edits,
    build_edited_tree,
    bzimage_version,
    check_tree,
    linux_source_tree,
    tree_key,
)
from harness.report.corpus import write_corpus_html
from harness.report.html import write_report
from harness.report.summary import Corpus, Summary, load_summary
from harness.rundir import Run, require_out
from harness.version import crashtest_version

# A revert counts as caught when at least this share of its runs catch it.
CAUGHT_RATE = 0.9
DEFAULT_RUNS = 5
DEFAULT_STATES = 30
DEFAULT_CUTS = 1

log = logging.getLogger(__name__)


class Role:
    BUGGY = "buggy"  # the fix undone (revert), or stock where it was never fixed
    STOCK = "stock"  # the tree as given: the false-positive baseline


@dataclass
class CorpusOptions:
    tree: Path | None = None  # a 6.12 tree (none: Debian's linux-source-6.12, fetched)
    kernel: str | None = None  # instead of a tree: only the baseline, on this kernel
    only: str | None = None  # comma list of entry ids
    runs: int = DEFAULT_RUNS
    baseline_runs: int = 1
    states: int = DEFAULT_STATES
    cuts: int = DEFAULT_CUTS
    seed: int = 1
    out: Path = Path("results")
    accel: str | None = None
    jobs: int = 2
    saved_guests: bool = True


@dataclass
class Plan:
    entries: list[KnownBug]
    tree: Path | None
    kernel: str | None


def select(only: str | None) -> list[KnownBug]:
    known = by_id()
    if only is None:
        return list(CORPUS)
    ids = [i.strip() for i in only.split(",") if i.strip()]
    if not ids:
        raise InputError("ONLY is empty")
    bad = [i for i in ids if i not in known]
    if bad:
        raise InputError(f"corpus entry {bad[0]!r}: not in the corpus ({', '.join(known)})")
    return [known[i] for i in dict.fromkeys(ids)]


def validate(opts: CorpusOptions) -> Plan:
    entries = select(opts.only)
    if opts.runs < 1 or opts.baseline_runs < 0:
        raise InputError(
            f"RUNS must be at least 1 and BASELINE_RUNS at least 0, got "
            f"{opts.runs} and {opts.baseline_runs}"
        )
    if opts.states < 0 or opts.cuts < 0 or opts.states + opts.cuts == 0:
        raise InputError(
            f"STATES ({opts.states}) and CUTS ({opts.cuts}) must be >= 0 and not both 0"
        )
    if opts.jobs < 1:
        raise InputError(f"JOBS must be at least 1, got {opts.jobs}")
    if opts.tree is not None and opts.kernel is not None:
        raise InputError(
            "give a kernel source tree (TREE) or a kernel (KERNEL, the baseline alone), not both"
        )
    tree = opts.tree
    if tree is not None:
        check_tree(tree, "TREE")
        for bug in entries:  # before any build: a tree they do not fit fails at once
            try:
                apply_edits(tree, bug.edits_for(tree_series(tree)), dry_run=True)
            except InputError as e:
                raise InputError(f"corpus entry {bug.id}: {e}") from e
    return Plan(entries, tree, opts.kernel)


def roles(bug: KnownBug, plan: Plan) -> list[str]:
    """Which kernels an entry runs on: a revert on the edited and the stock tree;
    a bug present in stock, or a control, on the stock tree (a control with an
    edit on both)."""
    if plan.tree is None:
        return [Role.STOCK]
    if bug.kind == Kind.PRESENT:  # the buggy side, unless the tree has the fix
        return [Role.STOCK if bug.fixed_in_series(tree_series(plan.tree)) else Role.BUGGY]
    if bug.kind == Kind.CONTROL and not bug.edits:
        return [Role.STOCK]
    return [Role.BUGGY, Role.STOCK]


def runs_of(role: str, bug: KnownBug, opts: CorpusOptions) -> int:
    if role == Role.BUGGY or bug.kind == Kind.CONTROL:
        return opts.runs
    return opts.baseline_runs


@dataclass
class Build:
    kernel: str  # what --kernel gets: a bzImage path or a Debian package
    version: str = ""
    build_s: float = 0.0
    edits: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "kernel": self.kernel,
            "version": self.version,
            "build_s": self.build_s,
            "edits": self.edits,
        }


@dataclass
class Outcome:
    """One campaign of one entry on one kernel."""

    seed: int
    run_dir: str
    verdict: str  # caught | clean | error
    wall_s: float
    violations: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "run_dir": self.run_dir,
            "verdict": self.verdict,
            "wall_s": self.wall_s,
            "violations": self.violations,
            "error": self.error,
        }


def outcome_of(summary: Summary, run_dir: str, seed: int, wall_s: float) -> Outcome:
    """Caught: a violation in some state; error: a state the harness could not
    decide and no violation; else clean. Each distinct signature once, with the
    first state that showed it and its evidence."""
    seen: dict[str, dict[str, Any]] = {}
    errors = []
    for b in summary.backends:
        for s in b.states:
            if s.harness_error:
                errors.append(f"{s.state}: {s.harness_error}")
            for v in s.violations:
                if not v.fails:  # space docker did not free: not a crash bug
                    continue
                entry = seen.setdefault(
                    v.signature,
                    {
                        "signature": v.signature,
                        "class": str(v.cls),
                        "fault": str(v.fault),
                        "promise": v.promise,
                        "state": v.state,
                        "states": 0,
                        "evidence": v.evidence,
                        "bundle": s.bundle,
                    },
                )
                entry["states"] += 1
    verdict = "caught" if seen else ("error" if errors else "clean")
    return Outcome(
        seed, run_dir, verdict, round(wall_s, 1), list(seen.values()), "; ".join(errors[:3])
    )


def expectation(
    bug: KnownBug, results: dict[str, list[Outcome]], tree_has_fix: bool = False
) -> tuple[str, bool]:
    """The entry's result in words, and whether it is what the corpus expects.
    `tree_has_fix`: a bug present in 6.12 run on a tree that has its fix (7.2):
    the fixed side, which must be clean."""

    def rate(role: str) -> tuple[int, int]:
        got = results.get(role, [])
        return sum(1 for o in got if o.verdict == "caught"), len(got)

    def errors(role: str) -> int:
        return sum(1 for o in results.get(role, []) if o.verdict == "error")

    caught, n = rate(Role.BUGGY)
    false_pos, base = rate(Role.STOCK)
    if errors(Role.BUGGY) or errors(Role.STOCK):
        return "harness errors in some runs", False
    if bug.kind == Kind.CONTROL:
        fp = caught + false_pos
        return (
            (f"clean in {n + base} runs", True)
            if fp == 0
            else (f"false positive: a violation in {fp} of {n + base} runs", False)
        )
    if tree_has_fix:
        return (
            (f"clean in {base} runs: the tree has the fix ({bug.fixed_in})", True)
            if false_pos == 0
            else (
                f"caught in {false_pos} of {base} runs although the tree has the fix "
                f"({bug.fixed_in})",
                False,
            )
        )
    if n == 0:  # no tree: the baseline alone
        return (
            (f"clean in {base} runs on the given kernel", True)
            if false_pos == 0
            else (
                f"caught in {false_pos} of {base} runs on the given kernel",
                bug.kind == Kind.PRESENT,
            )
        )
    words = f"caught in {caught} of {n} runs"
    ok = caught >= CAUGHT_RATE * n
    if base:
        words += (
            f"; stock tree: a violation in {false_pos} of {base} runs"
            if false_pos
            else f"; stock tree clean in {base} runs"
        )
        ok = ok and false_pos == 0
    return words, ok


def run_corpus(opts: CorpusOptions, progress: Callable[[str], None] | None = None) -> Path:
    """Run the plan; return the corpus run directory (corpus.json, corpus.html and
    one campaign directory per entry, kernel and run). Interrupted: what finished
    is written, marked incomplete, and the interrupt goes on."""
    say = progress or log.info
    plan = validate(opts)
    require_out(opts.out)
    if plan.tree is None and plan.kernel is None:  # Debian's tree, fetched once
        plan.tree = linux_source_tree()
        validate(replace(opts, tree=plan.tree))
    run = Run(opts.out / "corpus", opts.seed)
    run_dir, run_id = run.dir, run.id
    builds: dict[str, Build] = {}
    build_failed: dict[str, str] = {}
    results: dict[str, dict[str, list[Outcome]]] = {b.id: {} for b in plan.entries}
    tree_id = tree_key(plan.tree) if plan.tree else ""
    started = time.monotonic()

    def write(incomplete: str = "") -> None:
        entries = []
        for bug in plan.entries:
            has_fix = plan.tree is not None and bug.fixed_in_series(tree_series(plan.tree))
            words, ok = expectation(bug, results[bug.id], has_fix)
            if bug.id in build_failed:
                words, ok = f"its kernel did not build: {build_failed[bug.id]}", False
            res = results[bug.id]
            entries.append(
                {
                    **bug.to_json(),
                    "result": words,
                    "as_expected": ok,
                    "builds": {
                        r: builds[_build_key(bug, r)].to_json()
                        for r in res
                        if _build_key(bug, r) in builds
                    },
                    "runs": {r: [o.to_json() for o in outs] for r, outs in res.items()},
                    "rate": {r: _rate(outs) for r, outs in res.items()},
                    "harness_failed": bug.id in build_failed
                    or any(o.verdict == "error" for outs in res.values() for o in outs),
                }
            )
        corpus = Corpus.model_validate(
            {
                "run_id": run_id,
                "crashtest_version": crashtest_version(),
                "tree": str(plan.tree or ""),
                "tree_key": tree_id,
                "kernel": plan.kernel or "",
                "runs": opts.runs,
                "baseline_runs": opts.baseline_runs,
                "states": opts.states,
                "cuts": opts.cuts,
                "seed": opts.seed,
                "caught_rate": CAUGHT_RATE,
                "wall_s": round(time.monotonic() - started, 1),
                "complete": not incomplete,
                "incomplete": incomplete,
                "entries": entries,
            }
        )
        corpus.write(run_dir)
        write_corpus_html(corpus, run_dir / "corpus.html")

    def finish(incomplete: str) -> None:
        write(incomplete)
        if not incomplete:  # a report of the campaigns, once they all ran
            write_report([run_dir], run_dir / "report.html")

    with run.lifetime(finish):
        for bug in plan.entries:
            for role in roles(bug, plan):
                try:
                    build = _kernel_for(bug, role, plan, builds, say)
                except InputError as e:  # this entry's kernel does not build: the others may
                    say(f"{bug.id}: the {role} kernel did not build: {e}")
                    build_failed[bug.id] = str(e)
                    write()
                    continue
                for i in range(runs_of(role, bug, opts)):
                    seed = opts.seed + i
                    say(f"{bug.id} on the {role} kernel, run {i + 1} (seed {seed})")
                    results[bug.id].setdefault(role, []).append(
                        _campaign(bug, role, build, seed, opts, run_dir)
                    )
                    write()
    return run_dir


def _rate(outs: list[Outcome]) -> dict[str, object]:
    caught = sum(1 for o in outs if o.verdict == "caught")
    return {
        "caught": caught,
        "runs": len(outs),
        "rate": round(caught / len(outs), 3) if outs else 0.0,
    }


def _build_key(bug: KnownBug, role: str) -> str:
    return f"{bug.id}:{role}" if role == Role.BUGGY and bug.edits else "stock"


def _kernel_for(
    bug: KnownBug, role: str, plan: Plan, builds: dict[str, Build], say: Callable[[str], None]
) -> Build:
    key = _build_key(bug, role)
    if key in builds:
        return builds[key]
    if plan.tree is None:
        builds[key] = Build(plan.kernel or "")
        return builds[key]
    edits = bug.edits_for(tree_series(plan.tree)) if key != "stock" else ()
    say(
        f"kernel for {bug.id if edits else 'the stock tree'}: "
        + (
            f"{len(edits)} edit(s) to {', '.join(sorted({e.path for e in edits}))}"
            if edits
            else "the tree as given"
        )
    )
    t = time.monotonic()
    image = build_edited_tree(plan.tree, edits)
    builds[key] = Build(
        str(image), bzimage_version(image), round(time.monotonic() - t, 1), len(edits)
    )
    return builds[key]


def _campaign(
    bug: KnownBug, role: str, build: Build, seed: int, opts: CorpusOptions, run_dir: Path
) -> Outcome:
    out = run_dir / bug.id / role
    t = time.monotonic()
    camp = run_campaign(
        RunOptions(
            backends=bug.backend,
            cuts=opts.cuts,
            states=opts.states,
            kernel=build.kernel,
            seed=seed,
            out=out,
            accel=opts.accel,
            mount_options=bug.mount_options,
            jobs=opts.jobs,
            workload=bug.workload,
            saved_guests=opts.saved_guests,
        )
    )
    summary = load_summary(camp)
    if not build.version:  # a Debian package: its version is known once fetched
        build.version = str(summary.kernel_info.get("version", ""))
    return outcome_of(summary, str(camp.relative_to(run_dir)), seed, time.monotonic() - t)


__all__ = [
    "CORPUS",
    "DEFAULT_CUTS",
    "DEFAULT_RUNS",
    "DEFAULT_STATES",
    "CorpusOptions",
    "Kind",
    "KnownBug",
    "run_corpus",
]
