"""`churn`: container and image lifecycle at scale, as a busy host does it: many
containers created, started, stopped and removed; images built and removed in
cycles; `docker container prune` and `docker image prune`.

Promises after each sync: the containers kept exist (stopped ones as exited), the
removed ones and removed images stay gone. With the default invariants: dockerd
starts on every recovered disk, every image it restores is intact, and what it
leaves behind (layers, container directories no one references) is reported as
a leak, classified.
"""

from __future__ import annotations

import random
import shlex

from harness.workloads import (
    Barrier,
    Step,
    Workload,
    absent_container,
    absent_image,
    container,
    image,
)
from harness.workloads.scenarios.common import BASE, import_base

CONTAINERS = 8
CYCLES = 3


def workload(seed: int) -> Workload:
    rng = random.Random(f"crashtest-churn:{seed}")
    app = f"crashtest/churn-app:s{seed}"
    names = [f"churn{i}" for i in range(CONTAINERS)]
    stopped = sorted(rng.sample(names, CONTAINERS // 2))
    removed = sorted(rng.sample(stopped, len(stopped) // 2))
    running = [n for n in names if n not in stopped]
    pruned = [n for n in stopped if n not in removed]
    dockerfile = f"FROM {BASE}\nRUN mkdir -p /app && echo churn-{seed} > /app/id\n"
    build = f"printf %s {shlex.quote(dockerfile)} | DOCKER_BUILDKIT=0 docker build -q -t"
    cycle = [
        f"{build} crashtest/churn-tmp:{j} - && docker run --rm --network none "
        f"crashtest/churn-tmp:{j} cat /app/id && docker rmi crashtest/churn-tmp:{j}"
        for j in range(CYCLES)
    ]
    steps = [
        import_base(),
        Step(
            "build-app",
            f"{build} {app} -",
            Barrier.SYNC,
            "import-base",
            [image(app, "grep -q churn /app/id")],
        ),
        Step(
            "lifecycle",
            (
                *(f"docker create --name {n} --network none {app} sleep 100000" for n in names),
                f"docker start {' '.join(names)}",
                f"docker stop -t 0 {' '.join(stopped)}",
                f"docker rm {' '.join(removed)}",
            ),
            Barrier.SYNC,
            "build-app",
            [
                *(container(n) for n in running),
                *(container(n, "exited 137") for n in stopped if n not in removed),
                *(absent_container(n) for n in removed),
            ],
        ),
        Step(
            "build-rmi",
            cycle,
            Barrier.SYNC,
            "build-app",
            [absent_image(f"crashtest/churn-tmp:{j}") for j in range(CYCLES)],
        ),
        Step(
            "prune",
            ("docker container prune -f", "docker image prune -f"),
            Barrier.SYNC,
            "lifecycle",
            [absent_container(n) for n in pruned],
        ),
    ]
    return Workload(
        "churn",
        steps,
        seed,
        description=f"{CONTAINERS} containers created, started, stopped and removed, "
        f"{CYCLES} build/run/rmi cycles, container and image prune",
        damage_target="/app/id",
        cuts=("during:lifecycle:3", "returned:prune", "during:build-rmi:2", "after:prune"),
    )
