"""The whole product on real guests: workload, power cut, reboot, oracles, results."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.images.guest import GuestImages
from harness.repro.bundle import load_bundle


def assert_exit_matches(rc: int, out: Path) -> dict[str, Any]:
    """A campaign that ran through: exit 1 exactly when it found violations, and
    those only docker's own (lost-cache states may hold layers docker registered
    before their files were durable); no harness errors. Returns the summary."""
    summary: dict[str, Any] = json.loads((out / "latest" / "summary.json").read_text())
    totals = summary["totals"]
    assert totals["harness_errors"] == 0 and set(totals["faults"]) <= {"docker"}, totals
    assert rc == (1 if totals["violations"] else 0)
    return summary


@pytest.mark.parametrize(
    "backend", ["btrfs", pytest.param("ext4-overlay2", marks=pytest.mark.full)]
)
def test_power_cut_cycle_on_each_backend(
    images: GuestImages, tmp_path: Path, backend: str, no_leftovers: None
) -> None:
    out = tmp_path / "results"
    rc = main(
        [
            "run",
            "--backends",
            backend,
            "--cuts",
            "1",
            "--states",
            "6",
            "--seed",
            "3",
            "--out",
            str(out),
        ]
    )
    summary = json.loads((out / "latest" / "summary.json").read_text())
    b = summary["backends"][0]
    assert b["backend"] == backend and b["kernel"] == images.kernel.version
    assert b["image"] == images.root.manifest_id and b["accel"] in ("kvm", "tcg")
    assert b["cuts"] == 1 and b["harness_errors"] == []
    # live cuts and replayed lost-cache states in one campaign
    assert b["states_checked"] == 7 and b["live_cuts"] == 1 and b["replayed_states"] == 6
    assert b["replay"]["log_entries"] > 100 and b["replay"]["states"] == 6
    assert b["replay"]["replay_bytes"] < b["replay"]["naive_replay_bytes"]
    # Default mount options honour flushes: the filesystem must keep every promise.
    # Docker's own faults may show (a lost-cache state can hold a layer docker
    # registered before its files were durable); they must name the damaged file.
    failing = [v for v in b["violations"] if v["fault"] != "docker"]
    assert failing == [], json.dumps(failing, indent=1)[:3000]
    for v in b["violations"]:
        assert v["class"] == "leak" or "/var/lib/docker/" in v["evidence"]["output"], v
    assert rc == (1 if any(v["class"] != "leak" for v in b["violations"]) else 0)
    state = b["states"][0]
    cell = out / "latest" / backend / "cut0"
    assert (cell / "workload.console.log").exists() and (cell / "verify1.console.log").exists()
    # both guests of the cycle started from saved guests, and the results say so
    assert state["started"] == "workload resumed, check resumed"
    assert state["timings"]["workload_resume_s"] < state["timings"]["workload_workload_s"]
    assert not (cell / "disk.img").exists()  # a passing state keeps no disk
    junit = (out / "latest" / "junit.xml").read_text()
    assert state["state"] in junit


def test_layer_file_zeroed_between_cut_and_check_is_caught(
    images: GuestImages, tmp_path: Path, no_leftovers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The harness zeroes a file of the app image's top layer after the cut: caught,
    minimized to the steps it needs, bundled, and (as the stack is not at fault) not
    reproduced by the bundle."""
    out = tmp_path / "results"
    rc = main(
        [
            "run",
            "--backends",
            "ext4-overlay2",
            "--cuts",
            "1",
            "--states",
            "0",
            "--cut-at",
            "after:commit",
            "--inject",
            "zero-layer-file",
            "--minimize-steps",
            "4",
            "--out",
            str(out),
        ]
    )
    assert rc == 1
    b = json.loads((out / "latest" / "summary.json").read_text())["backends"][0]
    classes = {v["class"] for v in b["violations"]}
    assert classes == {"docker-corruption"}
    outputs = "\n".join(v["evidence"]["output"] for v in b["violations"])
    assert "/data/l3/" in outputs  # the offline manifest check names the file
    saves = "\n".join(v["evidence"].get("docker_save", "") for v in b["violations"])
    assert "file integrity checksum failed" in saves  # and docker save, asked, agrees
    assert all(v["state"] == "ext4-overlay2/cut0/after-commit" for v in b["violations"])
    # the cut disk is evidence: the bundle keeps it compressed, no sparse 4 GiB
    # file stays in the results, and the bundle can check the cut again
    assert not list((out / "latest").rglob("*.img"))
    bundle = out / "latest" / b["states"][0]["bundle"]
    assert (bundle / "disk.qcow2").exists()
    meta = load_bundle(bundle).meta
    assert meta["kind"] == "live"
    # The damage needs only the app image: build-scratch and fsync-volume go, the
    # rest is what a cut after commit needs.
    assert meta["minimal"]["steps"] == [
        "import-base",
        "build-app",
        "create-writer",
        "start-writer",
        "fsync-layer",
        "commit",
    ]
    assert meta["minimal"]["original_steps"][-1] == "commit" and meta["minimal"]["tests"] == 1
    capsys.readouterr()
    # The bundle says what it is and the one command, with no path of this run in it;
    # moved elsewhere it still reproduces.
    text = (bundle / "README.txt").read_text()
    assert "[docker-corruption, filesystem's fault]" in text
    assert f"crashtest repro {bundle.name}" in text
    assert str(tmp_path) not in (bundle / "bundle.json").read_text()
    assert "$CRASHTEST_CACHE/" in " ".join(meta["qemu_argv"])
    assert "=" in meta["kernel"]["spec"]  # suite:package=version: exactly that build
    moved = tmp_path / "elsewhere" / bundle.name
    moved.parent.mkdir()
    shutil.move(bundle, moved)
    # The damage was injected by the harness after the cut, not made by the stack: the
    # bundle's cut disk rechecks clean and a fresh cut does not reproduce it.
    assert main(["repro", str(moved), "--runs", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(a["what"], a["reproduced"]) for a in report["attempts"]] == [
        ("cut disk", False),
        ("live cut", False),
        ("minimal", False),
    ]
    assert report["rate"] == 0 and report["expected"]


def test_cut_after_docker_commit_returned_finds_dockers_zero_byte_layer_file(
    images: GuestImages, tmp_path: Path, no_leftovers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The most reported real-world failure, on an unmodified kernel and docker: a
    power cut right after `docker commit` returned (before anyone ran sync) leaves
    a registered layer with a 0-byte file. docker lists the image as usable; only
    the offline content check (and `docker save`) see it; it is docker's fault, and
    a fresh cut reproduces it."""
    out = tmp_path / "results"
    rc = main(
        [
            "run",
            "--backends",
            "ext4-overlay2",
            "--cuts",
            "1",
            "--states",
            "0",
            "--cut-at",
            "returned:commit",
            "--out",
            str(out),
        ]
    )
    assert rc == 1
    b = json.loads((out / "latest" / "summary.json").read_text())["backends"][0]
    bad = [v for v in b["violations"] if v["class"] != "leak"]
    assert [(v["class"], v["fault"]) for v in bad] == [("docker-corruption", "docker")], bad
    v = bad[0]
    assert v["promise"].startswith("image crashtest/committed:s1, which docker restores")
    assert "file data/out/layer.bin has 0 bytes, tar-split says 139777" in v["evidence"]["output"]
    assert "(exit 0)" in v["evidence"]["docker_lists_it"]  # docker serves it as usable
    assert "crashtest/committed:s1" in v["evidence"]["docker_lists_it"]
    assert "(exit 0)" not in v["evidence"]["docker_save"]  # only a re-hash notices
    capsys.readouterr()
    bundle = out / "latest" / b["states"][0]["bundle"]
    assert main(["repro", str(bundle), "--runs", "1", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(a["what"], a["reproduced"]) for a in report["attempts"]] == [
        ("cut disk", True),
        ("live cut", True),
    ]


def _default_sigint() -> None:
    # A background job of a non-interactive shell ignores SIGINT, and a child
    # inherits that: give crashtest the default handler a terminal user has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_and_cleans_up_then_resume_finishes(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    """With two guests at a time (worker processes): Ctrl-C after the first unit
    finished stops every guest and keeps that unit; --resume runs only the rest
    and gives the totals of the whole plan."""
    out = tmp_path / "results"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "--backends",
            "btrfs",
            "--cuts",
            "3",
            "--states",
            "0",
            "--jobs",
            "2",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("[#") or line.startswith("[."):  # a unit was recorded
                break
        time.sleep(5)  # inside the next units' guests
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted" in err and "finish with: crashtest run --resume" in rest
    finally:
        if proc.poll() is None:  # a failed test stops what it started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    [run] = [p for p in out.iterdir() if p.is_dir()]
    part = json.loads((run / "summary.json").read_text())
    assert part["incomplete"] == "interrupted" and 1 <= len(part["units_done"]) < 3
    assert part["totals"]["states_checked"] == len(part["units_done"])
    kept = {s["state"]: s["wall_s"] for s in part["backends"][0]["states"]}
    assert main(["run", "--resume", str(run)]) in (0, 1)
    doc = json.loads((run / "summary.json").read_text())
    assert "incomplete" not in doc and doc["units_done"] == [0, 1, 2]
    assert doc["totals"]["states_checked"] == 3 and doc["totals"]["harness_errors"] == 0
    states = {s["state"]: s["wall_s"] for s in doc["backends"][0]["states"]}
    assert sorted(s.split("/")[1] for s in states) == ["cut0", "cut1", "cut2"]
    assert all(states[k] == w for k, w in kept.items())  # kept, not run again
    assert (out / "latest").resolve() == run.resolve()


@pytest.mark.full
def test_shards_merge_to_the_totals_of_one_parallel_run(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    """The same campaign and seed: once unsharded with two guests at a time, once as
    two shards merged afterwards; then one HTML report over all of it."""
    args = [
        "run",
        "--backends",
        "ext4-overlay2",
        "--cuts",
        "1",
        "--states",
        "3",
        "--seed",
        "5",
        "--cut-at",
        "after:build-scratch",
    ]
    assert_exit_matches(
        main([*args, "--jobs", "2", "--out", str(tmp_path / "whole")]), tmp_path / "whole"
    )
    for i in (1, 2):
        assert_exit_matches(
            main([*args, "--shard", f"{i}/2", "--out", str(tmp_path / f"shard{i}")]),
            tmp_path / f"shard{i}",
        )
    shards = [(tmp_path / f"shard{i}" / "latest").resolve() for i in (1, 2)]
    shard_totals = [json.loads((s / "summary.json").read_text())["totals"] for s in shards]
    found = sum(t["violations"] for t in shard_totals)
    assert main(["merge", str(tmp_path / "merged"), *map(str, shards)]) == (1 if found else 0)
    whole = json.loads((tmp_path / "whole" / "latest" / "summary.json").read_text())
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert merged["totals"]["violations"] == found
    # Each run records its own write log, and what a lost-cache state holds depends
    # on when the writes landed: leaks and docker's own faults may differ between
    # runs (no other fault may show, see assert_exit_matches), the states may not.
    same = ("states_checked", "harness_errors")
    assert {k: merged["totals"][k] for k in same} == {k: whole["totals"][k] for k in same}
    assert merged["totals"]["states_checked"] == 4
    parts = [json.loads((s / "summary.json").read_text())["shard"]["units"] for s in shards]
    assert sorted(parts[0] + parts[1]) == [0, 1] and parts[0] != parts[1]
    assert main(["merge", str(tmp_path / "again"), str(shards[0])]) == 2  # a shard missing
    assert (
        main(
            [
                "report",
                str(tmp_path / "whole"),
                str(tmp_path / "merged"),
                "-o",
                str(tmp_path / "report.html"),
            ]
        )
        == 0
    )
    assert "ext4-overlay2" in (tmp_path / "report.html").read_text()


@pytest.mark.full
def test_kernel_matrix_in_one_campaign(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    """Debian 6.1 and 6.12 in one campaign, two guests at a time, one report."""
    kernels = "bookworm:linux-image-cloud-amd64,trixie:linux-image-cloud-amd64"
    out = tmp_path / "results"
    summary = assert_exit_matches(
        main(
            [
                "run",
                "--kernels",
                kernels,
                "--backends",
                "ext4-overlay2",
                "--cuts",
                "0",
                "--states",
                "2",
                "--jobs",
                "2",
                "--out",
                str(out),
            ]
        ),
        out,
    )
    got = sorted(b["kernel"].split(".")[:2] for b in summary["backends"])
    assert got == [["6", "1"], ["6", "12"]]
    assert all(b["states_checked"] == 2 for b in summary["backends"])
    assert all(k["build_id"] != "unknown" for k in summary["kernels"])
    for b in summary["backends"]:  # each kernel's results in its own directory
        assert (out / "latest" / b["kernel"] / "ext4-overlay2" / "replay" / "replay.json").exists()
    assert main(["report", str(out)]) == 0
    page = (out / "latest" / "report.html").read_text()
    assert all(b["kernel"] in page for b in summary["backends"])
