"""Merging shards of one campaign (the real-VM test compares with an unsharded run)."""

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import InputError
from harness.model import StateResult, Violation
from harness.report.merge import merge_all, merge_runs
from harness.report.results import BackendSummary
from tests.resultsfactory import write_summary


def shard(root: Path, i: int, n: int, seed: int = 1, bad: bool = False, name: str = "") -> Path:
    run = root / (name or f"run-s{seed}-shard{i}of{n}")
    (run / "bundles" / f"b{i}").mkdir(parents=True)
    (run / "bundles" / f"b{i}" / "bundle.json").write_text("{}")
    st = StateResult(f"btrfs/cut{i}/after-x", "btrfs", "after x", wall_s=10)
    if bad:
        st.violations = [Violation("fs-corruption", st.state, "fsck is clean", {"o": "x"})]
        st.bundle = f"bundles/b{i}"
    b = BackendSummary("btrfs", "6.12", "img", "tcg", 2, {}, [st], 10)
    write_summary(
        run,
        {
            "run_id": run.name,
            "campaign": {"seed": seed, "kernels": ["6.12"], "backends": [{"name": "btrfs"}]},
            "shard": {"index": i, "count": n, "units": [i - 1], "total_units": n},
        },
        [b],
    )
    return run


def test_merge_sums_states_and_keeps_bundles(tmp_path: Path) -> None:
    runs = [shard(tmp_path, 1, 2), shard(tmp_path, 2, 2, bad=True)]
    out = merge_runs(tmp_path / "merged", runs)
    doc = json.loads((out / "summary.json").read_text())
    t = doc["totals"]
    assert (
        t["states_checked"],
        t["violations"],
        t["new"],
        t["leaks"],
        t["harness_errors"],
        t["faults"],
    ) == (2, 1, 1, 0, 0, {"filesystem": 1})
    assert doc["backends"][0]["wall_s"] == 20
    assert (out / "bundles" / "b2" / "bundle.json").exists()
    assert (out / "junit.xml").exists() and (out / "report.html").exists()


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda t: [shard(t, 1, 2)], r"shards \[1\] of 2"),
        (lambda t: [shard(t, 1, 2), shard(t, 1, 2, name="again")], r"shards \[1, 1\] of 2"),
        (lambda t: [shard(t, 1, 2), shard(t, 2, 2, seed=9)], "different campaign"),
        (lambda t: [t], "summary.json: cannot read it"),
    ],
)
def test_bad_merges_are_clear_errors(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(InputError, match=message):
        merge_runs(tmp_path / "merged", make(tmp_path))
    assert not (tmp_path / "merged").exists()
    assert not list(tmp_path.glob(".merged*"))


def test_merge_all_groups_shards_by_campaign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for seed in (1, 2):
        for i in (1, 2):
            shard(tmp_path / "artifacts" / f"job{seed}{i}", i, 2, seed=seed, bad=seed == 2)
    merged, failed = merge_all(tmp_path / "merged", [tmp_path / "artifacts"])
    assert [m.name for m in merged] == ["6.12-btrfs-s1", "6.12-btrfs-s2"] and not failed
    assert main(["merge", "--all", str(tmp_path / "again"), str(tmp_path / "artifacts")]) == 1
    assert main(["report", str(tmp_path / "again")]) == 0
    assert "2 run(s)" in (tmp_path / "again" / "report.html").read_text()


def test_merge_all_merges_what_is_complete_and_names_what_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shard job that broke left no artifact: its campaign is named, the others
    are merged, and the exit says the run is broken (2), not clean."""
    for i in (1, 2):
        shard(tmp_path / "artifacts" / f"job1{i}", i, 2, seed=1)
    shard(tmp_path / "artifacts" / "job21", 1, 2, seed=2)
    capsys.readouterr()
    assert main(["merge", "--all", str(tmp_path / "m"), str(tmp_path / "artifacts")]) == 2
    assert (tmp_path / "m" / "6.12-btrfs-s1" / "summary.json").exists()
    err = capsys.readouterr().err
    assert "could not merge 6.12-btrfs-s2: merge: shards [1] of 2" in err
