"""The default campaign end to end: images, every backend's cut cycles, results."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.campaign import CampaignConfig, Progress, Tamper, run_state
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


def parse_cut_at(spec: str, steps: list[str]) -> CutPlan:
    """`STEP`, `after:STEP` or `during:STEP:SECONDS`."""
    parts = spec.split(":")
    kind = parts[0] if parts[0] in ("after", "during") else "after"
    rest = parts[1:] if parts[0] in ("after", "during") else parts
    if not rest or rest[0] not in steps:
        raise InputError(f"CUT_AT {spec!r}: step must be one of {', '.join(steps)}")
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
    return parse_backends(opts.backends, opts.mkfs_options, opts.mount_options)


def run_campaign(opts: RunOptions, progress: Progress | None = None) -> Path:
    """Run the campaign; return the finished run directory. An interrupted or failed
    run leaves no partial directory behind."""
    say = progress or functools.partial(print, flush=True)
    backends = validate(opts)
    workload = default_workload(opts.seed)
    fixed = parse_cut_at(opts.cut_at, workload.step_names) if opts.cut_at else None
    tamper = _tamper_for(opts.inject, workload)
    accel, why = accel_mod.choose(opts.accel)
    t_img = time.monotonic()
    images = ensure_images(opts.kernel, opts.kernel_modules)
    say(f"crashtest: kernel {images.kernel.version}, image {images.root.manifest_id}, "
        f"accel {accel} ({why}); images ready in {time.monotonic() - t_img:.1f}s")

    results = opts.out
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-s{opts.seed}"
    partial = results / f".{run_id}.partial"
    partial.mkdir(parents=True, exist_ok=False)

    def cfg_for(b: Backend) -> CampaignConfig:
        return CampaignConfig(images=images, accel=accel, workload=workload, seed=opts.seed,
                              run_dir=partial, memory_mb=opts.memory_mb,
                              keep_disks=opts.keep_disks, tamper=tamper)

    try:
        summaries = []
        for b in backends:
            plans = [fixed] * opts.cuts if fixed else plan_cuts(
                opts.seed, b.name, opts.cuts, workload.step_names)
            summary = BackendSummary(b.name, images.kernel.version, images.root.manifest_id,
                                     accel, opts.cuts, b.describe())
            t0 = time.monotonic()
            for i, plan in enumerate(plans):
                say(f"[{b.name} {i + 1}/{len(plans)}] cut {plan.describe()}")
                res = run_state(cfg_for(b), b, i, plan, say)
                summary.states.append(res)
                detail = res.harness_error or "; ".join(
                    f"{n}x {h}" for h, n in Counter(
                        f"[{v.cls}] {v.promise}" for v in res.violations).items())
                say(f"  => {res.verdict.upper()} in {res.wall_s:.0f}s" +
                    (f": {detail}" if detail else ""))
            if opts.states:
                say(f"[{b.name} lost cache] recording the workload's writes")
                replayed, stats = run_replay(cfg_for(b), b, opts.states, say)
                summary.states.extend(replayed)
                summary.replay = stats
                bad = [r for r in replayed if r.verdict != "pass"]
                say(f"  => {len(replayed) - len(bad)}/{len(replayed)} lost-cache states pass")
            summary.wall_s = time.monotonic() - t0
            summaries.append(summary)
        meta = {
            "run_id": run_id, "seed": opts.seed, "workload": "default",
            "workload_steps": workload.step_names, "kernel_info": images.kernel.info,
            "image_manifest": {k: v for k, v in images.root.manifest.items()
                               if k != "packages"},
            "image_packages": images.root.key_packages(),
            "host": platform.node(), "qemu": shutil.which("qemu-system-x86_64") or "",
            "injected": opts.inject or "",
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
