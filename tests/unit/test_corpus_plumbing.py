"""The known-bug corpus without building kernels: every entry's edit applies to
the files of Debian's linux-source-6.12 it names, every workload loads, input is
checked, and runs become results (caught, clean or error; the expectation per
entry) and a report."""

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.corpus.entries import CORPUS, Kind, by_id
from harness.corpus.run import (
    CorpusOptions,
    Outcome,
    Role,
    expectation,
    outcome_of,
    roles,
    validate,
)
from harness.errors import InputError
from harness.images.kernel import LINUX_SOURCES, apply_edits, linux_source_tarball
from harness.model import Barrier
from harness.report.corpus import write_corpus_html
from harness.report.summary import Corpus, Summary
from harness.storage.backends import parse_backends
from harness.workloads.load import load_workload
from tests.unit.test_cli_input import assert_bad_input, run_cli


@pytest.fixture(scope="module", params=sorted(LINUX_SOURCES))
def source_files(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """The files the corpus edits, from each linux-source package the edits were
    written for, 6.12 and 7.2 (the host's, or downloaded from Debian once into the
    cache, 150 MB each)."""
    series = str(request.param)
    package = LINUX_SOURCES[series].package
    paths = sorted({e.path for b in CORPUS for e in b.edits_for(series)})
    out = tmp_path_factory.mktemp("linux-source")
    subprocess.run(
        [
            "tar",
            "-xJf",
            str(linux_source_tarball(series)),
            "-C",
            str(out),
            *(f"{package}/{p}" for p in paths),
        ],
        check=True,
        timeout=900,
    )
    return series, out / package


@pytest.mark.parametrize("bug", [b for b in CORPUS if b.edits], ids=lambda b: b.id)
def test_each_edit_applies_to_its_tree_and_undoes_the_fix(
    source_files: tuple[str, Path], bug: Any
) -> None:
    """Every entry's edit applies exactly once to 6.12 and to 7.2 (its 7.2 variant
    where the code moved), and no longer applies once applied."""
    series, tree = source_files
    edits = bug.edits_for(series)
    before = {e.path: (tree / e.path).read_text() for e in edits}
    apply_edits(tree, edits, dry_run=True)  # each old text found exactly once
    assert {p: (tree / p).read_text() for p in before} == before  # dry: untouched
    work = tree.parent / f"work-{bug.id}"
    for rel, text in before.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    apply_edits(work, edits)
    for rel, text in before.items():
        after = (work / rel).read_text()
        assert after != text and f"fix {bug.fix} undone" in after
    with pytest.raises(InputError, match="not once"):  # an edited tree is not the one
        apply_edits(work, edits, dry_run=True)


def test_entries_are_complete_and_their_workloads_load() -> None:
    ids = [b.id for b in CORPUS]
    assert len(ids) == len(set(ids))
    assert len([b for b in CORPUS if b.kind != Kind.CONTROL]) >= 8
    assert [b for b in CORPUS if b.kind == Kind.CONTROL]
    for b in CORPUS:
        assert b.kind in (Kind.REVERT, Kind.PRESENT, Kind.CONTROL)
        assert re.fullmatch(r"[0-9a-f]{12}", b.fix), b.id
        assert (b.kind == Kind.REVERT) == bool(b.edits), b.id
        parse_backends(b.backend, "", b.mount_options)
        wl = load_workload(b.workload, 1)
        assert wl.name == b.id and wl.description and wl.invariants == ()
        last = wl.steps[-1]
        assert last.barrier in (Barrier.SYNC, Barrier.FSYNC) and last.promises
        assert wl.cuts == (f"after:{last.name}",)  # the live cut lands right after it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "btrfs-782,nope"], "corpus entry 'nope': not in the corpus"),
        (["--only", ","], "ONLY is empty"),
        (["--runs", "0", "--kernel", "x"], "RUNS must be at least 1"),
        (["--states", "0", "--cuts", "0", "--kernel", "x"], "not both 0"),
        (["--tree", "/", "--kernel", "x"], "not both"),
        (["--tree", "/etc"], "TREE /etc: not a kernel source tree"),
    ],
)
def test_bad_corpus_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    res = run_cli("corpus", "run", "--out", str(tmp_path / "res"), *args)
    assert_bad_input(res, message)
    assert not (tmp_path / "res").exists()


def test_a_tree_the_edits_do_not_fit_fails_before_any_build(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    (tree / "fs" / "btrfs").mkdir(parents=True)
    (tree / "Makefile").write_text("")
    (tree / "Kconfig").write_text("")
    (tree / "fs" / "btrfs" / "tree-log.c").write_text("/* a different kernel */\n")
    res = run_cli(
        "corpus", "run", "--out", str(tmp_path / "res"), "--tree", str(tree), "--only", "btrfs-782"
    )
    assert_bad_input(res, "corpus entry btrfs-782: edit fs/btrfs/tree-log.c: the text to replace")
    assert not (tmp_path / "res").exists()


def test_which_kernels_each_kind_runs_on(tmp_path: Path) -> None:
    tree = validate(CorpusOptions(kernel="k"))
    bugs = by_id()
    assert roles(bugs["btrfs-782"], tree) == [Role.STOCK]  # no tree: the baseline alone
    tree.tree = tmp_path
    assert roles(bugs["btrfs-782"], tree) == [Role.BUGGY, Role.STOCK]
    assert roles(bugs["btrfs-764"], tree) == [Role.BUGGY]  # stock is the buggy one
    assert roles(bugs["ovl-metacopy"], tree) == [Role.STOCK]
    # a 7.2 tree has both fixes: the bugs present in 6.12 run as the fixed side
    (tmp_path / "Makefile").write_text("VERSION = 7\nPATCHLEVEL = 2\n")
    assert roles(bugs["btrfs-764"], tree) == roles(bugs["btrfs-779"], tree) == [Role.STOCK]
    assert bugs["btrfs-779"].fixed_in_series("7.2") and not bugs["btrfs-779"].fixed_in_series(
        "6.17"
    )  # 6.17.y took the fix, but not 6.17 itself: a Debian 6.17 tree may lack it
    words, ok = expectation(bugs["btrfs-764"], {Role.STOCK: _runs("clean", "clean")}, True)
    assert ok and words == "clean in 2 runs: the tree has the fix (6.16)"
    assert not expectation(bugs["btrfs-764"], {Role.STOCK: _runs("caught", "clean")}, True)[1]


def summary(*states: dict[str, Any]) -> Summary:
    """A summary with these states (each completed as a run writes one)."""
    full = [{"kind": "replay", "backend": "btrfs", "plan": "p", "verdict": "", **s} for s in states]
    return Summary.model_validate(
        {
            "backends": [
                {
                    "backend": "btrfs",
                    "kernel": "6.12",
                    "image": "i",
                    "accel": "tcg",
                    "cuts": 0,
                    "states_checked": len(full),
                    "states": full,
                }
            ],
            "totals": {"states_checked": 0, "violations": 0, "new": 0, "known": 0, "failing": 0},
        }
    )


VIOLATION = {
    "signature": "promise.file | fs-durability | filesystem | file disk:/kb",
    "class": "fs-durability",
    "fault": "filesystem",
    "state": "btrfs/replay/x:e6:none",
    "promise": "disk:/kb has sha256 01",
    "evidence": {"command": "offline check", "output": "it holds foo"},
}


def test_runs_become_caught_clean_or_error() -> None:
    caught = outcome_of(
        summary(
            {"state": "a", "violations": [VIOLATION], "bundle": "b/1"},
            {"state": "b", "violations": [VIOLATION]},
        ),
        "r",
        1,
        60.0,
    )
    assert caught.verdict == "caught" and len(caught.violations) == 1
    assert caught.violations[0]["states"] == 2 and caught.violations[0]["bundle"] == "b/1"
    assert outcome_of(summary({"state": "a"}), "r", 1, 1.0).verdict == "clean"
    err = outcome_of(summary({"state": "a", "harness_error": "GuestError: no boot"}), "r", 1, 1)
    assert err.verdict == "error" and "no boot" in err.error


def _runs(*verdicts: str) -> list[Outcome]:
    return [Outcome(i, "r", v, 1.0) for i, v in enumerate(verdicts)]


def test_an_entry_is_as_expected_when_caught_in_90_percent_and_stock_clean() -> None:
    bug = by_id()["btrfs-782"]
    words, ok = expectation(bug, {Role.BUGGY: _runs(*["caught"] * 5), Role.STOCK: _runs("clean")})
    assert ok and words == "caught in 5 of 5 runs; stock tree clean in 1 runs"
    _, ok = expectation(
        bug,
        {
            Role.BUGGY: _runs("caught", "caught", "caught", "caught", "clean"),
            Role.STOCK: _runs("clean"),
        },
    )
    assert not ok  # 4 of 5 is under 90%
    words, ok = expectation(bug, {Role.BUGGY: _runs(*["caught"] * 5), Role.STOCK: _runs("caught")})
    assert not ok and "stock tree: a violation in 1 of 1" in words
    _, ok = expectation(bug, {Role.BUGGY: _runs("caught", "error")})
    assert not ok
    control = by_id()["ovl-metacopy"]
    assert expectation(control, {Role.STOCK: _runs("clean", "clean")}) == ("clean in 2 runs", True)
    assert not expectation(control, {Role.STOCK: _runs("clean", "caught")})[1]
    present = by_id()["btrfs-764"]
    assert expectation(present, {Role.BUGGY: _runs(*["caught"] * 5)})[1]


def test_the_corpus_page_shows_rates_and_evidence(tmp_path: Path) -> None:
    bug = by_id()["btrfs-782"]
    entry = {
        **bug.to_json(),
        "result": "caught in 1 of 1 runs",
        "as_expected": True,
        "builds": {"buggy": {"kernel": "k", "version": "6.12.117", "build_s": 90.0, "edits": 1}},
        "runs": {
            "buggy": [
                {
                    **Outcome(
                        1,
                        "btrfs-782/buggy/R",
                        "caught",
                        70.0,
                        [dict(VIOLATION, states=1, bundle="x")],
                    ).to_json()
                }
            ]
        },
        "rate": {"buggy": {"caught": 1, "runs": 1, "rate": 1.0}},
    }
    doc = {
        "run_id": "R",
        "tree": "/t",
        "kernel": "",
        "runs": 1,
        "baseline_runs": 0,
        "states": 40,
        "cuts": 1,
        "seed": 1,
        "caught_rate": 0.9,
        "wall_s": 120.0,
        "complete": True,
        "incomplete": "",
        "entries": [entry],
    }
    page = write_corpus_html(Corpus.model_validate(doc), tmp_path / "corpus.html").read_text()
    assert "btrfs-782" in page and "1/1" in page and "it holds foo" in page
    assert "btrfs-782/buggy/R/x" in page  # the reproducer bundle, relative
    assert "1.5 min" in page  # the build
    json.dumps(doc)
