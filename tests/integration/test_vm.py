"""Real QEMU guests: boot, the testinfra host, and each way a VM can fail."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from harness.errors import GuestBootError, GuestTimeout, HarnessError, ResumeError
from harness.guest.host import guest_host
from harness.images.guest import GuestImages
from harness.vm import accel, snapshot
from harness.vm.machine import Machine
from harness.vm.qemu import Disk, MachineConfig


def config(images: GuestImages, *cmdline: str) -> MachineConfig:
    acc = accel.choose()[0]
    return MachineConfig(
        kernel=images.kernel.vmlinuz,
        initrd=images.initrd,
        accel=acc,
        cpus=accel.default_cpus(acc),
        cmdline=cmdline,
        disks=(Disk(images.root.path, "root", read_only=True),),
    )


def test_boot_to_agent_and_testinfra_host(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    with Machine(config(images), tmp_path / "console.log") as vm:
        uptime = vm.wait_booted(120)
        host = guest_host(vm.agent)
        assert host.file("/usr/sbin/dockerd").is_file
        assert host.file("/usr/share/crashtest/base.tar").size > 100_000
        assert host.run("uname -r").stdout.strip() == images.kernel.version
        assert host.mount_point("/").filesystem == "overlay"
        assert 0 < uptime < 120
        assert {"stage1", "stage2", "agent"} <= set(vm.console.markers) if vm.console else False
    log = (tmp_path / "console.log").read_text()
    assert "crashtest: agent ready" in log
    assert "Linux version " + images.kernel.version in log
    # QEMU's own stderr is kept apart from the console
    assert (tmp_path / "console.qemu-stderr.log").exists()


def test_panicking_kernel_is_a_boot_error_with_console(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    with (
        Machine(config(images, "rdinit=/no-such-init"), tmp_path / "c.log") as vm,
        pytest.raises(GuestBootError) as e,
    ):
        vm.wait_booted(120)
    assert "panicked" in str(e.value)
    assert "Kernel panic" in e.value.console_tail


@pytest.mark.full
def test_kernel_that_never_boots_times_out(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    broken = tmp_path / "vmlinuz"
    data = images.kernel.vmlinuz.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # valid header, truncated payload
    cfg = MachineConfig(
        kernel=broken,
        initrd=images.initrd,
        accel=accel.choose()[0],
        disks=(Disk(images.root.path, "root", read_only=True),),
    )
    with Machine(cfg, tmp_path / "c.log") as vm, pytest.raises(GuestBootError):
        vm.wait_booted(20)


@pytest.mark.full
def test_qemu_dying_is_a_harness_error(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    with Machine(config(images), tmp_path / "c.log") as vm:
        vm.wait_booted(120)
        assert vm._proc is not None
        pid = vm._proc.pid
        threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()
        with pytest.raises(HarnessError, match="QEMU died"):
            vm.agent.run("sleep 30", timeout=60)


def test_hung_guest_is_a_timeout(images: GuestImages, tmp_path: Path, no_leftovers: None) -> None:
    with Machine(config(images), tmp_path / "c.log") as vm:
        vm.wait_booted(120)
        vm.qmp("stop")  # frozen vCPUs: the guest can no longer answer
        t = time.monotonic()
        with pytest.raises(GuestTimeout):
            vm.agent.run("true", timeout=1)
        assert time.monotonic() - t < 30


@pytest.mark.full
def test_kernel_without_its_disk_drivers_says_which(
    images: GuestImages, tmp_path: Path, no_leftovers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Debian kernel given as a bare bzImage, without its modules: the guest's
    init finds no root disk and names the driver the kernel lacks; the campaign
    stops with that one line, exit 2."""
    from harness.cli import main

    bare = tmp_path / "vmlinuz"
    bare.write_bytes(images.kernel.vmlinuz.read_bytes())
    rc = main(
        [
            "run",
            "--kernel",
            str(bare),
            "--backends",
            "ext4-overlay2",
            "--cuts",
            "1",
            "--states",
            "0",
            "--out",
            str(tmp_path / "res"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "no root disk" in err[0] and "virtio_blk" in err[0] and "KERNEL_MODULES" in err[0]


@pytest.mark.full
def test_check_of_a_disk_with_no_docker_is_the_wrong_disk(
    images: GuestImages, tmp_path: Path, no_leftovers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main
    from harness.storage.backends import BACKENDS, make_test_disk

    disk = make_test_disk(BACKENDS["ext4-overlay2"], tmp_path / "fresh.img")
    assert main(["check", str(disk)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no trace of docker" in err[0], err


def test_saved_guest_resumes_with_its_ram_the_hosts_clock_and_new_randomness(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    """Every resume starts from the same RAM: what the guest held comes back, but
    its clock is set to the host's and its random generator reseeded, so two
    resumes draw different numbers (dockerd's ids, temp names)."""
    cfg = config(images)
    with Machine(cfg, tmp_path / "boot.console.log") as vm:
        vm.wait_booted(120)
        assert vm.agent.run("echo held-in-ram > /run/mark").ok
        snapshot.save(vm, tmp_path / "vmstate")
    time.sleep(5)  # the saved clock falls behind
    drawn = []
    for i in range(2):
        with Machine(
            cfg, tmp_path / f"resume{i}.console.log", restore_from=tmp_path / "vmstate"
        ) as vm:
            assert vm.wait_booted(60) < 30
            assert vm.agent.run("cat /run/mark").stdout.strip() == "held-in-ram"
            guest_now = float(vm.agent.run("date +%s.%N").stdout)
            assert abs(guest_now - time.time()) < 3
            drawn.append(vm.agent.run("cat /proc/sys/kernel/random/uuid").stdout)
    assert drawn[0] != drawn[1]


@pytest.mark.full
def test_saved_guest_that_does_not_resume_falls_back_to_a_boot(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    from harness.oracles.checker import Checker, StateCheck
    from harness.storage.backends import BACKENDS, make_test_disk

    bad = tmp_path / "vmstate"
    bad.write_bytes(b"not a migration stream" * 100)
    with (
        pytest.raises(ResumeError, match="load of migration failed"),
        Machine(config(images), tmp_path / "c.log", restore_from=bad) as vm,
    ):
        vm.wait_booted(30)
    backend = BACKENDS["ext4-overlay2"]
    disk = make_test_disk(backend, tmp_path / "fresh.img")
    with Checker(config(images), backend, tmp_path, saved=bad) as checker:
        found = checker.check(StateCheck("fresh", disk)).violations
        assert checker.started == "booted" and "did not resume" in checker.fallback
    assert (tmp_path / "resume-failed.txt").exists()
    assert not [v for v in found if v.check.startswith("fs.")]  # checked all the same


@pytest.mark.full
def test_a_standard_debian_kernel_boots(tmp_path: Path, no_leftovers: None) -> None:
    """Debian's standard flavour (not cloud) builds ext4 as a module that reaches
    crc32c only through a soft dependency: modules resolved as modprobe does."""
    from harness.images.guest import ensure_images

    std = ensure_images("bookworm:linux-image-amd64")
    with Machine(config(std), tmp_path / "console.log") as vm:
        vm.wait_booted(180)
        host = guest_host(vm.agent)
        assert host.run("uname -r").stdout.strip() == std.kernel.version
        assert not std.kernel.version.endswith("-cloud-amd64")
        loaded = host.file("/proc/modules").content_string
        assert "ext4 " in loaded and "crc32c" in loaded
        assert {"btrfs", "xfs", "overlay"} <= set(std.kernel.info["modules"].split())


@pytest.mark.full
def test_a_root_disk_that_does_not_mount_says_why_in_one_line(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    blank = tmp_path / "root.img"
    blank.write_bytes(bytes(1 << 20))
    cfg = config(images)
    cfg = MachineConfig(
        kernel=cfg.kernel,
        initrd=cfg.initrd,
        accel=cfg.accel,
        cpus=cfg.cpus,
        disks=(Disk(blank, "root", read_only=True),),
    )
    with Machine(cfg, tmp_path / "console.log") as vm, pytest.raises(GuestBootError) as e:
        vm.wait_booted(120)
    msg = str(e.value)
    # the kernel's first complaint, else mount's own: one line either way
    assert (
        "cannot mount the root disk /dev/vda as ext4: mount: Invalid argument" in msg
        or "as ext4: kernel: EXT4-fs (vda)" in msg
    ), msg
    assert "\n" not in msg
