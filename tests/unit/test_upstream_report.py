"""`crashtest upstream` on a shipped bundle without a guest: the report's parts,
each kernel's outcome from runs given as evidence, and bad input (one line, exit 2,
nothing written). The standalone script itself runs in a guest in
tests/integration/test_upstream.py."""

from pathlib import Path

import pytest

from harness.cli import main
from tests.unit.test_regress import SID, night

BUNDLE = Path(__file__).parents[2] / "bundles" / "btrfs-779-debian-6.12.117"


def test_the_report_names_kernel_workload_state_fix_and_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = night(
        tmp_path,
        "n",
        {
            "6.12.117+deb13-cloud-amd64": ("trixie:linux-image-{v}=1", True),
            "7.2.13+deb14-cloud-amd64": (SID, False),
        },
    )
    assert main(["upstream", str(BUNDLE), "--evidence", str(runs)]) == 0
    text = capsys.readouterr().out
    for part in (
        "GNU build id 08b41bd1efb201e59739ce0c979b46953ccbf27c",
        "mount options: commit=300",
        "mv $MNT/kb/dir/old-slink $MNT/kb/dir/new-slink",
        "before flush epoch 6",
        "it holds",
        "953902e4fb4c",
        "generic/779",
        "crashtest repro",
        "dmsetup create",
        "drop_writes",
    ):
        assert part in text, part
    assert (
        "6.12.117+deb13-cloud-amd64 (trixie:linux-image-6.12.117+deb13-cloud-amd64=1): "
        "the failure in 1 of 1 run(s)" in text.replace("\n  ", " ")
    )
    assert (
        "7.2.13+deb14-cloud-amd64 (sid:linux-image-7.2.13+deb14-cloud-amd64=1): clean in 1"
        in text.replace("\n  ", " ")
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bundles/nope"], "bundle bundles/nope: not a directory"),
        (
            [str(BUNDLE), "--evidence", "/nonexistent"],
            "--evidence: /nonexistent is not a directory",
        ),
        (
            [str(BUNDLE), "-o", "/nonexistent/x.txt"],
            "--output /nonexistent/x.txt: no such directory",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    assert main(["upstream", *args]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
