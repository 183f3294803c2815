"""The offline store oracle (crashtest_guest.docker_store, run in the guest) on small
synthetic stores built in a temp dir, laid out as docker 26 lays them out."""

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.storefactory import ds, make_store


def test_crc64_iso_matches_the_standard_check_value() -> None:
    assert ds.crc64_iso(b"123456789") == 0xB90956C775A41001


def findings(root: Path, **kw: Any) -> list[tuple[str, str]]:
    return [(f.cls, f.what) for f in ds.DockerStore(str(root)).check(**kw)]


def test_clean_synthetic_store(tmp_path: Path) -> None:
    make_store(tmp_path)
    store = ds.DockerStore(str(tmp_path))
    assert store.check() == []
    assert store.stats["images"] == 1 and store.stats["layers"] == 1


def test_zeroed_file_is_named_by_crc(tmp_path: Path) -> None:
    ids = make_store(tmp_path)
    (tmp_path / "overlay2" / ids["cache"] / "diff/data/a.bin").write_bytes(b"")
    found = ds.DockerStore(str(tmp_path)).check()
    assert [(f.cls, f.what) for f in found] == [
        ("docker-corruption", "layer files match their tar-split CRC64")
    ]
    assert "file data/a.bin has 0 bytes, tar-split says 3000" in found[0].detail


def test_missing_file_is_named_as_missing(tmp_path: Path) -> None:
    ids = make_store(tmp_path)
    (tmp_path / "overlay2" / ids["cache"] / "diff/data/a.bin").unlink()
    found = ds.DockerStore(str(tmp_path)).check()
    assert (
        "file data/a.bin is unreadable (No such file or directory), tar-split says "
        "3000 bytes" in found[0].detail
    )


def test_same_size_different_bytes_is_caught_by_crc(tmp_path: Path) -> None:
    ids = make_store(tmp_path)
    (tmp_path / "overlay2" / ids["cache"] / "diff/data/b.txt").write_bytes(b"HELLO\n")
    found = ds.DockerStore(str(tmp_path)).check()
    assert "CRC64 differs" in found[0].detail and "data/b.txt" in found[0].detail


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (
            lambda r, i: (r / "image/overlay2/repositories.json").write_text('{"Repos'),
            ("docker-corruption", "repositories.json parses (dockerd refuses to start otherwise)"),
        ),
        (
            lambda r, i: (r / "overlay2" / i["cache"] / "link").write_text(""),
            ("docker-corruption", "overlay2 link is a 26-character id"),
        ),
        (
            lambda r, i: (Path(i["layer"]) / "cache-id").write_text("zz"),
            ("docker-corruption", "layer cache-id is 64 hex digits"),
        ),
        (
            lambda r, i: (Path(i["layer"]) / "tar-split.json.gz").write_bytes(b"\x1f\x8b junk"),
            ("docker-corruption", "tar-split.json.gz is readable"),
        ),
        (
            lambda r, i: (r / "image/overlay2/layerdb/mounts" / i["cid"] / "mount-id").unlink(),
            ("docker-corruption", "container mount-id is readable"),
        ),
        (
            lambda r, i: (r / "overlay2" / ("0" * 64)).mkdir(),
            ("leak", "every driver directory belongs to a layer or container"),
        ),
        (
            lambda r, i: (r / "image/overlay2/layerdb/tmp/write-set-1").mkdir(parents=True),
            ("leak", "no leftover layer write-sets"),
        ),
    ],
)
def test_each_damage_has_its_finding(tmp_path: Path, damage, expected) -> None:  # type: ignore[no-untyped-def]
    ids = make_store(tmp_path)
    damage(tmp_path, ids)
    assert expected in findings(tmp_path)


def test_only_promised_objects_in_promise_mode(tmp_path: Path) -> None:
    ids = make_store(tmp_path)
    (tmp_path / "image/overlay2/layerdb/mounts" / ids["cid"] / "mount-id").unlink()
    (tmp_path / "overlay2" / ("0" * 64)).mkdir()
    # the half-made container was not promised; leaks are not checked in this mode
    assert findings(tmp_path, only_refs={"t/app:1"}, only_containers=set()) == []
    assert ("docker-corruption", "container mount-id is readable") in findings(
        tmp_path, only_refs={"t/app:1"}, only_containers={"box"}
    )


def registered(root: Path, skip: tuple[str, ...] = ()) -> list[dict[str, str]]:
    return list(ds.DockerStore(str(root)).check_registered(skip))


def test_docker_restores_only_intact_images(tmp_path: Path) -> None:
    make_store(tmp_path)
    assert registered(tmp_path) == []


def test_zeroed_file_of_an_image_docker_restores_is_dockers_fault(tmp_path: Path) -> None:
    ids = make_store(tmp_path)
    (tmp_path / "overlay2" / ids["cache"] / "diff/data/a.bin").write_bytes(b"")
    found = registered(tmp_path)
    assert [(f.cls, f.fault) for f in found] == [("docker-corruption", "docker")]
    assert "which docker restores" in found[0].what
    assert "file data/a.bin has 0 bytes" in found[0].detail
    # an image a workload promised is left to the promise checks
    image_id = json.loads((tmp_path / "image/overlay2/repositories.json").read_text())[
        "Repositories"
    ]["t/app"]["t/app:1"]
    assert registered(tmp_path, (image_id,)) == []


@pytest.mark.parametrize(
    "drop",
    [
        lambda r, i: (Path(i["layer"]) / "diff").unlink(),  # layer not restorable
        lambda r, i: os.rename(i["layer"], i["layer"] + "-x-removing"),  # layer being removed
        lambda r, i: next((r / "image/overlay2/imagedb/content/sha256").iterdir()).write_text("{"),
    ],
)
def test_image_docker_drops_at_start_is_no_finding(tmp_path: Path, drop) -> None:  # type: ignore[no-untyped-def]
    """dockerd skips an image whose config or a layer is unusable ("not restoring
    image"): nobody promised it, so its damaged files are no finding either."""
    ids = make_store(tmp_path)
    (tmp_path / "overlay2" / ids["cache"] / "diff/data/a.bin").write_bytes(b"")
    drop(tmp_path, ids)
    assert registered(tmp_path) == []


def test_empty_link_of_a_restored_image_is_found(tmp_path: Path) -> None:
    ids = make_store(tmp_path)
    (tmp_path / "overlay2" / ids["cache"] / "link").write_text("")
    assert [(f.cls, f.fault) for f in registered(tmp_path)] == [("docker-corruption", "docker")]
