"""QEMU's command line, built as data from a typed config (never a shell string)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

AGENT_PORT = "org.crashtest.agent"
LOG_SECTOR_SIZE = 512


@dataclass(frozen=True)
class Disk:
    path: Path
    serial: str
    read_only: bool = False
    fmt: str = "raw"  # "qcow2" for a throwaway overlay over a disk that must stay as it was
    # Optional write log: the disk goes through QEMU's blklogwrites filter.
    write_log: Path | None = None


@dataclass(frozen=True)
class MachineConfig:
    kernel: Path
    initrd: Path
    disks: tuple[Disk, ...]
    accel: str = "tcg"
    memory_mb: int = 2048
    cpus: int = 2
    cmdline: tuple[str, ...] = ()
    qemu_binary: str = "qemu-system-x86_64"


@dataclass(frozen=True)
class Sockets:
    """File descriptors QEMU inherits, one end of a socketpair each: the harness
    holds the other end before QEMU starts, so no connection can race QEMU."""

    qmp: int
    console: int
    agent: int


BASE_CMDLINE = (
    "console=ttyS0",
    "loglevel=7",
    "panic=0",
    "mitigations=off",
    "random.trust_cpu=on",
    "rootwait=0",
    "init=/init",
)


def kernel_cmdline(config: MachineConfig) -> str:
    return " ".join((*BASE_CMDLINE, *config.cmdline))


def block_node(config: MachineConfig, serial: str) -> str:
    """The node-name of the block backend under the disk with this serial (QMP
    `query-blockstats` counts its traffic)."""
    for i, disk in enumerate(config.disks):
        if disk.serial == serial:
            return f"disk{i}lw" if disk.write_log is not None else f"disk{i}"
    raise KeyError(serial)


def _blockdev(disk: Disk, index: int) -> list[str]:
    node = f"disk{index}"
    # Guest flushes still reach the block layer (and the write log); only the host
    # fsync is skipped: host power loss is not what is under test, and it is slow.
    cache = {"direct": False, "no-flush": True}
    file_node: dict[str, object] = {
        "driver": "file",
        "filename": str(disk.path),
        "read-only": disk.read_only,
        "cache": cache,
    }
    args = [
        "-blockdev",
        json.dumps(
            {"driver": disk.fmt, "node-name": node, "read-only": disk.read_only, "file": file_node}
        ),
    ]
    if disk.write_log is not None:
        log_node = {
            "driver": "file",
            "filename": str(disk.write_log),
            "node-name": f"{node}log",
            "cache": cache,
        }
        args += ["-blockdev", json.dumps(log_node)]
        lw = {
            "driver": "blklogwrites",
            "node-name": f"{node}lw",
            "file": node,
            "log": f"{node}log",
            "log-sector-size": LOG_SECTOR_SIZE,
            "log-append": False,
        }
        args += ["-blockdev", json.dumps(lw)]
        node = f"{node}lw"
    args += ["-device", f"virtio-blk-pci,drive={node},serial={disk.serial}"]
    return args


def build_argv(config: MachineConfig, sockets: Sockets, incoming: bool = False) -> list[str]:
    """`incoming`: the guest's RAM and devices will come from a saved migration
    stream (given over QMP once QEMU runs) instead of a boot."""
    accel = (
        ["-accel", "kvm", "-cpu", "host"]
        if config.accel == "kvm"
        else ["-accel", "tcg,thread=multi", "-cpu", "max"]
    )
    argv = [
        config.qemu_binary,
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-machine",
        "pc",
        *accel,
        "-m",
        str(config.memory_mb),
        "-smp",
        str(config.cpus),
        "-kernel",
        str(config.kernel),
        "-initrd",
        str(config.initrd),
        "-append",
        kernel_cmdline(config),
        # Start paused: every channel is connected before the first byte is printed.
        "-S",
        "-no-reboot",
        "-chardev",
        f"socket,id=qmp0,fd={sockets.qmp}",
        "-mon",
        "chardev=qmp0,mode=control",
        "-chardev",
        f"socket,id=con0,fd={sockets.console}",
        "-serial",
        "chardev:con0",
        "-chardev",
        f"socket,id=agent0,fd={sockets.agent}",
        "-device",
        "virtio-serial-pci,id=vser0",
        "-device",
        f"virtserialport,bus=vser0.0,chardev=agent0,name={AGENT_PORT}",
        # A guest panic becomes a QMP event (GUEST_PANICKED). The guest keeps running
        # so it can finish printing the panic to the console: pausing it at once would
        # freeze it before the message leaves the printk buffer.
        "-device",
        "pvpanic-pci",
        "-action",
        "panic=none",
    ]
    for i, disk in enumerate(config.disks):
        argv += _blockdev(disk, i)
    if incoming:
        argv += ["-incoming", "defer"]
    return argv
