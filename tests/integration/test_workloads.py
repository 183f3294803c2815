"""User workloads from outside the package, in both forms, on both backends, with
live cuts and lost-cache states: each plants a fault (a later step empties a file
an earlier step fsync'd and promised), and the verdict must name that file."""

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.images.guest import GuestImages
from harness.repro.bundle import load_bundle

HERE = Path(__file__).parents[1] / "workloads"
BACKENDS = "btrfs,ext4-overlay2"


def run(workload: Path, out: Path, cut_at: str, states: int) -> tuple[int, dict[str, Any]]:
    # two units at a time: the workload travels to the worker processes as data
    rc = main(
        [
            "run",
            "--workload",
            str(workload),
            "--backends",
            BACKENDS,
            "--cuts",
            "1",
            "--cut-at",
            cut_at,
            "--states",
            str(states),
            "--seed",
            "2",
            "--out",
            str(out),
            "--jobs",
            "2",
        ]
    )
    return rc, json.loads((out / "latest" / "summary.json").read_text())


def planted(b: dict[str, Any], subject: str) -> list[dict[str, Any]]:
    return [v for v in b["violations"] if v["subject"] == subject]


def check_summary(rc: int, summary: dict[str, Any], subject: str, name: str) -> None:
    assert rc == 1
    assert summary["workload"] == name and len(summary["workload_digest"]) == 16
    assert [b["backend"] for b in summary["backends"]] == BACKENDS.split(",")
    for b in summary["backends"]:
        assert b["harness_errors"] == [], b["harness_errors"]
        assert b["live_cuts"] == 1 and b["replayed_states"] >= 1
        live = next(s for s in b["states"] if s["kind"] == "live")
        # the live cut after the clobber's sync: the promise broke, named by its file
        found = planted({"violations": live["violations"]}, subject)
        assert [(v["class"], v["fault"], v["check"]) for v in found] == [
            ("fs-durability", "filesystem", "promise.file")
        ], live["violations"]
        assert "got e3b0c44298fc1c14" in found[0]["evidence"]["output"]  # sha256 of nothing
        # nothing else may break: only the planted promise, or docker's own faults
        others = [v for v in b["violations"] if v["subject"] != subject and v["fault"] != "docker"]
        assert others == [], others


def test_python_workload_and_its_bundle_without_the_file(
    images: GuestImages, tmp_path: Path, no_leftovers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "my_workload.py"
    shutil.copy(HERE / "volume_fsync.py", mine)
    rc, summary = run(mine, tmp_path / "res", "after:clobber", 3)
    subject = "file:volume:vol:/data.txt"
    check_summary(rc, summary, subject, "volume-fsync")
    # the derived hash is the live guest's content: seq 1 2002 (seed 2)
    want = hashlib.sha256("".join(f"{i}\n" for i in range(1, 2003)).encode()).hexdigest()
    live = summary["backends"][0]["states"][0]
    assert f"want {want}" in planted(live, subject)[0]["evidence"]["output"]
    bundle = tmp_path / "res" / "latest" / live["bundle"]
    assert load_bundle(bundle).meta["workload"]["name"] == "volume-fsync"
    # The user's file is gone: the bundle carries the workload as data.
    mine.unlink()
    capsys.readouterr()
    assert main(["repro", str(bundle), "--runs", "1", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(a["what"], a["reproduced"]) for a in report["attempts"]] == [
        ("cut disk", True),
        ("live cut", True),
    ]


def test_toml_workload(images: GuestImages, tmp_path: Path, no_leftovers: None) -> None:
    rc, summary = run(HERE / "layer_fsync.toml", tmp_path / "res", "after:clobber", 3)
    check_summary(rc, summary, "file:container:keeper:/kept.txt", "layer-fsync")


def test_a_dry_run_runs_each_step_once_and_names_a_failing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_leftovers: None
) -> None:
    """`run --dry-run`: the steps in a real guest, no cut, no checks, no results
    directory; a step whose command fails is named with its output, exit 2."""
    out = tmp_path / "res"
    args = ["run", "--dry-run", "--backends", "ext4-overlay2", "--out", str(out)]
    example = Path(__file__).parents[2] / "examples/volume.toml"  # the README's
    assert main([*args, "--workload", str(example)]) == 0
    said = capsys.readouterr().out
    assert "step 2/2 write: ok" in said and "promises: volume:vol:/f has sha256" in said
    assert "2 steps ran; no cut, nothing checked" in said
    assert not out.exists()
    broken = tmp_path / "broken.toml"
    broken.write_text(
        (HERE / "layer_fsync.toml")
        .read_text()
        .replace("docker stop -t 0 keeper", "docker stop -t 0 no-such-container")
    )
    assert main([*args, "--workload", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crashtest: error: ") and "broken.toml:" in err
    assert "workload step stop failed" in err and "No such container: no-such-container" in err
