"""`crashtest run --dry-run`: a workload's steps once, in order, in a guest of the
campaign's first cell, with no power cut and no checks, so a workload's author
learns in a minute that its commands work and what its promises expect."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.campaign import snapshots
from harness.campaign.context import CampaignConfig, Progress
from harness.campaign.plan import RunOptions, kernel_specs, release_specs, validate
from harness.images.guest import ensure_images
from harness.vm import accel as accel_mod
from harness.workloads.load import load_workload
from harness.workloads.runner import StepRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepDone:
    name: str
    seconds: float
    promises: tuple[str, ...]  # each promise in force after it, described


def dry_run(opts: RunOptions, say: Progress = log.info) -> list[StepDone]:
    """Every step of OPTS's workload on its first backend, release and kernel.
    A failing step raises StepFailed (exit 2) with the command's output."""
    backend = validate(opts)[0]
    workload = load_workload(opts.workload, opts.seed)
    release = release_specs(opts)[0]
    accel, why = accel_mod.choose(opts.accel)
    images = ensure_images(kernel_specs(opts)[0], opts.kernel_modules, release)
    say(
        f"dry run of {workload.name} ({len(workload.steps)} steps) on {backend.name}, "
        f"kernel {images.kernel.version}, {release}, accel {accel} ({why}); no cut, no checks"
    )
    done: list[StepDone] = []
    with tempfile.TemporaryDirectory(prefix="crashtest-dry-run-") as tmp:
        cfg = CampaignConfig(
            images=images,
            accel=accel,
            workload=workload,
            run_dir=Path(tmp),
            memory_mb=opts.memory_mb,
            resume=opts.saved_guests,
        )
        vm, started, _ = snapshots.docker_guest(
            cfg, backend, Path(tmp) / "disk.img", Path(tmp) / "console.log", say
        )
        say(f"guest {started} with dockerd ready")
        with vm:
            runner = StepRunner(vm.agent, backend.driver)
            for n, step in enumerate(workload.steps, 1):
                t0 = time.monotonic()
                runner.run(step)
                runner.finish(step)
                promises = runner.settle(step)
                d = StepDone(
                    step.name,
                    round(time.monotonic() - t0, 1),
                    tuple(p.describe() for p in promises),
                )
                done.append(d)
                say(f"  step {n}/{len(workload.steps)} {step.name}: ok in {d.seconds}s")
                for p in d.promises:
                    say(f"    promises: {p}")
    return done
