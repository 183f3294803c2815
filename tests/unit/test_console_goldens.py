"""The console oracle on real console logs of every kernel series crashtest runs
(tests/golden/console/SERIES/CASE.log, recorded by make_console_goldens.py): each
file's header says what the other checks found and what the oracle must conclude."""

from pathlib import Path

import pytest

from harness.images.debian import SERIES
from harness.oracles.console import failures, violations

CONSOLE = Path(__file__).parents[1] / "golden" / "console"
GOLDENS = sorted(CONSOLE.glob("*/*.log"))


def header(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(": ")
        fields[key] = value
    return fields


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_golden_gets_its_expected_verdict(golden: Path) -> None:
    text = golden.read_text()
    h = header(text)
    others_clean = h["others"].split()[0] == "clean"
    got = sorted({v.cls for v in violations(text, "s", others_clean=others_clean)}) or ["none"]
    assert got == h["expect"].split(), (h, [f.line for f in failures(text)])


def test_every_series_has_its_goldens() -> None:
    recorded = {p.parent.name for p in GOLDENS}
    assert recorded <= set(SERIES)
    cases = {p.stem for p in GOLDENS}
    for series in recorded:
        assert {p.stem for p in (CONSOLE / series).glob("*.log")} == cases, series
        assert (
            series.split("-")[0]
            in header((CONSOLE / series / "btrfs-clean.log").read_text())["kernel"]
        )


def test_the_stale_mirror_superblock_in_both_wordings_is_noise() -> None:
    for prefix in ("", "scrub: "):
        line = (
            f"[ 5.9] BTRFS error (device vdb): {prefix}super block at physical 67108864 "
            "devid 1 has bad generation 6 expect 7"
        )
        assert failures(line) == []
        assert failures(line.replace("67108864", "65536"))  # the primary is never noise


def test_an_unknown_error_line_alone_is_console_only_and_with_damage_corruption() -> None:
    line = "[ 5.9] BTRFS error (device vdb): scrub: some wording no kernel used before"
    [alone] = violations(line, "s", others_clean=True)
    assert (alone.cls, alone.fault, alone.check) == ("console-only", "unknown", "kernel.console")
    assert "some wording" in alone.evidence["console"]
    [confirmed] = violations(line, "s", others_clean=False)
    assert (confirmed.cls, confirmed.fault) == ("fs-corruption", "filesystem")
    # a known sign of damage is corruption even when nothing else saw it
    known = "[ 5.9] BTRFS error (device vdb): parent transid verify failed on logical 1"
    assert [v.cls for v in violations(known, "s", others_clean=True)] == ["fs-corruption"]
    oops = "[ 5.9] kernel BUG at fs/btrfs/tree-log.c:123!"
    assert [v.cls for v in violations(oops, "s", others_clean=True)] == ["fs-corruption"]
