"""summary.json and JUnit: stable signatures and test names, known failures."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import exit_status, main
from harness.errors import InputError
from harness.model import StateResult, Violation
from harness.report.known import KnownList, load_known
from harness.report.results import BackendSummary
from harness.report.summary import Summary
from harness.rundir import point_latest
from tests.resultsfactory import write_summary

REPO = Path(__file__).parents[2]


def layer_file(state: str, image: str = "a", layer: str = "3f9c2a7b1d04e5f6") -> Violation:
    """docker's 0-byte layer file, as the store check words it (ids differ per run)."""
    return Violation(
        "docker-corruption",
        state,
        f"image {image}, which docker restores, has intact layers "
        "(layer files match their tar-split CRC64)",
        {"output": f"/var/lib/docker/overlay2/{layer}/diff/bin/sh has 0 bytes"},
        "docker",
        "invariant.docker-intact",
        f"image {image}, which docker restores, has intact layers "
        "(layer files match their tar-split CRC64)",
    )


def lost_file(state: str) -> Violation:
    return Violation(
        "fs-durability",
        state,
        "volume:data:/f has sha256 ...",
        {"output": "sha256 differs"},
        "",
        "promise.file",
        "file:volume:data:/f",
    )


def summaries(
    digest: str = "aaaa1111bbbb", seed: int = 1, delay: str = "2.00", new: bool = False
) -> list[BackendSummary]:
    ok = StateResult("btrfs/cut0/after-x", "btrfs", "after x", wall_s=3)
    bad = StateResult(
        f"btrfs/cut1/during-y-{delay}s",
        "btrfs",
        "during y",
        wall_s=4,
        violations=[layer_file(f"btrfs/cut1/during-y-{delay}s", f"app:s{seed}")],
        bundle="bundles/btrfs-cut1-during-y",
    )
    err = StateResult("btrfs/cut2/after-z", "btrfs", "after z", harness_error="GuestBootError: x")
    replays = [
        StateResult(
            f"btrfs/replay/{digest}:e{7 * i + seed}:none",
            "btrfs",
            "lost cache",
            kind="replay",
            wall_s=1,
        )
        for i in range(3)
    ]
    if new:
        replays[1].violations = [lost_file(replays[1].state)]
    return [
        BackendSummary(
            "btrfs",
            "6.12.117+deb13-cloud-amd64",
            "rootfs-1",
            "tcg",
            3,
            {},
            [ok, bad, err, *replays],
            10,
            release="trixie",
            workload="pull",
        )
    ]


def known_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "known.toml"
    path.write_text(text)
    return path


def test_summary_has_the_promised_fields(tmp_path: Path) -> None:
    doc = write_summary(tmp_path, {"run_id": "r"}, summaries())
    assert json.loads((tmp_path / "summary.json").read_text()) == doc
    b = doc["backends"][0]
    for key in (
        "backend",
        "kernel",
        "image",
        "accel",
        "cuts",
        "states_checked",
        "violations",
        "harness_errors",
        "wall_s",
    ):
        assert key in b
    assert b["states_checked"] == 5
    v = b["violations"][0]
    assert v["signature"] == (
        "invariant.docker-intact | docker-corruption | docker | "
        "layer files match their tar-split CRC64"
    )
    assert v["known"] == ""
    t = doc["totals"]
    assert (
        t["violations"],
        t["new"],
        t["known"],
        t["failing"],
        t["harness_errors"],
        t["faults"],
    ) == (1, 1, 0, 1, 1, {"docker": 1})
    assert doc["fail_on"] == "any"
    [f] = doc["findings"]
    assert (f["workload"], f["release"], f["kernel_series"], f["backend"], f["count"]) == (
        "pull",
        "trixie",
        "6.12-cloud-amd64",
        "btrfs",
        1,
    )
    assert f["example"]["bundle"] == "bundles/btrfs-cut1-during-y"


def test_signatures_and_test_names_do_not_depend_on_the_run(tmp_path: Path) -> None:
    """Another run of the same campaign (other seed, log digest, delays, image ids)."""
    a = write_summary(tmp_path, {}, summaries())
    junit_a = ET.parse(tmp_path / "junit.xml").getroot()
    (tmp_path / "b").mkdir()
    b = write_summary(tmp_path / "b", {}, summaries("ccdd0000eeff", seed=9, delay="3.41"))
    junit_b = ET.parse(tmp_path / "b" / "junit.xml").getroot()
    assert [f["signature"] for f in a["findings"]] == [f["signature"] for f in b["findings"]]

    def names(root: ET.Element) -> list[tuple[str | None, str | None]]:
        return [(c.get("classname"), c.get("name")) for c in root.iter("testcase")]

    assert names(junit_a) == names(junit_b)
    assert names(junit_a)[1] == ("crashtest.pull.trixie.6_12-cloud-amd64.btrfs", "cut1 during-y")
    assert names(junit_a)[-1][1] == "replay 002"


def test_two_kernels_of_one_series_keep_their_names_apart(tmp_path: Path) -> None:
    a, b = summaries()[0], summaries()[0]
    b.kernel = "6.12.118+deb13-cloud-amd64"
    write_summary(tmp_path, {}, [a, b])
    classes = {
        c.get("classname") for c in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    }
    assert classes == {
        "crashtest.pull.trixie.6_12_117+deb13-cloud-amd64.btrfs",
        "crashtest.pull.trixie.6_12_118+deb13-cloud-amd64.btrfs",
    }


def test_junit_failures_carry_the_bundle_and_its_repro(tmp_path: Path) -> None:
    write_summary(tmp_path, {}, summaries())
    cases = ET.parse(tmp_path / "junit.xml").getroot().findall(".//testcase")
    assert len(cases) == 6
    fail = cases[1].find("failure")
    assert fail is not None and fail.get("type") == "docker-corruption"
    assert "bundles/btrfs-cut1-during-y" in (fail.get("message") or "")
    assert "crashtest repro bundles/btrfs-cut1-during-y" in (fail.text or "")
    assert cases[2].find("error") is not None


SHIPPED = REPO / "known-failures.toml"


def test_known_failures_turn_docker_green_and_a_new_signature_red(tmp_path: Path) -> None:
    known = load_known(SHIPPED)
    doc = write_summary(tmp_path, {}, summaries(), known)
    t = doc["totals"]
    assert (doc["fail_on"], t["new"], t["known"], t["failing"]) == ("new", 0, 1, 0)
    assert t["known_seen"] == {"docker-unsynced-layer-files": 1}
    # the overlay2 link entry is for bookworm's docker on overlay2: not this cell
    assert t["known_not_seen"] == []
    assert exit_status(Summary.model_validate(doc)) == 2  # no failing finding, but a harness error
    case = ET.parse(tmp_path / "junit.xml").getroot().findall(".//testcase")[1]
    skipped = case.find("skipped")
    assert case.find("failure") is None and skipped is not None
    assert "docker-unsynced-layer-files" in (skipped.get("message") or "")

    doc = write_summary(tmp_path, {}, summaries(new=True), known)
    t = doc["totals"]
    assert (t["new"], t["known"], t["failing"]) == (1, 1, 1)
    assert t["new_signatures"] == [
        "promise.file | fs-durability | filesystem | file volume:data:/f"
    ]
    assert exit_status(Summary.model_validate(doc)) == 1

    doc = write_summary(tmp_path, {}, summaries(), known, fail_on="any")
    assert doc["totals"]["failing"] == 1 and exit_status(Summary.model_validate(doc)) == 1


def test_known_but_not_seen_lists_entries_that_could_have_matched(tmp_path: Path) -> None:
    path = known_file(
        tmp_path,
        '[[known]]\nid = "gone"\ncheck = "fs.fsck"\nbackend = "btrfs"\n'
        '[[known]]\nid = "elsewhere"\nbackend = "xfs-*"\n',
    )
    doc = write_summary(tmp_path, {}, summaries(), load_known(path))
    assert doc["totals"]["known_not_seen"] == ["gone"]


def test_leaks_are_never_known_or_failing(tmp_path: Path) -> None:
    known = KnownList("k", load_known(SHIPPED).entries)
    leak = Violation("leak", "s", "no leftover temp files", {}, check="store.leak")
    assert known.match(leak, {}) == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[known]]\ncheck = 'x'\n", "needs an id"),
        ("[[known]]\nid = 'a'\n[[known]]\nid = 'a'\n", "used twice"),
        ("[[known]]\nid = 'a'\nkernal = '6.1*'\n", "unknown field(s) kernal"),
        ("[[known]]\nid = 'a'\nclass = 'docker-broken'\n", "matches none of"),
        ("[[known]]\nid = 'a'\nfault = 'dockr'\n", "matches none of"),
        ("[[known]]\nid = 'a'\nlinks = 'http://x'\n", "links must be a list"),
        ("[[known]]\nid = 'a'\nobject = ''\n", "must be non-empty strings"),
        ("[known]\nid = 'a'\n", "array of tables"),
        ("[[know]]\nid = 'a'\n", "unknown table(s) know"),
        ("[[known]\nid = 'a'\n", "not valid TOML"),
    ],
)
def test_a_bad_known_file_is_one_line_exit_2(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = known_file(tmp_path, text)
    with pytest.raises(InputError, match=r"KNOWN .*known\.toml"):
        load_known(path)
    assert main(["run", "--known", str(path), "--out", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("crashtest: bad input:")
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


def test_missing_known_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--known", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_the_shipped_file_names_its_upstream_issues() -> None:
    known = load_known(SHIPPED)
    assert {e.id for e in known.entries} >= {"docker-unsynced-layer-files"}
    for e in known.entries:
        assert (
            e.reason
            and e.links
            and all(
                x.startswith(("https://github.com/", "https://git.kernel.org/")) for x in e.links
            )
        )


def test_latest_points_at_newest(tmp_path: Path) -> None:
    for name in ("run1", "run2"):
        (tmp_path / name).mkdir()
        point_latest(tmp_path, tmp_path / name)
    assert (tmp_path / "latest").resolve() == (tmp_path / "run2").resolve()


def test_the_shipped_schema_is_the_summary_type_and_a_run_obeys_it(tmp_path: Path) -> None:
    """docs/schema/summary.schema.json is generated from report.summary (regenerate
    with `python -m harness.report.summary`); what a run writes validates."""
    import jsonschema

    from harness.report.summary import schema

    shipped = json.loads(
        (Path(__file__).parents[2] / "docs/schema/summary.schema.json").read_text()
    )
    assert shipped == schema()
    write_summary(tmp_path, {"run_id": "r"}, summaries(new=True), load_known(SHIPPED))
    written = json.loads((tmp_path / "summary.json").read_text())
    jsonschema.validate(written, shipped)
    written["totals"]["failing"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(written, shipped)


def test_a_summary_that_is_not_one_is_one_line_of_bad_input(tmp_path: Path) -> None:
    from harness.report.summary import load_summary

    (tmp_path / "summary.json").write_text('{"backends": [{"backend": 3}]}')
    with pytest.raises(InputError, match=r"summary.json is not a crashtest summary \(backends"):
        load_summary(tmp_path)


def test_summaries_written_by_older_versions_still_read(tmp_path: Path) -> None:
    """Before signatures, findings and known failures were recorded: the reader
    fills them in as the run would have (diff and the nightly read old nights)."""
    from harness.report.summary import load_summary

    violation = {
        "class": "fs-corruption",
        "state": "ext4-overlay2/replay/a:e1:none",
        "promise": "ext4 fsck is clean after recovery",
        "evidence": {"output": "bad"},
        "check": "fs.fsck",
        "subject": "ext4",
    }
    state = {"state": violation["state"], "kind": "replay", "backend": "ext4-overlay2"}
    state |= {"plan": "p", "verdict": "violation", "violations": [violation]}
    old = {
        "run_id": "old",
        "backends": [
            {
                "backend": "ext4-overlay2",
                "kernel": "6.12.117+deb13-cloud-amd64",
                "image": "i",
                "accel": "tcg",
                "cuts": 0,
                "states_checked": 1,
                "violations": [violation],
                "states": [state],
            }
        ],
        "totals": {"states_checked": 1, "violations": 1, "harness_errors": 0},
    }
    (tmp_path / "summary.json").write_text(json.dumps(old))
    doc = load_summary(tmp_path)
    assert doc.totals.failing == 1 and exit_status(doc) == 1
    assert [f.signature for f in doc.findings] == ["fs.fsck | fs-corruption | filesystem | ext4"]
