import json
from pathlib import Path

from harness.vm.accel import choose, kvm_usable
from harness.vm.qemu import Disk, MachineConfig, Sockets, build_argv

CPU_VMX = "processor: 0\nflags\t\t: fpu vme de pse vmx sse\n"
CPU_NONE = "processor: 0\nflags\t\t: fpu vme de pse sse hypervisor\n"


def test_kvm_needs_device_and_flags(tmp_path: Path) -> None:
    dev = tmp_path / "kvm"
    assert kvm_usable(CPU_VMX, dev) == (False, "/dev/kvm missing")
    dev.write_text("")
    assert kvm_usable(CPU_VMX, dev)[0] is True
    ok, why = kvm_usable(CPU_NONE, dev)
    assert not ok and "vmx/svm" in why


def test_forced_tcg(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CRASHTEST_ACCEL", "tcg")
    assert choose() == ("tcg", "requested")


def sockets(tmp: Path) -> Sockets:
    return Sockets(tmp / "q", tmp / "c", tmp / "a")


def test_argv_is_data_with_disks_by_serial(tmp_path: Path) -> None:
    cfg = MachineConfig(
        kernel=Path("/k"),
        initrd=Path("/i"),
        accel="tcg",
        disks=(
            Disk(Path("/root.img"), "root", read_only=True),
            Disk(Path("/o.qcow2"), "data", fmt="qcow2"),
        ),
    )
    argv = build_argv(cfg, sockets(tmp_path))
    assert argv[0] == "qemu-system-x86_64" and all(isinstance(a, str) for a in argv)
    assert argv[argv.index("-accel") + 1].startswith("tcg")
    blockdevs = [json.loads(argv[i + 1]) for i, a in enumerate(argv) if a == "-blockdev"]
    assert blockdevs[0]["read-only"] is True and blockdevs[0]["driver"] == "raw"
    assert blockdevs[1]["driver"] == "qcow2"
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert "virtio-blk-pci,drive=disk0,serial=root" in devices
    assert "virtio-blk-pci,drive=disk1,serial=data" in devices
    assert "pvpanic-pci" in devices and "-S" in argv


def test_write_log_goes_through_blklogwrites(tmp_path: Path) -> None:
    cfg = MachineConfig(
        kernel=Path("/k"),
        initrd=Path("/i"),
        accel="kvm",
        disks=(Disk(Path("/d.img"), "data", write_log=Path("/d.log")),),
    )
    argv = build_argv(cfg, sockets(tmp_path))
    nodes = [json.loads(argv[i + 1]) for i, a in enumerate(argv) if a == "-blockdev"]
    assert [n["driver"] for n in nodes] == ["raw", "file", "blklogwrites"]
    assert "virtio-blk-pci,drive=disk0lw,serial=data" in argv
    assert argv[argv.index("-accel") + 1] == "kvm"
