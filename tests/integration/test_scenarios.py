"""The built-in scenarios on real guests, both backends, small budgets: each runs a
live cut after its last promise (and `pull` two lost-cache states too: a recording
costs a second run of the workload, so the others, whose recording is the same code,
leave it out), with its damage target zeroed on every recovered disk
(`--inject zero-layer-file`); the oracle that scenario is about must name the planted
damage. One runs on bookworm's docker 20.10."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.images.guest import GuestImages
from harness.workloads import load_workload

BACKENDS = "btrfs,ext4-overlay2"
# scenario -> (the live cut, the check that must catch the planted damage, states)
PLANTED = {
    "pull": ("after:pull", "promise.image", 2),
    "load": ("after:load", "promise.image", 0),
    "copy-up": ("after:change-plain", "promise.file", 0),
    "churn": ("after:build-app", "promise.image", 0),
    "stress": ("after:ops-vol-2", "promise.file", 0),
    # seed 1's generated sequence: load, restart, load, run, run, commit
    "sequence": ("after:commit-7", "promise.image", 0),
}


def campaign(tmp_path: Path, name: str, *extra: str) -> tuple[int, dict[str, Any]]:
    cut_at, _, states = PLANTED[name]
    out = tmp_path / "res"
    rc = main(
        [
            "run",
            "--workload",
            name,
            "--backends",
            BACKENDS,
            "--cuts",
            "1",
            "--cut-at",
            cut_at,
            "--states",
            str(states),
            "--inject",
            "zero-layer-file",
            "--seed",
            "1",
            "--jobs",
            "2",
            "--out",
            str(out),
            *extra,
        ]
    )
    return rc, json.loads((out / "latest" / "summary.json").read_text())


def check_caught(rc: int, summary: dict[str, Any], name: str) -> None:
    _, check, states = PLANTED[name]
    target = load_workload(name, 1).damage_target
    assert rc == 1, summary["totals"]
    assert [b["backend"] for b in summary["backends"]] == BACKENDS.split(",")
    for b in summary["backends"]:
        assert b["harness_errors"] == [], b["harness_errors"]
        assert b["workload"] == name and b["live_cuts"] == 1
        assert b["replayed_states"] == states
        assert b["docker"]["driver"] == ("btrfs" if b["backend"] == "btrfs" else "overlay2")
        live = next(s for s in b["states"] if s["kind"] == "live")
        caught = [
            v
            for v in live["violations"]
            if v["check"] == check
            and v["fault"] == "filesystem"
            and target.lstrip("/") in json.dumps(v["evidence"])
        ]
        assert caught, (target, live["violations"])
        # nothing else broke: every filesystem verdict is about the planted damage (a
        # hard link of the damaged file shows the same wanted content)
        wanted = {w for v in caught for w in re.findall(r"want \w+", json.dumps(v))}
        others = [
            v
            for s in b["states"]
            for v in s["violations"]
            if v["fault"] == "filesystem"
            and target.lstrip("/") not in json.dumps(v["evidence"])
            and not wanted & set(re.findall(r"want \w+", json.dumps(v)))
        ]
        assert others == [], others


# pull (a real registry) and a generated sequence in `make test`; the others nightly
@pytest.mark.parametrize(
    "name",
    [
        n if n in ("pull", "sequence") else pytest.param(n, marks=pytest.mark.full)
        for n in sorted(PLANTED)
    ],
)
def test_scenario_catches_its_planted_fault_on_both_backends(
    name: str, images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    rc, summary = campaign(tmp_path, name)
    check_caught(rc, summary, name)
    if name == "copy-up":  # the unsynced copy-ups were observed, not judged
        for b in summary["backends"]:
            live = next(s for s in b["states"] if s["kind"] == "live")
            assert len(live["observed"]) == 16, live["observed"]  # 7 ops x 2 sizes + 2 renames
            assert set(live["observed"].values()) <= {"old", "new", "empty", "other"}
            assert b["observed"] == {t: {o: 1} for t, o in live["observed"].items()}


def test_bookworm_docker_20_10(images: GuestImages, tmp_path: Path, no_leftovers: None) -> None:
    """The same scenario on Debian bookworm's guest root: docker 20.10 and containerd
    1.6, their store laid out as they lay it out, the same oracles."""
    rc, summary = campaign(tmp_path, "load", "--release", "bookworm")
    check_caught(rc, summary, "load")
    assert all(
        b["release"] == "bookworm" and b["docker"]["docker"].startswith("20.10")
        for b in summary["backends"]
    )
    assert summary["releases"]["bookworm"]["containerd"].startswith("1.6")
