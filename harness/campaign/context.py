"""What every unit of a campaign runs with: images, accelerator, workload, where
results go; and the guest's machine configuration built from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.images.guest import GuestImages
from harness.vm.accel import default_cpus
from harness.vm.qemu import Disk, MachineConfig
from harness.workloads.api import Workload

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CampaignConfig:
    """Plain data (it pickles into worker processes): one kernel's share of a campaign."""

    images: GuestImages
    accel: str
    workload: Workload
    run_dir: Path
    memory_mb: int = 2048
    cpus: int = 0  # 0: the accelerator's safe default
    keep_disks: bool = False
    minimize_tests: int = 40  # checks spent shrinking each new failing lost-cache state
    minimize_steps: int = 0  # live cycles spent shrinking a failing live cut's workload
    bundles: bool = True  # write a reproducer bundle for each state with a violation
    daemon_checks: bool = False  # lost-cache states get the daemon stage too (slow)
    resume: bool = True  # start guests from saved guests (campaign.snapshots), not boots
    # Self-test: a guest command run on the recovered tree before the checks
    # (`--inject`), to show the checks catch damage.
    damage: str = ""

    @property
    def seed(self) -> int:
        return self.workload.seed


def machine_config(cfg: CampaignConfig, data: Disk | None) -> MachineConfig:
    root = Disk(cfg.images.root.path, "root", read_only=True)
    return MachineConfig(
        kernel=cfg.images.kernel.vmlinuz,
        initrd=cfg.images.initrd,
        disks=(root, data) if data else (root,),
        accel=cfg.accel,
        memory_mb=cfg.memory_mb,
        cpus=cfg.cpus or default_cpus(cfg.accel),
    )
