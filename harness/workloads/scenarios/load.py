"""`load`: a multi-layer image of several MB saved with `docker save` (to the
guest's tmpfs), removed, and loaded back with `docker load`; power cuts right
after load returns (before its sync), during it, and after its sync.

The same unpack path as a pull without a registry: layer files of a freshly loaded
image left with 0 bytes (containerd #5854 and moby #49784's class) are docker's
fault before the sync, the filesystem's after it.
"""

from __future__ import annotations

from harness.workloads import Barrier, Step, Workload, absent_image, image
from harness.workloads.scenarios.common import BASE, SEVERAL_MB, import_base, seeded_image

ARCHIVE = "/tmp/crashtest-load.tar"


def workload(seed: int) -> Workload:
    app = seeded_image(f"crashtest/load-app:s{seed}", seed, SEVERAL_MB)
    steps = [
        import_base(),
        app.build(),
        Step(
            "save",
            (f"docker save -o {ARCHIVE} {app.ref} {BASE}", f"docker rmi {app.ref} {BASE}"),
            Barrier.SYNC,
            "build-app",
            [absent_image(app.ref), absent_image(BASE)],
            check='test -z "$(docker images -q)"',
        ),
        Step(
            "load",
            f"docker load -q -i {ARCHIVE}",
            Barrier.SYNC,
            "save",
            [app.promise(), image(BASE)],
        ),
    ]
    return Workload(
        "load",
        steps,
        seed,
        description="docker save, rmi and docker load of a multi-layer image of several "
        "MB, cut as load returns, during it and after its sync",
        damage_target=app.largest,
        cuts=("returned:load", "after:load", "during:load:1"),
    )
