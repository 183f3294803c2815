# examples/volume.py: crashtest run --workload examples/volume.py
from harness.workloads import BASE_TAR, Barrier, Step, Workload, file, image


def workload(seed: int) -> Workload:
    base = "crashtest/base:latest"
    return Workload(
        "volume",
        [
            Step(
                "import-base",
                f"docker import {BASE_TAR} {base}",
                Barrier.SYNC,
                promises=[image(base)],
            ),
            Step(
                "write",
                f"docker run --rm --network none -v vol:/v {base} sh -c "
                f"'seq 1 {seed}000 > /v/f && sync /v/f /v'",
                Barrier.FSYNC,
                needs="import-base",
                promises=[file("volume:vol:/f", metadata=True)],
            ),
        ],
        seed,
        cuts=["after:write"],
    )
