"""The orchestrator: workload + options → plan → units (live cut | lost-cache
recording) → results (summary.json, JUnit, results/latest)."""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from pathlib import Path

from harness.campaign.context import CampaignConfig, Progress
from harness.campaign.plan import (
    Cell,
    RunOptions,
    campaign_key,
    kernel_specs,
    options_from_json,
    options_json,
    parse_cut_at,
    parse_shard,
    plan_units,
    release_specs,
    validate,
    workload_specs,
)
from harness.campaign.pool import UnitJob, UnitResult, run_units
from harness.campaign.progress import Display
from harness.campaign.snapshots import qemu_version
from harness.errors import InputError
from harness.guest import docker
from harness.images.guest import ensure_images
from harness.images.kernel import lacks
from harness.model import StateResult, UnitKind
from harness.report.html import write_report
from harness.report.known import KnownList, load_known
from harness.report.results import BackendSummary, write_results
from harness.report.summary import (
    SUMMARY_JSON,
    CellInfo,
    RunMeta,
    Shard,
    WorkloadInfo,
    load_summary,
)
from harness.rundir import Run, require_out, write_json
from harness.storage.damage import INJECTIONS, zero_layer_file
from harness.version import crashtest_version
from harness.vm import accel as accel_mod
from harness.workloads.api import Workload
from harness.workloads.load import load_workload

log = logging.getLogger(__name__)


def damage_for(name: str | None, workload: Workload) -> str:
    """The guest command `--inject NAME` runs on each recovered tree (self-test)."""
    if name is None:
        return ""
    if name not in INJECTIONS:
        raise InputError(f"inject {name!r}: choose one of {', '.join(INJECTIONS)}")
    if not workload.damage_target:
        raise InputError(f"inject {name!r}: workload {workload.name} names no damage_target")
    return zero_layer_file(workload.damage_target)


def _cell_dirs(cells: list[Cell], versions: list[str]) -> list[str]:
    """Each cell's directory under the run: the axes that vary, in the order
    workload/release/kernel ("" when the campaign has one cell)."""
    parts = [c.parts(versions[c.kernel]) for c in cells]
    varying = [k for k in ("workload", "release", "kernel") if len({p[k] for p in parts}) > 1]
    return ["/".join(p[k] for k in varying) for p in parts]


PLAN_JSON = "plan.json"
UNITS_DIR = "units"


def _unit_path(run_dir: Path, index: int) -> Path:
    return run_dir / UNITS_DIR / f"{index:05d}.json"


def _save_unit(run_dir: Path, r: UnitResult) -> None:
    """A finished unit, written as it ends: nothing finished is lost to a Ctrl-C or
    a crash of the harness, and --resume skips it."""
    write_json(
        _unit_path(run_dir, r.unit),
        {
            "unit": r.unit,
            "wall_s": r.wall_s,
            "replay": r.replay,
            "states": [s.to_json() for s in r.states],
        },
    )


def _load_units(run_dir: Path) -> dict[int, UnitResult]:
    done = {}
    for path in sorted((run_dir / UNITS_DIR).glob("*.json")):
        try:
            d = json.loads(path.read_text())
            r = UnitResult(
                int(d["unit"]),
                [StateResult.from_json(x) for x in d["states"]],
                dict(d["replay"]),
                float(d["wall_s"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"resume: {path} is not a finished unit's record ({e})") from e
        done[r.unit] = r
    return done


def load_plan(run_dir: Path) -> RunOptions:
    """The options of an incomplete run, for `crashtest run --resume RUN_DIR`."""
    try:
        doc = json.loads((run_dir / PLAN_JSON).read_text())
    except (OSError, ValueError) as e:
        raise InputError(
            f"resume: {run_dir} is not a crashtest run directory (no readable {PLAN_JSON})"
        ) from e
    # no summary (a crash before the first one was written) is an incomplete run
    if (run_dir / SUMMARY_JSON).exists() and not load_summary(run_dir).incomplete:
        raise InputError(f"resume: {run_dir} is complete; nothing to resume")
    opts = options_from_json(doc["options"])
    opts.out = run_dir.parent
    return opts


def run_campaign(
    opts: RunOptions, progress: Progress | None = None, resume: Path | None = None
) -> Path:
    """Run the campaign (or this job's shard of it); return its run directory.
    Each unit is recorded as it finishes; an interrupted or failed run leaves a
    summary marked incomplete, which `resume` (its run directory) finishes with
    the same plan. Bad input leaves nothing behind."""
    say = progress or log.info
    backends = validate(opts)
    known = load_known(opts.known) if opts.known else KnownList()
    shard_i, shard_n = parse_shard(opts.shard)
    releases = release_specs(opts)
    require_out(opts.out)
    workloads = [load_workload(w, opts.seed) for w in workload_specs(opts)]
    names = [w.name for w in workloads]
    if len(set(names)) < len(names):
        raise InputError(f"WORKLOADS: two of them are named the same ({', '.join(names)})")
    fixed = {w.name: parse_cut_at(opts.cut_at, w) if opts.cut_at else None for w in workloads}
    damage = {w.name: damage_for(opts.inject, w) for w in workloads}
    accel, why = accel_mod.choose(opts.accel)
    specs = kernel_specs(opts)
    t_img = time.monotonic()
    images = {
        (k, r): ensure_images(spec, opts.kernel_modules, r)
        for k, spec in enumerate(specs)
        for r in releases
    }
    for (_, rel), im in images.items():
        say(
            f"kernel {im.kernel.version}, {rel} image {im.root.manifest_id} "
            f"(docker.io {im.root.key_packages().get('docker.io', '?')}), accel {accel} ({why})"
        )
    say(f"images ready in {time.monotonic() - t_img:.1f}s")
    for im in {id(i.kernel): i for i in images.values()}.values():
        for b in backends:
            needs = [m for m in b.kernel_modules() if lacks(im.kernel, m)]
            if needs:
                raise InputError(
                    f"KERNEL {im.kernel.info.get('source', im.kernel.version)}: "
                    f"backend {b.name} needs {', '.join(needs)}, neither built "
                    "into this kernel nor among its modules"
                )
    versions = [images[(k, releases[0])].kernel.version for k in range(len(specs))]
    if len(set(versions)) < len(versions):
        raise InputError(f"KERNELS: two of them are the same kernel ({', '.join(versions)})")
    key = campaign_key(opts, backends, versions, workloads, releases)

    if resume is not None:
        planned = json.loads((resume / PLAN_JSON).read_text())["campaign"]
        if planned != key:
            changed = sorted(k for k in key if planned.get(k) != key[k])
            raise InputError(
                f"resume: {resume} was planned with other {', '.join(changed)} "
                f"(now {', '.join(str(key[k]) for k in changed)}): it cannot be "
                "finished with the same plan"
            )
        done = _load_units(resume)
    run = Run(opts.out, opts.seed, f"-shard{shard_i}of{shard_n}" if shard_n > 1 else "", resume)
    run_dir, run_id = run.dir, run.id
    if resume is None:
        write_json(run_dir / PLAN_JSON, {"options": options_json(opts), "campaign": key})
        done = {}
    cells = [
        Cell(k, r, w, fixed[w.name]) for w in workloads for r in releases for k in range(len(specs))
    ]
    cdirs = _cell_dirs(cells, versions)
    cfgs = [
        CampaignConfig(
            images=images[(c.kernel, c.release)],
            accel=accel,
            workload=c.workload,
            run_dir=run_dir / cd,
            memory_mb=opts.memory_mb,
            keep_disks=opts.keep_disks,
            damage=damage[c.workload.name],
            minimize_steps=opts.minimize_steps,
            daemon_checks=opts.daemon_checks,
            resume=opts.saved_guests,
        )
        for c, cd in zip(cells, cdirs, strict=True)
    ]
    units = plan_units(opts, backends, cells)
    mine = [u.index for u in units if u.index % shard_n == shard_i - 1]
    todo = [i for i in mine if i not in done]
    say(
        f"{len(mine)} of {len(units)} units"
        + (f" (shard {shard_i}/{shard_n})" if shard_n > 1 else "")
        + (f" over {len(cells)} cells (workload x release x kernel)" if len(cells) > 1 else "")
        + f", {opts.jobs} at a time"
        + (
            f"; resuming {run_dir}: {len(mine) - len(todo)} done, {len(todo)} to run"
            if resume is not None
            else ""
        )
    )
    display = Display([units[i].kind for i in todo], opts.states, opts.jobs, plain=progress)
    labels = {i: units[i].label(cdirs[units[i].cell].replace("/", " ")) for i in todo}

    def finished(r: UnitResult) -> None:
        _save_unit(run_dir, r)
        done[r.unit] = r
        display.finished(
            labels[r.unit],
            units[r.unit].kind,
            r.wall_s,
            len(r.states),
            sum(1 for s in r.states if s.verdict == "violation"),
        )

    def write(incomplete: str = "") -> None:
        summaries = []
        for c, cell in enumerate(cells):
            im = images[(cell.kernel, cell.release)]
            for b in backends:
                summary = BackendSummary(
                    b.name,
                    im.kernel.version,
                    im.root.manifest_id,
                    accel,
                    opts.cuts,
                    b.describe(),
                    release=cell.release,
                    workload=cell.workload.name,
                    docker=_docker_json(cfgs[c].run_dir / b.name),
                )
                for u in units:
                    if u.cell == c and u.backend == b and u.index in done:
                        ur = done[u.index]
                        for st in ur.states:
                            if st.bundle and cdirs[c] and not st.bundle.startswith(cdirs[c]):
                                st.bundle = f"{cdirs[c]}/{st.bundle}"
                        summary.states.extend(ur.states)
                        summary.wall_s += ur.wall_s
                        if ur.replay:
                            summary.replay = ur.replay
                summaries.append(summary)
        first = images[(0, releases[0])]
        meta = RunMeta(
            run_id=run_id,
            crashtest_version=crashtest_version(),
            seed=opts.seed,
            workload=workloads[0].name,
            workload_source=workloads[0].source,
            workload_digest=workloads[0].digest,
            workload_steps=workloads[0].step_names,
            workloads=[
                WorkloadInfo(
                    name=w.name,
                    source=w.source,
                    digest=w.digest,
                    steps=w.step_names,
                    description=w.description,
                )
                for w in workloads
            ],
            releases={r: images[(0, r)].root.key_packages() for r in releases},
            cells=[
                CellInfo(dir=cd, **c.parts(versions[c.kernel]))
                for c, cd in zip(cells, cdirs, strict=True)
            ],
            kernel_info=first.kernel.info,
            kernels=[images[(k, releases[0])].kernel.info for k in range(len(specs))],
            image_manifest={k: v for k, v in first.root.manifest.items() if k != "packages"},
            image_packages=first.root.key_packages(),
            images={r: images[(0, r)].root.manifest_id for r in releases},
            host=platform.node(),
            qemu=shutil.which("qemu-system-x86_64") or "",
            qemu_version=qemu_version("qemu-system-x86_64"),
            accel=accel,
            injected=opts.inject or "",
            jobs=opts.jobs,
            campaign=key,
            shard=Shard(index=shard_i, count=shard_n, units=mine, total_units=len(units)),
            units_done=sorted(i for i in mine if i in done),
            incomplete=incomplete or None,
            resume=f"crashtest run --resume {run_dir}" if incomplete else None,
        )
        write_results(run_dir, meta, summaries, known, opts.fail_on)
        write_report([run_dir], run_dir / "report.html")

    jobs = [UnitJob(units[i], cfgs[units[i].cell], opts.states, labels[i]) for i in todo]
    # Longest first, so parallel workers finish together: a unit of replayed
    # states takes many times a live cut.
    jobs.sort(key=lambda j: j.unit.kind != UnitKind.REPLAY)

    def finish(incomplete: str) -> None:
        write(incomplete)
        if incomplete:
            say(
                f"{len([i for i in mine if i in done])} of {len(mine)} units "
                f"finished and kept in {run_dir}; finish with: crashtest run --resume {run_dir}"
            )

    with run.lifetime(finish), display:
        run_units(jobs, opts.jobs, finished, display.unit)
    return run_dir


def _docker_json(backend_dir: Path) -> dict[str, str]:
    """The driver and versions dockerd reported for this backend (guest.docker)."""
    try:
        return dict(json.loads((backend_dir / docker.DOCKER_JSON).read_text()))
    except (OSError, ValueError):
        return {}


__all__ = ["CampaignConfig", "Progress", "RunOptions", "load_plan", "run_campaign"]
