"""The offline store oracle (images/guest/docker_store.py, run in the guest) on small
synthetic stores built in a temp dir, laid out as docker 26 lays them out."""

import base64
import gzip
import hashlib
import importlib.util
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

SPEC = importlib.util.spec_from_file_location(
    "docker_store", Path(__file__).parents[2] / "images" / "guest" / "docker_store.py")
assert SPEC and SPEC.loader
ds: Any = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ds)

FILES = {"data/a.bin": b"A" * 3000, "data/b.txt": b"hello\n"}


def test_crc64_iso_matches_the_standard_check_value() -> None:
    assert ds.crc64_iso(b"123456789") == 0xB90956C775A41001


def make_store(root: Path) -> dict[str, str]:
    """One image with one overlay2 layer, its tar-split, a tag and a container."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    stream = tar_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(stream).hexdigest()
    # tar-split: raw segments, and file entries carrying the CRC64 of their content
    entries, pos = [], 0
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        members = tar.getmembers()
    for member in members:
        entries.append({"type": 2, "payload": base64.b64encode(
            stream[pos:member.offset_data]).decode()})
        crc = ds.crc64_iso(FILES[member.name]).to_bytes(8, "big")
        entries.append({"type": 1, "name": member.name, "size": member.size,
                        "payload": base64.b64encode(crc).decode()})
        pos = member.offset_data + member.size
    entries.append({"type": 2, "payload": base64.b64encode(stream[pos:]).decode()})
    cache_id = "c" * 64
    img = root / "image/overlay2"
    layer = img / "layerdb/sha256" / diff_id.split(":")[1]
    layer.mkdir(parents=True)
    (layer / "diff").write_text(diff_id)
    (layer / "cache-id").write_text(cache_id)
    with gzip.open(layer / "tar-split.json.gz", "wt") as f:
        f.write("".join(json.dumps(e) + "\n" for e in entries))
    diff = root / "overlay2" / cache_id / "diff"
    for name, data in FILES.items():
        (diff / name).parent.mkdir(parents=True, exist_ok=True)
        (diff / name).write_bytes(data)
    link = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    (root / "overlay2" / cache_id / "link").write_text(link)
    (root / "overlay2/l").mkdir()
    os.symlink(f"../{cache_id}/diff", root / "overlay2/l" / link)
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    (img / "imagedb/content/sha256").mkdir(parents=True)
    (img / "imagedb/content/sha256" / image_id.split(":")[1]).write_bytes(config)
    (img / "repositories.json").write_text(json.dumps(
        {"Repositories": {"t/app": {"t/app:1": image_id}}}))
    cid, mount = "d" * 64, "e" * 64
    (root / "containers" / cid).mkdir(parents=True)
    (root / "containers" / cid / "config.v2.json").write_text(json.dumps(
        {"ID": cid, "Name": "/box"}))
    (img / "layerdb/mounts" / cid).mkdir(parents=True)
    (img / "layerdb/mounts" / cid / "mount-id").write_text(mount)
    (img / "layerdb/mounts" / cid / "init-id").write_text(mount + "-init")
    for d, short in ((mount, "M" * 26), (mount + "-init", "N" * 26)):
        (root / "overlay2" / d / "diff").mkdir(parents=True)
        (root / "overlay2" / d / "link").write_text(short)
        os.symlink(f"../{d}/diff", root / "overlay2/l" / short)
    return {"cache": cache_id, "layer": str(layer), "cid": cid}


def findings(root: Path, **kw: Any) -> list[tuple[str, str]]:
    return [(f["cls"], f["what"]) for f in ds.DockerStore(str(root)).check(**kw)]


def test_clean_synthetic_store(tmp_path: Path) -> None:
    make_store(tmp_path)
    store = ds.DockerStore(str(tmp_path))
    assert store.check() == []
    assert store.stats["images"] == 1 and store.stats["layers"] == 1


def test_zeroed_file_is_named_by_crc(tmp_path: Path) -> None:
    ids = make_store(tmp_path)
    (tmp_path / "overlay2" / ids["cache"] / "diff/data/a.bin").write_bytes(b"")
    found = ds.DockerStore(str(tmp_path)).check()
    assert [(f["cls"], f["what"]) for f in found] == [
        ("docker-corruption", "layer files match their tar-split CRC64")]
    assert "file data/a.bin has 0 bytes, tar-split says 3000" in found[0]["detail"]


def test_same_size_different_bytes_is_caught_by_crc(tmp_path: Path) -> None:
    ids = make_store(tmp_path)
    (tmp_path / "overlay2" / ids["cache"] / "diff/data/b.txt").write_bytes(b"HELLO\n")
    found = ds.DockerStore(str(tmp_path)).check()
    assert "CRC64 differs" in found[0]["detail"] and "data/b.txt" in found[0]["detail"]


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda r, i: (r / "image/overlay2/repositories.json").write_text('{"Repos'),
     ("docker-corruption", "repositories.json parses (dockerd refuses to start otherwise)")),
    (lambda r, i: (r / "overlay2" / i["cache"] / "link").write_text(""),
     ("docker-corruption", "overlay2 link is a 26-character id")),
    (lambda r, i: (Path(i["layer"]) / "cache-id").write_text("zz"),
     ("docker-corruption", "layer cache-id is 64 hex digits")),
    (lambda r, i: (Path(i["layer"]) / "tar-split.json.gz").write_bytes(b"\x1f\x8b junk"),
     ("docker-corruption", "tar-split.json.gz is readable")),
    (lambda r, i: (r / "image/overlay2/layerdb/mounts" / i["cid"] / "mount-id").unlink(),
     ("docker-corruption", "container mount-id is readable")),
    (lambda r, i: (r / "overlay2" / ("0" * 64)).mkdir(),
     ("leak", "every driver directory belongs to a layer or container")),
    (lambda r, i: (r / "image/overlay2/layerdb/tmp/write-set-1").mkdir(parents=True),
     ("leak", "no leftover layer write-sets")),
])
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
        tmp_path, only_refs={"t/app:1"}, only_containers={"box"})
