"""From findings to something a maintainer can act on: each group's program
minimized (operations dropped while the same signature still fails, in a
guest), then written as a bundle (`explore-bundle.json`), a standalone
reproducer (`reproduce.py`: python3 and dm-log-writes, no crashtest) and a
report (`report.txt`)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from crashtest_guest.protocol import CrashState, ExploreOutcome, Op, ViolationClass
from harness.errors import InputError
from harness.explore.generate import Grammar
from harness.explore.guest import Guest
from harness.explore.model import Invalid, Promise, Tree, describe, promises, simulate, value
from harness.explore.plan import MOUNT_OPTIONS, ExploreOptions, Plan, request
from harness.explore.reproducer import Expect, reproducer_script
from harness.explore.results import ProgramRecord
from harness.explore.verdicts import discrepancies, outcome_verdicts
from harness.model import Violation
from harness.rundir import write_atomic
from harness.version import crashtest_version

log = logging.getLogger(__name__)
MAX_GROUPS = 12  # minimized per run (each takes a guest a minute or two)


class ExploreBundle(BaseModel):
    """Everything needed to run a finding again: the program, where, and what
    must come out."""

    kind: str = "explore"
    version: str
    kernel_spec: str
    kernel: str
    fs: str
    filesystems: list[str]  # a discrepancy needs the others to compare with
    ops: list[dict[str, object]]
    signature: str  # the violation's own signature (without the filesystem)
    violation: dict[str, object]
    lost: int
    seed: int


def valid(ops: tuple[Op, ...]) -> bool:
    """Every operation is one the model accepts, and the program ends in a
    persistence point."""
    tree = Tree()
    try:
        for op in ops:
            tree.apply(op)
    except (Invalid, KeyError):
        return False
    return bool(ops) and ops[-1].kind.persists


def verdicts_for(
    plan: Plan, fs: str, filesystems: list[str], ops: tuple[Op, ...], guest: Guest
) -> list[Violation]:
    """Run `ops` on `fs` (and every filesystem, for a discrepancy) and judge."""
    outcomes: dict[str, ExploreOutcome] = {}
    for f in filesystems:
        outcomes[f] = guest.run(request(f, ops, plan.options, 0))
    found = outcome_verdicts(fs, ops, outcomes[fs])
    if len(filesystems) >= 3:
        found += [v for v in discrepancies(ops, outcomes) if v.state.startswith(f"{fs}:")]
    return found


def minimize(ops: tuple[Op, ...], fails: Callable[[tuple[Op, ...]], bool]) -> tuple[Op, ...]:
    """Drop operations one at a time, last first, keeping every drop after which
    `fails(program)` still holds, until no single drop does."""
    changed = True
    while changed:
        changed = False
        for i in reversed(range(len(ops))):
            candidate = ops[:i] + ops[i + 1 :]
            if valid(candidate) and fails(candidate):
                ops = candidate
                changed = True
                break
    return ops


def slug(signature: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", signature.lower()).strip("-")[:80]


def expectations(ops: tuple[Op, ...], v: Violation) -> list[Expect]:
    """What the reproducer checks: after each persistence point, the broken
    fact's allowed values at its path; for a name, the kinds it may hold and
    the contents it must not (an object a fsync took the name from)."""
    trees = simulate(ops)
    if trees is None:
        return []
    made = promises(ops, trees, tuple(0 for _ in ops))
    m = re.match(r"(\w+) of (\S+) is ", v.evidence.get("found", ""))
    if not m:
        return []
    fact_name, path = m.group(1), m.group(2)
    out = []
    for k, op in enumerate(ops):
        if not op.kind.persists:
            continue
        state = CrashState(f"op{k}", 0, k, k)
        if fact_name == "entry":
            kinds, not_sha = _entry_allowed(made, trees, state, path)
            if kinds is None and not not_sha:
                continue
            allowed = sorted(kinds, key=str) if kinds is not None else []
            out.append(Expect(k, describe(op), "entry", path, allowed, sorted(not_sha)))
        else:
            values = _value_allowed(made, trees, state, fact_name, path)
            if values is not None:
                out.append(Expect(k, describe(op), fact_name, path, sorted(values, key=str)))
    return out


def _entry_allowed(
    made: list[Promise], trees: list[Tree], state: CrashState, path: str
) -> tuple[set[object] | None, set[str]]:
    """The kinds the name may hold (its latest promised entry) and the file
    contents it must not (objects a fsync took it from)."""
    head, _, name = path.rpartition("/")
    window = trees[: state.issued_through + 2]
    kinds: set[object] | None = None
    not_sha: set[str] = set()
    for p in reversed(made):
        if p.op > state.durable_through:
            continue
        tree = trees[p.op + 1]
        for f in p.facts:
            if f[0] not in ("e", "gone") or f[2] != name:
                continue
            if tree.path_of(int(str(f[1]))) != head:
                continue
            if f[0] == "e" and kinds is None:
                vals = {value(t, f) for t in window[p.op + 1 :]}
                kinds = {v[0] if isinstance(v, tuple) else None for v in vals}
            elif f[0] == "gone":
                gone = int(str(f[3]))
                not_sha |= {
                    str(value(t, ("data", gone)))
                    for t in trees
                    if gone in t.inodes and t.inodes[gone].kind == "f"
                }
        if kinds is not None:
            break
    return kinds, not_sha


def _value_allowed(
    made: list[Promise], trees: list[Tree], state: CrashState, fact_name: str, path: str
) -> set[object] | None:
    window = trees[: state.issued_through + 2]
    for p in reversed(made):
        if p.op > state.durable_through:
            continue
        tree = trees[p.op + 1]
        for f in p.facts:
            if f[0] == fact_name and tree.lookup(path) == f[1]:
                return {value(t, f) for t in window[p.op + 1 :]}
    return None


def write_findings(run_dir: Path, plan: Plan, records: list[ProgramRecord]) -> None:
    """Minimize each failing group (and each discrepancy) once, and bundle it."""
    firsts: dict[str, tuple[ProgramRecord, str, Violation]] = {}
    for r in records:
        for fsr in r.results:
            for vd in fsr.violations:
                v = Violation.from_json(vd)
                if v.cls is ViolationClass.HARNESS_ERROR:
                    continue
                firsts.setdefault(f"{fsr.fs} | {v.signature()}", (r, fsr.fs, v))
    index_path = run_dir / "findings" / "index.json"
    index: dict[str, dict[str, object]] = (
        json.loads(index_path.read_text()) if index_path.is_file() else {}
    )
    # failing findings first, discrepancies after: the budget goes where it matters
    todo = sorted((s for s in firsts if s not in index), key=lambda s: not firsts[s][2].fails)
    todo = todo[:MAX_GROUPS]
    if not todo:
        return
    opts = plan.options
    guest = Guest(opts.kernel, opts.accel, run_dir / "console-minimize")
    try:
        for sig in todo:
            record, fs, v = firsts[sig]
            ops = tuple(Op.from_json(o) for o in record.ops)
            filesystems = list(plan.filesystems) if v.cls is ViolationClass.DISCREPANCY else [fs]
            target = v.signature()

            def fails(
                prog: tuple[Op, ...],
                fs: str = fs,
                fss: list[str] = filesystems,
                t: str = target,
            ) -> bool:
                found = verdicts_for(plan, fs, fss, prog, guest)
                return any(x.signature() == t for x in found)

            log.info("minimizing %s (%d operations)", sig, len(ops))
            small = minimize(ops, fails)
            found = verdicts_for(plan, fs, filesystems, small, guest)
            shown = next((x for x in found if x.signature() == target), v)
            name = slug(sig)
            bundle = write_bundle(
                run_dir / "findings" / name, plan, fs, filesystems, small, shown, guest
            )
            index[sig] = {
                "ops": [describe(o) for o in small],
                "shape": ",".join(o.kind.value for o in small),
                "bundle": str(bundle.relative_to(run_dir)),
            }
            write_atomic(index_path, json.dumps(index, indent=2))
    finally:
        guest.stop()


def write_bundle(
    where: Path,
    plan: Plan,
    fs: str,
    filesystems: list[str],
    ops: tuple[Op, ...],
    v: Violation,
    guest: Guest,
) -> Path:
    opts = plan.options
    where.mkdir(parents=True, exist_ok=True)
    bundle = ExploreBundle(
        version=crashtest_version(),
        kernel_spec=opts.kernel or "",
        kernel=guest.images.kernel.version,
        fs=fs,
        filesystems=filesystems,
        ops=[o.to_json() for o in ops],
        signature=v.signature(),
        violation=v.to_json(),
        lost=opts.lost,
        seed=opts.seed,
    )
    write_atomic(where / "explore-bundle.json", bundle.model_dump_json(indent=2))
    base, _, overlay = fs.partition("-")
    script = reproducer_script(
        base, bool(overlay), MOUNT_OPTIONS[base], ops, expectations(ops, v), v.promise
    )
    write_atomic(where / "reproduce.py", script)
    (where / "reproduce.py").chmod(0o755)
    write_atomic(where / "report.txt", report_text(bundle, ops, v))
    return where


def report_text(bundle: ExploreBundle, ops: tuple[Op, ...], v: Violation) -> str:
    lines = [
        f"crash-consistency finding: {bundle.signature}",
        "",
        f"kernel:      {bundle.kernel} ({bundle.kernel_spec or 'the default'})",
        f"filesystem:  {bundle.fs} (mkfs defaults; mount options in reproduce.py)",
        f"verdict:     {v.cls.value}, fault: {v.fault.value}",
        f"promise:     {v.promise}",
        f"state:       {v.state}",
        "",
        "the program (each operation's return is marked in the write log):",
        *(f"  #{i} {describe(o)}" for i, o in enumerate(ops)),
        "",
        "evidence:",
        *(f"  {k}: {val}" for k, val in v.evidence.items() if k != "tree"),
        "",
        "recovered tree:",
        *(f"  {line}" for line in v.evidence.get("tree", "").splitlines()),
        "",
        "reproduce without crashtest, as root in a VM with dm-log-writes:",
        "  python3 reproduce.py      (exit 1: reproduced, 0: every promise held)",
        "reproduce with crashtest:",
        "  crashtest explore-repro <this directory>",
    ]
    return "\n".join(lines) + "\n"


def load_bundle(path: Path) -> ExploreBundle:
    f = path / "explore-bundle.json" if path.is_dir() else path
    try:
        return ExploreBundle.model_validate_json(f.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not an explore bundle ({str(e).splitlines()[0]})") from e


@dataclass
class Replayed:
    reproduced: bool
    found: list[Violation]


def replay_bundle(path: Path, accel_name: str | None = None) -> Replayed:
    """Run a bundle's program again on its kernel and filesystem(s)."""
    b = load_bundle(path)
    ops = tuple(Op.from_json(o) for o in b.ops)
    opts = ExploreOptions(kernel=b.kernel_spec or None, lost=b.lost, seed=b.seed, accel=accel_name)
    plan = Plan(tuple(b.filesystems), Grammar(), opts)
    guest = Guest(
        opts.kernel, accel_name, Path(path if path.is_dir() else path.parent) / "console-repro"
    )
    try:
        found = verdicts_for(plan, b.fs, b.filesystems, ops, guest)
    finally:
        guest.stop()
    return Replayed(any(v.signature() == b.signature for v in found), found)
