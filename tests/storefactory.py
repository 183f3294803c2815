"""Small synthetic docker stores, laid out as docker 26 lays them out, and the
guest's store oracle module loaded on the host."""

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from crashtest_guest import docker_store as ds

FILES = {"data/a.bin": b"A" * 3000, "data/b.txt": b"hello\n"}


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
        entries.append(
            {"type": 2, "payload": base64.b64encode(stream[pos : member.offset_data]).decode()}
        )
        crc = ds.crc64_iso(FILES[member.name]).to_bytes(8, "big")
        entries.append(
            {
                "type": 1,
                "name": member.name,
                "size": member.size,
                "payload": base64.b64encode(crc).decode(),
            }
        )
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
    (img / "repositories.json").write_text(
        json.dumps({"Repositories": {"t/app": {"t/app:1": image_id}}})
    )
    cid, mount = "d" * 64, "e" * 64
    (root / "containers" / cid).mkdir(parents=True)
    (root / "containers" / cid / "config.v2.json").write_text(
        json.dumps({"ID": cid, "Name": "/box"})
    )
    (img / "layerdb/mounts" / cid).mkdir(parents=True)
    (img / "layerdb/mounts" / cid / "mount-id").write_text(mount)
    (img / "layerdb/mounts" / cid / "init-id").write_text(mount + "-init")
    for d, short in ((mount, "M" * 26), (mount + "-init", "N" * 26)):
        (root / "overlay2" / d / "diff").mkdir(parents=True)
        (root / "overlay2" / d / "link").write_text(short)
        os.symlink(f"../{d}/diff", root / "overlay2/l" / short)
    return {"cache": cache_id, "layer": str(layer), "cid": cid}
