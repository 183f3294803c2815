"""`stress`: a seeded fsx/fsstress-style generator of file operations (write at an
offset, truncate, rename, hard link, unlink, mkdir, fsync, fdatasync), run inside a
container's writable layer (/work) and in a volume (/vol), in epochs.

The generator keeps a model of every file (inodes, names, bytes) as it goes, so
the workload knows what each file must hold. Each epoch ends by fsyncing every
file it changed and their directories (as fstests generic/455 checks files at its
fsync marks): from then on, in every crash state, a changed file has exactly its
model's bytes and a removed name stays removed, until a later epoch changes it.
"""

from __future__ import annotations

import hashlib
import random
import shlex
from dataclasses import dataclass, field

from harness.workloads import (
    Barrier,
    Promise,
    Step,
    Workload,
    absent_file,
    container,
    file,
    image,
)
from harness.workloads.scenarios.common import BASE, Context, import_base

NAME, VOLUME = "stress", "stressvol"
BLOCK = 512
BLOB_BLOCKS = 512  # a 256 KiB source of seeded bytes in the image
EPOCHS = 3
OPS_PER_EPOCH = 12
MAX_DIRS = 3
MAX_FILES = 8


@dataclass
class Model:
    """Names -> inodes -> bytes, as the filesystem must hold them."""

    names: dict[str, int] = field(default_factory=dict)
    data: dict[int, bytearray] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=lambda: [""])
    next_inode: int = 0

    def links(self, inode: int) -> list[str]:
        return [n for n, i in self.names.items() if i == inode]


@dataclass
class Location:
    root: str  # where it is in the container
    prefix: str  # promise target prefix

    def target(self, name: str) -> str:
        return f"{self.prefix}/{name}"


def _join(d: str, n: str) -> str:
    return f"{d}/{n}" if d else n


def epoch(
    rng: random.Random, model: Model, blob: bytes, root: str, blob_path: str = "/blob.bin"
) -> tuple[list[str], set[str]]:
    """One epoch of operations: shell commands, and the names whose file changed.
    `blob`: the bytes of the file at `blob_path` that writes copy from."""
    cmds: list[str] = []
    touched: set[str] = set()

    def new_name() -> str:
        while True:
            name = _join(rng.choice(model.dirs), f"f{rng.randrange(100)}")
            if name not in model.names:
                return name

    def touch_inode(inode: int) -> None:
        touched.update(model.links(inode))

    for _ in range(OPS_PER_EPOCH):
        existing = sorted(model.names)
        ops = ["write", "write", "mkdir" if len(model.dirs) < MAX_DIRS else "write"]
        if existing:
            ops += ["write", "truncate", "rename", "link", "unlink", "fsync", "fdatasync"]
        op = rng.choice(ops)
        if op == "mkdir":
            d = _join(rng.choice(model.dirs), f"d{len(model.dirs)}")
            model.dirs.append(d)
            cmds.append(f"mkdir {root}/{d}")
        elif op == "write":
            fresh = not existing or (len(model.names) < MAX_FILES and rng.random() < 0.3)
            name = new_name() if fresh else rng.choice(existing)
            if name not in model.names:
                model.names[name] = model.next_inode
                model.data[model.next_inode] = bytearray()
                model.next_inode += 1
            seek, count = rng.randrange(64), rng.randrange(1, 33)
            skip = rng.randrange(BLOB_BLOCKS - count)
            buf = model.data[model.names[name]]
            if len(buf) < seek * BLOCK:
                buf.extend(bytes(seek * BLOCK - len(buf)))
            buf[seek * BLOCK : (seek + count) * BLOCK] = blob[skip * BLOCK : (skip + count) * BLOCK]
            cmds.append(
                f"dd if={blob_path} of={root}/{name} bs={BLOCK} skip={skip} "
                f"seek={seek} count={count} conv=notrunc 2>/dev/null"
            )
            touch_inode(model.names[name])
        elif op == "truncate":
            name = rng.choice(existing)
            buf = model.data[model.names[name]]
            size = rng.randrange(len(buf) + 8192)
            del buf[size:]
            buf.extend(bytes(size - len(buf)))
            cmds.append(f"truncate -s {size} {root}/{name}")
            touch_inode(model.names[name])
        elif op == "rename":
            src = rng.choice(existing)
            others = [n for n in existing if model.names[n] != model.names[src]]
            dst = rng.choice(others) if others and rng.random() < 0.3 else new_name()
            touched.update((src, dst))
            model.names[dst] = model.names.pop(src)
            cmds.append(f"mv {root}/{src} {root}/{dst}")
        elif op == "link":
            src, dst = rng.choice(existing), new_name()
            model.names[dst] = model.names[src]
            cmds.append(f"ln {root}/{src} {root}/{dst}")
            touch_inode(model.names[src])
        elif op == "unlink":
            name = rng.choice(existing)
            touch_inode(model.names.pop(name))
            touched.add(name)
            cmds.append(f"rm {root}/{name}")
        else:  # fsync or fdatasync mid-epoch: the log sees flushes at odd places
            flag = " -d" if op == "fdatasync" else ""
            cmds.append(f"sync{flag} {root}/{rng.choice(existing)}")
    return cmds, touched


def settle(model: Model, touched: set[str], loc: Location) -> tuple[str, list[Promise]]:
    """fsync every changed file and every directory that holds a changed name; the
    promises that makes."""
    files = sorted(n for n in touched if n in model.names)
    dirs = sorted({n.rpartition("/")[0] for n in touched} | {""})
    paths = [f"{loc.root}/{n}" for n in files] + [f"{loc.root}/{d}".rstrip("/") for d in dirs]
    promises = [
        file(loc.target(n), hashlib.sha256(model.data[model.names[n]]).hexdigest())
        if n in model.names
        else absent_file(loc.target(n))
        for n in sorted(touched)
    ]
    return f"sync {' '.join(paths)}", promises


def workload(seed: int) -> Workload:
    rng = random.Random(f"crashtest-stress:{seed}")
    ref = f"crashtest/stress:s{seed}"
    ctx = Context(
        ref,
        f"{ref}:{seed}",
        (("blob.bin", BLOB_BLOCKS * BLOCK),),
        (("Dockerfile", f"FROM {BASE}\nCOPY blob.bin /blob.bin\n"),),
    )
    blob = ctx.content("blob.bin")
    steps = [
        import_base(),
        ctx.build("build", barrier=Barrier.SYNC, promises=(image(ref, "true"),)),
        Step(
            "start",
            (
                f"docker volume create {VOLUME}",
                f"docker run -d --name {NAME} --network none -v {VOLUME}:/vol {ref} sleep 100000",
                f"docker exec {NAME} mkdir /work",
            ),
            Barrier.SYNC,
            "build",
            [container(NAME)],
        ),
    ]
    locations = (
        Location("/work", f"container:{NAME}:/work"),
        Location("/vol", f"volume:{VOLUME}:"),
    )
    models = {loc.root: Model() for loc in locations}
    for e in range(EPOCHS):
        for loc in locations:
            model = models[loc.root]
            cmds, touched = epoch(rng, model, blob, loc.root)
            sync, promises = settle(model, touched, loc)
            script = " && ".join([*cmds, sync])
            where = loc.root.strip("/")
            steps.append(
                Step(
                    f"ops-{where}-{e}",
                    f"docker exec {NAME} sh -c {shlex.quote(script)}",
                    Barrier.FSYNC,
                    "start",
                    promises,
                )
            )
    # `--inject zero-layer-file` empties the largest file the last epochs left in the
    # writable layer (every copy of a path ending so): its fsync'd promise must break.
    work = models["/work"]
    largest = max(work.names, key=lambda n: (len(work.data[work.names[n]]), n))
    return Workload(
        "stress",
        steps,
        seed,
        description=f"{EPOCHS} epochs of {OPS_PER_EPOCH} seeded file operations (write, "
        "truncate, rename, link, unlink, mkdir, fsync, fdatasync) in a "
        "writable layer and in a volume, each epoch fsync'd",
        damage_target=f"/work/{largest}",
        cuts=(
            "during:ops-work-1:1",
            "after:ops-vol-1",
            "during:ops-vol-2:1",
            f"after:ops-vol-{EPOCHS - 1}",
        ),
    )
