"""Record a whole workload through QEMU's blklogwrites filter, with each workload
event tied to the log position reached when its step had returned."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import hosttools
from harness.errors import HarnessError, ResumeError
from harness.guest import docker
from harness.model import Observation, Promise
from harness.storage.backends import DATA_SERIAL, DISK_SIZE, Backend, make_test_disk
from harness.vm.machine import Machine
from harness.vm.qemu import LOG_SECTOR_SIZE, Disk, MachineConfig
from harness.workloads.api import Workload
from harness.workloads.runner import StepRunner
from harness.writelog.format import WriteLog, read_log


@dataclass
class Event:
    step: str
    entry: int  # number of log entries when the step had returned
    promises: list[Promise] = field(default_factory=list)
    started: int = 0  # log entries before the step's first write
    withdraws: list[str] = field(default_factory=list)  # promise keys the step withdraws
    observes: list[Observation] = field(default_factory=list)


@dataclass
class Recording:
    origin: Path  # the formatted disk before anything ran
    disk: Path  # the disk at the end (the live state)
    log: Path
    events: list[Event]
    workload_s: float

    def parse(self) -> WriteLog:
        return read_recorded_log(self.log)

    def promises_at(self, entry: int, end: int | None = None) -> list[Promise]:
        """Promises in force for a state holding every log entry before `entry` and
        perhaps some before `end` (the flush that ends its epoch): a step's
        promises count once it had returned before `end`. A power cut just after a
        barrier returned, before the next flush, loses every unflushed write, so a
        barrier that issued no flush of its own (an fsync that skipped the log) is
        judged by the state without them. A step that changes or removes a
        promised object withdraws its promise as soon as the state may hold one of
        its writes."""
        end = entry if end is None else end
        current: dict[str, Promise] = {}
        for ev in self.events:
            if ev.withdraws and ev.started < end:
                for k in ev.withdraws:
                    current.pop(k, None)
            if ev.entry <= end:
                for p in ev.promises:
                    current[p.key()] = p
        return list(current.values())

    def observations_at(self, entry: int, end: int | None = None) -> list[Observation]:
        """Observations for a state as in `promises_at`: a step's observations count
        once the state may hold one of its writes, until a later step's promise
        about the same file is in force."""
        end = entry if end is None else end
        current: dict[str, Observation] = {}
        for ev in self.events:
            if ev.started < end:
                for o in ev.observes:
                    current[o.key()] = o
            if ev.entry <= end:
                for p in ev.promises:
                    current.pop(p.key(), None)
        return list(current.values())


def read_recorded_log(log: Path) -> WriteLog:
    """A log this harness recorded: its device size and sector size are known."""
    return read_log(log, DISK_SIZE, LOG_SECTOR_SIZE)


def log_position(log: Path, settle_s: float = 2.0) -> int:
    """Entries in the log once it is whole. The VM is not paused: a QMP `stop`
    flushes every drive, which would log flushes the guest never issued and hide
    exactly the reorderings we look for. A step has returned, so every write it made
    durable is logged; read until no entry is half-written (in-flight writes finish
    in milliseconds). Later background writes only make the position later, which
    is conservative: a promise then applies to fewer states, never to a wrong one."""
    deadline = time.monotonic() + settle_s
    previous = -1
    while True:
        parsed = read_recorded_log(log)
        whole = parsed.end_offset == log.stat().st_size
        if (whole and len(parsed.entries) == previous) or time.monotonic() > deadline:
            return len(parsed.entries)
        previous = len(parsed.entries) if whole else -1
        time.sleep(0.05)


def record(
    base_config: MachineConfig,
    backend: Backend,
    workload: Workload,
    workdir: Path,
    with_log: bool = True,
    resume_from: tuple[Path, Path] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Recording:
    """Run the whole workload on a fresh disk; with `with_log`, through blklogwrites.
    `resume_from`: (saved guest, its test disk) with dockerd ready: the recording
    starts there instead of a boot (a ResumeError says it could not)."""
    workdir.mkdir(parents=True, exist_ok=True)
    disk = workdir / "disk.img"
    if resume_from is None:
        make_test_disk(backend, disk)
    else:
        try:
            hosttools.run(
                ["cp", "--sparse=always", "--reflink=auto", str(resume_from[1]), str(disk)],
                "copying the saved test disk",
            )
        except HarnessError as e:  # pruned or damaged meanwhile: the caller boots
            raise ResumeError(str(e)) from e
    origin = workdir / "origin.img"
    subprocess.run(["cp", "--sparse=always", str(disk), str(origin)], check=True)
    log = workdir / "writes.log"
    log.write_bytes(b"")
    data = Disk(disk, DATA_SERIAL, write_log=log if with_log else None)
    config = replace(base_config, disks=(*base_config.disks, data))
    events: list[Event] = []
    with Machine(
        config,
        workdir / "record.console.log",
        name=f"{backend.name}-record",
        restore_from=resume_from[0] if resume_from else None,
    ) as vm:
        vm.wait_booted()
        if resume_from is None:
            docker.start_on_fresh_disk(vm.agent, backend)
        docker.note_versions(vm.agent, backend, workdir.parent / docker.DOCKER_JSON)
        runner = StepRunner(vm.agent, backend.driver)
        t0 = time.monotonic()
        position = 0
        for n, step in enumerate(workload.steps, 1):
            if progress:
                progress(f"  step {n}/{len(workload.steps)}: {step.name}")
            started = position  # read before the step ran: no write of it is earlier
            promises = runner.execute(step)
            if with_log:
                position = log_position(log)
                events.append(
                    Event(
                        step.name, position, promises, started, step.withdraws, list(step.observes)
                    )
                )
        workload_s = time.monotonic() - t0
        vm.power_cut()
    return Recording(origin, disk, log, events, workload_s)
