"""A live cut: fresh disk → workload in a guest → power cut through QMP → the same
kernel boots on the cut disk → the one check sequence (offline, then daemon)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from harness.campaign import snapshots
from harness.campaign.context import CampaignConfig, Progress, machine_config
from harness.errors import GuestError, GuestSetupError, HarnessError
from harness.guest import docker
from harness.model import StateResult, Violation
from harness.oracles import console as console_oracle
from harness.oracles.checker import Checker, DaemonContext, StateCheck
from harness.power.cut import CutOutcome, CutPlan, run_until_cut
from harness.repro.bundle import compress_disk, reproduces, signature
from harness.repro.capture import live_bundle, qemu_argv
from harness.repro.minimize import MinimalSteps, minimize_steps
from harness.storage.backends import DATA_SERIAL, Backend
from harness.vm.qemu import Disk
from harness.workloads.api import Workload


def run_workload(
    cfg: CampaignConfig,
    backend: Backend,
    plan: CutPlan,
    disk: Path,
    logdir: Path,
    state: str,
    progress: Progress,
) -> tuple[CutOutcome, list[Violation], dict[str, float], str]:
    vm, started, t = snapshots.docker_guest(
        cfg, backend, disk, logdir / "workload.console.log", progress
    )
    with vm:
        docker.note_versions(vm.agent, backend, logdir.parent / docker.DOCKER_JSON)
        t0 = time.monotonic()
        outcome = run_until_cut(
            vm, cfg.workload, plan, backend.driver, lambda: docker.inventory(vm.agent), progress
        )
        t["workload_s"] = round(time.monotonic() - t0, 2)
        found = console_oracle.violations(
            vm.console_since(0),
            state,
            "the kernel reports no failure during the workload before the cut",
        )
    return outcome, found, t, started


def check_cut_disk(
    cfg: CampaignConfig,
    backend: Backend,
    outcome: CutOutcome,
    disk: Path,
    logdir: Path,
    state: str,
    progress: Progress,
    observed: dict[str, str] | None = None,
) -> tuple[list[Violation], dict[str, float], bool, str]:
    """The check sequence (offline, then daemon) on the cut disk, in a checker
    guest of its own, resumed from the saved idle guest (or booted): the same
    kernel recovers the disk when it mounts it. The cut disk stays as the power
    cut left it. A guest that stops answering is diagnosed and the whole check
    retried once on a new guest; a second hang is a verdict, as for every state.
    Returns verdicts, timings, whether it retried, and how the guest started;
    `observed` receives what the workload's observed files turned out to be."""
    observed = {} if observed is None else observed
    saved = snapshots.idle_guest(cfg, progress)
    t0 = time.monotonic()
    with Checker(
        machine_config(cfg, None),
        backend,
        logdir,
        saved=saved,
        console_name="verify",
        one_state=True,
    ) as checker:
        got = checker.check(
            StateCheck(
                state,
                disk,
                tuple(outcome.ledger.in_force()),
                cfg.workload.invariants,
                tuple(outcome.observing.values()),
                after_mount=cfg.damage,
                daemon=True,
                daemon_context=DaemonContext(
                    outcome.inventory, outcome.ledger.last_point, logdir / "dockerd.log"
                ),
            )
        )
        observed.update(got.observed)
        if checker.fallback:
            progress(f"  {checker.fallback}")
        t = {
            "start_s": checker.start_s,
            **got.times,
            "verify_s": round(time.monotonic() - t0, 2),
        }
        return got.violations, t, got.retried, got.started


def _minimize_workload(
    cfg: CampaignConfig,
    backend: Backend,
    index: int,
    plan: CutPlan,
    res: StateResult,
    logdir: Path,
    progress: Progress,
) -> MinimalSteps:
    """Repeat the cut with fewer workload steps while the same promises still break."""
    want = signature(res.violations)
    work = logdir / "minimize"
    tries = 0

    def fails(workload: Workload) -> bool:
        nonlocal tries
        tries += 1
        progress(f"  minimizing steps, try {tries}: {', '.join(workload.step_names)}")
        sub = replace(
            cfg,
            workload=workload,
            run_dir=work / f"try{tries}",
            minimize_steps=0,
            bundles=False,
            keep_disks=False,
        )
        got = run_live_cut(sub, backend, index, plan, lambda _: None)
        return reproduces(want, signature(got.violations))

    try:
        minimal = minimize_steps(cfg.workload, plan.step, fails, cfg.minimize_steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(
        f"  minimal workload: {len(minimal.steps)} of {len(minimal.original)} steps "
        f"({minimal.tests} live cycles)"
    )
    return minimal


def run_live_cut(
    cfg: CampaignConfig, backend: Backend, index: int, plan: CutPlan, progress: Progress
) -> StateResult:
    state = f"{backend.name}/cut{index}/{plan.slug()}"
    res = StateResult(state=state, backend=backend.name, plan=plan.describe())
    logdir = cfg.run_dir / backend.name / f"cut{index}"
    logdir.mkdir(parents=True, exist_ok=True)
    disk = logdir / "disk.img"
    t0 = time.monotonic()
    try:
        outcome, found, t, started = run_workload(cfg, backend, plan, disk, logdir, state, progress)
        res.actual = outcome.actual
        res.last_durability_point = outcome.ledger.last_point or "(none)"
        res.promises = len(outcome.ledger.in_force())
        progress(f"  cut {outcome.actual}; {res.promises} promises in force; checking")
        vfound, vt, retried, vstarted = check_cut_disk(
            cfg, backend, outcome, disk, logdir, state, progress, res.observed
        )
        res.started = f"workload {started}, check {vstarted}"
        if retried:
            res.actual += " (check retried after the checking guest hung)"
        res.violations = found + vfound
        res.timings = {
            **{f"workload_{k}": v for k, v in t.items()},
            **{f"verify_{k}": v for k, v in vt.items()},
            "steps": sum(outcome.step_seconds.values()),
        }
        (logdir / "ledger.json").write_text(
            json.dumps([p.to_json() for p in outcome.ledger.in_force()], indent=1) + "\n"
        )
        if res.verdict == "violation" and cfg.bundles:
            minimal = (
                _minimize_workload(cfg, backend, index, plan, res, logdir, progress)
                if cfg.minimize_steps
                else None
            )
            dest = cfg.run_dir / "bundles" / state.replace("/", "-")
            argv = qemu_argv(machine_config(cfg, Disk(Path("disk.img"), DATA_SERIAL)))
            live_bundle(
                dest, cfg, backend, res, argv, outcome, disk, sorted(logdir.glob("*.log")), minimal
            )
            res.bundle = str(dest.relative_to(cfg.run_dir))
    except GuestSetupError:
        raise
    except (HarnessError, GuestError) as e:
        res.harness_error = f"{type(e).__name__}: {e}"
        tail = getattr(e, "console_tail", "")
        if tail:
            (logdir / "error.console-tail.txt").write_text(tail)
    finally:
        res.wall_s = round(time.monotonic() - t0, 1)
        # No 4 GiB sparse file stays in the results (CI artifact uploads inflate
        # them): a bundle holds the disk compressed; evidence without a bundle is
        # kept compressed here. --keep-disks keeps them as they are.
        if not cfg.keep_disks:
            if res.verdict != "pass" and not res.bundle and disk.exists():
                compress_disk(disk, logdir / "disk.qcow2")
            disk.unlink(missing_ok=True)
    (logdir / "verdict.json").write_text(json.dumps(res.to_json(), indent=1) + "\n")
    return res
