"""An explore run's inputs, checked (one line and exit 2 for each bad one), and
the programs they stand for."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from crashtest_guest.protocol import ExploreRequest, Op
from harness.errors import InputError
from harness.explore.generate import MAX_LENGTH, Grammar, exhaustive, random_program
from harness.explore.results import ExploreSummary
from harness.report.known import KnownList, load_known
from harness.rundir import require_out
from harness.version import crashtest_version

FILESYSTEMS = ("btrfs", "ext4", "xfs")
CHOICES = (*FILESYSTEMS, *(f"{f}-overlay" for f in FILESYSTEMS))
# Background commits kept out of a program's window, as fstests does for its
# log-replay tests; xfs has no such option (its log worker runs every 30 s).
MOUNT_OPTIONS = {"btrfs": "commit=300", "ext4": "commit=300", "xfs": ""}
MAX_PROGRAMS = 1_000_000


@dataclass
class ExploreOptions:
    kernel: str | None = None
    fs: str = "btrfs,ext4,xfs"
    mode: str = "random"
    length: int = 32
    programs: int = 100
    minutes: float = 0.0  # 0: no time budget
    seed: int = 1
    ops: str | None = None
    lost: int = 1
    fsck: bool = True
    jobs: int = 2
    minimize: bool = True
    out: Path = Path("results")
    resume: Path | None = None
    accel: str | None = None
    known: Path | None = None  # known failures: matched findings do not fail the run


@dataclass(frozen=True)
class Plan:
    filesystems: tuple[str, ...]
    grammar: Grammar
    options: ExploreOptions
    known: KnownList = field(default_factory=KnownList)


def parse_filesystems(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    bad = [n for n in names if n not in CHOICES]
    if bad or not names:
        raise InputError(
            f"--fs: unknown filesystem {bad[0] if bad else text!r} (known: {', '.join(CHOICES)})"
        )
    return names


def validate(opts: ExploreOptions) -> Plan:
    """Every input checked before anything boots: one line each."""
    filesystems = parse_filesystems(opts.fs)
    grammar = Grammar.parse(opts.ops)
    if opts.mode not in ("random", "exhaustive"):
        raise InputError(f"--mode: {opts.mode!r} is not random or exhaustive")
    top = 3 if opts.mode == "exhaustive" else MAX_LENGTH
    if not 1 <= opts.length <= top:
        raise InputError(f"--length: {opts.length} is out of range 1..{top} for {opts.mode}")
    if not 1 <= opts.programs <= MAX_PROGRAMS:
        raise InputError(f"--programs: {opts.programs} is out of range 1..{MAX_PROGRAMS}")
    if opts.minutes < 0 or opts.lost < 0 or opts.lost > 64 or opts.jobs < 1:
        raise InputError(
            f"--minutes ({opts.minutes}) must be >= 0, --lost ({opts.lost}) 0..64, "
            f"--jobs ({opts.jobs}) >= 1"
        )
    known = load_known(opts.known) if opts.known is not None else KnownList()
    if opts.resume is not None:
        meta_path = opts.resume / "explore.json"
        if not meta_path.is_file():
            raise InputError(f"--resume {opts.resume}: no explore.json (not an explore run)")
        try:
            meta = ExploreSummary.model_validate_json(meta_path.read_text()).meta
        except ValueError as e:
            raise InputError(f"--resume {opts.resume}: explore.json unreadable: {e}") from e
        if meta.version.split("+")[0] != crashtest_version().split("+")[0]:
            raise InputError(
                f"--resume {opts.resume}: made by crashtest {meta.version}, this is "
                f"{crashtest_version()}: its programs would not be the same"
            )
        resumed = replace(
            opts,
            fs=",".join(meta.filesystems),
            mode=meta.mode,
            length=meta.length,
            seed=meta.seed,
            ops=",".join(meta.ops),
            lost=meta.lost,
            fsck=meta.fsck,
            minimize=meta.minimize,
            kernel=meta.kernel_spec or None,
            programs=meta.budget_programs,
            minutes=meta.budget_minutes,
            out=opts.resume.parent,  # where `latest` is
        )
        filesystems, grammar = tuple(meta.filesystems), Grammar.parse(",".join(meta.ops))
        plan = Plan(filesystems, grammar, resumed, known)
        if meta.programs_digest != programs_digest(plan):
            raise InputError(
                f"--resume {opts.resume}: its programs are not the ones this crashtest "
                "makes for its seed (the generator changed since)"
            )
        return plan
    require_out(opts.out)
    return Plan(filesystems, grammar, opts, known)


def programs_digest(plan: Plan) -> str:
    """A digest of a run's first eight programs: the same options make the
    same programs only with the same generator."""
    first = replace(plan, options=replace(plan.options, programs=8))
    made = [program(first, i, ops) for i, ops in programs(first, set())]
    text = json.dumps([[op.to_json() for op in prog] for prog in made], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def programs(plan: Plan, skip: set[int]) -> list[tuple[int, tuple[Op, ...] | None]]:
    """The run's programs not in `skip`, by index. A random program is made
    where it runs (None here: index and seed are the program); an exhaustive
    one only comes in its enumeration's order, so it is made here."""
    o = plan.options
    if o.mode == "random":
        return [(i, None) for i in range(o.programs) if i not in skip]
    out: list[tuple[int, tuple[Op, ...] | None]] = []
    for i, prog in enumerate(exhaustive(plan.grammar, o.length)):
        if i >= o.programs:
            break
        if i not in skip:
            out.append((i, prog))
    return out


def program(plan: Plan, index: int, ops: tuple[Op, ...] | None) -> tuple[Op, ...]:
    o = plan.options
    return ops if ops is not None else random_program(plan.grammar, o.seed, index, o.length)


def request(fs: str, ops: tuple[Op, ...], opts: ExploreOptions, index: int) -> ExploreRequest:
    base, _, overlay = fs.partition("-")
    return ExploreRequest(
        base,
        ops,
        overlay=bool(overlay),
        mount_options=MOUNT_OPTIONS[base],
        lost=opts.lost,
        seed=opts.seed * 1_000_003 + index,
        fsck=opts.fsck,
    )
