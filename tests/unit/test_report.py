"""The static HTML report, from summaries written by the real result writer."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cli import main
from harness.model import StateResult, Violation
from harness.report.html import write_report
from harness.report.results import BackendSummary
from tests.resultsfactory import write_summary


def make_run(root: Path, name: str, kernel: str, broken: bool) -> Path:
    run = root / name
    run.mkdir(parents=True)
    states = [
        StateResult("btrfs/cut0/after-x", "btrfs", "after x", wall_s=40),
        StateResult("btrfs/replay/d:e3:none", "btrfs", "lost cache", kind="replay", wall_s=2),
    ]
    if broken:
        states[1].violations = [
            Violation(
                "fs-corruption",
                states[1].state,
                "fsck is clean",
                {"output": "<inode 12> has bad extent"},
            )
        ]
        states[1].bundle = "bundles/btrfs-e3-none"
    backends = [
        BackendSummary("btrfs", kernel, "img1", "tcg", 1, {}, states, 50),
        BackendSummary(
            "ext4-overlay2",
            kernel,
            "img1",
            "tcg",
            1,
            {},
            [StateResult("ext4-overlay2/cut0/after-x", "ext4-overlay2", "after x", wall_s=50)],
            60,
        ),
    ]
    write_summary(run, {"run_id": name, "workload": "default"}, backends)
    return run


class Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.td_classes: list[str] = []
        self.svgs = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "td" and dict(attrs).get("class"):
            self.td_classes.append(str(dict(attrs)["class"]))
        self.svgs += tag == "svg"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_matrix_violations_and_plots(tmp_path: Path) -> None:
    make_run(tmp_path / "results", "r1", "6.1.0-amd64", broken=False)
    make_run(tmp_path / "results", "r2", "6.12.1-amd64", broken=True)
    (tmp_path / "results" / "latest").symlink_to("r2")
    out = write_report([tmp_path / "results"])
    parsed = Cells()
    parsed.feed(out.read_text())
    text = "".join(parsed.text)
    # 2 kernels x 2 backends: only 6.12 on btrfs fails, the filesystem's fault; the
    # history table has a row for its signature over both runs
    matrix = [c for c in parsed.td_classes if c not in ("hit", "miss")]
    assert sorted(matrix) == ["new-fs", "pass", "pass", "pass"]
    assert parsed.td_classes.count("hit") == 1 and parsed.td_classes.count("miss") == 1
    assert "NEW: filesystem's fault" in text
    assert "<inode 12> has bad extent" in text  # evidence, escaped and shown
    # relative to the report (written in results/): runs and bundles move together
    assert "crashtest repro r2/bundles/btrfs-e3-none" in text
    assert str(tmp_path) not in out.read_text()
    assert parsed.svgs == 3
    assert "2 run(s): r1, r2" in text  # the latest link is not counted twice


def test_report_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text("{}")
    assert main(["report", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("crashtest: bad input: report:") for line in err)
    assert not list(tmp_path.rglob("*.html"))


def test_report_rows_are_kernel_and_release_and_observations_show(tmp_path: Path) -> None:
    """A scenario matrix: each backend entry names its workload and release; the
    report's rows are kernel · release, its columns workload / backend."""
    run = tmp_path / "r"
    run.mkdir()
    seen = StateResult(
        "btrfs/replay/d:e1:none",
        "btrfs",
        "lost cache",
        kind="replay",
        observed={"container:c:/lower/f": "old"},
    )
    backends = [
        BackendSummary("btrfs", "6.12", "img", "tcg", 0, {}, [seen], 1, release=r, workload=w)
        for w in ("copy-up", "pull")
        for r in ("bookworm", "trixie")
    ]
    write_summary(run, {"run_id": "r", "workload": "copy-up"}, backends)
    parsed = Cells()
    parsed.feed(write_report([run]).read_text())
    text = "".join(parsed.text)
    assert parsed.td_classes == ["pass"] * 4
    assert "6.12 · bookworm" in text and "6.12 · trixie" in text
    assert "container:c:/lower/f" in text and "old 1" in text


def test_every_page_comes_from_a_template_with_the_one_stylesheet() -> None:
    """No page is assembled with its own <head> or CSS in Python: report, corpus
    and compare pages extend templates/page.html.j2, which inlines style.css."""
    harness = Path(__file__).parents[2] / "harness"
    own = [
        str(p.relative_to(harness))
        for p in harness.rglob("*.py")
        if re.search(r"<style|<!doctype|</html>", p.read_text(), re.IGNORECASE)
    ]
    assert own == []
    templates = harness / "report/templates"
    pages = [t for t in templates.glob("*.html.j2") if "<html" in t.read_text()]
    assert [p.name for p in pages] == ["page.html.j2"]
    assert '{% include "style.css" %}' in pages[0].read_text()
