"""A user's workload in the Python form, kept outside the package.

A volume gets an fsync'd file; a container's writable layer gets another. Then a
planted fault: `clobber` empties the volume's file and promises nothing new, so
the earlier promise stays in force and every state after clobber's sync must
show a violation naming volume:vol:/data.txt.
"""

from harness.workloads import BASE_TAR, Barrier, Step, Workload, container, file, image

BASE = "crashtest/base:latest"


def workload(seed: int) -> Workload:
    run = f"docker run --rm --network none -v vol:/v {BASE} sh -c"
    lines = 2000 + seed  # the content depends on the seed
    return Workload(
        "volume-fsync",
        [
            Step(
                "import-base",
                f"docker import {BASE_TAR} {BASE}",
                Barrier.SYNC,
                promises=[image(BASE)],
            ),
            Step(
                "write-volume",
                [
                    "docker volume create vol",
                    f"{run} 'seq 1 {lines} > /v/data.txt && sync /v/data.txt /v'",
                ],
                Barrier.FSYNC,
                needs="import-base",
                promises=[file("volume:vol:/data.txt")],
            ),
            Step(
                "keeper",
                [
                    f"docker create --name keeper --network none {BASE} sleep 100000",
                    "docker start keeper",
                    "docker exec keeper sh -c 'seq 1 500 > /kept.txt && sync /kept.txt /'",
                ],
                Barrier.FSYNC,
                needs="import-base",
                promises=[file("container:keeper:/kept.txt")],
            ),
            Step("clobber", f"{run} ': > /v/data.txt'", Barrier.SYNC, needs="write-volume"),
            Step(
                "settle",
                "docker stop -t 0 keeper",
                Barrier.SYNC,
                needs="keeper",
                promises=[container("keeper")],
            ),
        ],
        seed,
        description="fsync'd files in a volume and a writable layer, then a planted fault",
    )
