"""`pull`: a multi-layer image pushed to a real registry inside the guest (Debian's
docker-registry on 127.0.0.1:5000, its storage on the guest's tmpfs: the "remote"
survives nothing and needs to), removed locally, then pulled back; power cuts
during the pull, right after it returns (before its sync) and after its sync.

Reproduces: layer files of a fresh pull left with 0 bytes (containerd #5854, #8409,
moby #49784), empty overlay2 `link`/`lower` files (moby #42456, fixed in 20.10.27),
layers dockerd cannot register after a cut during extraction (moby #44909). The
first two show as docker's faults in the states cut before the sync; after the
sync, any damage is the filesystem's.
"""

from __future__ import annotations

from harness.workloads import (
    Barrier,
    GuestFile,
    Step,
    Workload,
    absent_image,
)
from harness.workloads.scenarios.common import BASE, SEVERAL_MB, import_base, seeded_image

REGISTRY = "127.0.0.1:5000"
CONFIG = "/etc/crashtest/registry.yml"
STORE = "/tmp/registry"
# Debian's shipped config asks for htpasswd auth: this one has no auth block.
REGISTRY_YML = f"""version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {STORE}
  delete:
    enabled: true
http:
  addr: {REGISTRY}
""".encode()
WAIT_REGISTRY = (
    f"for i in $(seq 150); do busybox wget -q -O /dev/null http://{REGISTRY}/v2/ "
    "&& exit 0; sleep 0.2; done; cat /tmp/registry.log; exit 1"
)


def workload(seed: int) -> Workload:
    app = seeded_image(f"{REGISTRY}/crashtest/pull-app:s{seed}", seed, SEVERAL_MB)
    layers = len(SEVERAL_MB) + 2  # the base, the data layers and the manifest's
    steps = [
        import_base(),
        app.build(),
        Step(
            "start-registry",
            (
                f"setsid docker-registry serve {CONFIG} >/tmp/registry.log 2>&1 </dev/null &",
                WAIT_REGISTRY,
            ),
            files=[GuestFile(CONFIG, REGISTRY_YML)],
        ),
        # Everything local goes: the pull must fetch and unpack every layer.
        Step(
            "push",
            (f"docker push {app.ref} >/tmp/push.out", f"docker rmi {app.ref} {BASE}"),
            Barrier.SYNC,
            ("build-app", "start-registry"),
            [absent_image(app.ref), absent_image(BASE)],
            check=(
                f"test $(find {STORE} -path '*/blobs/sha256/*/data' | wc -l) -ge {layers}",
                'test -z "$(docker images -q)"',
            ),
        ),
        Step(
            "pull",
            f"docker pull {app.ref} >/tmp/pull.out",
            Barrier.SYNC,
            "push",
            [app.promise()],
            check=f"test $(grep -c 'Pull complete' /tmp/pull.out) -eq {layers}",
        ),
    ]
    return Workload(
        "pull",
        steps,
        seed,
        description="docker pull of a multi-layer image of several MB from a registry "
        "in the guest, cut during the pull, as it returns and after its sync",
        damage_target=app.largest,
        cuts=("returned:pull", "during:pull:2", "after:pull"),
    )
