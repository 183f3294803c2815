"""`crashtest compare` without guests: input, order, statistics, parsing, and
the results built from a run's pieces (a failed arm is failed, never a zero)."""

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.compare.measure import RECLAIM, Op, btrfs_usage, per_op
from harness.compare.report import build_compare, headline, write_compare_html
from harness.compare.run import CompareOptions, order, tasks, validate, variant_backend
from harness.compare.stats import spread, wilson
from harness.errors import InputError
from harness.model import StateResult, Violation
from harness.report.results import BackendSummary, write_results
from harness.report.summary import RunMeta
from harness.storage.backends import BACKENDS
from tests.unit.test_cli_input import assert_bad_input, run_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arms", "zfs"], "unknown arm 'zfs'"),
        (["--arms", ","], "ARMS is empty"),
        (["--arms", "btrfs,btrfs"], "names an arm twice"),
        (["--reps", "0"], "REPS (0) must be at least 1"),
        (["--m1-states", "0"], "M1 states (0) must be at least 1"),
        (["--metrics", "M1,M9"], "METRICS 'M1,M9'"),
        (["--enospc-disk", "64"], "ENOSPC disk of 64 MiB is too small"),
        (["--jobs", "0"], "JOBS (0) must be at least 1"),
        (["--release", "sid"], "RELEASE 'sid'"),
        (["--enospc-variants", "mixed,zoned"], "ENOSPC variant 'zoned'"),
    ],
)
def test_bad_compare_input_is_one_line_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    res = run_cli("compare", "--out", str(tmp_path / "res"), *args)
    assert_bad_input(res, message)
    assert not (tmp_path / "res").exists()


def test_negative_budget_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as e:
        main(["compare", "--reps", "-1"])
    assert e.value.code == 2


def test_defaults_are_three_arms_every_metric() -> None:
    plan = validate(CompareOptions())
    assert [a.name for a in plan.arms] == ["btrfs", "ext4-overlay2", "xfs-overlay2"]
    assert plan.metrics == ("M1", "M2", "M3", "M4", "M5", "M6", "M7")
    assert plan.m1_states == 30 and plan.budget.enospc_disk_mib == 320
    long = validate(CompareOptions(setting="long"))
    assert long.m1_states == 500 and long.budget.enospc_disk_mib == 3072
    assert [v.name for v in long.variants] == [
        "bg-reclaim",
        "dynamic-reclaim",
        "balance-cron",
        "mixed",
    ]
    assert plan.variants == ()
    with pytest.raises(InputError):
        validate(CompareOptions(setting="medium"))


def test_pieces_longest_first_then_sessions_interleaved() -> None:
    plan = validate(CompareOptions(arms="btrfs,ext4-overlay2", enospc_variants="mixed"))
    got = [(t.kind, t.arm, t.rep, t.variant) for t in tasks(plan, 2)]
    assert got == [
        ("m1", "", 0, ""),
        ("session", "btrfs", 0, ""),
        ("session", "ext4-overlay2", 0, ""),
        ("session", "ext4-overlay2", 1, ""),
        ("session", "btrfs", 1, ""),
        ("enospc", "btrfs", 0, ""),
        ("enospc", "ext4-overlay2", 0, ""),
        ("enospc", "btrfs", 0, "mixed"),
    ]
    assert variant_backend(RECLAIM["mixed"]).mkfs_options == ("--mixed",)
    only = validate(CompareOptions(metrics="M4"))
    assert [t.kind for t in tasks(only, 1)] == ["session"] * 3


def test_arms_interleaved_and_rotated() -> None:
    a, b, c = (BACKENDS[n] for n in ("btrfs", "ext4-overlay2", "xfs-overlay2"))
    got = [(r, x.name) for r, x in order((a, b, c), 3)]
    assert got == [
        (0, "btrfs"),
        (0, "ext4-overlay2"),
        (0, "xfs-overlay2"),
        (1, "ext4-overlay2"),
        (1, "xfs-overlay2"),
        (1, "btrfs"),
        (2, "xfs-overlay2"),
        (2, "btrfs"),
        (2, "ext4-overlay2"),
    ]


def test_wilson_interval() -> None:
    lo, hi = wilson(0, 40)
    assert lo == 0.0 and 0.08 < hi < 0.09  # rule of three-ish, not a point at 0
    lo, hi = wilson(20, 40)
    assert lo < 0.5 < hi and abs((lo + hi) / 2 - 0.5) < 1e-9
    assert wilson(0, 0) == (0.0, 1.0)


def test_spread() -> None:
    s = spread([3.0, 1.0, 2.0, 10.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0 and s["n"] == 4
    assert s["q1"] <= s["median"] <= s["q3"]


def test_btrfs_usage_parsed() -> None:
    text = """Overall:
    Device size:                   536870912
    Device allocated:              536870912
    Device unallocated:                    0
    Used:                          301989888
Data,single: Size:402653184, Used:290455552 (72.14%)
   /dev/vdb      402653184
Metadata,DUP: Size:58720256, Used:5505024 (9.38%)
System,DUP: Size:8388608, Used:16384 (0.20%)
Global reserve:                  5767168      (used: 0)
"""
    u = btrfs_usage(text)
    assert u == {
        "unallocated": 0,
        "data_total": 402653184,
        "data_used": 290455552,
        "metadata_total": 58720256,
        "metadata_used": 5505024,
        "system_total": 8388608,
        "system_used": 16384,
        "global_reserve": 5767168,
        "global_reserve_used": 0,
    }


def test_per_op_less_the_sync_floor() -> None:
    ops = [Op("noop", 0.01, 4096, 1, 1), Op("rm", 1.0, 8192, 3, 2), Op("rm", 3.0, 16384, 5, 4)]
    got = per_op(ops)
    assert got == {"rm": {"n": 2, "wr_bytes": 8192, "wr_ops": 3.0, "flushes": 2.0, "wall_s": 2.0}}


def _session(
    arm: str, rep: int, per_min: float, copies: float, copy_up_bytes: int
) -> dict[str, object]:
    return {
        "arm": arm,
        "rep": rep,
        "environment": {"docker": {"docker": "26.1.5"}},
        "metrics": {
            "M2": {
                "containers_per_min": per_min,
                "lifecycle_s": 60 / per_min,
                "start_s": 30 / per_min,
            },
            "M4": {"copies_per_extra_reader": copies, "per_extra_reader_bytes": 1},
            "M5": {
                "files": [
                    {
                        "mib": 16,
                        "first_s": 1.0,
                        "net_s": 0.5,
                        "first_wr_bytes": copy_up_bytes,
                        "first_flushes": 2,
                    }
                ]
            },
            "M7": {"rm": {"wr_bytes": 100, "flushes": 1}},
        },
    }


def _write(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    for rep in (0, 1):
        _write(run / "arms/btrfs" / f"rep{rep + 1}.json", _session("btrfs", rep, 6, 1.1, 300000))
        _write(
            run / "arms/ext4-overlay2" / f"rep{rep + 1}.json",
            _session("ext4-overlay2", rep, 12 + rep, 0.05, 16 << 20),
        )
    # xfs-overlay2: one repetition failed to run
    _write(run / "arms/xfs-overlay2/rep1.json", _session("xfs-overlay2", 0, 12, 0.05, 8192))
    _write(
        run / "arms/xfs-overlay2/rep2.json",
        {"arm": "xfs-overlay2", "rep": 1, "error": "GuestBootError: no agent"},
    )
    _write(
        run / "enospc/btrfs.json",
        {
            "arm": "btrfs",
            "M6": {
                "reached_enospc": True,
                "layers_before_enospc": 9,
                "space": {
                    "df_used_of_size": 0.55,
                    "df_avail": 1 << 27,
                    "btrfs_usage": {"unallocated": 0},
                },
                "recovery": [{"balance": "-dusage=0", "retry_ok": True}],
            },
        },
    )
    _write(
        run / "enospc/ext4-overlay2.json",
        {
            "arm": "ext4-overlay2",
            "M6": {
                "reached_enospc": True,
                "layers_before_enospc": 13,
                "space": {"df_used_of_size": 0.97, "df_avail": 0},
            },
        },
    )
    _write(
        run / "enospc/btrfs+mixed.json",
        {
            "arm": "btrfs+mixed",
            "M6": {
                "reached_enospc": True,
                "layers_before_enospc": 7,
                "reclaim": "mixed",
                "space": {"df_used_of_size": 0.9, "df_avail": 0},
            },
        },
    )
    _write(
        run / "enospc/xfs-overlay2.json",
        {"arm": "xfs-overlay2", "M6": {"error": "churn failed, not with ENOSPC"}},
    )

    def states(backend: str, bad: int) -> list[StateResult]:
        out = [StateResult(f"{backend}/replay/s{i}", backend, "p", "replay") for i in range(40)]
        for st in out[:bad]:
            st.violations = [
                Violation("docker-corruption", st.state, "layer intact", fault="docker")
            ]
        return out

    m1 = run / "m1/20261128-000000-s1"
    m1.mkdir(parents=True)
    write_results(
        m1,
        RunMeta(run_id=m1.name, workload="default"),
        [
            BackendSummary(b, "6.12", "img", "tcg", 0, {}, states(b, bad))
            for b, bad in (("btrfs", 3), ("ext4-overlay2", 0))
        ],
    )
    return run


META = {
    "run_id": "r",
    "reference": "ext4-overlay2",
    "reps": 2,
    "kernel": {"version": "6.12"},
    "release": "trixie",
    "image": "rootfs-x",
    "accel": "tcg",
    "setting": "short",
    "crashtest_version": "0",
    "budget": {"copy_up_mib": [16], "enospc_disk_mib": 512},
    "enospc_variants": ["btrfs+mixed"],
}


def test_compare_results_from_pieces(tmp_path: Path) -> None:
    arms = ["btrfs", "ext4-overlay2", "xfs-overlay2"]
    doc = build_compare(_run(tmp_path), META, arms, ("M1", "M2", "M4", "M5", "M6", "M7"))
    b, e, x = (doc["arms"][a] for a in arms)
    assert e["values"]["M2.containers_per_min"]["median"] == 12.5
    assert b["ratio_to_reference"]["M2.containers_per_min"] == 0.48
    assert b["ratio_to_reference"]["M2.start_s"] == round(5.0 / round((2.5 + 30 / 13) / 2, 3), 3)
    assert "M2.create_s" not in b["values"]  # not measured: absent, not zero
    assert "M4.copies_per_extra_reader" not in b["ratio_to_reference"]  # a count, not a time
    assert b["status"] == "ok" and e["status"] == "ok"
    assert x["status"] == "failed" and any("no agent" in err for err in x["errors"])
    assert x["values"]["M2.containers_per_min"]["n"] == 1  # the rep that ran still counts
    assert doc["M1"]["arms"]["btrfs"]["any"]["per_1000"] == 75.0
    assert (
        doc["M1"]["arms"]["btrfs"]["by_class_fault"]["docker-corruption (docker's fault)"]["count"]
        == 3
    )
    assert doc["M1"]["arms"]["xfs-overlay2"] == {"error": "no crash states checked"}
    assert not doc["complete"]
    text = headline(doc)
    assert "FAILED arms: xfs-overlay2" in text
    m1_row = next(line for line in text.splitlines() if line.startswith("M1"))
    assert "75.0 [" in m1_row and "failed" in m1_row  # xfs: failed, not 0
    m6_row = next(line for line in text.splitlines() if line.startswith("M6"))
    assert "55% after 9 layers" in m6_row and "97% after 13 layers" in m6_row
    html = write_compare_html(doc, tmp_path / "compare.html").read_text()
    assert "<svg" in html and "churn failed, not with ENOSPC" in html
    assert "M6: churn failed, not with ENOSPC" in x["errors"]
    assert doc["M6_variants"]["btrfs+mixed"]["layers_before_enospc"] == 7
    assert "btrfs+mixed" in html and "90%" in html
    assert "0.48x ext4-overlay2" in html


def test_compare_without_m1_or_a_finished_campaign(tmp_path: Path) -> None:
    run = _run(tmp_path)
    for p in (run / "m1").rglob("summary.json"):
        p.unlink()
    doc = build_compare(run, META, ["btrfs", "ext4-overlay2"], ("M1", "M2"))
    assert doc["M1"] == {"error": "the M1 campaign did not finish"}
    assert not doc["complete"]
    doc = build_compare(run, META, ["btrfs", "ext4-overlay2"], ("M2",))
    assert "M1" not in doc and doc["complete"]
