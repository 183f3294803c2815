"""Built-in scenarios: the operations users lose containers and images in after a
power cut, each written with the public workload API (`harness.workloads`) so that
each is also an example to copy.

    pull     docker pull from a real registry in the guest (containerd #5854/#8409,
             moby #49784, moby #42456, moby #44909)
    load     docker load of a saved multi-layer image (the same unpack path, no registry)
    copy-up  containers change files of their image's layers (overlayfs copy-up)
    churn    container and image lifecycle at scale: create/start/stop/rm, build/rmi,
             prune
    stress   seeded fsx/fsstress-style file operations in a writable layer and a
             volume, every file's expected content kept at each fsync
    sequence generated docker operations, different for every seed: build, commit,
             run, an fsync'd write in a container, rm, rmi, prune, save/load,
             push/pull, daemon restart (docs/explore.md)
"""

SCENARIOS = {
    "pull": "harness.workloads.scenarios.pull:workload",
    "load": "harness.workloads.scenarios.load:workload",
    "copy-up": "harness.workloads.scenarios.copy_up:workload",
    "churn": "harness.workloads.scenarios.churn:workload",
    "stress": "harness.workloads.scenarios.stress:workload",
    "sequence": "harness.workloads.scenarios.sequence:workload",
}
