"""Whose fault a verdict is: by class, by the promise broken, by configuration."""

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from crashtest_guest import check_state
from crashtest_guest.protocol import CheckOutcome, CheckRequest
from harness.model import Violation, blame_configuration
from harness.oracles import console
from harness.oracles.offline import observed, verdicts
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
    assert (
        parse_backends("ext4-overlay2", mount_options="barrier=0")[0].flushes_off() == "barrier=0"
    )
    assert BACKENDS["ext4-overlay2"].flushes_off() == ""
    found = [Violation("fs-durability", "s", "p"), Violation("leak", "s", "q")]
    blamed = blame_configuration(found, "barrier=0")
    assert [v.fault for v in blamed] == ["configuration", "docker"]
    assert blamed[0].evidence["configuration"] == "barrier=0"
    assert blame_configuration(found, "") == found


def test_console_failure_in_filesystem_code_is_the_filesystems() -> None:
    faults = {
        v.evidence["failure"].split(" (x")[0]: v.fault
        for v in console.violations((GOLDEN / "oops-btrfs.log").read_text(), "s")
    }
    assert faults["btrfs transid"] == "filesystem"
    # the NULL dereference's trace runs through btrfs functions
    assert all(f == "filesystem" for f in faults.values())
    plain = "[ 1.0] BUG: kernel NULL pointer dereference, address: 08\n[ 1.1] RIP: do_idle+0x1\n"
    assert [v.fault for v in console.violations(plain, "s")] == ["kernel"]


def load_check_state(root: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(check_state, "ROOT", str(root))
    return check_state


def request(**fields: Any) -> CheckRequest:
    """A check request as the host sends it (through JSON), with these fields."""
    return CheckRequest.from_json({"serial": "s", "mount": "", "fsck": "", **fields})


def store_check(mod: Any, **fields: Any) -> CheckOutcome:
    out = CheckOutcome()
    mod.check_store(request(**fields), out)
    return CheckOutcome.from_json(json.loads(json.dumps(out.to_json())))


def test_promised_damage_is_the_filesystems_unpromised_is_dockers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same zeroed layer file: after a sync that promised the image it is the
    filesystem's fault; in an image docker registered but nobody synced, docker's."""
    ids = make_store(tmp_path)
    (tmp_path / "overlay2" / ids["cache"] / "diff/data/a.bin").write_bytes(b"")
    mod = load_check_state(tmp_path, monkeypatch)
    backend = BACKENDS["ext4-overlay2"]

    def run(promises: list[dict[str, str]]) -> list[Violation]:
        results = store_check(mod, driver="overlay2", promises=promises, registered=True)
        return verdicts(results, backend, "s")

    unpromised = run([])
    assert [(v.cls, v.fault) for v in unpromised] == [("docker-corruption", "docker")]
    assert "t/app:1" in unpromised[0].promise and unpromised[0].evidence["image"]
    promise = {
        "kind": "image",
        "target": "t/app:1",
        "describe": "image t/app:1 exists",
        "manifest": "",
        "key": "image:t/app:1",
    }
    promised = run([promise])
    assert {v.fault for v in promised} == {"filesystem"}
    assert {v.check for v in promised} <= {"promise.image", "store.structure"}
    assert any("data/a.bin has 0 bytes" in v.evidence["output"] for v in promised)


def test_a_file_in_a_container_docker_lost_track_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file fsync'd inside a container whose mount-id docker never made durable:
    the file may be safe, but docker cannot find the layer. Without a sync that
    promised the container, that is docker's fault; with one, the filesystem's."""
    ids = make_store(tmp_path)
    layer = tmp_path / "overlay2" / ("e" * 64) / "diff"
    (layer / "kept.txt").write_bytes(b"x\n")
    mod = load_check_state(tmp_path, monkeypatch)
    file_p = {
        "kind": "file",
        "target": "container:box:/kept.txt",
        "key": "file:box",
        "describe": "kept",
        "sha256": hashlib.sha256(b"x\n").hexdigest(),
    }
    box = {"kind": "container", "target": "box", "key": "container:box", "describe": "box"}

    def run(*promises: dict[str, str]) -> list[tuple[str, str, str]]:
        results = store_check(mod, driver="overlay2", promises=list(promises))
        return [
            (v.cls, v.fault, v.check) for v in verdicts(results, BACKENDS["ext4-overlay2"], "s")
        ]

    assert run(file_p) == []
    (tmp_path / "image/overlay2/layerdb/mounts" / ids["cid"] / "mount-id").write_text("")
    assert run(file_p) == [("docker-lost", "docker", "promise.file")]
    assert ("docker-lost", "filesystem", "promise.file") in run(file_p, box)


def _kind_check(
    root: Path, monkeypatch: pytest.MonkeyPatch, *promises: dict[str, str]
) -> list[tuple[str, str]]:
    mod = load_check_state(root, monkeypatch)
    results = store_check(mod, driver="overlay2", promises=list(promises))
    return [
        (v.cls, v.check)
        for v in verdicts(results, BACKENDS["ext4-overlay2"], "s")
        if v.check.startswith("promise.")
    ]


HELLO_LINE = hashlib.sha256(b"hello\n").hexdigest() + "  /data/b.txt\n"


def _p(kind: str, target: str, **extra: str) -> dict[str, str]:
    return {"kind": kind, "target": target, "key": f"{kind}:{target}", "describe": kind, **extra}


@pytest.mark.parametrize(
    ("promise", "damage", "expected"),
    [
        (
            _p("image", "t/app:1", manifest=HELLO_LINE),
            "overlay2/" + "c" * 64 + "/diff/data/b.txt",
            ("docker-corruption", "promise.image"),
        ),
        (
            _p("image", "t/app:1", image_id="sha256:" + "0" * 64),
            None,
            ("fs-durability", "promise.image"),
        ),
        (
            _p("container", "box"),
            "containers/" + "d" * 64 + "/config.v2.json",
            ("docker-lost", "promise.container"),
        ),
        (
            _p("file", "volume:v:/f", sha256=hashlib.sha256(b"v\n").hexdigest()),
            "volumes/v/_data/f",
            ("fs-durability", "promise.file"),
        ),
        (_p("absent-image", "t/app:1"), None, ("fs-durability", "promise.absent-image")),
        (_p("absent-container", "box"), None, ("fs-durability", "promise.absent-container")),
    ],
)
def test_each_promise_kind_is_caught_when_broken(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    promise: dict[str, str],
    damage: str | None,
    expected: tuple[str, str],
) -> None:
    """Kept first (where the store can keep it), then broken on purpose."""
    make_store(tmp_path)
    (tmp_path / "volumes/v/_data").mkdir(parents=True)
    (tmp_path / "volumes/v/_data/f").write_bytes(b"v\n")
    if damage:  # absent-* (None): the object is there, so the promise is broken
        assert _kind_check(tmp_path, monkeypatch, promise) == []
        (tmp_path / damage).write_bytes(b"damaged")
    assert _kind_check(tmp_path, monkeypatch, promise) == [expected]


def test_an_offline_command_invariant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = load_check_state(tmp_path, monkeypatch)
    results = CheckOutcome()
    mod.check_commands(
        request(
            commands=[
                {
                    "id": "invariant.command:a",
                    "command": "true",
                    "cls": "fs-corruption",
                    "promise": "ok",
                },
                {
                    "id": "invariant.command:b",
                    "command": "echo broken; false",
                    "cls": "fs-corruption",
                    "promise": "planted",
                },
            ]
        ),
        results,
    )
    found = verdicts(results, BACKENDS["ext4-overlay2"], "s")
    assert [(v.check, v.subject, v.promise) for v in found] == [
        ("invariant.command:b", "echo broken; false", "planted")
    ]
    assert "broken" in found[0].evidence["output"]


def test_a_hang_gets_one_more_guest_then_is_a_verdict_on_every_path() -> None:
    from harness.errors import GuestTimeout
    from harness.oracles.checker import retry_once_on_hang

    tries: list[int] = []

    def hangs_once(n: int) -> list[Violation]:
        tries.append(n)
        if n == 1:
            raise GuestTimeout("no answer", "console tail")
        return []

    assert retry_once_on_hang(hangs_once, "s") == ([], True) and tries == [1, 2]

    def hangs(n: int) -> list[Violation]:
        raise GuestTimeout("no answer", "console tail")

    found, retried = retry_once_on_hang(hangs, "s")
    assert retried and [(v.cls, v.check, v.evidence["console"]) for v in found] == [
        ("fs-corruption", "kernel.hang", "console tail")
    ]


def test_a_container_file_is_what_the_container_sees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container's file promise reads its writable layer over its image: a file
    only in the image is its image's copy, a whiteout makes it absent; a metadata
    promise compares mode and owner; an observation names what the file is."""
    make_store(tmp_path)
    config = tmp_path / "containers" / ("d" * 64) / "config.v2.json"
    image_id = json.loads((tmp_path / "image/overlay2/repositories.json").read_text())[
        "Repositories"
    ]["t/app"]["t/app:1"]
    config.write_text(json.dumps({"ID": "d" * 64, "Name": "/box", "Image": image_id}))
    upper = tmp_path / "overlay2" / ("e" * 64) / "diff"
    (upper / "data").mkdir()
    os.mknod(upper / "data/a.bin", 0o600 | stat.S_IFCHR, 0)  # a whiteout
    mod = load_check_state(tmp_path, monkeypatch)
    hello = hashlib.sha256(b"hello\n").hexdigest()

    def run(
        *promises: dict[str, str], observe: tuple[dict[str, Any], ...] = ()
    ) -> tuple[list[tuple[str, str]], dict[str, str]]:
        results = store_check(
            mod, driver="overlay2", promises=list(promises), observe=list(observe)
        )
        found = verdicts(results, BACKENDS["ext4-overlay2"], "s")
        return [(v.check, v.evidence["output"]) for v in found], observed(results)

    def promise(kind: str, path: str, **extra: str) -> dict[str, str]:
        return {
            "kind": kind,
            "target": f"container:box:{path}",
            "key": f"file:{path}",
            "describe": path,
            **extra,
        }

    lower_b = tmp_path / "overlay2" / ("c" * 64) / "diff/data/b.txt"
    meta = f"{stat.S_IMODE(lower_b.stat().st_mode):o} {os.getuid()} {os.getgid()}"
    assert run(
        promise("file", "/data/b.txt", sha256=hello, meta=meta),
        promise("absent-file", "/data/a.bin"),
    ) == ([], {})
    found, _ = run(
        promise("file", "/data/b.txt", sha256=hello, meta="600 0 0"),
        promise("absent-file", "/data/b.txt"),
        promise("file", "/data/a.bin", sha256=hello),
    )
    assert [c for c, _ in found] == ["promise.file", "promise.absent-file", "promise.file"]
    assert "mode/owner want 600 0 0 got" in found[0][1] and "is back" in found[1][1]
    assert "(missing)" in found[2][1]
    (upper / "data/b.txt").write_bytes(b"")  # copied up, then lost its data
    _, seen = run(
        observe=(
            {"target": "container:box:/data/b.txt", "outcomes": {"old": f"{hello} {meta}"}},
            {"target": "container:box:/data/a.bin", "outcomes": {"old": "x", "new": "absent"}},
            {"target": "container:box:/data/new", "outcomes": {"new": "y" * 64 + " 644 0 0"}},
        )
    )
    assert seen == {
        "container:box:/data/b.txt": "empty",
        "container:box:/data/a.bin": "new",
        "container:box:/data/new": "other",
    }


def test_a_directory_promise_is_its_entry_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk: directory holds its names (what fstests lists after a power cut): a
    lost entry or a name come back breaks the promise, with the names as evidence;
    the same names in another order keep it."""
    make_store(tmp_path)
    kb = tmp_path / "kb"
    (kb / "dir").mkdir(parents=True)
    (kb / "foo").write_bytes(b"x")
    mod = load_check_state(tmp_path, monkeypatch)
    want = mod.derive({"driver": "overlay2", "promises": [_p("file", "disk:/kb")]})[0]
    assert want["sha256"] == hashlib.sha256(b"dir\nfoo\n").hexdigest()
    promise = _p("file", "disk:/kb", sha256=want["sha256"])
    assert _kind_check(tmp_path, monkeypatch, promise) == []
    (kb / "dir").rmdir()  # the entry the fsync should have kept
    results = store_check(mod, driver="overlay2", promises=[promise])
    found = verdicts(results, BACKENDS["ext4-overlay2"], "s")
    assert [(v.cls, v.check) for v in found] == [("fs-durability", "promise.file")]
    assert found[0].evidence["output"].endswith("it holds foo")
