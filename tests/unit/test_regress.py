"""Regression candidates: a signature on a kernel whose predecessor (the previous
night's build of the same suite and flavour, or the next older kernel of the same
flavour in the run) ran the same cell without it; named in `crashtest diff` and
the report."""

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.model import StateResult, Violation
from harness.report.html import write_report
from harness.report.regress import candidates, lineage
from harness.report.results import BackendSummary
from tests.resultsfactory import write_summary

SID = "sid:linux-image-{v}=1"


def lost_rename(state: str) -> Violation:
    return Violation(
        "fs-durability",
        state,
        "the directory holds what its fsync made durable",
        {"output": "it holds old-slink"},
        "",
        "promise.file",
        "file:disk:/kb/dir",
    )


def docker_layer(state: str) -> Violation:
    what = (
        "image app:s1, which docker restores, has intact layers (layer files match "
        "their tar-split CRC64)"
    )
    return Violation(
        "docker-corruption",
        state,
        what,
        {"output": "bin/sh has 0 bytes"},
        "docker",
        "invariant.docker-intact",
        what,
    )


def night(
    root: Path, name: str, kernels: dict[str, tuple[str, bool]], docker: tuple[str, ...] = ()
) -> Path:
    """One run: per kernel version (source, whether btrfs-779's signature shows);
    docker's layer files on the kernels in `docker`."""
    d = root / name
    d.mkdir(parents=True)
    backends = []
    for version, (_, buggy) in kernels.items():
        st = StateResult(
            f"btrfs/replay/{version}:e1:none", "btrfs", "lost cache", kind="replay", wall_s=1
        )
        if buggy:
            st.violations.append(lost_rename(st.state))
        if version in docker:
            st.violations.append(docker_layer(st.state))
        backends.append(
            BackendSummary(
                "btrfs",
                version,
                "rootfs-1",
                "tcg",
                0,
                {},
                [st],
                1,
                release="trixie",
                workload="btrfs-779",
            )
        )
    write_summary(
        d,
        {
            "run_id": name,
            "seed": 1,
            "kernels": [{"version": v, "source": s.format(v=v)} for v, (s, _) in kernels.items()],
        },
        backends,
    )
    return d


def test_lineage_is_suite_and_flavour() -> None:
    assert (
        lineage("7.2.13+deb14-cloud-amd64", "sid:linux-image-7.2.13+deb14-cloud-amd64=1")
        == "sid/cloud-amd64"
    )
    assert (
        lineage("6.1.0-28-amd64", "bookworm:linux-image-6.1.0-28-amd64=6.1.119-1")
        == "bookworm/amd64"
    )
    assert lineage("6.13.0", "/src/linux/arch/x86/boot/bzImage") == ""


def test_a_signature_new_on_sids_next_build_names_both_versions(tmp_path: Path) -> None:
    old = night(tmp_path, "n1", {"7.2.13+deb14-cloud-amd64": (SID, False)})
    new = night(tmp_path, "n2", {"7.2.14+deb14-cloud-amd64": (SID, True)})
    [c] = candidates([new], [old])
    assert (c.kernel, c.predecessor) == ("7.2.14+deb14-cloud-amd64", "7.2.13+deb14-cloud-amd64")
    assert c.signature.startswith("promise.file | fs-durability")
    assert "previous night" in c.why and "btrfs-779" in c.describe()
    # still there the next night: not a regression any more, nor on the same build again
    assert (
        candidates([night(tmp_path, "n3", {"7.2.14+deb14-cloud-amd64": (SID, True)})], [new]) == []
    )


def test_dockers_failures_are_no_kernel_regression(tmp_path: Path) -> None:
    old = night(tmp_path, "n1", {"7.2.13+deb14-cloud-amd64": (SID, False)})
    new = night(
        tmp_path,
        "n2",
        {"7.2.14+deb14-cloud-amd64": (SID, False)},
        docker=("7.2.14+deb14-cloud-amd64",),
    )
    assert candidates([new], [old]) == []


def test_another_suite_or_flavour_is_no_predecessor(tmp_path: Path) -> None:
    old = night(
        tmp_path,
        "n1",
        {
            "6.12.117+deb13-amd64": ("trixie:linux-image-{v}=1", False),
            "7.2.13+deb14-amd64": (SID, False),
        },
    )
    new = night(tmp_path, "n2", {"7.2.14+deb14-cloud-amd64": (SID, True)})
    assert candidates([new], [old]) == []


def test_the_next_older_kernel_in_the_same_run(tmp_path: Path) -> None:
    run = night(
        tmp_path,
        "n",
        {
            "6.12.117+deb13-cloud-amd64": ("trixie:linux-image-{v}=1", True),
            "6.17.13+deb13-cloud-amd64": ("trixie-backports:linux-image-{v}=1", False),
            "7.2.13+deb14-cloud-amd64": (SID, True),
            "7.3-cloud-amd64": ("experimental:linux-image-{v}=1", True),
        },
    )
    [c] = candidates([run])
    assert (c.kernel, c.predecessor) == ("7.2.13+deb14-cloud-amd64", "6.17.13+deb13-cloud-amd64")
    assert c.why == "the next older kernel in this run"


def test_diff_and_report_show_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = night(tmp_path, "n1", {"7.2.13+deb14-cloud-amd64": (SID, False)})
    new = night(tmp_path, "n2", {"7.2.14+deb14-cloud-amd64": (SID, True)})
    assert main(["diff", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "regression candidates: 1" in out
    assert "on 7.2.14+deb14-cloud-amd64, not on 7.2.13+deb14-cloud-amd64" in out
    assert main(["diff", "--json", str(old), str(new)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["regression_candidates"][0]["predecessor"] == "7.2.13+deb14-cloud-amd64"
    both = night(
        tmp_path,
        "n3",
        {
            "6.17.13+deb13-cloud-amd64": ("trixie-backports:x", False),
            "7.2.14+deb14-cloud-amd64": (SID, True),
        },
    )
    page = write_report([both]).read_text()
    assert "Regression candidates" in page and "6.17.13+deb13-cloud-amd64" in page
