"""Saved guests for a campaign, cached like the images: an idle guest (where
every checker starts) and, per backend, a guest with dockerd ready on a fresh
test disk (where every live cut and recording starts). Keyed by everything they
depend on, made once (under a lock, so parallel units share one), resumed in
about a second instead of a boot. A guest that cannot be saved or resumed costs
a message and a boot, never a result."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from harness import hosttools
from harness.campaign.context import CampaignConfig, Progress, machine_config
from harness.errors import GuestError, GuestSetupError, HarnessError, ResumeError
from harness.guest import docker
from harness.images.cache import cache_root, recipe_digest
from harness.storage.backends import DATA_SERIAL, Backend, make_test_disk
from harness.vm import snapshot
from harness.vm.machine import Machine
from harness.vm.qemu import Disk, MachineConfig

SAVE_VERSION = "saved-guest-v1"  # bump when what a saved guest holds changes
KEEP = 12  # saved guests kept in the cache, the most recently used


@dataclass(frozen=True)
class SavedGuest:
    vmstate: Path
    disk: Path | None  # the test disk as it was at the save (raw), if the guest had one
    save_s: float  # what making it cost: boot, docker start and save

    def disk_copy(self, dest: Path) -> Path:
        """A private copy of the saved test disk (sparse, or shared extents)."""
        if self.disk is None:
            raise ResumeError(f"{self.vmstate.parent}: this saved guest has no test disk")
        try:
            hosttools.run(
                ["cp", "--sparse=always", "--reflink=auto", str(self.disk), str(dest)],
                "copying the saved test disk",
            )
        except HarnessError as e:  # pruned or damaged meanwhile: boot instead
            raise ResumeError(str(e)) from e
        return dest


@cache
def qemu_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else binary


def saved_key(config: MachineConfig, backend: Backend | None) -> str:
    """Everything a saved guest depends on: QEMU, the kernel, initramfs and root
    image it runs, the machine, and for a docker-ready guest the backend."""
    root = config.disks[0].path
    st = root.stat()
    machine = {
        "accel": config.accel,
        "memory_mb": config.memory_mb,
        "cpus": config.cpus,
        "cmdline": list(config.cmdline),
        "disks": len(config.disks),
    }
    return recipe_digest(
        SAVE_VERSION,
        qemu_version(config.qemu_binary),
        snapshot.file_digest(config.kernel),
        snapshot.file_digest(config.initrd),
        f"{root.name}:{st.st_size}:{st.st_mtime_ns}",
        json.dumps(machine, sort_keys=True),
        json.dumps(
            {"backend": backend.describe(), "daemon": docker.daemon_config(backend)}
            if backend
            else None,
            sort_keys=True,
        ),
    )


_UNUSABLE: set[str] = set()  # keys that failed in this process: boot, do not retry


def _saved(
    cfg: CampaignConfig, backend: Backend | None, progress: Progress, make: Callable[[Path], float]
) -> SavedGuest | None:
    if not cfg.resume:
        return None
    config = machine_config(cfg, None)
    key = saved_key(config, backend)
    what = f"docker-ready {backend.name} guest" if backend else "idle guest"
    if key in _UNUSABLE:
        return None
    root = cache_root() / "saved"
    final = root / key
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel units wait for one to make it
        if not (final / "vmstate").exists():
            progress(f"  saving a {what} to resume from (once per kernel, image and backend)")
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
            try:
                save_s = make(tmp)
                (tmp / "meta.json").write_text(
                    json.dumps(
                        {
                            "what": what,
                            "save_s": round(save_s, 2),
                            "kernel": str(config.kernel),
                            "initrd": str(config.initrd),
                        }
                    )
                    + "\n"
                )
                tmp.rename(final)
            except GuestSetupError:
                raise
            except (HarnessError, GuestError, OSError) as e:
                _UNUSABLE.add(key)
                progress(f"  could not save a {what} ({e}); booting instead")
                return None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            _prune(root)
    os.utime(final)  # most recently used
    meta = json.loads((final / "meta.json").read_text())
    disk = final / "disk.img"
    return SavedGuest(
        final / "vmstate", disk if disk.exists() else None, float(meta.get("save_s", 0))
    )


def discard(saved: SavedGuest, why: str, progress: Progress) -> None:
    """A saved guest that did not resume: drop it, so the next run makes it anew."""
    progress(f"  the saved guest {saved.vmstate.parent.name} did not resume ({why}); booting")
    _UNUSABLE.add(saved.vmstate.parent.name)
    shutil.rmtree(saved.vmstate.parent, ignore_errors=True)


def _prune(root: Path) -> None:
    entries = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=lambda d: d.stat().st_mtime,
        reverse=True,
    )
    for old in entries[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)


def idle_guest(cfg: CampaignConfig, progress: Progress) -> Path | None:
    """The saved state of a booted guest with no test disk: where checkers start."""

    def make(d: Path) -> float:
        t0 = time.monotonic()
        with Machine(machine_config(cfg, None), d / "save.console.log", name="save-idle") as vm:
            vm.wait_booted()
            snapshot.save(vm, d / "vmstate")
        return time.monotonic() - t0

    saved = _saved(cfg, None, progress, make)
    return saved.vmstate if saved else None


def docker_ready(cfg: CampaignConfig, backend: Backend, progress: Progress) -> SavedGuest | None:
    """The saved state of a guest with dockerd started on a fresh test disk, and
    that disk as it was at the save: where live cuts and recordings start."""

    def make(d: Path) -> float:
        t0 = time.monotonic()
        disk = make_test_disk(backend, d / "disk.img")
        with Machine(
            machine_config(cfg, Disk(disk, DATA_SERIAL)),
            d / "save.console.log",
            name=f"save-{backend.name}",
        ) as vm:
            vm.wait_booted()
            docker.start_on_fresh_disk(vm.agent, backend)
            # Stopped before the copy of the disk is taken, and saved while stopped:
            # the disk and the guest's page cache of it agree.
            snapshot.save(vm, d / "vmstate")
        return time.monotonic() - t0

    return _saved(cfg, backend, progress, make)


def docker_guest(
    cfg: CampaignConfig, backend: Backend, disk: Path, console_log: Path, progress: Progress
) -> tuple[Machine, str, dict[str, float]]:
    """A guest with dockerd ready on a fresh test disk at `disk`: resumed from the
    saved docker-ready guest (with a copy of its disk) when there is one, else
    booted on a new disk. Returns it running, how it started, and its timings."""
    saved = docker_ready(cfg, backend, progress)
    name = f"{backend.name}-workload"
    t0 = time.monotonic()
    if saved is not None:
        vm = Machine(
            machine_config(cfg, Disk(disk, DATA_SERIAL)),
            console_log,
            name=name,
            restore_from=saved.vmstate,
        )
        try:
            saved.disk_copy(disk)
            vm.__enter__()
            vm.wait_booted()
            t = round(time.monotonic() - t0, 2)
            return vm, "resumed", {"resume_s": t, "docker_ready_s": t}
        except ResumeError as e:
            vm.kill()
            discard(saved, str(e), progress)
            t0 = time.monotonic()
        except BaseException:
            vm.kill()
            raise
    make_test_disk(backend, disk)
    vm = Machine(machine_config(cfg, Disk(disk, DATA_SERIAL)), console_log, name=name)
    try:
        vm.__enter__()
        boot_s = round(vm.wait_booted(), 2)
        docker.start_on_fresh_disk(vm.agent, backend)
    except BaseException:
        vm.kill()
        raise
    return vm, "booted", {"boot_s": boot_s, "docker_ready_s": round(time.monotonic() - t0, 2)}
