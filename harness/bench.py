"""`make bench`: numbers measured in one run on one log, written to results/bench.json.

- record_overhead: workload wall time through blklogwrites / without it;
- checker_states_per_min vs reboot_states_per_min (a fresh guest boot per state),
  on the same crash states, and their ratio checker_speedup;
- replay_bytes vs naive_replay_bytes (replaying from the log's start for each state);
- store_oracle_s: the offline docker store oracle over a tree of 20 images.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.campaign.context import CampaignConfig, machine_config
from harness.campaign.lost_cache import check_recording
from harness.errors import HarnessError
from harness.guest import docker
from harness.images import ensure_images
from harness.images.rootfs import BASE_TAR_IN_GUEST
from harness.oracles.checker import check_by_reboot
from harness.report.results import mean_timings
from harness.storage.backends import BACKENDS, Backend, make_test_disk
from harness.vm import accel as accel_mod
from harness.vm.machine import Machine
from harness.vm.qemu import Disk, MachineConfig
from harness.workloads.default import workload as default_workload
from harness.writelog.record import record
from harness.writelog.replay import Replayer
from harness.writelog.states import crash_states


def _store_oracle_time(base: MachineConfig, backend: Backend, workdir: Path,
                       images_n: int) -> dict[str, Any]:
    """Build a store of `images_n` committed images, stop dockerd, time the offline
    structure + content oracle over all of it inside the guest."""
    disk = make_test_disk(backend, workdir / "disk.img")
    config = replace(base, disks=(*base.disks, Disk(disk, "data")))
    with Machine(config, workdir / "store.console.log", name="bench-store") as vm:
        vm.wait_booted()
        a = vm.agent
        if not docker.mount_data(a, backend).ok or not docker.start_dockerd(a, backend).ok:
            raise HarnessError("bench: docker did not start on a fresh disk")
        script = (f"docker import {BASE_TAR_IN_GUEST} bench/base && "
                  "docker create --name benchbox bench/base sleep 1 && "
                  f"for i in $(seq {images_n - 1}); do head -c 200000 /dev/urandom > /tmp/f && "
                  "docker cp /tmp/f benchbox:/f$i && "
                  "docker commit benchbox bench/img$i >/dev/null || exit 1; done")
        built = a.run(script, timeout=900)
        if not built.ok:
            raise HarnessError(f"bench: building images failed: {built.evidence(400)}")
        docker.stop_dockerd(a)
        res = a.run("cd /crashtest && python3 -c 'import json,time; "
                    "from crashtest_guest.docker_store import DockerStore; t=time.monotonic(); "
                    "s=DockerStore(\"/var/lib/docker\"); f=s.check(); "
                    "print(json.dumps({**s.stats, \"findings\": len(f), "
                    "\"seconds\": round(time.monotonic()-t, 2)}))'", timeout=600)
        if not res.ok:
            raise HarnessError(f"bench: store oracle failed: {res.evidence(400)}")
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def run_bench(out: Path, backend_name: str = "ext4-overlay2", states: int = 48,
              reboot_states: int = 3, seed: int = 1) -> dict[str, Any]:
    say = print
    backend = BACKENDS[backend_name]
    accel, _ = accel_mod.choose()
    images = ensure_images()
    work = Path(tempfile.mkdtemp(prefix="crashtest-bench-"))
    try:
        cfg = CampaignConfig(images=images, accel=accel, workload=default_workload(seed),
                             run_dir=work)
        base = machine_config(cfg, None)
        say("bench: workload without write log")
        plain = record(base, backend, cfg.workload, work / "plain", with_log=False)
        say("bench: workload with write log")
        rec = record(base, backend, cfg.workload, work / "logged", with_log=True)
        log = rec.parse()

        say(f"bench: checker on {states} states")
        t0 = time.monotonic()
        results, stats = check_recording(cfg, backend, rec, log, states, say, work / "checker")
        checker_s = time.monotonic() - t0

        say(f"bench: a fresh boot for each of {reboot_states} states")
        eps, chosen = crash_states(log, seed, states)
        replayer = Replayer(log, rec.origin, work / "reboot")
        t0 = time.monotonic()
        for st in chosen[:reboot_states]:
            disk = replayer.build(eps, st, work / "reboot-state.qcow2")
            ep = eps[st.epoch]
            check_by_reboot(base, backend, st.id, disk,
                            rec.promises_at(ep.first_entry, ep.end_entry), work / "reboot.log")
            disk.unlink()
        reboot_s = time.monotonic() - t0

        say("bench: offline store oracle on a tree of 20 images")
        store = _store_oracle_time(base, backend, work / "store", images_n=20)

        checker_rate = len(results) / checker_s * 60
        reboot_rate = reboot_states / reboot_s * 60
        doc = {
            "backend": backend_name, "accel": accel, "kernel": images.kernel.version,
            "log_entries": len(log.entries), "log_bytes": rec.log.stat().st_size,
            "workload_s_plain": round(plain.workload_s, 2),
            "workload_s_logged": round(rec.workload_s, 2),
            "record_overhead": round(rec.workload_s / plain.workload_s, 3),
            "checker_states": len(results), "checker_s": round(checker_s, 1),
            "checker_states_per_min": round(checker_rate, 1),
            "reboot_states": reboot_states, "reboot_s": round(reboot_s, 1),
            "reboot_states_per_min": round(reboot_rate, 1),
            "checker_speedup": round(checker_rate / reboot_rate, 2),
            "replay_bytes": stats["replay_bytes"],
            "naive_replay_bytes": stats["naive_replay_bytes"],
            "replay_bytes_ratio": round(int(str(stats["replay_bytes"]))
                                        / max(1, int(str(stats["naive_replay_bytes"]))), 4),
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
