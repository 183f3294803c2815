import json
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.model import StateResult, Violation
from harness.report.results import BackendSummary, point_latest, write_junit, write_summary


def summaries() -> list[BackendSummary]:
    ok = StateResult("btrfs/cut0/after-x", "btrfs", "after x", wall_s=3)
    bad = StateResult("btrfs/cut1/after-y", "btrfs", "after y", wall_s=4,
                      violations=[Violation("docker-lost", "btrfs/cut1/after-y", "image a exists",
                                            {"command": "docker image inspect a"})])
    err = StateResult("btrfs/cut2/after-z", "btrfs", "after z", harness_error="GuestBootError: x")
    b = BackendSummary("btrfs", "6.12", "rootfs-1", "tcg", 3, {}, [ok, bad, err], 10)
    return [b]


def test_summary_has_the_promised_fields(tmp_path: Path) -> None:
    doc = json.loads(write_summary(tmp_path, {"run_id": "r"}, summaries()).read_text())
    b = doc["backends"][0]
    for key in ("backend", "kernel", "image", "accel", "cuts", "states_checked", "violations",
                "harness_errors", "wall_s"):
        assert key in b
    assert b["states_checked"] == 2
    assert b["violations"][0] == {"class": "docker-lost", "state": "btrfs/cut1/after-y",
                                  "promise": "image a exists",
                                  "evidence": {"command": "docker image inspect a"},
                                  "fault": "filesystem", "check": "", "subject": ""}
    assert doc["totals"] == {"states_checked": 2, "violations": 1, "leaks": 0,
                             "harness_errors": 1, "faults": {"filesystem": 1}}


def test_junit_one_case_per_state(tmp_path: Path) -> None:
    root = ET.parse(write_junit(tmp_path, summaries())).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 3
    assert cases[1].find("failure") is not None and cases[1].find("failure").get("type") == \
        "docker-lost"
    assert cases[2].find("error") is not None


def test_latest_points_at_newest(tmp_path: Path) -> None:
    for name in ("run1", "run2"):
        (tmp_path / name).mkdir()
        point_latest(tmp_path, tmp_path / name)
    assert (tmp_path / "latest").resolve() == (tmp_path / "run2").resolve()
