"""Whose fault a verdict is: by class, by the promise broken, by configuration."""

from pathlib import Path
from typing import Any

import pytest

from crashtest_guest import check_state
from harness.model import Violation, blame_configuration
from harness.oracles import console
from harness.oracles.offline import verdicts
from harness.storage.backends import BACKENDS, parse_backends
from tests.storefactory import make_store

GOLDEN = Path(__file__).parents[1] / "golden"


def test_each_class_has_its_usual_fault_and_unknown_faults_are_refused() -> None:
    assert Violation("fs-durability", "s", "p").fault == "filesystem"
    assert Violation("leak", "s", "p").fault == "docker"
    assert Violation("harness-error", "s", "p").fault == "harness"
    assert Violation("docker-corruption", "s", "p", {}, "docker").fault == "docker"
    with pytest.raises(ValueError):
        Violation("fs-corruption", "s", "p", {}, "cosmic rays")
    v = Violation("docker-lost", "s", "p", {"a": "b"}, "docker")
    assert Violation.from_json(v.to_json()) == v


def test_no_barriers_moves_the_filesystems_fault_to_the_configuration() -> None:
    assert parse_backends("ext4-overlay2", mount_options="barrier=0")[0].flushes_off() == \
        "barrier=0"
    assert BACKENDS["ext4-overlay2"].flushes_off() == ""
    found = [Violation("fs-durability", "s", "p"), Violation("leak", "s", "q")]
    blamed = blame_configuration(found, "barrier=0")
    assert [v.fault for v in blamed] == ["configuration", "docker"]
    assert blamed[0].evidence["configuration"] == "barrier=0"
    assert blame_configuration(found, "") == found


def test_console_failure_in_filesystem_code_is_the_filesystems() -> None:
    faults = {v.evidence["failure"].split(" (x")[0]: v.fault
              for v in console.violations((GOLDEN / "oops-btrfs.log").read_text(), "s")}
    assert faults["btrfs transid"] == "filesystem"
    # the NULL dereference's trace runs through btrfs functions
    assert all(f == "filesystem" for f in faults.values())
    plain = "[ 1.0] BUG: kernel NULL pointer dereference, address: 08\n[ 1.1] RIP: do_idle+0x1\n"
    assert [v.fault for v in console.violations(plain, "s")] == ["kernel"]


def load_check_state(root: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(check_state, "ROOT", str(root))
    return check_state


def test_promised_damage_is_the_filesystems_unpromised_is_dockers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same zeroed layer file: after a sync that promised the image it is the
    filesystem's fault; in an image docker registered but nobody synced, docker's."""
    ids = make_store(tmp_path)
    (tmp_path / "overlay2" / ids["cache"] / "diff/data/a.bin").write_bytes(b"")
    mod = load_check_state(tmp_path, monkeypatch)
    backend = BACKENDS["ext4-overlay2"]

    def run(promises: list[dict[str, str]]) -> list[Violation]:
        results: list[dict[str, Any]] = []
        mod.check_store({"driver": "overlay2", "promises": promises, "registered": True},
                        results, {})
        return verdicts(results, backend, "s")

    unpromised = run([])
    assert [(v.cls, v.fault) for v in unpromised] == [("docker-corruption", "docker")]
    assert "t/app:1" in unpromised[0].promise and unpromised[0].evidence["image"]
    promise = {"kind": "image", "target": "t/app:1", "describe": "image t/app:1 exists",
               "manifest": "", "key": "image:t/app:1"}
    promised = run([promise])
    assert {v.fault for v in promised} == {"filesystem"}
    assert {v.check for v in promised} <= {"promise.image", "store.structure"}
    assert any("data/a.bin has 0 bytes" in v.evidence["output"] for v in promised)
