"""A live cut: fresh disk → workload in a guest → power cut through QMP → the same
kernel boots on the cut disk → the one check sequence (offline, then daemon)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from harness import hosttools
from harness.campaign.context import CampaignConfig, Progress, machine_config
from harness.errors import GuestError, GuestPanic, GuestSetupError, GuestTimeout, HarnessError
from harness.guest import docker
from harness.model import StateResult, Violation
from harness.oracles import console as console_oracle
from harness.oracles.checker import (
    panic_verdict,
    retry_once_on_hang,
    run_checks,
    run_daemon_stage,
)
from harness.power.cut import CutOutcome, CutPlan, run_until_cut
from harness.repro.bundle import reproduces, signature_of
from harness.repro.capture import live_bundle, qemu_argv
from harness.repro.minimize import MinimalSteps, minimize_steps
from harness.storage.backends import DATA_SERIAL, Backend, make_test_disk
from harness.vm.machine import Machine
from harness.vm.qemu import Disk
from harness.workloads.api import Workload


def run_workload(cfg: CampaignConfig, backend: Backend, plan: CutPlan, disk: Path,
                 logdir: Path, state: str) -> tuple[CutOutcome, list[Violation], dict[str, float]]:
    t: dict[str, float] = {}
    with Machine(machine_config(cfg, Disk(disk, DATA_SERIAL)), logdir / "workload.console.log",
                 name=f"{backend.name}-workload") as vm:
        t0 = time.monotonic()
        t["boot_s"] = round(vm.wait_booted(), 2)
        docker.start_on_fresh_disk(vm.agent, backend)
        t["docker_ready_s"] = round(time.monotonic() - t0, 2)
        outcome = run_until_cut(vm, cfg.workload, plan, backend.driver,
                                lambda: docker.inventory(vm.agent))
        t["workload_s"] = round(time.monotonic() - t0 - t["docker_ready_s"], 2)
        found = console_oracle.violations(
            vm.console_since(0), state,
            "the kernel reports no failure during the workload before the cut")
    return outcome, found, t


def check_cut_disk(cfg: CampaignConfig, backend: Backend, outcome: CutOutcome, disk: Path,
                   logdir: Path, state: str) -> tuple[list[Violation], dict[str, float], bool]:
    """Boot the same kernel on the cut disk (through a throwaway overlay, so the cut
    disk stays as the power cut left it) and run the check sequence. A guest that
    stops answering is diagnosed and the whole check retried once on a new guest;
    a second hang is a verdict, as in the checker. Returns whether it retried."""
    times: dict[str, float] = {}

    def attempt(n: int) -> list[Violation]:
        found, t = _check_once(cfg, backend, outcome, disk, logdir, state, attempt=n)
        times.update(t)
        return found

    found, retried = retry_once_on_hang(attempt, state)
    return found, times, retried


def _check_once(cfg: CampaignConfig, backend: Backend, outcome: CutOutcome, disk: Path,
                logdir: Path, state: str, attempt: int) -> tuple[list[Violation], dict[str, float]]:
    overlay = logdir / "check.qcow2"
    overlay.unlink(missing_ok=True)
    hosttools.qcow2_overlay(disk, overlay)
    t: dict[str, float] = {}
    suffix = "" if attempt == 1 else f".retry{attempt - 1}"
    promises = outcome.ledger.in_force()
    invariants = cfg.workload.invariants
    try:
        with Machine(machine_config(cfg, Disk(overlay, DATA_SERIAL, fmt="qcow2")),
                     logdir / f"verify{suffix}.console.log",
                     name=f"{backend.name}-verify") as vm:
            t0 = time.monotonic()
            t["boot_s"] = round(vm.wait_booted(), 2)
            mark = vm.console_mark()
            try:
                found = run_checks(vm, backend, state, promises, invariants,
                                   serial=DATA_SERIAL, after_mount=cfg.damage, times=t)
                t["offline_s"] = round(time.monotonic() - t0 - t["boot_s"], 2)
                if not any(v.check == "fs.mount" for v in found):
                    found = run_daemon_stage(
                        vm, backend, state, promises, invariants, found, serial=DATA_SERIAL,
                        inventory=outcome.inventory, last_point=outcome.ledger.last_point,
                        log_file=logdir / f"dockerd{suffix}.log")
                    t["daemon_s"] = round(time.monotonic() - t0 - t["boot_s"]
                                          - t["offline_s"], 2)
            except GuestPanic as e:
                found = [panic_verdict(state, e.console_tail)]
            except GuestTimeout as e:
                (logdir / f"hang{suffix}.diagnostics.txt").write_text(vm.diagnose())
                e.console_tail = e.console_tail or vm.console_tail()
                raise
            found += console_oracle.violations(
                vm.console_since(mark), state,
                "the kernel reports no failure during recovery and checks")
            t["verify_s"] = round(time.monotonic() - t0, 2)
    finally:
        overlay.unlink(missing_ok=True)
    return found, t


def _minimize_workload(cfg: CampaignConfig, backend: Backend, index: int, plan: CutPlan,
                       res: StateResult, logdir: Path, progress: Progress) -> MinimalSteps:
    """Repeat the cut with fewer workload steps while the same promises still break."""
    want = signature_of(res.violations)
    work = logdir / "minimize"
    tries = 0

    def fails(workload: Workload) -> bool:
        nonlocal tries
        tries += 1
        progress(f"  minimizing steps, try {tries}: {', '.join(workload.step_names)}")
        sub = replace(cfg, workload=workload, run_dir=work / f"try{tries}", minimize_steps=0,
                      bundles=False, keep_disks=False)
        got = run_live_cut(sub, backend, index, plan, lambda _: None)
        return reproduces(want, signature_of(got.violations))

    try:
        minimal = minimize_steps(cfg.workload, plan.step, fails, cfg.minimize_steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(f"  minimal workload: {len(minimal.steps)} of {len(minimal.original)} steps "
             f"({minimal.tests} live cycles)")
    return minimal


def run_live_cut(cfg: CampaignConfig, backend: Backend, index: int, plan: CutPlan,
                 progress: Progress) -> StateResult:
    state = f"{backend.name}/cut{index}/{plan.slug()}"
    res = StateResult(state=state, backend=backend.name, plan=plan.describe())
    logdir = cfg.run_dir / backend.name / f"cut{index}"
    logdir.mkdir(parents=True, exist_ok=True)
    disk = logdir / "disk.img"
    t0 = time.monotonic()
    try:
        make_test_disk(backend, disk)
        outcome, found, t = run_workload(cfg, backend, plan, disk, logdir, state)
        res.actual = outcome.actual
        res.last_durability_point = outcome.ledger.last_point or "(none)"
        res.promises = len(outcome.ledger.in_force())
        progress(f"  cut {outcome.actual}; {res.promises} promises in force; checking")
        vfound, vt, retried = check_cut_disk(cfg, backend, outcome, disk, logdir, state)
        if retried:
            res.actual += " (check retried after the checking guest hung)"
        res.violations = found + vfound
        res.timings = {**{f"workload_{k}": v for k, v in t.items()},
                       **{f"verify_{k}": v for k, v in vt.items()},
                       "steps": sum(outcome.step_seconds.values())}
        (logdir / "ledger.json").write_text(json.dumps(
            [p.to_json() for p in outcome.ledger.in_force()], indent=1) + "\n")
        if res.verdict == "violation" and cfg.bundles:
            minimal = (_minimize_workload(cfg, backend, index, plan, res, logdir, progress)
                       if cfg.minimize_steps else None)
            dest = cfg.run_dir / "bundles" / state.replace("/", "-")
            argv = qemu_argv(machine_config(cfg, Disk(Path("disk.img"), DATA_SERIAL)))
            live_bundle(dest, cfg, backend, res, argv, outcome, disk,
                        sorted(logdir.glob("*.log")), minimal)
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
        # Keep the cut disk only where it is evidence (or on request).
        if res.verdict == "pass" and not cfg.keep_disks:
            disk.unlink(missing_ok=True)
    (logdir / "verdict.json").write_text(json.dumps(res.to_json(), indent=1) + "\n")
    return res

