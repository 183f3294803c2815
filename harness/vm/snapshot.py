"""Saved guests: a guest's RAM and device state written once as a migration
stream, then resumed in a fresh QEMU (paused at start, `-incoming defer`) in
about a second instead of a boot. A stream holds no disk: whoever saves one
keeps the disks as they were at the save and gives the resumed guest the same
content under the same devices.

Migration rather than savevm: savevm needs every writable disk to be qcow2 with
internal snapshots, and the test disk is raw (or behind blklogwrites)."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any, Protocol

from crashtest_guest import RESUME
from harness.errors import HarnessError
from harness.guest.agent import AgentClient
from harness.images.cache import sha256_file


class Machine(Protocol):
    """What saving and resuming need of a running QEMU (vm.machine.Machine)."""

    name: str

    @property
    def agent(self) -> AgentClient: ...

    def qmp(self, cmd: str, **args: Any) -> Any: ...

    def pass_fd(self, name: str, fd: int) -> None: ...


MIGRATE_TIMEOUT_S = 300.0
FD_NAME = "savedguest"
# QEMU caps migration at 32 MiB/s by default (it was built for live networks);
# a stream to a local file should go as fast as the disk takes it.
MAX_BANDWIDTH = 1 << 40


def _wait_migration(vm: Machine, what: str) -> None:
    deadline = time.monotonic() + MIGRATE_TIMEOUT_S
    while True:
        info = vm.qmp("query-migrate")
        status = info.get("status", "")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise HarnessError(f"{vm.name}: {what} failed: {info.get('error-desc', status)}")
        if time.monotonic() > deadline:
            raise HarnessError(f"{vm.name}: {what} took over {MIGRATE_TIMEOUT_S:.0f}s")
        time.sleep(0.02)


def save(vm: Machine, dest: Path) -> float:
    """Stop the guest and write its state to `dest` (atomically). The guest stays
    stopped: the caller copies the disks as they are now, then kills it."""
    t0 = time.monotonic()
    vm.qmp("stop")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        vm.pass_fd(FD_NAME, fd)
    finally:
        os.close(fd)
    try:
        vm.qmp("migrate-set-parameters", **{"max-bandwidth": MAX_BANDWIDTH})
        vm.qmp("migrate", uri=f"fd:{FD_NAME}")
        _wait_migration(vm, "saving the guest")
        tmp.rename(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return time.monotonic() - t0


def load(vm: Machine, src: Path) -> float:
    """Load a saved state into a QEMU started with `-incoming defer` (still paused)."""
    t0 = time.monotonic()
    fd = os.open(src, os.O_RDONLY)
    try:
        vm.pass_fd(FD_NAME, fd)
    finally:
        os.close(fd)
    vm.qmp("migrate-incoming", uri=f"fd:{FD_NAME}")
    _wait_migration(vm, f"resuming the guest saved in {src.name}")
    return time.monotonic() - t0


def resume_guest(vm: Machine, timeout: float) -> dict[str, float]:
    """First call into a resumed guest: its clock and random generator (see
    crashtest_guest.resume); also proves the agent answers."""
    got = vm.agent.call(
        RESUME, "resume", {"time": time.time(), "entropy": secrets.token_hex(64)}, timeout=timeout
    )
    if not isinstance(got, dict):
        raise HarnessError(f"{vm.name}: the resumed guest answered {got!r}")
    return {str(k): float(v) for k, v in got.items()}


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file's content, remembered per (path, size, mtime) in this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]
