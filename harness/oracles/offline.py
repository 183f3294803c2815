"""The offline stage of the one check sequence, run inside a guest by
crashtest_guest/check_state.py: mount (recovery), remount read-only, docker's store
and the promises and the workload's offline invariants with fsck and scrub beside
them on the read-only mount, unmount (fsck after it where the tool needs it). Here:
the request it is given, and its records turned into verdicts with stable ids."""

from __future__ import annotations

from typing import Any

from harness.errors import HarnessError, InputError
from harness.model import (
    Fault,
    InvariantKind,
    Observation,
    Promise,
    Stage,
    Violation,
    ViolationClass,
)
from harness.storage.backends import Backend
from harness.workloads.api import Invariant

CHECK_TIMEOUT_S = 600.0

# Check ids of the filesystem records, and the promise each one stands for.
FS_CHECKS = {
    "mount": ("fs.mount", "the filesystem mounts (recovery) in this crash state"),
    "umount": ("fs.umount", "the recovered filesystem unmounts"),
    "remount": ("fs.remount", "the recovered filesystem remounts read-only"),
    "scrub": ("fs.scrub", "every btrfs checksum verifies (scrub)"),
    "fsck": ("fs.fsck", "{fs} fsck is clean after recovery"),
    "store": ("store.present", "the disk holds a docker image store"),
}


def offline_request(
    backend: Backend,
    serial: str,
    promises: list[Promise],
    invariants: tuple[Invariant, ...],
    before: str = "",
    after_mount: str = "",
    full: bool = False,
    observe: tuple[Observation, ...] = (),
) -> dict[str, Any]:
    """`before`: a command run on the raw disk ({dev}) first; `after_mount`: one run
    on the recovered tree before the checks (self-tests damage the state with them).
    `full`: check every image and report leaks (a disk with no promises)."""
    dev = "{dev}"
    return {
        "serial": serial,
        "before": before,
        "after_mount": after_mount,
        "driver": None if full else backend.driver,
        "full": full,
        "mount": backend.mount_cmd(dev),
        "fsck": backend.fsck_cmd(dev),
        "fsck_mounted": backend.fsck_cmd(dev, mounted_ro=True),
        "scrub": backend.scrub_cmd(),
        "promises": [{**p.to_json(), "describe": p.describe(), "key": p.key()} for p in promises],
        "registered": any(i.kind == InvariantKind.DOCKER_INTACT for i in invariants),
        "observe": [o.to_json() for o in observe],
        "commands": [
            {"id": i.id, "command": i.command, "class": i.cls, "promise": i.describe()}
            for i in invariants
            if i.kind == InvariantKind.COMMAND and i.stage == Stage.OFFLINE
        ],
    }


def _store_ids(r: dict[str, Any]) -> tuple[str, str]:
    """Check id and subject of a store finding: docker's own promise, a leak, or
    the structure/content of a promised object."""
    subject = str(r.get("promise") or "")  # names tags, never ids (ids differ per run)
    if r["class"] == ViolationClass.LEAK:
        return "store.leak", subject
    if r.get("fault") == Fault.DOCKER:
        return "invariant.docker-intact", subject
    return "store.structure", subject


def verdicts(
    records: object, backend: Backend, state: str, times: dict[str, float] | None = None
) -> list[Violation]:
    """Failed check records as violations; the timings record goes into `times`."""
    if not isinstance(records, list):
        raise HarnessError(f"state checker returned {type(records).__name__}, not a list")
    found = []
    for r in records:
        if r["check"] == "observe":
            continue
        if r["check"] == "timings":
            if times is not None:
                times.update({f"guest_{k}_s": round(v, 3) for k, v in r["times"].items()})
            continue
        if r["ok"]:
            continue
        if r["check"] == "promise":
            check, subject = f"promise.{r['kind']}", str(r["subject"])
        elif r["check"] == "invariant":
            check, subject = str(r["id"]), str(r["command"])
        elif r["check"] == "store" and "promise" in r:
            check, subject = _store_ids(r)
        else:
            check, text = FS_CHECKS[r["check"]]
            r = {**r, "promise": text.format(fs=backend.fs)}
            subject = backend.fs
        evidence = {"command": r["command"], "output": r["output"]}
        if r.get("image"):
            evidence["image"] = r["image"]
        elif check == "promise.image":  # the daemon stage adds what docker says of it
            evidence["image"] = subject.split(":", 1)[1]
        found.append(
            Violation(
                r["class"], state, r["promise"], evidence, r.get("fault") or "", check, subject
            )
        )
    return found


def observed(records: object) -> dict[str, str]:
    """Each observed file's outcome (see model.Observation)."""
    if not isinstance(records, list):
        return {}
    return {str(r["target"]): str(r["label"]) for r in records if r.get("check") == "observe"}


def no_docker_trace(records: object) -> bool:
    """The state's disk has no trace of docker at all (wrong disk, not a finding)."""
    return isinstance(records, list) and any(
        r.get("check") == "store" and r.get("no_trace") for r in records
    )


def wrong_disk(what: str) -> InputError:
    return InputError(
        f"{what}: the filesystem holds no trace of docker (no image/, "
        "containers/ or driver directory): not a docker data disk"
    )
