"""The default campaign end to end: images, every backend's cut cycles, results."""

from __future__ import annotations

import functools
import multiprocessing
import os
import platform
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.campaign import CampaignConfig, Progress, StateResult, Tamper, run_state
from harness.errors import InputError
from harness.guest.agent import AgentClient
from harness.images import ensure_images
from harness.power.cut import CutPlan, plan_cuts
from harness.report.results import BackendSummary, point_latest, write_junit, write_summary
from harness.storage.backends import Backend, parse_backends
from harness.storage.tamper import zero_layer_file
from harness.vm import accel as accel_mod
from harness.workloads.default import Workload, default_workload
from harness.writelog.campaign import run_replay

INJECTIONS = ("zero-layer-file",)


@dataclass
class RunOptions:
    backends: str | None = None
    cuts: int = 3
    states: int = 24  # lost-cache crash states per backend (0: live cuts only)
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
    jobs: int = 1  # units run in parallel, each with its own guests
    shard: str | None = None  # "i/N": run only this job's share of the units
    minimize_steps: int = 0  # live cycles to shrink a failing live cut's workload


def parse_cut_at(spec: str, workload: Workload) -> CutPlan:
    """`STEP`, `after:STEP`, `during:STEP:SECONDS` or `returned:STEP`."""
    steps = workload.step_names
    kinds = ("after", "during", "returned")
    parts = spec.split(":")
    kind = parts[0] if parts[0] in kinds else "after"
    rest = parts[1:] if parts[0] in kinds else parts
    if not rest or rest[0] not in steps:
        raise InputError(f"CUT_AT {spec!r}: step must be one of {', '.join(steps)}")
    if kind == "returned":
        synced = [s.name for s in workload.steps if s.sync]
        if rest[0] not in synced:
            raise InputError(f"CUT_AT {spec!r}: only a step that ends in its own sync can "
                             f"be cut before it: {', '.join(synced)}")
        return CutPlan("returned", rest[0])
    if kind == "during":
        try:
            delay = float(rest[1]) if len(rest) > 1 else 1.0
        except ValueError as e:
            raise InputError(f"CUT_AT {spec!r}: delay must be a number of seconds") from e
        return CutPlan("during", rest[0], delay)
    return CutPlan("after", rest[0])


def _tamper_for(name: str | None, workload: Workload) -> Tamper | None:
    if name is None:
        return None
    if name not in INJECTIONS:
        raise InputError(f"inject {name!r}: choose one of {', '.join(INJECTIONS)}")
    # The largest file of the app image's top data layer: never empty, so zeroing shows.
    layer3 = {k: v for k, v in workload.context.items() if k.startswith("layer3/")}
    target = "/data/l3/" + max(layer3, key=lambda k: len(layer3[k])).split("/", 1)[1]

    def tamper(agent: AgentClient, backend: Backend) -> None:
        zero_layer_file(agent, backend, target)

    return tamper


def validate(opts: RunOptions) -> list[Backend]:
    if opts.cuts < 0 or opts.states < 0 or opts.cuts + opts.states == 0:
        raise InputError(f"CUTS ({opts.cuts}) and STATES ({opts.states}) must be >= 0 "
                         "and not both 0")
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


def kernel_specs(opts: RunOptions) -> list[str | None]:
    if opts.kernels:
        specs = [k.strip() for k in opts.kernels.split(",") if k.strip()]
        if not specs:
            raise InputError("KERNELS is empty")
        return list(dict.fromkeys(specs))
    return [opts.kernel]


@dataclass(frozen=True)
class Unit:
    """One independent piece of a campaign: a live cut, or a backend's lost-cache replay."""

    index: int
    kernel: int  # index into the campaign's kernels
    backend: Backend
    kind: str  # "live" | "replay"
    cut: int = 0
    plan: CutPlan | None = None

    def label(self, kernel: str = "") -> str:
        what = f"cut {self.cut + 1}" if self.kind == "live" else "lost cache"
        return " ".join(x for x in (kernel, self.backend.name, what) if x)


def plan_units(opts: RunOptions, backends: list[Backend], nkernels: int,
               workload: Workload, fixed: CutPlan | None) -> list[Unit]:
    """Every unit of the campaign, in a fixed order that depends only on the options."""
    units: list[Unit] = []
    for k in range(nkernels):
        for b in backends:
            plans = [fixed] * opts.cuts if fixed else plan_cuts(
                opts.seed, b.name, opts.cuts, workload.step_names,
                [s.name for s in workload.steps if s.sync])
            for i, plan in enumerate(plans):
                units.append(Unit(len(units), k, b, "live", i, plan))
            if opts.states:
                units.append(Unit(len(units), k, b, "replay"))
    return units


@dataclass
class UnitResult:
    unit: int
    states: list[StateResult]
    replay: dict[str, object] = field(default_factory=dict)
    wall_s: float = 0.0


# Read by pool workers, which inherit it through fork: units hold closures
# (workload steps) that cannot be pickled.
_JOB: tuple[list[Unit], list[CampaignConfig], int] | None = None


def _run_unit(index: int) -> UnitResult:
    assert _JOB is not None
    units, cfgs, states = _JOB
    u = units[index]
    cfg = cfgs[u.kernel]
    t0 = time.monotonic()

    label = u.label(cfg.images.kernel.version if len(cfgs) > 1 else "")

    def say(msg: str) -> None:
        # One write per line: parallel workers share stdout.
        sys.stdout.write(f"[{label}] {msg.strip()}\n")
        sys.stdout.flush()

    if u.kind == "live":
        assert u.plan is not None
        say(f"cut {u.plan.describe()}")
        res = run_state(cfg, u.backend, u.cut, u.plan, say)
        detail = res.harness_error or "; ".join(
            f"{n}x {h}" for h, n in Counter(
                f"[{v.cls}, fault: {v.fault}] {v.promise}" for v in res.violations).items())
        say(f"=> {res.verdict.upper()} in {res.wall_s:.0f}s" + (f": {detail}" if detail else ""))
        return UnitResult(index, [res], wall_s=time.monotonic() - t0)
    say("recording the workload's writes")
    replayed, stats = run_replay(cfg, u.backend, states, say)
    bad = [r for r in replayed if r.verdict != "pass"]
    say(f"=> {len(replayed) - len(bad)}/{len(replayed)} lost-cache states pass")
    return UnitResult(index, replayed, stats, time.monotonic() - t0)


def _execute(todo: list[int], jobs: int, done: Callable[[UnitResult], None]) -> None:
    if jobs == 1 or len(todo) <= 1:
        for i in todo:
            done(_run_unit(i))
        return
    # Each worker runs its own guests; a worker that is stopped kills them (their
    # QEMU dies with it through pdeathsig), and terminate() stops every worker.
    pool = multiprocessing.get_context("fork").Pool(min(jobs, len(todo)))
    try:
        for r in pool.imap_unordered(_run_unit, todo):
            done(r)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def run_campaign(opts: RunOptions, progress: Progress | None = None) -> Path:
    """Run the campaign (or this job's shard of it); return the finished run
    directory. An interrupted or failed run leaves no partial directory behind."""
    global _JOB
    say = progress or functools.partial(print, flush=True)
    backends = validate(opts)
    shard_i, shard_n = parse_shard(opts.shard)
    workload = default_workload(opts.seed)
    fixed = parse_cut_at(opts.cut_at, workload) if opts.cut_at else None
    tamper = _tamper_for(opts.inject, workload)
    accel, why = accel_mod.choose(opts.accel)
    specs = kernel_specs(opts)
    t_img = time.monotonic()
    all_images = [ensure_images(k, opts.kernel_modules) for k in specs]
    for images in all_images:
        say(f"crashtest: kernel {images.kernel.version}, image {images.root.manifest_id}, "
            f"accel {accel} ({why})")
    say(f"crashtest: images ready in {time.monotonic() - t_img:.1f}s")
    versions = [i.kernel.version for i in all_images]
    if len(set(versions)) < len(versions):
        raise InputError(f"KERNELS: two of them are the same kernel ({', '.join(versions)})")

    results = opts.out
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-s{opts.seed}" + (
        f"-shard{shard_i}of{shard_n}" if shard_n > 1 else "")
    partial = results / f".{run_id}.partial"
    partial.mkdir(parents=True, exist_ok=False)
    # One kernel: backends directly under the run; several: a directory per kernel.
    kdirs = [""] if len(all_images) == 1 else list(versions)
    cfgs = [CampaignConfig(images=images, accel=accel, workload=workload, seed=opts.seed,
                           run_dir=partial / kd, memory_mb=opts.memory_mb,
                           keep_disks=opts.keep_disks, tamper=tamper,
                           minimize_steps=opts.minimize_steps)
            for images, kd in zip(all_images, kdirs, strict=True)]
    units = plan_units(opts, backends, len(all_images), workload, fixed)
    mine = [u.index for u in units if u.index % shard_n == shard_i - 1]
    total_states = sum(1 if units[i].kind == "live" else opts.states for i in mine)
    say(f"crashtest: {len(mine)} of {len(units)} units"
        + (f" (shard {shard_i}/{shard_n})" if shard_n > 1 else "")
        + f", about {total_states} states, {opts.jobs} at a time")
    bar = ProgressBar(total_states, say)
    try:
        _JOB = (units, cfgs, opts.states)
        done: dict[int, UnitResult] = {}

        def finished(r: UnitResult) -> None:
            done[r.unit] = r
            bar.advance(len(r.states), sum(1 for s in r.states if s.verdict == "violation"))

        _execute(mine, opts.jobs, finished)
        summaries = []
        for k, images in enumerate(all_images):
            for b in backends:
                summary = BackendSummary(b.name, images.kernel.version, images.root.manifest_id,
                                         accel, opts.cuts, b.describe())
                for u in units:
                    if u.kernel == k and u.backend == b and u.index in done:
                        r = done[u.index]
                        for st in r.states:
                            if st.bundle and kdirs[k]:
                                st.bundle = f"{kdirs[k]}/{st.bundle}"
                        summary.states.extend(r.states)
                        summary.wall_s += r.wall_s
                        if r.replay:
                            summary.replay = r.replay
                summaries.append(summary)
        meta = {
            "run_id": run_id, "seed": opts.seed, "workload": "default",
            "workload_steps": workload.step_names,
            "kernel_info": all_images[0].kernel.info,
            "kernels": [i.kernel.info for i in all_images],
            "image_manifest": {k: v for k, v in all_images[0].root.manifest.items()
                               if k != "packages"},
            "image_packages": all_images[0].root.key_packages(),
            "host": platform.node(), "qemu": shutil.which("qemu-system-x86_64") or "",
            "injected": opts.inject or "", "jobs": opts.jobs,
            "campaign": campaign_key(opts, backends, versions),
            "shard": {"index": shard_i, "count": shard_n, "units": mine,
                      "total_units": len(units)},
        }
        write_summary(partial, meta, summaries)
        write_junit(partial, summaries)
        final = results / run_id
        os.rename(partial, final)
        point_latest(results, final)
        return final
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        _JOB = None


def campaign_key(opts: RunOptions, backends: list[Backend],
                 versions: list[str]) -> dict[str, object]:
    """What makes two shards parts of the same campaign."""
    return {"seed": opts.seed, "cuts": opts.cuts, "states": opts.states,
            "backends": [b.describe() for b in backends], "kernels": versions,
            "cut_at": opts.cut_at or "", "inject": opts.inject or ""}


class ProgressBar:
    """One line per finished unit: states done of the total, violations, elapsed, ETA."""

    def __init__(self, total: int, say: Progress) -> None:
        self.total, self.done, self.bad, self.say = max(total, 1), 0, 0, say
        self.t0 = time.monotonic()

    def advance(self, states: int, violations: int) -> None:
        self.done += states
        self.bad += violations
        frac = min(1.0, self.done / self.total)
        elapsed = time.monotonic() - self.t0
        eta = elapsed / frac - elapsed if frac else 0.0
        filled = int(frac * 30)
        self.say(f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} states, "
                 f"{self.bad} violations, {elapsed / 60:.1f} min elapsed, "
                 f"~{eta / 60:.1f} min left")
