"""The orchestrator: workload + options → plan → units (live cut | lost-cache
recording) → results (summary.json, JUnit, results/latest)."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import time
from pathlib import Path

from harness.campaign.context import CampaignConfig, Progress
from harness.campaign.plan import (
    RunOptions,
    campaign_key,
    kernel_specs,
    parse_cut_at,
    parse_shard,
    plan_units,
    validate,
)
from harness.campaign.pool import ProgressBar, UnitJob, UnitResult, run_units
from harness.errors import InputError
from harness.images import ensure_images
from harness.model import UnitKind
from harness.report.results import BackendSummary, point_latest, write_junit, write_summary
from harness.storage.damage import INJECTIONS, zero_layer_file
from harness.vm import accel as accel_mod
from harness.workloads.api import Workload
from harness.workloads.load import load_workload

MIN_FREE_BYTES = 2 << 30  # a unit's disks and write log, before compression


def check_out(out: Path) -> None:
    """OUT must be a directory we can write, on a filesystem with room for a unit."""
    if out.exists() and not out.is_dir():
        raise InputError(f"OUT {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".crashtest-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InputError(f"OUT {out}: cannot write results there ({e.strerror})") from e
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise InputError(f"OUT {out}: only {free >> 20} MiB free; a campaign needs at least "
                         f"{MIN_FREE_BYTES >> 20} MiB for its disks and write logs")


def damage_for(name: str | None, workload: Workload) -> str:
    """The guest command `--inject NAME` runs on each recovered tree (self-test)."""
    if name is None:
        return ""
    if name not in INJECTIONS:
        raise InputError(f"inject {name!r}: choose one of {', '.join(INJECTIONS)}")
    if not workload.damage_target:
        raise InputError(f"inject {name!r}: workload {workload.name} names no damage_target")
    return zero_layer_file(workload.damage_target)


def run_campaign(opts: RunOptions, progress: Progress | None = None) -> Path:
    """Run the campaign (or this job's shard of it); return the finished run
    directory. An interrupted or failed run leaves no partial directory behind."""
    say = progress or functools.partial(print, flush=True)
    backends = validate(opts)
    shard_i, shard_n = parse_shard(opts.shard)
    check_out(opts.out)
    workload = load_workload(opts.workload, opts.seed)
    fixed = parse_cut_at(opts.cut_at, workload) if opts.cut_at else None
    damage = damage_for(opts.inject, workload)
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
    cfgs = [CampaignConfig(images=images, accel=accel, workload=workload,
                           run_dir=partial / kd, memory_mb=opts.memory_mb,
                           keep_disks=opts.keep_disks, damage=damage,
                           minimize_steps=opts.minimize_steps,
                           daemon_checks=opts.daemon_checks, resume=opts.saved_guests)
            for images, kd in zip(all_images, kdirs, strict=True)]
    units = plan_units(opts, backends, len(all_images), workload, fixed)
    mine = [u.index for u in units if u.index % shard_n == shard_i - 1]
    total_states = sum(1 if units[i].kind == UnitKind.LIVE else opts.states for i in mine)
    say(f"crashtest: {len(mine)} of {len(units)} units"
        + (f" (shard {shard_i}/{shard_n})" if shard_n > 1 else "")
        + f", about {total_states} states, {opts.jobs} at a time")
    bar = ProgressBar(total_states, say)
    try:
        done: dict[int, UnitResult] = {}

        def finished(r: UnitResult) -> None:
            done[r.unit] = r
            bar.advance(len(r.states), sum(1 for s in r.states if s.verdict == "violation"))

        many = len(cfgs) > 1
        jobs = [UnitJob(units[i], cfgs[units[i].kernel], opts.states,
                        units[i].label(cfgs[units[i].kernel].images.kernel.version
                                       if many else ""))
                for i in mine]
        # Longest first, so parallel workers finish together: a unit of replayed
        # states takes many times a live cut.
        jobs.sort(key=lambda j: j.unit.kind != UnitKind.REPLAY)
        run_units(jobs, opts.jobs, finished)
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
            "run_id": run_id, "seed": opts.seed, "workload": workload.name,
            "workload_source": workload.source, "workload_digest": workload.digest,
            "workload_steps": workload.step_names,
            "kernel_info": all_images[0].kernel.info,
            "kernels": [i.kernel.info for i in all_images],
            "image_manifest": {k: v for k, v in all_images[0].root.manifest.items()
                               if k != "packages"},
            "image_packages": all_images[0].root.key_packages(),
            "host": platform.node(), "qemu": shutil.which("qemu-system-x86_64") or "",
            "injected": opts.inject or "", "jobs": opts.jobs,
            "campaign": campaign_key(opts, backends, versions, workload),
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


__all__ = ["CampaignConfig", "Progress", "RunOptions", "run_campaign"]
