"""`sequence`: a generated sequence of docker operations, different for every
seed: build, commit, run, a write fsync'd in a running container, rm, rmi,
prune, save/load, push/pull through a registry in the guest, and a daemon
restart, each valid where it stands (a model of the images and containers
follows the sequence) and each followed by a sync.

Promises after each sync: what the operation made exists (images save, hash
and run; containers exist), what it removed stays gone, and a file a container
fsync'd holds what was written. With the default invariants the docker oracles
judge every state: dockerd starts, every image it restores is intact, leaks are
classified. The idea is `crashtest explore`'s (docs/explore.md) one level up:
sequences nobody wrote, over the operations users lose images in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from harness.workloads import (
    Barrier,
    GuestFile,
    Promise,
    Step,
    Workload,
    absent_container,
    absent_image,
    container,
    file,
    image,
)
from harness.workloads.scenarios.common import BASE, import_base
from harness.workloads.scenarios.pull import CONFIG, REGISTRY, REGISTRY_YML, WAIT_REGISTRY

OPERATIONS = ("build", "commit", "run", "write", "rm", "rmi", "prune", "load", "pull", "restart")
MIN_OPERATIONS = 4
MAX_OPERATIONS = 8
ARCHIVE = "/tmp/crashtest-sequence.tar"
DOCKERD_LOG = "/run/dockerd.log"
# dockerd as the harness started it (its daemon.json is in place): stop it, start it
# again, wait until it answers.
RESTART = (
    "kill $(pidof dockerd) && for i in $(seq 300); do pidof dockerd >/dev/null || break; "
    "sleep 0.2; done",
    f"setsid dockerd >>{DOCKERD_LOG} 2>&1 </dev/null &",
    "for i in $(seq 300); do docker version >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1",
)


def _image_ref(n: int) -> str:
    return f"crashtest/sequence:i{n}"


def _runs(path: str) -> str:
    """What a fresh container of an image must pass: its own file is there
    (the base image has none of the sequence's)."""
    return f"test -s {path}" if path else "true"


@dataclass
class _Docker:
    """What the sequence has made so far: the model each operation is drawn from."""

    images: dict[str, str] = field(default_factory=dict)  # ref -> a file it holds
    containers: dict[str, str] = field(default_factory=dict)  # name -> its image
    written: set[str] = field(default_factory=set)  # containers holding a promised file
    registry: str = ""  # the step that started the registry
    made: int = 0
    # the step that made each image and container: what a step using it needs
    # (kept together when a failing sequence is shrunk)
    by: dict[str, str] = field(default_factory=dict)

    def new_name(self) -> int:
        self.made += 1
        return self.made

    def spare(self) -> list[str]:
        """Images an rmi, prune, load or pull may take: no container uses them,
        and not the base."""
        used = set(self.containers.values())
        return sorted(r for r in self.images if r not in used and r != BASE)

    def removable(self) -> list[str]:
        """Containers an rm may take: not those holding a promised file."""
        return sorted(c for c in self.containers if c not in self.written)


def _build(d: _Docker, rng: random.Random, name: str) -> Step:
    n = d.new_name()
    ref, parent = _image_ref(n), rng.choice(sorted(d.images))
    lines = rng.randint(1000, 200000)  # up to ~1.3 MB of text in the image's own layer
    dockerfile = f"FROM {parent}\nRUN mkdir -p /seq && seq {lines} > /seq/{n}\n"
    d.images[ref] = f"/seq/{n}"
    d.by[ref] = name
    return Step(
        name,
        f"printf %s '{dockerfile}' | DOCKER_BUILDKIT=0 docker build -q --network none -t {ref} -",
        Barrier.SYNC,
        d.by[parent],
        [image(ref, _runs(f"/seq/{n}"))],
    )


def _commit(d: _Docker, rng: random.Random, name: str) -> Step:
    source = rng.choice(sorted(d.containers))
    ref = _image_ref(d.new_name())
    d.images[ref] = d.images[d.containers[source]]
    d.by[ref] = name
    return Step(
        name,
        f"docker commit {source} {ref} >/dev/null",
        Barrier.SYNC,
        d.by[source],
        [image(ref, _runs(d.images[ref]))],
    )


def _run(d: _Docker, rng: random.Random, name: str) -> Step:
    ref = rng.choice(sorted(d.images))
    box = f"seq{d.new_name()}"
    d.containers[box] = ref
    d.by[box] = name
    return Step(
        name,
        f"docker run -d --name {box} --network none {ref} sleep 100000 >/dev/null",
        Barrier.SYNC,
        d.by[ref],
        [container(box)],
    )


def _write(d: _Docker, rng: random.Random, name: str) -> Step:
    box = rng.choice(sorted(d.containers))
    path = f"/data/{name}"
    lines = rng.randint(100, 50000)
    d.written.add(box)
    # busybox dd's conv=fsync: the file's data and size; its name by the same fsync on
    # the filesystems tested (what `crashtest explore`'s model also takes a file's
    # fsync to promise)
    return Step(
        name,
        f"docker start {box} >/dev/null && docker exec {box} sh -e -c "
        f"'mkdir -p /data && seq {lines} | dd of={path} conv=fsync 2>/dev/null'",
        Barrier.FSYNC,
        d.by[box],
        [file(f"container:{box}:{path}")],
    )


def _rm(d: _Docker, rng: random.Random, name: str) -> Step:
    box = rng.choice(d.removable())
    del d.containers[box]
    return Step(
        name, f"docker rm -f {box} >/dev/null", Barrier.SYNC, d.by[box], [absent_container(box)]
    )


def _rmi(d: _Docker, rng: random.Random, name: str) -> Step:
    ref = rng.choice(d.spare())
    del d.images[ref]
    return Step(name, f"docker rmi {ref} >/dev/null", Barrier.SYNC, d.by[ref], [absent_image(ref)])


def _prune(d: _Docker, rng: random.Random, name: str) -> Step:
    """Every container without a promised file goes (stopped first), then every
    image no container uses except the base."""
    gone = d.removable()
    for box in gone:
        del d.containers[box]
    images = d.spare()
    for ref in images:
        del d.images[ref]
    cmds = [f"docker rm -f {' '.join(gone)} >/dev/null"] if gone else []
    cmds += ["docker container prune -f >/dev/null"] if not d.containers else []
    cmds += [f"docker rmi {' '.join(images)} >/dev/null"] if images else []
    cmds += ["docker image prune -f >/dev/null"]
    return Step(
        name,
        cmds,
        Barrier.SYNC,
        [d.by[x] for x in (*gone, *images)],
        [*(absent_container(c) for c in gone), *(absent_image(r) for r in images)],
    )


def _load(d: _Docker, rng: random.Random, name: str) -> Step:
    ref = rng.choice(d.spare())
    return Step(
        name,
        (
            f"docker save -o {ARCHIVE} {ref}",
            f"docker rmi {ref} >/dev/null",
            f"docker load -q -i {ARCHIVE} >/dev/null",
            f"rm -f {ARCHIVE}",
        ),
        Barrier.SYNC,
        d.by[ref],
        [image(ref, _runs(d.images[ref]))],
    )


def _pull(d: _Docker, rng: random.Random, name: str) -> Step:
    ref = rng.choice(d.spare())
    remote = f"{REGISTRY}/{ref}"
    cmds = []
    files: list[GuestFile] = []
    needs = [d.by[ref]]
    if d.registry:
        needs.append(d.registry)
    else:
        d.registry = name
        files = [GuestFile(CONFIG, REGISTRY_YML)]
        cmds = [
            f"setsid docker-registry serve {CONFIG} >/tmp/registry.log 2>&1 </dev/null &",
            WAIT_REGISTRY,
        ]
    cmds += [
        f"docker tag {ref} {remote} && docker push {remote} >/dev/null",
        f"docker rmi {ref} {remote} >/dev/null",
        f"docker pull {remote} >/dev/null && docker tag {remote} {ref}",
        f"docker rmi {remote} >/dev/null",
    ]
    return Step(name, cmds, Barrier.SYNC, d.by[ref], [image(ref, _runs(d.images[ref]))], files)


def _restart(d: _Docker, rng: random.Random, name: str) -> Step:
    # dockerd brings the containers back stopped: they stay, as their promises say
    boxes = sorted(d.containers)
    return Step(
        name, RESTART, Barrier.SYNC, [d.by[c] for c in boxes], [container(c) for c in boxes]
    )


def _applicable(d: _Docker) -> list[str]:
    spare = d.spare()
    ok = {
        "build": len(d.images) < 6,
        "commit": bool(d.containers) and len(d.images) < 6,
        "run": len(d.containers) < 4,
        "write": bool(d.containers),
        "rm": bool(d.removable()),
        "rmi": bool(spare),
        "prune": bool(spare or d.removable()),
        "load": bool(spare),
        "pull": bool(spare),
        "restart": True,
    }
    return [op for op in OPERATIONS if ok[op]]


# a restart costs a dockerd start and adds little after the first; prune and rmi
# leave the sequence little to work on, build gives it images
_WEIGHT = {"restart": 0.4, "prune": 0.3, "rmi": 0.6, "build": 1.5}

_MAKERS = {
    "build": _build,
    "commit": _commit,
    "run": _run,
    "write": _write,
    "rm": _rm,
    "rmi": _rmi,
    "prune": _prune,
    "load": _load,
    "pull": _pull,
    "restart": _restart,
}


def workload(seed: int) -> Workload:
    rng = random.Random(f"crashtest-sequence:{seed}")
    d = _Docker(images={BASE: ""}, by={BASE: "import-base"})
    steps = [import_base(), _build(d, rng, "build-1")]
    for i in range(2, rng.randint(MIN_OPERATIONS, MAX_OPERATIONS) + 2):
        ops = _applicable(d)
        op = rng.choices(ops, [_WEIGHT.get(o, 1.0) for o in ops])[0]
        steps.append(_MAKERS[op](d, rng, f"{op}-{i}"))
    promised: list[Promise] = [p for s in steps for p in s.promises]
    return Workload(
        "sequence",
        steps,
        seed,
        description=f"{len(steps) - 1} generated docker operations "
        f"({', '.join(s.name for s in steps[1:])}), a sync after each; "
        f"{len(promised)} promises",
        # a file of an image the sequence keeps, for `--inject zero-layer-file`
        # as each operation returns, before its sync: what docker left unsynced
        cuts=(
            *(f"returned:{s.name}" for s in steps[1:] if s.syncs),
            f"after:{steps[-1].name}",
        ),
        damage_target=next((f for _, f in sorted(d.images.items()) if f), ""),
    )
