"""`crashtest compare`: the same measurements on each storage stack (an arm),
same kernel, image and docker, arms interleaved and repeated.

The run is a list of pieces (the M1 campaign, each arm's timed sessions, each
arm's ENOSPC session) run JOBS at a time, one guest each. With two at a time
every timed session shares the host with one other guest, whichever arm it is:
the contention is the same for all arms, and times are only compared as ratios
within the run. Each piece writes its result as it ends; compare.json and
compare.html are built from those files (an interrupted run keeps what
finished)."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.campaign.context import CampaignConfig, machine_config
from harness.campaign.plan import RunOptions
from harness.campaign.run import run_campaign
from harness.campaign.snapshots import docker_guest, qemu_version
from harness.compare import measure
from harness.compare.measure import RECLAIM, SETTINGS, Budget, MetricError, Probe, Reclaim
from harness.compare.report import build_compare, write_compare_html
from harness.errors import CrashtestError, GuestError, HarnessError, InputError
from harness.guest import docker
from harness.images.guest import ensure_images
from harness.images.rootfs import DEFAULT_SUITE, check_release
from harness.rundir import Run, require_out, write_json
from harness.storage.backends import BACKENDS, DATA_SERIAL, Backend, make_test_disk
from harness.version import crashtest_version
from harness.vm import accel as accel_mod
from harness.vm.machine import Machine
from harness.vm.qemu import Disk, block_node
from harness.workers import run_jobs
from harness.workloads.default import workload as default_workload

Say = Callable[[str], None]
DEFAULT_ARMS = ("btrfs", "ext4-overlay2", "xfs-overlay2")
REFERENCE_ARM = "ext4-overlay2"  # times are ratios to this arm
METRICS = ("M1", "M2", "M3", "M4", "M5", "M6", "M7")
M1_STATES = {"short": 30, "long": 500}  # crash states per arm
VARIANTS = {"short": "", "long": ",".join(RECLAIM)}  # M6's btrfs reclaim arms

log = logging.getLogger(__name__)


@dataclass
class CompareOptions:
    arms: str = ",".join(DEFAULT_ARMS)
    reps: int = 2
    setting: str = "short"
    m1_states: int | None = None  # None: the setting's
    metrics: str = ",".join(METRICS)
    seed: int = 1
    out: Path = Path("results")
    kernel: str | None = None
    release: str = DEFAULT_SUITE
    accel: str | None = None
    jobs: int = 2  # pieces (sessions, the M1 campaign) run at a time
    enospc_disk_mib: int | None = None  # None: the setting's
    saved_guests: bool = True
    budget: Budget | None = None  # instead of the setting's (tests: a tiny one)
    enospc_variants: str | None = None  # btrfs reclaim variants for M6 (None: the setting's)


@dataclass(frozen=True)
class Plan:
    arms: tuple[Backend, ...]
    metrics: tuple[str, ...]
    budget: Budget
    m1_states: int
    variants: tuple[Reclaim, ...] = ()


def validate(opts: CompareOptions) -> Plan:
    """Every input mistake as one line, before anything runs or is written."""
    names = [a.strip() for a in opts.arms.split(",") if a.strip()]
    if not names:
        raise InputError("ARMS is empty")
    for n in names:
        if n not in BACKENDS:
            raise InputError(f"unknown arm {n!r}: choose from {', '.join(BACKENDS)}")
    if len(set(names)) < len(names):
        raise InputError(f"ARMS names an arm twice ({opts.arms})")
    metrics = tuple(m.strip().upper() for m in opts.metrics.split(",") if m.strip())
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise InputError(f"METRICS {opts.metrics!r}: choose from {', '.join(METRICS)}")
    if opts.setting not in SETTINGS:
        raise InputError(f"setting {opts.setting!r}: choose from {', '.join(SETTINGS)}")
    if opts.reps <= 0:
        raise InputError(f"REPS ({opts.reps}) must be at least 1")
    if opts.jobs <= 0:
        raise InputError(f"JOBS ({opts.jobs}) must be at least 1")
    states = M1_STATES[opts.setting] if opts.m1_states is None else opts.m1_states
    if states <= 0:
        raise InputError(
            f"M1 states ({states}) must be at least 1 (leave M1 out of METRICS to skip it)"
        )
    budget = opts.budget or SETTINGS[opts.setting]
    if opts.enospc_disk_mib is not None:
        if opts.enospc_disk_mib < measure.MIN_ENOSPC_DISK_MIB:
            raise InputError(
                f"ENOSPC disk of {opts.enospc_disk_mib} MiB is too small to hold "
                f"docker and the base image (at least "
                f"{measure.MIN_ENOSPC_DISK_MIB} MiB; mkfs.xfs needs 300 MB)"
            )
        budget = replace(budget, enospc_disk_mib=opts.enospc_disk_mib)
    check_release(opts.release)
    spec = VARIANTS[opts.setting] if opts.enospc_variants is None else opts.enospc_variants
    variants = [v.strip() for v in spec.split(",") if v.strip()]
    for v in variants:
        if v not in RECLAIM:
            raise InputError(f"ENOSPC variant {v!r}: choose from {', '.join(RECLAIM)}")
    return Plan(
        tuple(BACKENDS[n] for n in names),
        metrics,
        budget,
        states,
        tuple(RECLAIM[v] for v in dict.fromkeys(variants)),
    )


def order(arms: tuple[Backend, ...], reps: int) -> list[tuple[int, Backend]]:
    """Arms interleaved, rotated each repetition (A B C, B C A, ...): no arm always
    runs first, after the same neighbour, or at the same time of the run."""
    out = []
    for r in range(reps):
        k = r % len(arms)
        out += [(r, a) for a in (*arms[k:], *arms[:k])]
    return out


def environment(vm: Machine, backend: Backend) -> dict[str, Any]:
    """What this arm really ran: docker's versions and driver status, the test
    filesystem as mounted, the guest kernel."""
    a = vm.agent
    status = a.run("docker info --format '{{json .DriverStatus}}'", timeout=60)
    mount = a.run("grep ' /var/lib/docker ' /proc/mounts", timeout=30)
    try:
        driver_status = {k: v for k, v in json.loads(status.stdout or "[]")}
    except ValueError:
        driver_status = {}
    return {
        "docker": docker.versions(a, backend),
        "driver_status": driver_status,
        "mounted": mount.stdout.strip(),
        "kernel": a.run("uname -r").stdout.strip(),
        "backend": backend.describe(),
    }


def arm_session(
    cfg: CampaignConfig, backend: Backend, rep: int, plan: Plan, dest: Path, say: Say
) -> dict[str, Any]:
    """One arm's timed session: M2-M5 (and M7 from their operations) in one guest
    with dockerd ready on a fresh 4 GiB test disk."""
    work = dest.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    doc: dict[str, Any] = {"arm": backend.name, "rep": rep, "metrics": {}}
    try:
        vm, started, _ = docker_guest(cfg, backend, work / "disk.img", work / "console.log", say)
        with vm:
            doc["started"] = started
            doc["environment"] = environment(vm, backend)
            p = Probe(vm, block_node(vm.config, DATA_SERIAL))
            measure.setup(p, plan.budget)
            measure.noop(p)
            for key, fn in (
                ("M2", measure.lifecycle),
                ("M3", measure.build_commit),
                ("M4", measure.page_cache),
                ("M5", measure.copy_up),
            ):
                if key not in plan.metrics and not (key == "M5" and "M7" in plan.metrics):
                    continue
                say(f"{backend.name} rep {rep + 1}: {key}")
                try:
                    doc["metrics"][key] = fn(p, plan.budget)
                except MetricError as e:
                    doc["metrics"][key] = {"error": str(e)}
            if "M7" in plan.metrics:
                doc["metrics"]["M7"] = measure.per_op(p.ops)
            doc["ops"] = [o.to_json() for o in p.ops]
    except (HarnessError, GuestError) as e:
        doc["error"] = f"{type(e).__name__}: {e}"
    finally:
        (work / "disk.img").unlink(missing_ok=True)
    doc["wall_s"] = round(time.monotonic() - t0, 1)
    write_json(dest, doc)
    return doc


def variant_backend(reclaim: Reclaim) -> Backend:
    btrfs = BACKENDS["btrfs"]
    return replace(
        btrfs,
        name=f"btrfs+{reclaim.name}",
        mkfs_options=(*btrfs.mkfs_options, *reclaim.mkfs_options),
    )


def enospc_session(
    cfg: CampaignConfig,
    backend: Backend,
    plan: Plan,
    dest: Path,
    say: Say,
    reclaim: Reclaim | None = None,
) -> dict[str, Any]:
    """M6 for one arm (or btrfs reclaim variant): a guest booted on a small fresh
    disk, layers churned in until the first ENOSPC."""
    work = dest.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    doc: dict[str, Any] = {"arm": backend.name}
    disk = work / "disk.img"
    try:
        make_test_disk(backend, disk, plan.budget.enospc_disk_mib << 20)
        with Machine(
            machine_config(cfg, Disk(disk, DATA_SERIAL)),
            work / "console.log",
            name=f"{backend.name}-enospc",
        ) as vm:
            vm.wait_booted()
            docker.start_on_fresh_disk(vm.agent, backend)
            p = Probe(vm, block_node(vm.config, DATA_SERIAL))
            measure.base(p)
            say(f"{backend.name}: M6 layer churn on a {plan.budget.enospc_disk_mib} MiB disk")
            doc["M6"] = measure.enospc(p, backend, plan.budget, reclaim)
    except MetricError as e:
        doc["M6"] = {"error": str(e)}
    except (HarnessError, GuestError) as e:
        doc["error"] = f"{type(e).__name__}: {e}"
    finally:
        disk.unlink(missing_ok=True)
    doc["wall_s"] = round(time.monotonic() - t0, 1)
    write_json(dest, doc)
    return doc


@dataclass(frozen=True)
class Task:
    """One piece of a compare run, plain data for a worker process: an arm's
    timed session, an arm's ENOSPC session, or the M1 campaign."""

    kind: str  # "session" | "enospc" | "m1"
    arm: str = ""
    rep: int = 0
    variant: str = ""  # an "enospc" task's btrfs reclaim variant


def tasks(plan: Plan, reps: int) -> list[Task]:
    """The M1 campaign first (the longest piece), then the timed sessions in their
    interleaved order, then the ENOSPC sessions: two workers finish together."""
    out = [Task("m1")] if "M1" in plan.metrics else []
    if {"M2", "M3", "M4", "M5", "M7"} & set(plan.metrics):
        out += [Task("session", a.name, r) for r, a in order(plan.arms, reps)]
    if "M6" in plan.metrics:
        out += [Task("enospc", a.name) for a in plan.arms]
        out += [Task("enospc", "btrfs", variant=v.name) for v in plan.variants]
    return out


@dataclass(frozen=True)
class Job:
    task: Task
    cfg: CampaignConfig
    plan: Plan
    opts: CompareOptions
    run_dir: Path


def run_task(job: Job) -> str:
    """Run one task (in a worker); its result goes to a file; returns a line."""
    t, cfg, plan, run_dir = job.task, job.cfg, job.plan, job.run_dir
    reps = job.opts.reps
    if t.kind == "session":
        say = functools.partial(_print, f"{t.arm} {t.rep + 1}/{reps}")
        doc = arm_session(
            cfg,
            BACKENDS[t.arm],
            t.rep,
            plan,
            run_dir / "arms" / t.arm / f"rep{t.rep + 1}.json",
            say,
        )
        return f"{t.arm} rep {t.rep + 1}/{reps}: " + (
            f"FAILED: {doc['error']}" if "error" in doc else f"done in {doc['wall_s']:.0f}s"
        )
    if t.kind == "enospc":
        reclaim = RECLAIM[t.variant] if t.variant else None
        arm = variant_backend(reclaim) if reclaim else BACKENDS[t.arm]
        say = functools.partial(_print, f"{arm.name} M6")
        doc = enospc_session(cfg, arm, plan, run_dir / "enospc" / f"{arm.name}.json", say, reclaim)
        m6 = doc.get("M6", {})
        return f"{arm.name} M6: " + (
            f"FAILED: {doc.get('error') or m6.get('error')}"
            if "error" in doc or "error" in m6
            else f"{m6['layers_before_enospc']} layers, ENOSPC "
            f"{'reached' if m6['reached_enospc'] else 'not reached'}"
        )
    say = functools.partial(_print, "M1")
    say(f"crash-state campaign, {plan.m1_states} states per arm")
    try:
        run = run_campaign(
            RunOptions(
                backends=",".join(a.name for a in plan.arms),
                cuts=0,
                states=plan.m1_states,
                kernel=job.opts.kernel,
                seed=job.opts.seed,
                out=run_dir / "m1",
                accel=cfg.accel,
                jobs=1,
                release=job.opts.release,
                saved_guests=job.opts.saved_guests,
            ),
            progress=say,
        )
    except CrashtestError as e:
        write_json(run_dir / "m1" / "error.json", {"error": f"{type(e).__name__}: {e}"})
        return f"M1: FAILED: {e}"
    return f"M1: done ({run.name})"


def _print(label: str, msg: str) -> None:
    log.info("[%s] %s", label, msg.strip())


def run_compare(opts: CompareOptions, progress: Say | None = None) -> Path:
    """Run the comparison; return its run directory (OUT/compare/RUN_ID)."""
    plan = validate(opts)
    require_out(opts.out)
    accel, why = accel_mod.choose(opts.accel)
    say = progress or functools.partial(_print, "compare")
    images = ensure_images(opts.kernel, None, opts.release)
    say(
        f"compare: kernel {images.kernel.version}, {opts.release} image "
        f"{images.root.manifest_id}, accel {accel} ({why}); arms "
        f"{', '.join(a.name for a in plan.arms)}; {opts.setting} setting, {opts.reps} reps"
    )
    run = Run(opts.out / "compare", opts.seed)
    run_dir, run_id = run.dir, run.id
    plan_doc = {
        "options": {**asdict(opts), "out": str(opts.out)},
        "budget": asdict(plan.budget),
        "m1_states": plan.m1_states,
        "metrics": list(plan.metrics),
        "enospc_variants": [variant_backend(v).name for v in plan.variants],
        "order": [[r + 1, a.name] for r, a in order(plan.arms, opts.reps)],
    }
    write_json(run_dir / "plan.json", plan_doc)
    cfg = CampaignConfig(
        images=images,
        accel=accel,
        workload=default_workload(opts.seed),
        run_dir=run_dir,
        resume=opts.saved_guests,
    )
    meta = {
        "run_id": run_id,
        "crashtest_version": crashtest_version(),
        "kernel": images.kernel.info,
        "release": opts.release,
        "image": images.root.manifest_id,
        "image_packages": images.root.key_packages(),
        "accel": accel,
        "qemu_version": qemu_version("qemu-system-x86_64"),
        "setting": opts.setting,
        "reps": opts.reps,
        "reference": REFERENCE_ARM,
        **plan_doc,
    }
    t0 = time.monotonic()
    todo = [Job(t, cfg, plan, opts, run_dir) for t in tasks(plan, opts.reps)]
    say(f"compare: {len(todo)} pieces, {opts.jobs} at a time")

    def finish(incomplete: str) -> None:
        done = {"incomplete": incomplete} if incomplete else {}
        _finish(run_dir, {**meta, **done, "wall_s": round(time.monotonic() - t0)}, plan)

    with run.lifetime(finish):
        run_jobs(run_task, todo, opts.jobs, say)
    return run_dir


def _finish(run_dir: Path, meta: dict[str, Any], plan: Plan) -> None:
    doc = build_compare(run_dir, meta, [a.name for a in plan.arms], plan.metrics)
    write_json(run_dir / "compare.json", doc)
    write_compare_html(doc, run_dir / "compare.html")
    # What a stopped worker's guests left: sparse disks and raw write logs
    # (finished pieces keep none; bundles keep compressed copies).
    for name in ("disk.img", "origin.img", "base.img", "writes.log"):
        for leftover in run_dir.glob(f"**/{name}"):
            leftover.unlink(missing_ok=True)


__all__ = ["CompareOptions", "run_compare", "validate"]
