"""`crashtest diff` and the report's grouping: findings by signature, whose fault,
new against known, history across runs."""

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cli import main
from harness.model import StateResult, Violation
from harness.report.diff import diff
from harness.report.html import write_report
from harness.report.known import load_known
from harness.report.results import BackendSummary
from tests.resultsfactory import write_summary

REPO = Path(__file__).parents[2]


def zero_byte(state: str, layer: str) -> Violation:
    what = (
        "image app:s1, which docker restores, has intact layers "
        "(layer files match their tar-split CRC64)"
    )
    return Violation(
        "docker-corruption",
        state,
        what,
        {"output": f"/var/lib/docker/btrfs/subvolumes/{layer}/bin/sh has 0 bytes"},
        "docker",
        "invariant.docker-intact",
        what,
    )


def fsck(state: str) -> Violation:
    return Violation(
        "fs-corruption",
        state,
        "ext4 fsck is clean after recovery",
        {"output": "Inode 12 has illegal blocks"},
        "",
        "fs.fsck",
        "ext4",
    )


def run(
    root: Path, name: str, kernel: str, docker_states: int, fsck_on: str = "", known: bool = True
) -> Path:
    """A run of 2 backends: `docker_states` lost-cache states with docker's 0-byte
    file on each, and fsck damage on backend `fsck_on`."""
    d = root / name
    d.mkdir(parents=True)
    backends = []
    for b in ("btrfs", "ext4-overlay2"):
        states = []
        for i in range(4):
            st = StateResult(
                f"{b}/replay/{name}:e{i}:none", b, "lost cache", kind="replay", wall_s=1
            )
            if i < docker_states:
                st.violations.append(zero_byte(st.state, f"{name}{i:08x}cafe"))
            if b == fsck_on and i == 3:
                st.violations.append(fsck(st.state))
                st.bundle = f"bundles/{b}-e{i}-none"
            states.append(st)
        backends.append(
            BackendSummary(
                b, kernel, "rootfs-1", "tcg", 0, {}, states, 4, release="trixie", workload="pull"
            )
        )
    write_summary(
        d,
        {
            "run_id": name,
            "seed": 1,
            "qemu_version": "QEMU emulator version 7.2.19",
            "images": {"trixie": "rootfs-1"},
            "kernels": [
                {
                    "version": kernel,
                    "source": f"trixie:linux-image-{kernel}=1",
                    "build_id": "08b41bd1efb201e5",
                }
            ],
            "releases": {
                "trixie": {"docker.io": "26.1.5", "containerd": "1.7.24", "runc": "1.1.15"}
            },
        },
        backends,
        load_known(REPO / "known-failures.toml") if known else None,
    )
    return d


def test_diff_new_gone_and_still_failing(tmp_path: Path) -> None:
    old = run(tmp_path / "old", "r1", "6.12.117+deb13-cloud-amd64", 2)
    new = run(tmp_path / "new", "r2", "6.12.118+deb13-cloud-amd64", 1, fsck_on="ext4-overlay2")
    d = diff([old], [new])
    assert [f.finding.signature for f in d.appeared] == [
        "fs.fsck | fs-corruption | filesystem | ext4"
    ]
    assert d.gone == []
    # the kernel's point release moved: docker's finding is still the same one
    assert sorted(f.finding.backend for f in d.still) == ["btrfs", "ext4-overlay2"]
    assert main(["diff", str(old), str(new)]) == 1
    assert main(["diff", str(new), str(old)]) == 0  # only something gone
    # two sets of runs: each side every run under the directories given
    assert main(["diff", str(tmp_path / "old"), str(tmp_path / "new"), "--json"]) == 1


def test_diff_json_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = run(tmp_path, "r1", "6.12.117", 0, fsck_on="btrfs")
    new = run(tmp_path, "r2", "6.12.117", 0)
    assert main(["diff", str(old), str(new), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [f["backend"] for f in doc["gone"]] == ["btrfs"] and doc["new_findings"] == []
    assert main(["diff", str(old), str(tmp_path / "missing")]) == 2
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "summary.json").write_text("[]")
    assert main(["diff", str(old), str(tmp_path / "junk")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("crashtest: bad input:") for line in err)


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.td: list[str] = []
        self.sections: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        cls = dict(attrs).get("class") or ""
        if tag == "td" and cls:
            self.td.append(cls)
        if tag == "section":
            self.sections.append(cls)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_leads_with_whose_fault_and_groups_by_signature(tmp_path: Path) -> None:
    run(tmp_path / "res", "r1", "6.12.117+deb13-cloud-amd64", 3)
    run(tmp_path / "res", "r2", "6.12.117+deb13-cloud-amd64", 2, fsck_on="ext4-overlay2")
    page = Page()
    page.feed(write_report([tmp_path / "res"]).read_text())
    text = "".join(page.text)
    # the headline names what is new and whose fault before anything else
    head = text.index(
        "1 new signature, filesystem's fault (1 states in 1 cells); "
        "1 known signature, docker's fault (10 states in 2 cells)."
    )
    assert head < text.index("Matrix")
    # docker's known bug is not the backend failing: btrfs is "known", not red
    matrix = [c for c in page.td if c not in ("hit", "miss")]
    assert matrix == ["known", "new-fs"]
    assert "NEW: filesystem's fault" in text and "docker's fault (known)" in text
    # one section per signature (the same bug in 2 cells of 2 runs listed once), new first
    assert page.sections == ["finding new fault-filesystem", "finding known fault-docker"]
    assert "10 states in 2 cell(s)" in text  # each cell once, however many runs
    assert "known as docker-unsynced-layer-files" in text
    assert "Inode 12 has illegal blocks" in text
    assert "crashtest repro r2/bundles/ext4-overlay2-e3-none" in text
    # history: each signature over both runs
    assert "History" in text and page.td.count("hit") == 3 and page.td.count("miss") == 1
    # environment: kernel package and build id, image, docker versions, QEMU, seed
    for want in (
        "trixie:linux-image-6.12.117+deb13-cloud-amd64=1",
        "build id 08b41bd1efb201e5",
        "trixie rootfs-1",
        "docker.io 26.1.5, containerd 1.7.24, runc 1.1.15",
        "QEMU emulator version 7.2.19",
        "seed 1",
        "known-failures.toml (fail on new)",
    ):
        assert want in text, want


def test_report_lists_known_failures_not_seen(tmp_path: Path) -> None:
    run(tmp_path, "r1", "6.12.117", 0, fsck_on="btrfs")
    text = write_report([tmp_path / "r1"]).read_text()
    assert "Known, not seen in this run" in text
    assert "<b>docker-unsynced-layer-files</b>" in text
    assert "docker-overlay2-link-not-atomic" not in text  # bookworm only: not this run's


def test_report_of_docker_new_is_docker_coloured(tmp_path: Path) -> None:
    run(tmp_path, "r1", "6.12.117", 1, known=False)
    page = Page()
    page.feed(write_report([tmp_path / "r1"]).read_text())
    assert sorted(page.td) == ["new-docker", "new-docker"]
    assert "NEW: docker's fault" in "".join(page.text)
