"""The checker: one guest running the kernel under test checks many crash states,
each shown to it as a throwaway qcow2 disk swapped in under one virtio disk (QMP
blockdev-add + blockdev-reopen), so a state costs a fraction of a second, not a
boot. A state that crashes or hangs the guest is a verdict; the checker then
restarts cleanly for the next one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from crashtest_guest import CHECKER
from crashtest_guest.protocol import CheckOutcome
from harness import hosttools
from harness.errors import GuestError, GuestPanic, GuestTimeout, HarnessError, ResumeError
from harness.guest import docker
from harness.model import Observation, Promise, Violation, ViolationClass, is_clean
from harness.oracles import console as console_oracle
from harness.oracles import offline
from harness.oracles.docker import check_inventory, daemon_checks, what_docker_says
from harness.storage.backends import DOCKER_ROOT, Backend
from harness.vm.machine import Machine
from harness.vm.qemu import Disk, MachineConfig
from harness.workloads.api import DEFAULT_INVARIANTS, Invariant

STATE_SERIAL = "state"
QCOW2_MAGIC = b"QFI\xfb"


@dataclass(frozen=True)
class DaemonContext:
    """What the daemon stage of a live cut knows besides the promises: docker's
    inventory at the last durability point, and where to keep dockerd's log."""

    inventory: dict[str, list[str]] | None = None
    last_point: str = ""
    log_file: Path | None = None


@dataclass(frozen=True)
class StateCheck:
    """One recovered disk to check, and all a check needs to know of it."""

    state_id: str
    disk: Path
    promises: tuple[Promise, ...] = ()
    invariants: tuple[Invariant, ...] = DEFAULT_INVARIANTS
    observe: tuple[Observation, ...] = ()
    before: str = ""  # a command run on the raw disk ({dev}) first
    after_mount: str = ""  # a command run on the recovered tree first (self-tests)
    full: bool = False  # every image, and leaks: a disk with no promises
    daemon: bool = False  # the daemon stage too (dockerd on the state)
    daemon_context: DaemonContext | None = None


@dataclass
class Checked:
    """What checking one state found, and how: each phase's seconds, what each
    observed file was, whether a second guest was needed, how the guest started."""

    violations: list[Violation] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    observed: dict[str, str] = field(default_factory=dict)
    retried: bool = False
    started: str = ""


def run_checks(
    vm: Machine,
    backend: Backend,
    req: StateCheck,
    out: Checked | None = None,
    serial: str = STATE_SERIAL,
) -> list[Violation]:
    """The offline stage of the check sequence on the disk with this serial, in one
    call inside the guest. A disk with no trace of docker is the wrong disk. `out`
    receives each phase's time and what each observed file turned out to be."""
    request = offline.offline_request(
        backend,
        serial,
        list(req.promises),
        req.invariants,
        req.before,
        req.after_mount,
        req.full,
        req.observe,
    )
    got = vm.agent.call(CHECKER, "check", request.to_json(), timeout=offline.CHECK_TIMEOUT_S)
    try:
        outcome = CheckOutcome.from_json(got)
    except (ValueError, KeyError, TypeError) as e:
        raise HarnessError(f"the state checker returned what is not an outcome: {e}") from e
    if req.full and offline.no_docker_trace(outcome):
        raise offline.wrong_disk(req.state_id)
    if out is not None:
        out.observed.update(offline.observed(outcome))
    return offline.verdicts(outcome, backend, req.state_id, out.times if out else None)


def run_daemon_stage(
    vm: Machine,
    backend: Backend,
    state_id: str,
    promises: list[Promise],
    invariants: tuple[Invariant, ...],
    offline_found: list[Violation],
    *,
    serial: str = STATE_SERIAL,
    inventory: dict[str, list[str]] | None = None,
    last_point: str = "",
    log_file: Path | None = None,
) -> list[Violation]:
    """The daemon stage on a disk the offline stage has checked (and unmounted):
    mount it read-write, start dockerd, check. Returns every verdict so far: the
    offline ones with what the running dockerd makes of them, then its own.
    `inventory`: what docker listed at the last durability point (live cuts)."""
    mount = docker.mount_data(vm.agent, backend, serial)
    if not mount.ok:
        raise HarnessError(
            f"mounting the checked disk read-write for dockerd failed: {mount.evidence(400)}"
        )
    found, log, up = daemon_checks(vm.agent, backend, state_id, promises, invariants, offline_found)
    if log_file is not None:
        log_file.write_text(log)
    if not up:
        return offline_found + found
    found = what_docker_says(vm.agent, offline_found) + found
    if inventory is not None:
        found += check_inventory(vm.agent, state_id, last_point, inventory)
    return found


def panic_verdict(state_id: str, console: str) -> Violation:
    return Violation(
        ViolationClass.FS_CORRUPTION,
        state_id,
        "the kernel survives recovery of this crash state",
        {"console": console},
        check="kernel.panic",
        subject="panic",
    )


def retry_once_on_hang(
    attempt: Callable[[int], list[Violation]], state_id: str
) -> tuple[list[Violation], bool]:
    """Check a recovered disk, the one way for every path: a guest that stops
    answering (`attempt` diagnoses it and raises GuestTimeout) gets a second try on
    a fresh guest, and a second hang is a verdict. Returns the verdicts and whether
    the check was retried."""
    try:
        return attempt(1), False
    except GuestTimeout:
        pass
    try:
        return attempt(2), True
    except GuestTimeout as e:
        return [hang_verdict(state_id, str(e), e.console_tail)], True


def hang_verdict(state_id: str, error: str, console: str) -> Violation:
    """A guest that stops answering twice, on a fresh guest each time, while it
    recovers and checks a state: the same verdict wherever the state came from."""
    return Violation(
        ViolationClass.FS_CORRUPTION,
        state_id,
        "the guest stays responsive while checking this state",
        {"error": error, "console": console},
        check="kernel.hang",
        subject="hang",
    )


def check_by_reboot(
    config: MachineConfig,
    backend: Backend,
    state_id: str,
    disk: Path,
    promises: list[Promise],
    console_log: Path,
) -> list[Violation]:
    """The slow baseline: a fresh guest boot per state, the state disk attached at boot."""
    data = Disk(disk, STATE_SERIAL, fmt="qcow2")
    with Machine(
        replace(config, disks=(*config.disks, data)), console_log, name=f"{backend.name}-reboot"
    ) as vm:
        vm.wait_booted()
        mark = vm.console_mark()
        found = run_checks(vm, backend, StateCheck(state_id, disk, tuple(promises)))
        return found + console_oracle.violations(
            vm.console_since(mark), state_id, others_clean=is_clean(found)
        )


def qcow2_size(path: Path) -> int:
    """The virtual size a qcow2 image declares in its header."""
    with path.open("rb") as f:
        head = f.read(32)
    if len(head) < 32 or head[:4] != QCOW2_MAGIC:
        raise HarnessError(f"{path}: not a qcow2 image")
    return int.from_bytes(head[24:32], "big")


def disk_format(path: Path) -> str:
    with path.open("rb") as f:
        return "qcow2" if f.read(4) == QCOW2_MAGIC else "raw"


class Checker:
    def __init__(
        self,
        config: MachineConfig,
        backend: Backend,
        logdir: Path,
        saved: Path | None = None,
        console_name: str = "checker",
        one_state: bool = False,
    ) -> None:
        """`saved`: a saved idle guest of this config (vm.snapshot) to resume
        instead of booting; a boot is the fallback when it cannot be resumed.
        `one_state`: the guest checks one state and goes (no cleanup after it)."""
        self.config = config
        self.backend = backend
        self.logdir = logdir
        self.saved = saved
        self.vm: Machine | None = None
        self.boots = 0  # guests started, booted or resumed
        self.resumed = 0
        self.fallback = ""  # why a saved guest could not be used
        self.console_name = console_name
        self.one_state = one_state
        self.start_s = 0.0  # what starting the last guest took (resume or boot)
        self._seq = 0
        self._state_node: str | None = None  # the qcow2 node the state disk shows now

    def __enter__(self) -> Checker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.vm is not None:
            self.vm.kill()
            self.vm = None
        self._state_node = None

    @property
    def console_log(self) -> Path:
        """The console log of the current (or last) checker guest."""
        return self.logdir / f"{self.console_name}{max(self.boots, 1)}.console.log"

    @property
    def started(self) -> str:
        """How the current (or last) guest started: resumed from a saved guest or booted."""
        return "resumed" if self.resumed == self.boots and self.boots else "booted"

    def _start(self, saved: Path | None) -> Machine:
        self.boots += 1
        t0 = time.monotonic()
        vm = Machine(
            self.config,
            self.console_log,
            name=f"{self.backend.name}-checker{self.boots}",
            restore_from=saved,
        )
        try:
            vm.__enter__()
            vm.wait_booted()
        except BaseException:
            vm.kill()
            raise
        self.start_s = round(time.monotonic() - t0, 2)
        return vm

    def _ensure_vm(self) -> Machine:
        if self.vm is None:
            if self.saved is not None:
                try:
                    self.vm = self._start(self.saved)
                    self.resumed += 1
                    return self.vm
                except ResumeError as e:
                    self.fallback = f"the saved guest {self.saved} did not resume ({e}); booting"
                    (self.logdir / "resume-failed.txt").write_text(self.fallback + "\n")
                    self.saved = None
            self.vm = self._start(None)
        return self.vm

    def _attach(self, vm: Machine, disk: Path) -> None:
        """Show `disk` (qcow2) to the guest as its state disk. The first state
        hot-plugs a virtio disk over a raw node; later ones only swap that node's
        file child (QMP blockdev-reopen): no PCI hot-plug, the guest keeps the same
        /dev/vdX and drops its cache of it before each check. The old state is
        closed before the new one opens (through an idle null node), so a file may
        be checked twice."""
        self._seq += 1
        node = f"state{self._seq}"

        def point_at(child: str) -> None:
            vm.qmp(
                "blockdev-reopen",
                options=[{"driver": "raw", "node-name": "statedisk", "file": child}],
            )

        plugged = self._state_node is not None
        if self._state_node is not None:
            point_at("stateidle")
            vm.qmp("blockdev-del", **{"node-name": self._state_node})
            self._state_node = None
        vm.qmp(
            "blockdev-add",
            **{
                "driver": "qcow2",
                "node-name": node,
                "file": {"driver": "file", "filename": str(disk)},
            },
        )
        self._state_node = node
        if not plugged:
            vm.qmp(
                "blockdev-add",
                **{
                    "driver": "null-co",
                    "node-name": "stateidle",
                    "size": qcow2_size(disk),
                    "read-zeroes": True,
                },
            )
            vm.qmp("blockdev-add", **{"driver": "raw", "node-name": "statedisk", "file": node})
            vm.qmp(
                "device_add",
                driver="virtio-blk-pci",
                id="statedev",
                drive="statedisk",
                serial=STATE_SERIAL,
            )
        else:
            point_at(node)

    def check(self, req: StateCheck) -> Checked:
        """Show the state's disk (qcow2 or raw; never written: the guest writes to a
        throwaway overlay, a new one per attempt, since even a read-only mount
        replays a journal), run the offline checks on it (and with `daemon` the
        daemon stage: dockerd on the state, tens of seconds), detach it. A guest
        that stops answering is diagnosed, restarted and given the state once more
        before the hang counts as a verdict."""
        overlay = self.logdir / "attempt.qcow2"
        out = Checked()

        def attempt(n: int) -> list[Violation]:
            overlay.unlink(missing_ok=True)
            hosttools.qcow2_overlay(req.disk, overlay, disk_format(req.disk))
            out.times, out.observed = {}, {}
            return self._check_once(req, overlay, n, out)

        try:
            out.violations, out.retried = retry_once_on_hang(attempt, req.state_id)
        finally:
            overlay.unlink(missing_ok=True)
        out.started = self.started
        return out

    def _leave_daemon(self, vm: Machine) -> None:
        """Stop dockerd and unmount the state, so the next state can be swapped in."""
        docker.stop_dockerd(vm.agent)
        res = vm.agent.run(f"umount {DOCKER_ROOT} || umount -l {DOCKER_ROOT}", timeout=120)
        if not res.ok:
            raise HarnessError(
                f"unmounting a state after the daemon stage failed: {res.evidence(400)}"
            )

    def _check_once(
        self, req: StateCheck, disk: Path, attempt: int, out: Checked
    ) -> list[Violation]:
        vm = self._ensure_vm()
        mark = vm.console_mark()
        state_id, promises = req.state_id, list(req.promises)
        t = out.times
        t0 = time.monotonic()
        found: list[Violation] = []
        try:
            self._attach(vm, disk)
            t["attach_s"] = round(time.monotonic() - t0, 3)
            found = run_checks(vm, self.backend, req, out)
            t["checks_s"] = round(time.monotonic() - t0 - t["attach_s"], 3)
            if req.daemon and not any(v.check == "fs.mount" for v in found):
                ctx = req.daemon_context or DaemonContext()
                log_file = ctx.log_file
                if log_file is not None and attempt > 1:
                    log_file = log_file.with_suffix(f".retry{attempt - 1}.log")
                found = run_daemon_stage(
                    vm,
                    self.backend,
                    state_id,
                    promises,
                    req.invariants,
                    found,
                    inventory=ctx.inventory,
                    last_point=ctx.last_point,
                    log_file=log_file,
                )
                if not self.one_state:
                    self._leave_daemon(vm)
                t["daemon_s"] = round(time.monotonic() - t0 - t["attach_s"] - t["checks_s"], 3)
        except GuestPanic as e:
            found.append(panic_verdict(state_id, e.console_tail))
            self.close()
            return found
        except HarnessError:
            self.close()
            raise
        except GuestTimeout as e:
            (self.logdir / f"hang-{self.boots}.diagnostics.txt").write_text(vm.diagnose())
            e.console_tail = e.console_tail or vm.console_tail()
            self.close()
            raise
        except GuestError as e:  # the guest failed otherwise while checking this state
            found.append(hang_verdict(state_id, str(e), vm.console_tail()))
            self.close()
            return found
        return found + console_oracle.violations(
            vm.console_since(mark), state_id, others_clean=is_clean(found)
        )
