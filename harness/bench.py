"""`make bench`: numbers measured in one run on one machine, each beside the old
way of getting it, written to results/bench.json.

- live_cycle_s and its phases for one live cut started from saved guests, beside
  the same cut with every guest booted (live_cycle_s_booted); live_cycle_ratio;
  docker_ready_s from a saved guest and from a boot;
- checker_states_per_min (one checker resumed from a saved guest, in isolation) vs
  reboot_states_per_min (a fresh guest boot per state), on the same crash states,
  and their ratio checker_speedup; checker_phase_mean_s (where a state's time goes);
- state_reduction_ratio: candidate crash states of the recording / distinct ones;
- record_overhead: workload wall time through blklogwrites / without it;
- replay_bytes vs naive_replay_bytes (replaying from the log's start for each state);
- store_oracle_s: the offline docker store oracle over a tree of 20 images;
- with `campaign_states` > 0: campaign_states_per_min of a campaign with the
  default's shape (both default backends, two at a time) from saved guests, beside
  the same campaign with every guest booted, and checker_states_per_min inside it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.campaign import snapshots
from harness.campaign.context import CampaignConfig, machine_config
from harness.campaign.live import run_live_cut
from harness.campaign.lost_cache import check_recording
from harness.campaign.plan import DEFAULT_CUTS, DEFAULT_JOBS, RunOptions
from harness.campaign.run import run_campaign
from harness.errors import HarnessError
from harness.explore.plan import ExploreOptions
from harness.explore.run import explore
from harness.guest import docker
from harness.images.guest import ensure_images
from harness.images.rootfs import BASE_TAR_IN_GUEST
from harness.oracles.checker import check_by_reboot
from harness.power.cut import plan_cuts
from harness.report.results import mean_timings
from harness.report.summary import load_summary
from harness.storage.backends import BACKENDS, Backend, make_test_disk
from harness.vm import accel as accel_mod
from harness.vm.machine import Machine
from harness.vm.qemu import Disk, MachineConfig
from harness.workloads.default import workload as default_workload
from harness.writelog.record import record
from harness.writelog.replay import Replayer
from harness.writelog.states import crash_states, select_states


def _store_oracle_time(
    base: MachineConfig, backend: Backend, workdir: Path, images_n: int
) -> dict[str, Any]:
    """Build a store of `images_n` committed images, stop dockerd, time the offline
    structure + content oracle over all of it inside the guest."""
    disk = make_test_disk(backend, workdir / "disk.img")
    config = replace(base, disks=(*base.disks, Disk(disk, "data")))
    with Machine(config, workdir / "store.console.log", name="bench-store") as vm:
        vm.wait_booted()
        a = vm.agent
        if not docker.mount_data(a, backend).ok or not docker.start_dockerd(a, backend).ok:
            raise HarnessError("bench: docker did not start on a fresh disk")
        script = (
            f"docker import {BASE_TAR_IN_GUEST} bench/base && "
            "docker create --name benchbox bench/base sleep 1 && "
            f"for i in $(seq {images_n - 1}); do head -c 200000 /dev/urandom > /tmp/f && "
            "docker cp /tmp/f benchbox:/f$i && "
            "docker commit benchbox bench/img$i >/dev/null || exit 1; done"
        )
        built = a.run(script, timeout=900)
        if not built.ok:
            raise HarnessError(f"bench: building images failed: {built.evidence(400)}")
        docker.stop_dockerd(a)
        res = a.run(
            "cd /crashtest && python3 -c 'import json,time; "
            "from crashtest_guest.docker_store import DockerStore; t=time.monotonic(); "
            's=DockerStore("/var/lib/docker"); f=s.check(); '
            'print(json.dumps({**s.stats, "findings": len(f), '
            '"seconds": round(time.monotonic()-t, 2)}))\'',
            timeout=600,
        )
        if not res.ok:
            raise HarnessError(f"bench: store oracle failed: {res.evidence(400)}")
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def _live_cycles(
    cfg: CampaignConfig, backend: Backend, seed: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """The same live cut twice: from saved guests, then with every guest booted."""
    plan = plan_cuts(seed, backend.name, 1, cfg.workload.step_names, cfg.workload.synced)[0]
    out: dict[str, Any] = {"live_cut": plan.describe()}
    snapshots.docker_ready(cfg, backend, say)  # made (once) before the clock starts
    snapshots.idle_guest(cfg, say)
    for how, resume in (("", True), ("_booted", False)):
        say(f"bench: one live cut {'from saved guests' if resume else 'with boots'}")
        res = run_live_cut(
            replace(cfg, resume=resume, bundles=False, run_dir=cfg.run_dir / f"live{how}"),
            backend,
            0,
            plan,
            say,
        )
        if res.harness_error:
            raise HarnessError(f"bench: the live cut failed: {res.harness_error}")
        out[f"live_cycle_s{how}"] = res.wall_s
        out[f"live_cycle_phases_s{how}"] = res.timings
        out[f"docker_ready_s{how}"] = res.timings.get("workload_docker_ready_s")
        out[f"live_started{how}"] = res.started
    out["live_cycle_ratio"] = round(out["live_cycle_s"] / out["live_cycle_s_booted"], 3)
    return out


def _campaign(
    cfg: CampaignConfig, states: int, cuts: int, work: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """A campaign of the default's shape, from saved guests and then booted."""
    out: dict[str, Any] = {"campaign_states_per_backend": states, "campaign_cuts": cuts}
    for how, saved in (("", True), ("_booted", False)):
        say(
            f"bench: campaign of {states} states and {cuts} cuts per backend "
            f"{'from saved guests' if saved else 'with boots'}"
        )
        t0 = time.monotonic()
        run = run_campaign(
            RunOptions(
                cuts=cuts,
                states=states,
                out=work / f"campaign{how}",
                jobs=DEFAULT_JOBS,
                saved_guests=saved,
            ),
            say,
        )
        wall = time.monotonic() - t0
        summary = load_summary(run)
        checked = summary.totals.states_checked
        replay = [b.replay for b in summary.backends if b.replay]
        replay_states = sum(int(r.get("states", 0)) for r in replay)
        replay_wall = sum(float(r.get("check_wall_s", 0)) for r in replay)
        out[f"campaign_states{how}"] = checked
        out[f"campaign_wall_s{how}"] = round(wall, 1)
        out[f"campaign_states_per_min{how}"] = round(checked / wall * 60, 1)
        out[f"checker_states_per_min_in_campaign{how}"] = round(
            replay_states / max(replay_wall, 1e-9) * 60, 1
        )
    out["campaign_speedup"] = round(
        out["campaign_states_per_min"] / out["campaign_states_per_min_booted"], 2
    )
    return out


def _explore(programs: int, work: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """crashtest explore's throughput: random programs of the default grammar on
    btrfs, two guests, every crash state of each checked (boots included); once
    with programs of up to 8 operations (ACE's size, what the workloads-per-hour
    target counts) and once with a quarter as many of the default length (what a
    search runs: longer programs, fewer per hour, more operations each)."""
    out: dict[str, Any] = {}
    for key, length, n in (
        ("explore", 8, programs),
        ("explore_default", ExploreOptions().length, max(2, programs // 4)),
    ):
        say(f"bench: explore, {n} programs of up to {length} operations on btrfs")
        t0 = time.monotonic()
        summary = explore(
            ExploreOptions(fs="btrfs", length=length, programs=n, minimize=False, out=work / key)
        )
        wall = time.monotonic() - t0
        out |= {
            f"{key}_length": length,
            f"{key}_programs": summary.programs,
            f"{key}_states": summary.states,
            f"{key}_wall_s": round(wall, 1),
            f"{key}_workloads_per_hour": round(summary.programs / wall * 3600, 1),
            f"{key}_operations_per_hour": round(summary.operations / wall * 3600, 1),
            f"{key}_states_per_s": round(summary.states / wall, 2),
            # per guest, its check phase alone: what bounds the figures above
            f"{key}_guest_states_per_s": summary.states_per_s,
        }
    return out


def run_bench(
    out: Path,
    backend_name: str = "ext4-overlay2",
    states: int = 48,
    reboot_states: int = 3,
    seed: int = 1,
    campaign_states: int = 0,
    campaign_cuts: int = DEFAULT_CUTS,
    explore_programs: int = 0,
) -> dict[str, Any]:
    say = print
    backend = BACKENDS[backend_name]
    accel, _ = accel_mod.choose()
    images = ensure_images()
    work = Path(tempfile.mkdtemp(prefix="crashtest-bench-"))
    try:
        cfg = CampaignConfig(
            images=images, accel=accel, workload=default_workload(seed), run_dir=work
        )
        base = machine_config(cfg, None)
        say("bench: workload without write log")
        plain = record(base, backend, cfg.workload, work / "plain", with_log=False)
        say("bench: workload with write log")
        rec = record(base, backend, cfg.workload, work / "logged", with_log=True)
        log = rec.parse()

        say(f"bench: checker on {states} states")
        snapshots.idle_guest(cfg, say)  # made (once) before the clock starts
        t0 = time.monotonic()
        results, stats = check_recording(cfg, backend, rec, log, states, say, work / "checker")
        checker_s = time.monotonic() - t0
        everything = select_states(log, seed, 1 << 30)

        say(f"bench: a fresh boot for each of {reboot_states} states")
        eps, chosen = crash_states(log, seed, states)
        replayer = Replayer(log, rec.origin, work / "reboot")
        t0 = time.monotonic()
        for st in chosen[:reboot_states]:
            disk = replayer.build(eps, st, work / "reboot-state.qcow2")
            ep = eps[st.epoch]
            check_by_reboot(
                base,
                backend,
                st.id,
                disk,
                rec.promises_at(ep.first_entry, ep.end_entry),
                work / "reboot.log",
            )
            disk.unlink()
        reboot_s = time.monotonic() - t0

        live = _live_cycles(cfg, backend, seed, say)

        say("bench: offline store oracle on a tree of 20 images")
        store = _store_oracle_time(base, backend, work / "store", images_n=20)
        campaign = (
            _campaign(cfg, campaign_states, campaign_cuts, work, say) if campaign_states else {}
        )
        explored = _explore(explore_programs, work, say) if explore_programs else {}

        checker_rate = len(results) / checker_s * 60
        reboot_rate = reboot_states / reboot_s * 60
        doc = {
            "backend": backend_name,
            "accel": accel,
            "kernel": images.kernel.version,
            "log_entries": len(log.entries),
            "log_bytes": rec.log.stat().st_size,
            "workload_s_plain": round(plain.workload_s, 2),
            "workload_s_logged": round(rec.workload_s, 2),
            "record_overhead": round(rec.workload_s / plain.workload_s, 3),
            "checker_states": len(results),
            "checker_s": round(checker_s, 1),
            "checker_states_per_min": round(checker_rate, 1),
            "reboot_states": reboot_states,
            "reboot_s": round(reboot_s, 1),
            "reboot_states_per_min": round(reboot_rate, 1),
            "checker_speedup": round(checker_rate / reboot_rate, 2),
            "checker_started": f"{stats.get('checker_resumes')} of "
            f"{stats.get('checker_boots')} checker guests resumed",
            "candidate_states": everything.candidates,
            "distinct_states": everything.groups,
            "state_reduction_ratio": round(everything.candidates / max(everything.groups, 1), 3),
            **live,
            **campaign,
            **explored,
            "replay_bytes": stats["replay_bytes"],
            "naive_replay_bytes": stats["naive_replay_bytes"],
            "replay_bytes_ratio": round(
                int(str(stats["replay_bytes"])) / max(1, int(str(stats["naive_replay_bytes"]))), 4
            ),
            "store_oracle_images": store["images"],
            "store_oracle_layers": store["layers"],
            "store_oracle_s": store["seconds"],
            # where a checked state's time goes: host replay, attach, each guest step
            "checker_phase_mean_s": mean_timings(results, digits=3),
            "verdicts": {r.state: r.verdict for r in results},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return doc
