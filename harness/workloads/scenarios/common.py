"""What several scenarios share: the busybox base image, build contexts of seeded
files written in the guest (`crashtest_guest.seeded`: the workload carries names
and sizes, not megabytes), and a seeded multi-layer image of several MB."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from crashtest_guest.seeded import seeded_bytes
from harness.workloads import BASE_TAR, Barrier, GuestFile, Promise, Step, image

BASE = "crashtest/base:latest"
CTX = "/tmp/crashtest-scenario-ctx"
MANIFEST = "/crashtest/manifest.sha256"
VERIFY = f"sha256sum -c -s {MANIFEST}"  # run in a fresh container of the image


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def import_base() -> Step:
    return Step(
        "import-base", f"docker import {BASE_TAR} {BASE}", Barrier.SYNC, promises=[image(BASE)]
    )


@dataclass(frozen=True)
class Context:
    """A docker build context: seeded files (path -> size, content keyed by
    `key`/path) and small text files, built into `ref` by one step."""

    ref: str
    key: str
    seeded: tuple[tuple[str, int], ...]
    text: tuple[tuple[str, str], ...]

    def content(self, path: str) -> bytes:
        return seeded_bytes(f"{self.key}/{path}", dict(self.seeded)[path])

    def build(
        self,
        name: str,
        needs: str = "import-base",
        barrier: str = Barrier.NONE,
        promises: tuple[Promise, ...] = (),
    ) -> Step:
        ctx = f"{CTX}-{name}"
        specs = " ".join(f"{p}:{n}:{self.key}/{p}" for p, n in self.seeded)
        return Step(
            name,
            (
                f"cd /crashtest && python3 -m crashtest_guest.seeded {ctx} {specs}",
                f"DOCKER_BUILDKIT=0 docker build -q --network none -t {self.ref} {ctx}",
                f"rm -rf {ctx}",
            ),
            barrier,
            needs,
            promises,
            files=[GuestFile(f"{ctx}/{p}", t.encode()) for p, t in self.text],
        )


@dataclass(frozen=True)
class SeededImage:
    """A multi-layer image: one COPY layer per entry of `layers`, each of seeded
    files, and a manifest of every data file at MANIFEST."""

    context: Context
    manifest: str  # "sha256  /path" lines of the data files
    largest: str  # the largest file of the top data layer (for --inject)

    @property
    def ref(self) -> str:
        return self.context.ref

    def build(self, name: str = "build-app", barrier: str = Barrier.NONE) -> Step:
        return self.context.build(
            name, barrier=barrier, promises=(self.promise(),) if barrier else ()
        )

    def promise(self) -> Promise:
        """The image exists, saves, runs its manifest check, and every data file
        has its seeded content."""
        return image(self.ref, VERIFY, self.manifest)


def seeded_image(ref: str, seed: int, layers: tuple[tuple[int, ...], ...]) -> SeededImage:
    """`layers`: the sizes of the files in each layer, bottom first."""
    seeded = tuple(
        (f"l{n}/f{i}.bin", size)
        for n, sizes in enumerate(layers, 1)
        for i, size in enumerate(sizes)
    )
    probe = Context(ref, f"{ref}:{seed}", seeded, ())
    manifest = "".join(f"{sha(probe.content(p))}  /data/{p}\n" for p, _ in seeded)
    dockerfile = "\n".join(
        [
            f"FROM {BASE}",
            *(f"COPY l{n}/ /data/l{n}/" for n in range(1, len(layers) + 1)),
            "COPY manifest.sha256 /crashtest/",
            "",
        ]
    )
    ctx = Context(
        ref, probe.key, seeded, (("Dockerfile", dockerfile), ("manifest.sha256", manifest))
    )
    top = [(p, n) for p, n in seeded if p.startswith(f"l{len(layers)}/")]
    return SeededImage(ctx, manifest, "/data/" + max(top, key=lambda pn: pn[1])[0])


# Several MB in four layers (over the base's one): big files, small ones, one of a
# single byte, one of a page and a byte.
SEVERAL_MB = (
    (1 << 20, 700_000, 65537, 1),
    (1 << 20, 300_000, 4097),
    (1_500_000, 4096, 511),
    (900_000, 123_457),
)
