"""Reproducer bundles and minimization, without a guest."""

import json
import random
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.repro.bundle import BundleError, load_bundle, write_bundle
from harness.repro.minimize import ddmin, dropped_positions, minimize, state_dropping
from harness.writelog.format import read_log
from harness.writelog.states import CrashState, epochs
from tests.logfactory import LogBuilder


@pytest.mark.parametrize("cause", [[7], [3, 41], [0, 1, 2], [63]])
def test_ddmin_finds_the_writes_that_matter(cause: list[int]) -> None:
    items = list(range(64))
    calls: list[list[int]] = []

    def fails(cand: list[int]) -> bool:
        calls.append(cand)
        return set(cause) <= set(cand)

    found, tests, complete = ddmin(items, fails, budget=200)
    assert sorted(found) == sorted(cause) and complete
    assert tests == len(calls) < 64  # far fewer than trying each write


def test_ddmin_stops_at_its_budget_with_a_failing_subset() -> None:
    rng = random.Random(3)
    cause = set(rng.sample(range(200), 9))
    found, tests, complete = ddmin(list(range(200)), lambda c: cause <= set(c), budget=10)
    assert tests <= 10 and not complete and cause <= set(found)


def test_minimize_expresses_the_result_as_a_rebuildable_state(tmp_path: Path) -> None:
    b = LogBuilder()
    for i in range(10):
        b.write(i * 8, bytes([i]) * 4096)
    b.flush()
    log = read_log(b.save(tmp_path / "w.log"))
    ep = epochs(log)[0]
    original = CrashState(log.digest, 0, "p2")  # keeps 2 writes, drops 8
    assert dropped_positions(original, ep) == list(range(2, 10))
    # the failure needs write 5 to be lost
    m = minimize(
        original, ep, lambda st: ep.entries[5].index not in {e.index for e, _ in st.kept(ep)}
    )
    assert m is not None and m.dropped == [ep.entries[5].index] and m.complete
    assert m.state.subset == "d5"
    assert m.original_dropped == 8
    assert {e.index for e, _ in m.state.kept(ep)} == {e.index for e in ep.entries} - {
        ep.entries[5].index
    }
    assert state_dropping(original, ep, []).subset == "all"
    assert state_dropping(original, ep, list(range(10))).subset == "none"
    both = state_dropping(original, ep, [3, 7])
    assert both.subset == "x3.7"
    assert [e.index for e, _ in both.kept(ep)] == [
        e.index for i, e in enumerate(ep.entries) if i not in (3, 7)
    ]
    assert minimize(CrashState(log.digest, 0, "t3.8"), ep, lambda st: True) is None


def make_bundle(tmp: Path) -> Path:
    art = tmp / "writes.log.zst"
    art.write_bytes(b"not really zstd")
    origin = tmp / "origin.qcow2"
    origin.write_bytes(b"disk")
    meta = {
        "kind": "replay",
        "state": "ext4-overlay2/replay/abc:e1:none",
        "backend": {"name": "ext4-overlay2", "mkfs_options": "", "mount_options": ""},
        "kernel": {"version": "6.12", "spec": "trixie:linux-image-cloud-amd64"},
        "image": "x",
        "workload": "default",
        "seed": 1,
        "verdict": {"violations": [{"class": "fs-corruption", "promise": "fsck is clean"}]},
        "state_id": "abc:e1:none",
        "log_digest": "abc",
    }
    return write_bundle(tmp / "bundle", meta, {"writes.log.zst": art, "origin.qcow2": origin}, [])


def test_a_bundle_moved_elsewhere_still_loads(tmp_path: Path) -> None:
    src = make_bundle(tmp_path)
    moved = shutil.move(src, tmp_path / "elsewhere")
    b = load_bundle(Path(moved))
    assert b.kind == "replay" and b.signature() == ["[fs-corruption] fsck is clean"]
    assert b.backend().name == "ext4-overlay2"
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda b: (b / "writes.log.zst").write_bytes(b"flipped"), "writes.log.zst is corrupted"),
        (lambda b: (b / "origin.qcow2").unlink(), "origin.qcow2 is missing"),
        (lambda b: (b / "bundle.json").unlink(), "no readable bundle.json"),
        (lambda b: (b / "bundle.json").write_text("{"), "not JSON"),
        (
            lambda b: (b / "bundle.json").write_text('{"format": "other"}'),
            "is not a crashtest-bundle",
        ),
        (lambda b: _edit(b, version=9), "version 9"),
        (lambda b: _edit(b, kind="sideways"), "unknown kind"),
        (lambda b: _edit(b, seed=None, drop="seed"), "lacks seed"),
    ],
)
def test_corrupted_or_incomplete_bundles_are_clear_errors(
    tmp_path: Path, damage, message, capsys: pytest.CaptureFixture[str]
) -> None:
    b = make_bundle(tmp_path)
    damage(b)
    with pytest.raises(BundleError, match=message):
        load_bundle(b)
    assert main(["repro", str(b)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.split()[0] in err[0]
    assert main(["repro", "--bisect", str(b)]) == 128  # stops a bisection


def _edit(bundle: Path, drop: str = "", **changes: object) -> None:
    doc = json.loads((bundle / "bundle.json").read_text())
    doc.update(changes)
    doc.pop(drop, None)
    (bundle / "bundle.json").write_text(json.dumps(doc))


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nope")


def test_workload_keeping_adds_what_steps_need() -> None:
    from harness.workloads.default import workload as default_workload

    wl = default_workload(1)
    assert wl.keeping({"commit"}).step_names == [
        "import-base",
        "build-app",
        "create-writer",
        "start-writer",
        "fsync-layer",
        "commit",
    ]
    assert wl.keeping({"churn"}).step_names == [
        "import-base",
        "build-app",
        "build-scratch",
        "churn",
    ]
    assert wl.keeping(set(wl.step_names)).step_names == wl.step_names


@pytest.mark.parametrize("needed,expected_tests", [(set(), 1), ({"fsync-volume"}, None)])
def test_minimize_steps_keeps_only_steps_the_failure_needs(
    needed: set[str], expected_tests: int | None
) -> None:
    from harness.repro.minimize import minimize_steps
    from harness.workloads.default import workload as default_workload

    wl = default_workload(1)
    runs: list[list[str]] = []

    def fails(w: object) -> bool:
        names = w.step_names  # type: ignore[attr-defined]
        runs.append(names)
        return needed <= set(names)

    m = minimize_steps(wl, "commit", fails, budget=8)
    assert set(m.steps) == set(wl.keeping({"commit", *needed}).step_names)
    assert m.original == wl.step_names[: wl.step_names.index("commit") + 1]
    assert m.tests == len(runs) <= 8 and all("commit" in r for r in runs)
    if expected_tests is not None:
        assert m.tests == expected_tests


def test_a_kernel_no_archive_serves_travels_in_the_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from harness.campaign import reproduce
    from harness.repro.capture import kernel_artifacts

    vmlinuz = tmp_path / "vmlinuz"
    vmlinuz.write_bytes(b"kernel")

    def images(info: dict[str, str]) -> SimpleNamespace:
        return SimpleNamespace(kernel=SimpleNamespace(info=info, vmlinuz=vmlinuz))

    debian = {"source": "trixie:linux-image-x=6.12-1", "modules": "btrfs"}
    built = {"source": "/src/linux/arch/x86/boot/bzImage", "modules": "", "sha256": "k"}
    assert kernel_artifacts(images(debian)) == {}  # type: ignore[arg-type]
    assert kernel_artifacts(images(built)) == {"kernel/bzImage": vmlinuz}  # type: ignore[arg-type]

    src = make_bundle(tmp_path)
    doc = json.loads((src / "bundle.json").read_text())
    bundle = write_bundle(
        tmp_path / "with-kernel",
        {k: v for k, v in doc.items() if k not in ("format", "version", "files")},
        {
            "writes.log.zst": src / "writes.log.zst",
            "origin.qcow2": src / "origin.qcow2",
            "kernel/bzImage": vmlinuz,
        },
        [],
    )
    moved = load_bundle(Path(shutil.move(bundle, tmp_path / "moved")))
    asked: list[str | None] = []
    monkeypatch.setattr(
        reproduce, "ensure_images", lambda spec, suite: asked.append(spec) or images(built)
    )
    reproduce._images(moved, None)
    reproduce._images(moved, "/other/bzImage")
    assert asked == [str((tmp_path / "moved" / "kernel" / "bzImage").resolve()), "/other/bzImage"]


def test_the_readme_says_what_broke_whose_fault_and_the_command() -> None:
    from harness.repro.capture import readme

    meta = {
        "kind": "live",
        "state": "btrfs/cut0/after-pull",
        "created": "2026-11-28T00:00:00Z",
        "backend": {"name": "btrfs"},
        "image": "rootfs-1",
        "release": "trixie",
        "image_packages": {"docker.io": "26.1.5"},
        "seed": 3,
        "kernel": {
            "version": "6.12.117+deb13-cloud-amd64",
            "source": "trixie:linux-image-6.12.117+deb13-cloud-amd64=6.12.117-1",
        },
        "workload": {"name": "pull"},
        "crashtest_version": "0.1.0+gabc",
        "verdict": {
            "plan": "after pull",
            "violations": [
                {
                    "class": "docker-corruption",
                    "fault": "docker",
                    "check": "invariant.x",
                    "promise": "image a has intact layers",
                    "evidence": {"output": "sh: 0 bytes"},
                },
                {"class": "leak", "fault": "docker", "promise": "no temp files"},
            ],
        },
    }
    text = readme(meta, "btrfs-cut0-after-pull")
    assert "[docker-corruption, docker's fault] image a has intact layers" in text
    assert "evidence: sh: 0 bytes" in text and "no temp files" not in text
    assert "  crashtest repro btrfs-cut0-after-pull\n" in text
    assert "=6.12.117-1" in text and "crashtest 0.1.0+gabc" in text


def test_a_different_guest_image_is_named_with_what_moved() -> None:
    from types import SimpleNamespace

    from harness.campaign.reproduce import image_matches

    images = SimpleNamespace(
        root=SimpleNamespace(
            manifest_id="rootfs-2", key_packages=lambda: {"docker.io": "26.1.6", "runc": "1.1"}
        )
    )
    meta = {
        "image": "rootfs-1",
        "release": "trixie",
        "image_packages": {"docker.io": "26.1.5", "runc": "1.1"},
    }
    ok, why = image_matches(meta, images)  # type: ignore[arg-type]
    assert not ok and "rootfs-2 is not the bundle's rootfs-1" in why
    assert "docker.io 26.1.5 -> 26.1.6" in why and "runc" not in why
    assert image_matches({**meta, "image": "rootfs-2"}, images) == (True, "")  # type: ignore[arg-type]
