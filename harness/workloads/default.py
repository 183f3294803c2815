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
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.guest.agent import AgentClient, Result
from harness.images.rootfs import BASE_TAR_IN_GUEST
from harness.workloads.promises import Promise

BASE = "crashtest/base:latest"
CTX_DIR = "/tmp/crashtest-ctx"
SIZES = (0, 1, 511, 4096, 4097, 65536, 65537, 131072, 300000)
META_ENTRIES = ("/data/meta/symlink", "/data/meta/hardlink", "/data/l1/f1.bin",
                "/data/l1/f2.bin", "/data/l1/f3.bin", "/data/meta", "/data/l2/moved.bin")
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


class StepFailed(HarnessError):
    """A workload step failed before any power cut: the harness or guest is broken."""


@dataclass
class Step:
    name: str
    run: Callable[[AgentClient], None]
    promises: list[Promise] = field(default_factory=list)
    needs: tuple[str, ...] = ()  # steps that must have run before this one
    # Ends in a `sync` of its own, run apart from `run` so a power cut can land right
    # after docker's command returned and before the sync (CutPlan "returned").
    sync: bool = False

    def finish(self, agent: AgentClient) -> None:
        if self.sync:
            _must(agent, "sync", self.name)

    def execute(self, agent: AgentClient) -> None:
        self.run(agent)
        self.finish(agent)

    @property
    def removes(self) -> list[str]:
        """Keys of the objects this step removes (it promises their absence)."""
        return [p.key() for p in self.promises if p.kind.startswith("absent-")]


def _must(agent: AgentClient, cmd: str, step: str, timeout: float = 300) -> Result:
    res = agent.run(cmd, timeout=timeout)
    if not res.ok:
        raise StepFailed(f"workload step {step} failed: {res.evidence(600)}")
    return res


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Workload:
    seed: int
    steps: list[Step]
    context: dict[str, bytes]  # build context files of the app image

    @property
    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    def keeping(self, names: set[str]) -> Workload:
        """The workload with only these steps and the steps they need, in order."""
        by_name = {s.name: s for s in self.steps}
        keep: set[str] = set()
        todo = [n for n in names if n in by_name]
        while todo:
            n = todo.pop()
            if n not in keep:
                keep.add(n)
                todo.extend(by_name[n].needs)
        return Workload(self.seed, [s for s in self.steps if s.name in keep], self.context)


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
            manifest["/data/l" + name[len("layer"):]] = data
    files["manifest.sha256"] = "".join(
        f"{_sha(data)}  {path}\n" for path, data in sorted(manifest.items())).encode()
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


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def default_workload(seed: int) -> Workload:
    rng = random.Random(f"crashtest-workload:{seed}")
    ctx, out_sha = build_context(rng, seed)
    app = f"crashtest/app:s{seed}"
    scratch = f"crashtest/scratch:s{seed}"
    committed = f"crashtest/committed:s{seed}"
    writer, temp, volume = "writer", "temp", "crashtest-vol"
    l2 = " ".join(f"/data/l2/f{i}.bin" for i in range(5))
    verify = "/bin/sh /crashtest/verify.sh"

    def import_base(a: AgentClient) -> None:
        _must(a, f"docker import {BASE_TAR_IN_GUEST} {BASE}", "import-base")

    def build_app(a: AgentClient) -> None:
        a.put(f"{CTX_DIR}.tar", _tar(ctx))
        _must(a, f"rm -rf {CTX_DIR} && mkdir -p {CTX_DIR} && tar -xf {CTX_DIR}.tar -C {CTX_DIR}",
              "build-app")
        _must(a, f"DOCKER_BUILDKIT=0 docker build -q --network none -t {app} {CTX_DIR}",
              "build-app")

    def build_scratch(a: AgentClient) -> None:
        df = f"FROM {BASE}\nRUN echo scratch-{seed} > /scratch.txt\n"
        _must(a, f"printf %s {shlex.quote(df)} | DOCKER_BUILDKIT=0 docker build -q "
                 f"--network none -t {scratch} -", "build-scratch")

    def create_writer(a: AgentClient) -> None:
        _must(a, f"docker create --name {writer} --network none -v {volume}:/vol {app} "
                 "sleep 100000", "create-writer")

    def start_writer(a: AgentClient) -> None:
        _must(a, f"docker start {writer}", "start-writer")

    def fsync_layer(a: AgentClient) -> None:
        _must(a, f"docker exec {writer} sh -c 'cat {l2} > /data/out/layer.bin && "
                 "sync /data/out/layer.bin /data/out'", "fsync-layer")

    def fsync_volume(a: AgentClient) -> None:
        _must(a, f"docker exec {writer} sh -c 'cat {l2} > /vol/vol.bin && "
                 "sync /vol/vol.bin /vol'", "fsync-volume")

    def commit(a: AgentClient) -> None:
        _must(a, f"docker commit {writer} {committed}", "commit")

    def churn(a: AgentClient) -> None:
        _must(a, f"docker run --name {temp} --network none {app} true && docker rm {temp} "
                 f"&& docker rmi {scratch}", "churn")

    def img(ref: str, step: str, check: str, manifest: str = "") -> Promise:
        return Promise("image", ref, step, "sync", check=check, manifest=manifest)

    app_manifest = ctx["manifest.sha256"].decode()
    scratch_sha = _sha(f"scratch-{seed}\n".encode())
    scratch_line = f"{scratch_sha}  /scratch.txt\n"
    out_line = f"{out_sha}  /data/out/layer.bin\n"

    steps = [
        Step("import-base", import_base, [img(BASE, "import-base", "true")], sync=True),
        Step("build-app", build_app, [img(app, "build-app", verify, app_manifest)],
             needs=("import-base",), sync=True),
        Step("build-scratch", build_scratch,
             [img(scratch, "build-scratch", "cat /scratch.txt", scratch_line)],
             needs=("import-base",), sync=True),
        Step("create-writer", create_writer,
             [Promise("container", writer, "create-writer", "sync")], needs=("build-app",),
             sync=True),
        Step("start-writer", start_writer, needs=("create-writer",)),
        Step("fsync-layer", fsync_layer,
             [Promise("file", f"container:{writer}:/data/out/layer.bin", "fsync-layer",
                      "fsync", sha256=out_sha)], needs=("start-writer",)),
        Step("fsync-volume", fsync_volume,
             [Promise("file", f"volume:{volume}:/vol.bin", "fsync-volume", "fsync",
                      sha256=out_sha)], needs=("start-writer",)),
        # The writer was running when `sync` made its state durable: after a power cut
        # dockerd must bring it back as exited with code 255.
        Step("commit", commit,
             [Promise("container", writer, "commit", "sync", check="exited 255"),
              img(committed, "commit",
                  f"{verify} && echo '{out_sha}  /data/out/layer.bin' | sha256sum -c -s",
                  app_manifest + out_line)],
             needs=("fsync-layer",), sync=True),  # the image must hold the fsync'd file
        Step("churn", churn, [Promise("absent-container", temp, "churn", "sync"),
                              Promise("absent-image", scratch, "churn", "sync")],
             needs=("build-app", "build-scratch"), sync=True),
    ]
    return Workload(seed, steps, ctx)
