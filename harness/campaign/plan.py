"""The plan of a campaign: its options checked once, and the units it is made of
(each live cut, and each backend's lost-cache recording), in a fixed order."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.images.rootfs import DEFAULT_SUITE, check_release
from harness.model import CutKind, UnitKind
from harness.power.cut import CutPlan, plan_cuts
from harness.report.results import FAIL_ON
from harness.storage.backends import Backend, parse_backends
from harness.workloads.api import Workload

# The default campaign: most of its states replayed from the write log (about a
# second each), a few live cuts (a minute each: the real thing), two units at a
# time (a TCG guest keeps about one host core busy).
DEFAULT_CUTS = 2
DEFAULT_STATES = 500
DEFAULT_JOBS = 2


@dataclass
class RunOptions:
    backends: str | None = None
    cuts: int = DEFAULT_CUTS
    states: int = DEFAULT_STATES  # lost-cache crash states per backend (0: live cuts only)
    kernel: str | None = None
    kernel_modules: str | None = None
    seed: int = 1
    out: Path = Path("results")
    accel: str | None = None
    cut_at: str | None = None
    mkfs_options: str = ""
    mount_options: str = ""
    keep_disks: bool = False
    inject: str | None = None
    memory_mb: int = 2048
    kernels: str | None = None  # comma list: run the campaign on each kernel
    jobs: int = DEFAULT_JOBS  # units run in parallel, each with its own guests
    shard: str | None = None  # "i/N": run only this job's share of the units
    minimize_steps: int = 0  # live cycles to shrink a failing live cut's workload
    workload: str = "default"  # a registered name, or a .py / .toml file
    workloads: str | None = None  # comma list: run the campaign with each workload
    release: str = DEFAULT_SUITE  # the Debian suite the guest root (and docker) comes from
    releases: str | None = None  # comma list: run the campaign on each release
    daemon_checks: bool = False  # the daemon stage on lost-cache states too
    saved_guests: bool = True  # resume guests from saved ones instead of booting each
    known: Path | None = None  # a known-failures TOML file (report.known)
    fail_on: str = ""  # "new" or "any" violations fail the run ("": new with `known`)


def options_json(opts: RunOptions) -> dict[str, Any]:
    """The options as plan.json keeps them, for `crashtest run --resume`."""
    d = asdict(opts)
    d["out"] = str(opts.out)
    d["known"] = str(opts.known) if opts.known else None
    return d


def options_from_json(d: dict[str, Any]) -> RunOptions:
    names = {f.name for f in fields(RunOptions)}
    opts = RunOptions(**{k: v for k, v in d.items() if k in names})
    opts.out = Path(str(d["out"]))
    opts.known = Path(str(d["known"])) if d.get("known") else None
    return opts


def parse_cut_at(spec: str, workload: Workload) -> CutPlan:
    """`STEP`, `after:STEP`, `during:STEP:SECONDS` or `returned:STEP`."""
    steps = workload.step_names
    kinds = [k.value for k in CutKind]
    parts = spec.split(":")
    kind = parts[0] if parts[0] in kinds else CutKind.AFTER
    rest = parts[1:] if parts[0] in kinds else parts
    if not rest or rest[0] not in steps:
        raise InputError(f"CUT_AT {spec!r}: step must be one of {', '.join(steps)}")
    if kind == CutKind.RETURNED:
        if rest[0] not in workload.synced:
            raise InputError(
                f"CUT_AT {spec!r}: only a step that ends in its own sync can "
                f"be cut before it: {', '.join(workload.synced) or 'none'}"
            )
        return CutPlan(str(CutKind.RETURNED), rest[0])
    if kind == CutKind.DURING:
        try:
            delay = float(rest[1]) if len(rest) > 1 else 1.0
        except ValueError as e:
            raise InputError(f"CUT_AT {spec!r}: delay must be a number of seconds") from e
        return CutPlan(str(CutKind.DURING), rest[0], delay)
    return CutPlan(str(CutKind.AFTER), rest[0])


def validate(opts: RunOptions) -> list[Backend]:
    if opts.cuts < 0 or opts.states < 0 or opts.cuts + opts.states == 0:
        raise InputError(
            f"CUTS ({opts.cuts}) and STATES ({opts.states}) must be >= 0 and not both 0"
        )
    if opts.fail_on not in ("", *FAIL_ON):
        raise InputError(f"FAIL_ON {opts.fail_on!r}: choose one of {', '.join(FAIL_ON)}")
    if opts.memory_mb < 512:
        raise InputError(f"memory must be at least 512 MiB, got {opts.memory_mb}")
    if opts.jobs < 1:
        raise InputError(f"JOBS must be at least 1, got {opts.jobs}")
    parse_shard(opts.shard)
    return parse_backends(opts.backends, opts.mkfs_options, opts.mount_options)


def parse_shard(spec: str | None) -> tuple[int, int]:
    """`i/N` (1 <= i <= N): this job runs every N-th unit of the campaign, from the i-th."""
    if not spec:
        return 1, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError as e:
        raise InputError(f"SHARD {spec!r}: expected i/N, e.g. 1/4") from e
    if not 1 <= i <= n:
        raise InputError(f"SHARD {spec!r}: i must be between 1 and N")
    return i, n


def _axis(name: str, many: str | None) -> list[str] | None:
    """A comma list of a matrix axis (KERNELS, WORKLOADS, RELEASES), each once."""
    if many is None:
        return None
    specs = [k.strip() for k in many.split(",") if k.strip()]
    if not specs:
        raise InputError(f"{name} is empty")
    return list(dict.fromkeys(specs))


def kernel_specs(opts: RunOptions) -> list[str | None]:
    many: list[str | None] = list(_axis("KERNELS", opts.kernels) or [])
    return many or [opts.kernel]


def workload_specs(opts: RunOptions) -> list[str]:
    return _axis("WORKLOADS", opts.workloads) or [opts.workload]


def release_specs(opts: RunOptions) -> list[str]:
    return [check_release(r) for r in _axis("RELEASES", opts.releases) or [opts.release]]


@dataclass(frozen=True)
class Cell:
    """One point of the campaign's matrix: a kernel, a release, a workload."""

    kernel: int  # index into the campaign's kernels
    release: str
    workload: Workload
    fixed: CutPlan | None  # CUT_AT, if given

    def parts(self, kernel: str) -> dict[str, str]:
        return {"workload": self.workload.name, "release": self.release, "kernel": kernel}


@dataclass(frozen=True)
class Unit:
    """One independent piece of a campaign: a live cut, or a backend's lost-cache replay."""

    index: int
    cell: int  # index into the campaign's cells
    backend: Backend
    kind: str  # a UnitKind
    cut: int = 0
    plan: CutPlan | None = None

    def label(self, cell: str = "") -> str:
        what = f"cut {self.cut + 1}" if self.kind == UnitKind.LIVE else "lost cache"
        return " ".join(x for x in (cell, self.backend.name, what) if x)


def workload_cuts(seed: int, backend: str, count: int, workload: Workload) -> list[CutPlan]:
    """The workload's own cut points in order (round and round), or seeded random ones."""
    if workload.cuts:
        plans = [parse_cut_at(c, workload) for c in workload.cuts]
        return [plans[i % len(plans)] for i in range(count)]
    return plan_cuts(seed, backend, count, workload.step_names, workload.synced)


def plan_units(opts: RunOptions, backends: list[Backend], cells: list[Cell]) -> list[Unit]:
    """Every unit of the campaign, in a fixed order that depends only on the options."""
    units: list[Unit] = []
    for c, cell in enumerate(cells):
        for b in backends:
            plans = (
                [cell.fixed] * opts.cuts
                if cell.fixed
                else workload_cuts(opts.seed, b.name, opts.cuts, cell.workload)
            )
            for i, plan in enumerate(plans):
                units.append(Unit(len(units), c, b, str(UnitKind.LIVE), i, plan))
            if opts.states:
                units.append(Unit(len(units), c, b, str(UnitKind.REPLAY)))
    return units


def campaign_key(
    opts: RunOptions,
    backends: list[Backend],
    versions: list[str],
    workloads: list[Workload],
    releases: list[str],
) -> dict[str, object]:
    """What makes two shards parts of the same campaign."""
    return {
        "seed": opts.seed,
        "cuts": opts.cuts,
        "states": opts.states,
        "backends": [b.describe() for b in backends],
        "kernels": versions,
        "cut_at": opts.cut_at or "",
        "inject": opts.inject or "",
        "workload": workloads[0].name,
        "workload_digest": workloads[0].digest,
        "workloads": [[w.name, w.digest] for w in workloads],
        "releases": releases,
    }
