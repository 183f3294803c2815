"""The default docker workload: seeded, deterministic, with declared durability points.

import base → build a multi-layer image (seeded files of varied sizes, symlink,
hardlink, odd modes and owners, a delete and a rename across layers) → build a
throwaway image → create a container with a volume → fsync'd writes into its
writable layer and the volume → commit it → remove a container and an image.
Every step that ends in `sync` or an fsync'd write declares what must survive.
"""

from __future__ import annotations

import hashlib
import io
import random
import shlex
import tarfile

from harness.images.rootfs import BASE_TAR_IN_GUEST
from harness.model import Barrier
from harness.workloads.api import (
    DEFAULT_INVARIANTS,
    GuestFile,
    Step,
    Workload,
    absent_container,
    absent_image,
    container,
    file,
    image,
)

SYNC, FSYNC = Barrier.SYNC, Barrier.FSYNC

BASE = "crashtest/base:latest"
CTX_DIR = "/tmp/crashtest-ctx"
SIZES = (0, 1, 511, 4096, 4097, 65536, 65537, 131072, 300000)
META_ENTRIES = (
    "/data/meta/symlink",
    "/data/meta/hardlink",
    "/data/l1/f1.bin",
    "/data/l1/f2.bin",
    "/data/l1/f3.bin",
    "/data/meta",
    "/data/l2/moved.bin",
)
VERIFY_SH = """#!/bin/sh
# Runs inside a fresh container: content and metadata as built, deleted files gone.
rc=0
if ! sha256sum -c /crashtest/manifest.sha256 >/tmp/sum.out 2>&1; then
    grep -v ': OK$' /tmp/sum.out; rc=1
fi
for gone in /data/l1/f4.bin /data/l1/f5.bin; do
    [ -e "$gone" ] && { echo "deleted $gone is back"; rc=1; }
done
stat -c '%n %F %a %u %g %h %N' $(cat /crashtest/meta.list) >/tmp/meta.now 2>&1
diff /crashtest/manifest.meta /tmp/meta.now || rc=1
exit $rc
"""


def build_context(rng: random.Random, seed: int) -> tuple[dict[str, bytes], str]:
    """Seeded build context. Returns files and the sha256 of the fsync'd output the
    writer container produces from layer 2 (cat of l2 files in order)."""
    files: dict[str, bytes] = {}
    layers = {"layer1": 6, "layer2": 5, "layer3": 4}
    for layer, count in layers.items():
        for i in range(count):
            files[f"{layer}/f{i}.bin"] = rng.randbytes(rng.choice(SIZES))
    run_line = f"seed {seed} {rng.getrandbits(64):016x}"
    manifest = {}
    for i in range(4):  # f4 is deleted, f5 is moved in layer 2
        manifest[f"/data/l1/f{i}.bin"] = files[f"layer1/f{i}.bin"]
    manifest["/data/meta/hardlink"] = files["layer1/f1.bin"]
    manifest["/data/meta/run.txt"] = (run_line + "\n").encode()
    manifest["/data/l2/moved.bin"] = files["layer1/f5.bin"]
    for name, data in files.items():
        if not name.startswith("layer1/"):
            manifest["/data/l" + name[len("layer") :]] = data
    files["manifest.sha256"] = "".join(
        f"{_sha(data)}  {path}\n" for path, data in sorted(manifest.items())
    ).encode()
    files["verify.sh"] = VERIFY_SH.encode()
    files["meta.list"] = ("\n".join(META_ENTRIES) + "\n").encode()
    files["Dockerfile"] = f"""FROM {BASE}
COPY layer1/ /data/l1/
RUN mkdir -p /data/meta /data/out && ln -s ../l1/f0.bin /data/meta/symlink \\
 && ln /data/l1/f1.bin /data/meta/hardlink && chmod 4750 /data/l1/f2.bin \\
 && chown 1234:5678 /data/l1/f3.bin && printf '%s\\n' '{run_line}' > /data/meta/run.txt
COPY layer2/ /data/l2/
RUN rm /data/l1/f4.bin && mv /data/l1/f5.bin /data/l2/moved.bin
COPY layer3/ /data/l3/
COPY manifest.sha256 verify.sh meta.list /crashtest/
RUN stat -c '%n %F %a %u %g %h %N' $(cat /crashtest/meta.list) > /crashtest/manifest.meta
""".encode()
    out = b"".join(files[f"layer2/f{i}.bin"] for i in range(layers["layer2"]))
    return files, _sha(out)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def workload(seed: int) -> Workload:
    rng = random.Random(f"crashtest-workload:{seed}")
    ctx, out_sha = build_context(rng, seed)
    app = f"crashtest/app:s{seed}"
    scratch = f"crashtest/scratch:s{seed}"
    committed = f"crashtest/committed:s{seed}"
    writer, temp, volume = "writer", "temp", "crashtest-vol"
    l2 = " ".join(f"/data/l2/f{i}.bin" for i in range(5))
    verify = "/bin/sh /crashtest/verify.sh"
    scratch_df = f"FROM {BASE}\nRUN echo scratch-{seed} > /scratch.txt\n"
    app_manifest = ctx["manifest.sha256"].decode()
    scratch_sha = _sha(f"scratch-{seed}\n".encode())
    scratch_line = f"{scratch_sha}  /scratch.txt\n"
    out_line = f"{out_sha}  /data/out/layer.bin\n"
    # The largest file of the app image's top data layer: never empty, so zeroing shows.
    layer3 = {k: v for k, v in ctx.items() if k.startswith("layer3/")}
    damage = "/data/l3/" + max(layer3, key=lambda k: len(layer3[k])).split("/", 1)[1]

    steps = [
        Step(
            "import-base", f"docker import {BASE_TAR_IN_GUEST} {BASE}", SYNC, promises=[image(BASE)]
        ),
        Step(
            "build-app",
            (
                f"rm -rf {CTX_DIR} && mkdir -p {CTX_DIR} && tar -xf {CTX_DIR}.tar -C {CTX_DIR}",
                f"DOCKER_BUILDKIT=0 docker build -q --network none -t {app} {CTX_DIR}",
            ),
            SYNC,
            ("import-base",),
            [image(app, verify, app_manifest)],
            files=[GuestFile(f"{CTX_DIR}.tar", _tar(ctx))],
        ),
        Step(
            "build-scratch",
            f"printf %s {shlex.quote(scratch_df)} | DOCKER_BUILDKIT=0 "
            f"docker build -q --network none -t {scratch} -",
            SYNC,
            ("import-base",),
            [image(scratch, "cat /scratch.txt", scratch_line)],
        ),
        Step(
            "create-writer",
            f"docker create --name {writer} --network none -v {volume}:/vol {app} sleep 100000",
            SYNC,
            ("build-app",),
            [container(writer)],
        ),
        Step("start-writer", f"docker start {writer}", needs=("create-writer",)),
        Step(
            "fsync-layer",
            f"docker exec {writer} sh -c 'cat {l2} > /data/out/layer.bin && "
            "sync /data/out/layer.bin /data/out'",
            FSYNC,
            ("start-writer",),
            [file(f"container:{writer}:/data/out/layer.bin", out_sha)],
        ),
        Step(
            "fsync-volume",
            f"docker exec {writer} sh -c 'cat {l2} > /vol/vol.bin && sync /vol/vol.bin /vol'",
            FSYNC,
            ("start-writer",),
            [file(f"volume:{volume}:/vol.bin", out_sha)],
        ),
        # The writer was running when `sync` made its state durable: after a power cut
        # dockerd must bring it back as exited with code 255. The committed image
        # must hold the fsync'd file.
        Step(
            "commit",
            f"docker commit {writer} {committed}",
            SYNC,
            ("fsync-layer",),
            [
                container(writer, "exited 255"),
                image(
                    committed,
                    f"{verify} && echo '{out_sha}  /data/out/layer.bin' | sha256sum -c -s",
                    app_manifest + out_line,
                ),
            ],
        ),
        Step(
            "churn",
            f"docker run --name {temp} --network none {app} true && docker rm {temp} "
            f"&& docker rmi {scratch}",
            SYNC,
            ("build-app", "build-scratch"),
            [absent_container(temp), absent_image(scratch)],
        ),
    ]
    return Workload(
        "default",
        tuple(steps),
        seed,
        DEFAULT_INVARIANTS,
        "import, build, run, fsync, commit and remove: docker's everyday "
        "operations on a seeded multi-layer image",
        damage,
    )
