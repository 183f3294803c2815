"""A campaign: for each backend, N power-cut cycles (fresh disk → workload → cut →
reboot on the cut disk → oracles), with results written as evidence."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import hosttools
from harness.errors import GuestError, GuestPanic, GuestTimeout, HarnessError
from harness.guest import docker
from harness.guest.agent import AgentClient
from harness.images import GuestImages
from harness.oracles import console as console_oracle
from harness.oracles import offline
from harness.oracles.docker import check_inventory, check_promises, what_docker_says
from harness.oracles.filesystem import recover_and_fsck
from harness.oracles.verdict import Violation
from harness.power.cut import CutOutcome, CutPlan, run_until_cut
from harness.repro.bundle import reproduces, signature_of
from harness.repro.capture import live_bundle, qemu_argv
from harness.repro.minimize import MinimalSteps, minimize_steps
from harness.storage.backends import Backend, make_test_disk
from harness.vm.accel import default_cpus
from harness.vm.machine import Machine
from harness.vm.qemu import Disk, MachineConfig
from harness.workloads.default import StepFailed, Workload

BOOT_TIMEOUT_S = 120.0
Tamper = Callable[[AgentClient, Backend], None]
Progress = Callable[[str], None]


@dataclass
class CampaignConfig:
    images: GuestImages
    accel: str
    workload: Workload
    seed: int
    run_dir: Path
    memory_mb: int = 2048
    cpus: int = 0  # 0: the accelerator's safe default
    keep_disks: bool = False
    minimize_tests: int = 40  # checks spent shrinking each new failing lost-cache state
    minimize_steps: int = 0  # live cycles spent shrinking a failing live cut's workload
    bundles: bool = True  # write a reproducer bundle for each state with a violation
    # Test hook: damage the recovered disk on purpose before the oracles run.
    tamper: Tamper | None = None


@dataclass
class StateResult:
    state: str
    backend: str
    plan: str
    kind: str = "live"  # "live" power cut, or "replay" of a lost-cache crash state
    actual: str = ""
    last_durability_point: str = ""
    promises: int = 0
    violations: list[Violation] = field(default_factory=list)
    harness_error: str = ""
    wall_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    bundle: str = ""  # reproducer bundle, relative to the run directory

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state, "kind": self.kind, "backend": self.backend, "plan": self.plan,
            "actual": self.actual, "last_durability_point": self.last_durability_point,
            "promises": self.promises, "verdict": self.verdict,
            "violations": [v.to_json() for v in self.violations],
            "harness_error": self.harness_error, "wall_s": self.wall_s, "timings": self.timings,
            "bundle": self.bundle,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StateResult:
        return cls(d["state"], d["backend"], d["plan"], d["kind"], d["actual"],
                   d["last_durability_point"], d["promises"],
                   [Violation.from_json(v) for v in d["violations"]], d["harness_error"],
                   d["wall_s"], d["timings"], d.get("bundle", ""))

    @property
    def verdict(self) -> str:
        """Leaks alone do not fail a state: they waste space but break no promise."""
        if any(v.cls != "leak" for v in self.violations):
            return "violation"
        if self.harness_error:
            return "harness-error"
        return "leak" if self.violations else "pass"


def machine_config(cfg: CampaignConfig, data: Disk | None) -> MachineConfig:
    root = Disk(cfg.images.root.path, "root", read_only=True)
    return MachineConfig(kernel=cfg.images.kernel.vmlinuz, initrd=cfg.images.initrd,
                         disks=(root, data) if data else (root,), accel=cfg.accel,
                         memory_mb=cfg.memory_mb, cpus=cfg.cpus or default_cpus(cfg.accel))


def run_workload(cfg: CampaignConfig, backend: Backend, plan: CutPlan, disk: Path,
                 logdir: Path, state: str) -> tuple[CutOutcome, list[Violation], dict[str, float]]:
    t: dict[str, float] = {}
    with Machine(machine_config(cfg, Disk(disk, "data")), logdir / "workload.console.log",
                 name=f"{backend.name}-workload") as vm:
        t0 = time.monotonic()
        t["boot_s"] = round(vm.wait_booted(BOOT_TIMEOUT_S), 2)
        mount = docker.mount_data(vm.agent, backend)
        if not mount.ok:
            raise StepFailed(f"mounting the fresh test disk failed: {mount.evidence(400)}")
        started = docker.start_dockerd(vm.agent, backend)
        if not started.ok:
            raise StepFailed(f"dockerd did not start on a fresh disk: {started.evidence(400)}\n"
                             + docker.dockerd_log(vm.agent)[-2000:])
        t["docker_ready_s"] = round(time.monotonic() - t0, 2)
        outcome = run_until_cut(vm, cfg.workload, plan,
                                lambda: docker.inventory(vm.agent))
        t["workload_s"] = round(time.monotonic() - t0 - t["docker_ready_s"], 2)
        found = console_oracle.violations(
            vm.console_since(0), state,
            "the kernel reports no failure during the workload before the cut")
    return outcome, found, t


def verify(cfg: CampaignConfig, backend: Backend, outcome: CutOutcome, disk: Path,
           logdir: Path, state: str) -> tuple[list[Violation], dict[str, float]]:
    """Boot the same kernel on the cut disk (through a throwaway overlay, so the
    cut disk stays as the power cut left it) and run the oracles. A guest that
    stops answering is diagnosed and the whole check retried once on a new overlay."""
    try:
        return _verify_once(cfg, backend, outcome, disk, logdir, state, attempt=1)
    except GuestTimeout:
        return _verify_once(cfg, backend, outcome, disk, logdir, state, attempt=2)


def _verify_once(cfg: CampaignConfig, backend: Backend, outcome: CutOutcome, disk: Path,
                 logdir: Path, state: str,
                 attempt: int) -> tuple[list[Violation], dict[str, float]]:
    overlay = logdir / "check.qcow2"
    overlay.unlink(missing_ok=True)
    hosttools.qcow2_overlay(disk, overlay)
    t: dict[str, float] = {}
    suffix = "" if attempt == 1 else f".retry{attempt - 1}"
    try:
        with Machine(machine_config(cfg, Disk(overlay, "data", fmt="qcow2")),
                     logdir / f"verify{suffix}.console.log",
                     name=f"{backend.name}-verify") as vm:
            t0 = time.monotonic()
            t["boot_s"] = round(vm.wait_booted(BOOT_TIMEOUT_S), 2)
            mark = vm.console_mark()
            try:
                found = recover_and_fsck(vm.agent, backend, state)
                t["fs_check_s"] = round(time.monotonic() - t0 - t["boot_s"], 2)
                if not any("mounts" in v.promise for v in found):
                    if cfg.tamper is not None:
                        cfg.tamper(vm.agent, backend)
                    promised = [p.target for p in outcome.ledger.in_force()
                                if p.kind == "image"]
                    registered = offline.check_registered(vm.agent, backend, state, promised)
                    docker_found, log = check_promises(vm.agent, backend, state, outcome.ledger)
                    up = not any(v.promise.startswith("dockerd starts") for v in docker_found)
                    if up:
                        registered = what_docker_says(vm.agent, registered)
                    found += registered + docker_found
                    if outcome.inventory is not None and up:
                        found += check_inventory(vm.agent, state, outcome.ledger.last_point,
                                                 outcome.inventory)
                    (logdir / f"dockerd{suffix}.log").write_text(log)
            except GuestPanic as e:
                found = [Violation("fs-corruption", state, "the kernel recovers without panic",
                                   {"console": e.console_tail})]
            except GuestTimeout:
                (logdir / f"hang{suffix}.diagnostics.txt").write_text(vm.diagnose())
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
        got = run_state(sub, backend, index, plan, lambda _: None)
        return reproduces(want, signature_of(got.violations))

    try:
        minimal = minimize_steps(cfg.workload, plan.step, fails, cfg.minimize_steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(f"  minimal workload: {len(minimal.steps)} of {len(minimal.original)} steps "
             f"({minimal.tests} live cycles)")
    return minimal


def run_state(cfg: CampaignConfig, backend: Backend, index: int, plan: CutPlan,
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
        progress(f"  cut {outcome.actual}; {res.promises} promises in force; verifying")
        vfound, vt = verify(cfg, backend, outcome, disk, logdir, state)
        if (logdir / "verify.retry1.console.log").exists():
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
            argv = qemu_argv(machine_config(cfg, Disk(Path("disk.img"), "data")))
            live_bundle(dest, cfg, backend, res, argv, outcome, disk,
                        sorted(logdir.glob("*.log")), minimal)
            res.bundle = str(dest.relative_to(cfg.run_dir))
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
