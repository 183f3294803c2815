"""A booted guest that runs generated programs, many per boot."""

from __future__ import annotations

from pathlib import Path

from crashtest_guest.protocol import ExploreOutcome, ExploreRequest
from harness.errors import HarnessError
from harness.images.guest import ensure_images
from harness.vm import accel
from harness.vm.machine import Machine
from harness.vm.qemu import Disk, MachineConfig

GUEST_MEMORY_MB = 3072
PROGRAM_TIMEOUT_S = 600


class Guest:
    """One booted guest that runs programs; rebooted after a program hangs it."""

    def __init__(self, kernel: str | None, acc: str | None, console: Path) -> None:
        self.images = ensure_images(kernel)
        self.acc = acc or accel.choose()[0]
        self.console = console
        self.vm: Machine | None = None
        self.boots = 0

    def start(self) -> Machine:
        if self.vm is None:
            cfg = MachineConfig(
                kernel=self.images.kernel.vmlinuz,
                initrd=self.images.initrd,
                accel=self.acc,
                cpus=1,
                memory_mb=GUEST_MEMORY_MB,
                disks=(Disk(self.images.root.path, "root", read_only=True),),
            )
            self.boots += 1
            vm = Machine(cfg, self.console.with_suffix(f".{self.boots}.log"))
            vm.__enter__()
            vm.wait_booted()
            self.vm = vm
        return self.vm

    def run(self, req: ExploreRequest) -> ExploreOutcome:
        vm = self.start()
        try:
            raw = vm.agent.call(
                "crashtest_guest.explore", "run", req.to_json(), timeout=PROGRAM_TIMEOUT_S
            )
            return ExploreOutcome.from_json(raw)  # type: ignore[arg-type]
        except HarnessError as e:  # a hung or dead guest fails this program, not the run
            self.stop()
            return ExploreOutcome(req.fs, req.overlay, (), (), error=f"guest: {e}")

    def stop(self) -> None:
        if self.vm is not None:
            self.vm.__exit__(None, None, None)
            self.vm = None
