"""Workloads: what runs in the guest before a power cut, and what must survive it.

Write one as a Python module (a function `workload(seed) -> Workload` built from
the names below) or as a TOML file; run it with `crashtest run --workload PATH`.
"""

from harness.images.rootfs import BASE_TAR_IN_GUEST as BASE_TAR
from harness.model import Barrier, Observation, Promise, PromiseKind, Stage
from harness.workloads.api import (
    DEFAULT_INVARIANTS,
    GuestFile,
    Invariant,
    Step,
    Workload,
    WorkloadError,
    absent_container,
    absent_file,
    absent_image,
    command,
    container,
    docker_intact,
    dockerd_starts,
    file,
    image,
    observe,
)
from harness.workloads.load import load_workload, registered

__all__ = [
    "BASE_TAR",
    "DEFAULT_INVARIANTS",
    "Barrier",
    "GuestFile",
    "Invariant",
    "Observation",
    "Promise",
    "PromiseKind",
    "Stage",
    "Step",
    "Workload",
    "WorkloadError",
    "absent_container",
    "absent_file",
    "absent_image",
    "command",
    "container",
    "docker_intact",
    "dockerd_starts",
    "file",
    "image",
    "load_workload",
    "observe",
    "registered",
]
