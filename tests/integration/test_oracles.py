"""Each oracle, shown catching what it claims to: a real docker store made by the
workload, broken on purpose in one way per case, checked with `crashtest check`."""

import subprocess
from pathlib import Path

import pytest

from harness.campaign.context import CampaignConfig, machine_config
from harness.images.guest import GuestImages
from harness.model import Ledger
from harness.oracles.check_image import check_image
from harness.oracles.checker import Checker, StateCheck
from harness.storage.backends import BACKENDS, make_test_disk
from harness.vm import accel
from harness.workloads.api import command
from harness.workloads.default import workload as default_workload
from harness.writelog.record import record

MOUNT = "mount {dev} /mnt && "
UMOUNT = " && umount /mnt"


@pytest.fixture(scope="module", params=["ext4-overlay2", "btrfs"])
def store_disk(
    request: pytest.FixtureRequest, images: GuestImages, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """A test disk holding the default workload's images, containers and volume."""
    tmp = tmp_path_factory.mktemp(request.param)
    cfg = CampaignConfig(
        images=images, accel=accel.choose()[0], workload=default_workload(1), run_dir=tmp
    )
    rec = record(
        machine_config(cfg, None), BACKENDS[request.param], cfg.workload, tmp, with_log=False
    )
    return request.param, rec.disk


def failing(report) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(v.cls, v.promise) for v in report.violations if v.cls != "leak"]


def test_clean_store_passes(store_disk: tuple[str, Path], no_leftovers: None) -> None:
    _, disk = store_disk
    before = disk.stat().st_mtime
    report = check_image(disk)
    assert failing(report) == []
    assert disk.stat().st_mtime == before  # the image itself is never written


def test_zeroed_layer_file_is_named(store_disk: tuple[str, Path], no_leftovers: None) -> None:
    _, disk = store_disk
    target = "data/l3/f3.bin"  # the largest file of the top data layer (seed 1)
    report = check_image(
        disk,
        before=MOUNT + "for f in $(find /mnt/overlay2 "
        f"/mnt/btrfs/subvolumes -path '*/{target}' 2>/dev/null); do "
        "truncate -s 0 $f; done" + UMOUNT,
    )
    content = [
        v for v in report.violations if v.promise == "layer files match their tar-split CRC64"
    ]
    assert content and all(v.cls == "docker-corruption" for v in content)
    assert target in content[0].evidence["output"]
    assert "has 0 bytes, tar-split says" in content[0].evidence["output"]


@pytest.mark.full
def test_truncated_repositories_json(store_disk: tuple[str, Path], no_leftovers: None) -> None:
    _, disk = store_disk
    report = check_image(
        disk, before=MOUNT + "truncate -s 10 /mnt/image/*/repositories.json" + UMOUNT
    )
    assert (
        "docker-corruption",
        "repositories.json parses (dockerd refuses to start otherwise)",
    ) in failing(report)


# The base image layer: the only overlay2 layer directory without a `lower` file.
EMPTY_BASE_LINK = (
    "for d in /mnt/overlay2/*/; do [ -f $d/link ] && [ ! -f $d/lower ] && "
    ": > $d/link && break; done"
)
# A layer two above the base, remade as a snapshot of the base (skipping its parent).
RESNAPSHOT_LAYER = (
    "cd /mnt/image/btrfs/layerdb/sha256 && for l in *; do [ -f $l/parent ] || "
    "{ B=$(cat $l/cache-id); continue; }; p=$(cut -d: -f2 $l/parent); "
    "[ -f $p/parent ] && C=$(cat $l/cache-id); done; cd /mnt/btrfs/subvolumes && "
    "btrfs subvolume delete $C >/dev/null && btrfs subvolume snapshot $B $C >/dev/null && cd /"
)


@pytest.mark.full
def test_driver_layer_links(store_disk: tuple[str, Path], no_leftovers: None) -> None:
    """overlay2: an emptied `link`; btrfs: a layer that is not a snapshot of its parent."""
    backend, disk = store_disk
    if backend == "ext4-overlay2":
        report = check_image(disk, before=MOUNT + EMPTY_BASE_LINK + UMOUNT)
        assert ("docker-corruption", "overlay2 link is a 26-character id") in failing(report)
    else:
        report = check_image(disk, before=MOUNT + RESNAPSHOT_LAYER + UMOUNT)
        found = [
            v
            for v in report.violations
            if v.promise == "btrfs layer is a snapshot of the layer below"
        ]
        assert found and "parent uuid" in found[0].evidence["output"], failing(report)


@pytest.mark.full
def test_orphan_layer_is_a_leak_not_corruption(
    store_disk: tuple[str, Path], no_leftovers: None
) -> None:
    _, disk = store_disk
    orphan = "0" * 64
    report = check_image(
        disk,
        before=MOUNT + "for d in /mnt/overlay2 /mnt/btrfs/subvolumes; "
        f"do [ -d $d ] && mkdir $d/{orphan}; done; true" + UMOUNT,
    )
    leaks = [v for v in report.violations if v.cls == "leak"]
    assert any(orphan in v.evidence["output"] for v in leaks)
    assert failing(report) == []


def test_kernel_error_on_the_console(store_disk: tuple[str, Path], no_leftovers: None) -> None:
    _, disk = store_disk
    report = check_image(disk, before="echo 'BUG: injected by the test' > /dev/kmsg")
    assert ("fs-corruption", "the kernel reports no failure in recovery") in failing(report)
    # an error line in words no kernel used before, every other check passing: a
    # console-only finding to triage, not corruption
    fs = {"ext4-overlay2": "EXT4-fs error", "btrfs": "BTRFS error"}[store_disk[0]]
    report = check_image(disk, before=f"echo '{fs} (device vdb): injected: new words' > /dev/kmsg")
    [alone] = report.failing
    assert (alone.cls, alone.fault, alone.check) == ("console-only", "unknown", "kernel.console")
    assert "injected: new words" in alone.evidence["console"]


def test_dropped_fsynced_file_breaks_its_promise(
    store_disk: tuple[str, Path],
    images,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    no_leftovers: None,
) -> None:
    backend, disk = store_disk
    wl = default_workload(1)
    ledger = Ledger()
    for step in wl.steps:
        ledger.grant(step.name, list(step.promises))
    promises = ledger.in_force()
    cfg = CampaignConfig(images=images, accel=accel.choose()[0], workload=wl, run_dir=tmp_path)
    overlay = tmp_path / "state.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(disk), "-F", "raw", str(overlay)],
        check=True,
    )
    with Checker(machine_config(cfg, None), BACKENDS[backend], tmp_path) as checker:
        clean = checker.check(StateCheck("clean", overlay, tuple(promises))).violations
        assert [v.headline() for v in clean if v.cls != "leak"] == []
        broken = checker.check(
            StateCheck(
                "dropped",
                overlay,
                tuple(promises),
                before=MOUNT + "rm /mnt/volumes/crashtest-vol/_data/vol.bin" + UMOUNT,
            )
        ).violations
    lost = [v for v in broken if v.cls == "fs-durability"]
    assert len(lost) == 1 and "volume:crashtest-vol:/vol.bin" in lost[0].promise
    assert "(missing)" in lost[0].evidence["output"]


def test_daemon_stage_on_a_checked_state(
    store_disk: tuple[str, Path],
    images,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    no_leftovers: None,
) -> None:
    """`--daemon-checks`: the checker runs dockerd on a state after its offline checks
    (here a daemon invariant planted to fail, every real promise kept), then goes
    on to the next state in the same guest."""
    backend, disk = store_disk
    wl = default_workload(1)
    ledger = Ledger()
    for step in wl.steps:
        ledger.grant(step.name, list(step.promises))
    planted = command("docker image inspect crashtest/never-built", stage="daemon")
    cfg = CampaignConfig(images=images, accel=accel.choose()[0], workload=wl, run_dir=tmp_path)
    overlay = tmp_path / "state.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(disk), "-F", "raw", str(overlay)],
        check=True,
    )
    with Checker(machine_config(cfg, None), BACKENDS[backend], tmp_path) as checker:
        got = checker.check(
            StateCheck(
                "daemon",
                overlay,
                tuple(ledger.in_force()),
                (*wl.invariants, planted),
                daemon=True,
            )
        )
        found = got.violations
        assert got.times["daemon_s"] > 0
        after = checker.check(StateCheck("next", overlay, tuple(ledger.in_force()))).violations
        assert checker.boots == 1
    failing = [v for v in found if v.cls != "leak"]
    assert [(v.check, v.subject) for v in failing] == [(planted.id, planted.command)]
    assert "no such image" in failing[0].evidence["output"].lower()
    assert [v for v in after if v.cls != "leak"] == []


def test_fsck_beside_the_store_checks_sees_damage(tmp_path: Path, no_leftovers: None) -> None:
    """fsck runs on the read-only mount while the store is checked: a link count
    made wrong on a recovered ext4 disk is still its verdict (and a clean disk
    passes it)."""
    disk = make_test_disk(BACKENDS["ext4-overlay2"], tmp_path / "disk.img")
    store = "mkdir -p /mnt && mount {dev} /mnt && mkdir /mnt/image /mnt/overlay2 && umount /mnt"
    clean = check_image(disk, before=store)
    assert [v for v in clean.violations if v.check == "fs.fsck"] == []
    damaged = check_image(
        disk, before=store + " && debugfs -w -R 'set_inode_field <2> links_count 9' {dev}"
    )
    fsck = [v for v in damaged.violations if v.check == "fs.fsck"]
    assert fsck and "Inode 2 ref count is 9" in fsck[0].evidence["output"], damaged.violations
    assert "is mounted" in fsck[0].evidence["output"]  # it did run beside the checks
