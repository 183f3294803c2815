"""`crashtest check IMAGE`: every oracle on an existing test-disk image (say, one a
user copied from a broken machine), in a guest running the kernel under test. The
image is never modified: the guest works on a throwaway qcow2 overlay."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import hosttools
from harness.errors import InputError
from harness.guest.docker import device_by_serial
from harness.images.guest import ensure_images
from harness.model import Violation, failing, is_clean
from harness.oracles import console as console_oracle
from harness.oracles.checker import STATE_SERIAL, StateCheck, run_checks
from harness.storage.backends import BACKENDS, BY_FS
from harness.vm import accel as accel_mod
from harness.vm.machine import Machine
from harness.vm.qemu import Disk, MachineConfig


@dataclass
class ImageReport:
    image: str
    fs: str
    backend: str
    kernel: str
    violations: list[Violation] = field(default_factory=list)
    console: str = ""  # what the kernel printed while the image was checked

    @property
    def failing(self) -> list[Violation]:
        return failing(self.violations)

    def to_json(self) -> dict[str, object]:
        return {
            "image": self.image,
            "fs": self.fs,
            "backend": self.backend,
            "kernel": self.kernel,
            "clean": not self.failing,
            "violations": [v.to_json() for v in self.violations],
        }


def image_format(path: Path) -> str:
    hosttools.require("qemu-img")
    if not path.is_file():
        raise InputError(f"IMAGE {path}: no such file")
    proc = subprocess.run(
        ["qemu-img", "info", "--output=json", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise InputError(f"IMAGE {path}: not a disk image qemu-img can read")
    fmt = str(json.loads(proc.stdout).get("format", ""))
    if fmt not in ("raw", "qcow2"):
        raise InputError(f"IMAGE {path}: format {fmt!r} (raw or qcow2 expected)")
    return fmt


def check_image(image: Path, kernel: str | None = None, before: str = "") -> ImageReport:
    fmt = image_format(image)
    accel, _ = accel_mod.choose()
    images = ensure_images(kernel)
    with tempfile.TemporaryDirectory(prefix="crashtest-check-") as td:
        overlay = Path(td) / "state.qcow2"
        hosttools.qcow2_overlay(image, overlay, fmt)
        config = MachineConfig(
            kernel=images.kernel.vmlinuz,
            initrd=images.initrd,
            accel=accel,
            cpus=accel_mod.default_cpus(accel),
            disks=(Disk(images.root.path, "root", read_only=True),),
        )
        config = replace(config, disks=(*config.disks, Disk(overlay, STATE_SERIAL, fmt="qcow2")))
        with Machine(config, Path(td) / "console.log", name="check") as vm:
            vm.wait_booted()
            dev = device_by_serial(vm.agent, STATE_SERIAL)
            fs = vm.agent.run(f"blkid -o value -s TYPE {dev}", timeout=30).stdout.strip()
            if fs not in BY_FS:
                raise InputError(
                    f"IMAGE {image}: filesystem {fs or 'unknown'!r} "
                    f"(one of {', '.join(BY_FS)} expected)"
                )
            backend = BACKENDS[BY_FS[fs]]
            report = ImageReport(str(image), fs, backend.name, images.kernel.version)
            mark = vm.console_mark()
            req = StateCheck(str(image), image, before=before, full=True)
            report.violations = run_checks(vm, backend, req)
            report.console = vm.console_since(mark)
            report.violations += console_oracle.violations(
                report.console, str(image), others_clean=is_clean(report.violations)
            )
    return report
