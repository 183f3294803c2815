"""The offline stage of the one check sequence, run inside a guest by
crashtest_guest/check_state.py: mount (recovery), remount read-only, docker's store
and the promises and the workload's offline invariants with fsck and scrub beside
them on the read-only mount, unmount (fsck after it where the tool needs it). Here:
the request it is given, and its records turned into verdicts with stable ids."""

from __future__ import annotations

from crashtest_guest.protocol import (
    CheckOutcome,
    CheckRecord,
    CheckRequest,
    CommandCheck,
    ObserveCheck,
    RecordKind,
)
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
FS_CHECKS: dict[str, tuple[str, str]] = {
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
) -> CheckRequest:
    """`before`: a command run on the raw disk ({dev}) first; `after_mount`: one run
    on the recovered tree before the checks (self-tests damage the state with them).
    `full`: check every image and report leaks (a disk with no promises)."""
    dev = "{dev}"
    return CheckRequest(
        serial=serial,
        mount=backend.mount_cmd(dev),
        fsck=backend.fsck_cmd(dev),
        fsck_mounted=backend.fsck_cmd(dev, mounted_ro=True),
        scrub=backend.scrub_cmd(),
        driver="" if full else backend.driver,
        full=full,
        before=before,
        after_mount=after_mount,
        registered=any(i.kind == InvariantKind.DOCKER_INTACT for i in invariants),
        promises=tuple(p.to_check() for p in promises),
        observe=tuple(ObserveCheck(o.target, dict(o.outcomes)) for o in observe),
        commands=tuple(
            CommandCheck(i.id, i.command, ViolationClass(i.cls), i.describe())
            for i in invariants
            if i.kind == InvariantKind.COMMAND and i.stage == Stage.OFFLINE
        ),
    )


def _ids(r: CheckRecord, backend: Backend) -> tuple[str, str, str]:
    """The stable check id, subject and promise text of a failed record."""
    if r.check == RecordKind.PROMISE:
        return f"promise.{r.kind}", r.subject, r.promise
    if r.check == RecordKind.INVARIANT:
        return r.id, r.command, r.promise
    if r.check == RecordKind.STORE and r.promise:
        # the subject names tags, never ids (ids differ per run)
        if r.cls == ViolationClass.LEAK:
            return "store.leak", r.promise, r.promise
        if r.fault == Fault.DOCKER:
            return "invariant.docker-intact", r.promise, r.promise
        return "store.structure", r.promise, r.promise
    check, text = FS_CHECKS[r.check]
    return check, backend.fs, text.format(fs=backend.fs)


def verdicts(
    outcome: CheckOutcome, backend: Backend, state: str, times: dict[str, float] | None = None
) -> list[Violation]:
    """Failed check records as violations; the phases' timings go into `times`."""
    if times is not None:
        times.update({f"guest_{k}_s": round(v, 3) for k, v in outcome.times.items()})
    found = []
    for r in outcome.records:
        if r.ok:
            continue
        if r.cls is None:
            raise HarnessError(f"the state checker's failed {r.check} record has no class")
        check, subject, promise = _ids(r, backend)
        evidence = {"command": r.command, "output": r.output}
        if r.image:
            evidence["image"] = r.image
        elif check == "promise.image":  # the daemon stage adds what docker says of it
            evidence["image"] = subject.split(":", 1)[1]
        found.append(Violation(r.cls, state, promise, evidence, r.fault, check, subject))
    return found


def observed(outcome: CheckOutcome) -> dict[str, str]:
    """Each observed file's outcome (see model.Observation)."""
    return {o.target: o.label for o in outcome.observed}


def no_docker_trace(outcome: CheckOutcome) -> bool:
    """The state's disk has no trace of docker at all (wrong disk, not a finding)."""
    return any(r.check == RecordKind.STORE and r.no_trace for r in outcome.records)


def wrong_disk(what: str) -> InputError:
    return InputError(
        f"{what}: the filesystem holds no trace of docker (no image/, "
        "containers/ or driver directory): not a docker data disk"
    )
