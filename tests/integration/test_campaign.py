"""The whole product on real guests: workload, power cut, reboot, oracles, results."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.images import GuestImages


@pytest.mark.parametrize("backend", ["btrfs", "ext4-overlay2"])
def test_power_cut_cycle_on_each_backend(images: GuestImages, tmp_path: Path, backend: str,
                                         no_leftovers: None) -> None:
    out = tmp_path / "results"
    rc = main(["run", "--backends", backend, "--cuts", "1", "--states", "6", "--seed", "3",
               "--out", str(out)])
    summary = json.loads((out / "latest" / "summary.json").read_text())
    b = summary["backends"][0]
    assert b["backend"] == backend and b["kernel"] == images.kernel.version
    assert b["image"] == images.root.manifest_id and b["accel"] in ("kvm", "tcg")
    assert b["cuts"] == 1 and b["harness_errors"] == []
    # live cuts and replayed lost-cache states in one campaign
    assert b["states_checked"] == 7 and b["live_cuts"] == 1 and b["replayed_states"] == 6
    assert b["replay"]["log_entries"] > 100 and b["replay"]["states"] == 6
    assert b["replay"]["replay_bytes"] < b["replay"]["naive_replay_bytes"]
    # default mount options honour flushes: no cut may break a promise (leaks may show)
    failing = [v for v in b["violations"] if v["class"] != "leak"]
    assert failing == [], json.dumps(failing, indent=1)[:3000]
    assert rc == 0
    state = b["states"][0]
    cell = out / "latest" / backend / "cut0"
    assert (cell / "workload.console.log").exists() and (cell / "verify.console.log").exists()
    assert not (cell / "disk.img").exists()  # a passing state keeps no disk
    junit = (out / "latest" / "junit.xml").read_text()
    assert state["state"] in junit


def test_layer_file_zeroed_between_cut_and_check_is_caught(images: GuestImages, tmp_path: Path,
                                                           no_leftovers: None) -> None:
    out = tmp_path / "results"
    rc = main(["run", "--backends", "ext4-overlay2", "--cuts", "1", "--states", "0", "--cut-at",
               "after:build-app", "--inject", "zero-layer-file", "--out", str(out)])
    assert rc == 1
    b = json.loads((out / "latest" / "summary.json").read_text())["backends"][0]
    classes = {v["class"] for v in b["violations"]}
    assert classes == {"docker-corruption"}
    outputs = "\n".join(v["evidence"]["output"] for v in b["violations"])
    assert "file integrity checksum failed" in outputs  # docker save names the file
    assert "/data/l3/" in outputs and "FAILED" in outputs  # the in-image manifest check
    assert all(v["state"] == "ext4-overlay2/cut0/after-build-app" for v in b["violations"])
    # the cut disk is kept as evidence
    assert (out / "latest" / "ext4-overlay2" / "cut0" / "disk.img").exists()


def test_ctrl_c_stops_and_cleans_up(images: GuestImages, tmp_path: Path,
                                    no_leftovers: None) -> None:
    out = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--backends", "btrfs",
                             "--cuts", "1", "--states", "0", "--out", str(out)],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("[btrfs 1/1]"):
            break
    time.sleep(8)  # inside the workload VM
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not out.exists() or list(out.iterdir()) == []
