"""Lost-cache crash states on real guests: a configuration that honours flushes
passes every state; one that never flushes is caught; replay is deterministic."""

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from harness.campaign import snapshots
from harness.campaign.context import CampaignConfig, machine_config
from harness.campaign.lost_cache import check_recording
from harness.campaign.reproduce import reproduce
from harness.images.guest import GuestImages
from harness.oracles.checker import Checker, StateCheck
from harness.repro.bundle import load_bundle, signature, violations
from harness.storage.backends import BACKENDS, make_test_disk, parse_backends
from harness.vm import accel
from harness.workloads.default import workload as default_workload
from harness.writelog.record import Recording, record
from harness.writelog.states import epochs


def config(images: GuestImages, tmp: Path, seed: int = 1) -> CampaignConfig:
    return CampaignConfig(
        images=images, accel=accel.choose()[0], workload=default_workload(seed), run_dir=tmp
    )


@pytest.fixture(scope="module")
def safe_recording(images: GuestImages, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    tmp = tmp_path_factory.mktemp("safe")
    cfg = config(images, tmp)
    return record(machine_config(cfg, None), BACKENDS["ext4-overlay2"], cfg.workload, tmp)


def test_recording_ties_events_to_log_positions(safe_recording: Recording) -> None:
    log = safe_recording.parse()
    positions = [e.entry for e in safe_recording.events]
    assert positions == sorted(positions) and positions[-1] <= len(log.entries)
    assert [e.step for e in safe_recording.events] == default_workload(1).step_names
    assert sum(1 for e in log.entries if e.is_flush) > 10  # docker's fsyncs reach the disk
    # what a state may promise grows with the log
    assert len(safe_recording.promises_at(0)) == 0
    assert len(safe_recording.promises_at(positions[-1])) >= 7


@pytest.mark.full
def test_flush_honouring_config_passes_and_replay_is_deterministic(
    images: GuestImages, safe_recording: Recording, tmp_path: Path, no_leftovers: None
) -> None:
    cfg = config(images, tmp_path)
    log = safe_recording.parse()
    backend = BACKENDS["ext4-overlay2"]
    first, stats = check_recording(cfg, backend, safe_recording, log, 10, print, tmp_path / "a")
    second, _ = check_recording(cfg, backend, safe_recording, log, 10, print, tmp_path / "b")
    assert [r.state for r in first] == [r.state for r in second]
    assert [r.verdict for r in first] == [r.verdict for r in second]
    assert all(not r.harness_error for r in first)
    # flushes are honoured: every promise kept; only docker's own faults may show
    bad = [v.headline() for r in first for v in r.violations if v.fault != "docker"]
    assert bad == []
    assert stats["checker_boots"] == 1  # one guest checked every state
    assert any(r.promises for r in first)  # later states carry the workload's promises


def test_config_that_never_flushes_is_caught_minimized_and_reproduced(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    """ext4 with barrier=0 issues no flushes: losing the disk cache breaks it. The
    failing state becomes a bundle, minimized, that still reproduces once moved."""
    backend = parse_backends("ext4-overlay2", mount_options="barrier=0")[0]
    cfg = replace(config(images, tmp_path), minimize_tests=30)
    rec = record(machine_config(cfg, None), backend, cfg.workload, tmp_path / "rec")
    log = rec.parse()
    # the only flush is the one QEMU logs when the power cut stops the VM, at the end
    assert sum(1 for e in log.entries if e.is_flush) <= 1
    assert len(epochs(log)[0].entries) > 1000
    results, _ = check_recording(cfg, backend, rec, log, 10, print, tmp_path / "chk")
    caught = [v for r in results for v in r.violations if v.cls == "fs-corruption"]
    assert caught, [r.to_json() for r in results]
    assert all(v.evidence for v in caught)
    # the filesystem was told not to flush: the configuration's fault, not ext4's
    assert {v.fault for v in caught} == {"configuration"}
    assert all(v.evidence["configuration"] == "barrier=0" for v in caught)

    bundled = [r for r in results if r.bundle]
    assert {r.state for r in bundled} == {r.state for r in results if r.verdict == "violation"}
    moved = Path(shutil.move(tmp_path / bundled[0].bundle, tmp_path / "elsewhere"))
    bundle = load_bundle(moved)
    assert bundle.meta["kernel"]["build_id"] == images.kernel.info["build_id"] != "unknown"
    assert bundle.meta["backend"]["mount_options"] == "barrier=0"
    assert bundle.meta["qemu_argv"][0] == "qemu-system-x86_64"
    minimal = bundle.meta["minimal"]
    assert minimal and 0 < len(minimal["dropped_entries"]) < minimal["original_dropped"]
    # the minimal state still breaks every promise the original broke (it may break
    # more: with fewer writes kept, fsck can fail too)
    assert set(bundle.signature()) <= set(signature(violations(minimal["violations"])))
    report = reproduce(bundle, runs=2)
    assert report.runs == 2 and report.reproduced == 2 and report.kernel_matches
    assert [a.reproduced for a in report.attempts if a.what == "minimal"] == [True]


@pytest.mark.full
def test_checker_sees_each_state_not_a_cached_one(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    """States are swapped under one guest device (blockdev-reopen) of a checker
    resumed from a saved guest (whose page cache predates every state): a clean
    disk, a disk whose superblock is gone, the clean one again: pass, fail, pass, fail."""
    backend = BACKENDS["ext4-overlay2"]
    clean = make_test_disk(backend, tmp_path / "clean.img")
    broken = make_test_disk(backend, tmp_path / "broken.img")
    with broken.open("r+b") as f:  # the primary superblock lives at byte 1024
        f.seek(1024)
        f.write(bytes(1024))
    cfg = config(images, tmp_path)
    verdicts = []
    saved = snapshots.idle_guest(cfg, print)
    with Checker(machine_config(cfg, None), backend, tmp_path, saved=saved) as checker:
        for i, disk in enumerate([clean, broken, clean, broken]):
            found = checker.check(StateCheck(f"s{i}", disk)).violations
            verdicts.append(sorted({v.cls for v in found}))
        assert checker.boots == 1 and checker.resumed == 1 and checker.started == "resumed"
    assert verdicts == [[], ["fs-corruption"], [], ["fs-corruption"]]
