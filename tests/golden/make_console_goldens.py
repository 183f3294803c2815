"""Record real console logs of each kernel series for the console oracle's tests:
each case damages (or not) a fresh test disk in the guest, then `crashtest check`'s
sequence runs on it and the kernel's lines are kept with a header saying what the
other checks found and what the console oracle must conclude.

    .venv/bin/python tests/golden/make_console_goldens.py [SERIES[/CASE] ...]

writes tests/golden/console/SERIES/CASE.log (minutes per series under TCG)."""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.images.debian import SERIES
from harness.model import is_clean
from harness.oracles.check_image import check_image
from harness.storage.backends import BACKENDS, make_test_disk

OUT = Path(__file__).parent / "console"
MIRROR_BLOCK = 16384  # btrfs' first mirror superblock: 64 MiB in 4 KiB blocks


@dataclass(frozen=True)
class Case:
    name: str
    backend: str
    before: str
    expect: str  # the console oracle's classes, given what the other checks found
    about: str


STORE = "mkdir -p /mnt && mount {dev} /mnt && mkdir -p /mnt/image/%s /mnt/%s"
CASES = (
    Case(
        "btrfs-clean",
        "btrfs",
        STORE % ("btrfs", "btrfs") + " && umount /mnt",
        "none",
        "a fresh btrfs: mount, scrub and check print their summaries, nothing fails",
    ),
    Case(
        "btrfs-stale-mirror",
        "btrfs",
        STORE % ("btrfs", "btrfs") + " && umount /mnt && "
        f"dd if={{dev}} of=/tmp/mirror bs=4096 skip={MIRROR_BLOCK} count=1 && "
        "mount {dev} /mnt && touch /mnt/image/x && sync && umount /mnt && "
        f"dd if=/tmp/mirror of={{dev}} bs=4096 seek={MIRROR_BLOCK} count=1 conv=notrunc",
        "none",
        "the first mirror superblock one generation behind, as a lost disk cache leaves it "
        "(mirrors are written without FUA): by design, scrub reports it and exits 0",
    ),
    Case(
        "btrfs-data-csum",
        "btrfs",
        STORE
        % ("btrfs", "btrfs")
        + " && dd if=/dev/urandom of=/mnt/btrfs/f bs=64k count=1 && sync && "
        "L=$(filefrag -v /mnt/btrfs/f | awk '$1 == \"0:\" {print $4}' | tr -d .) && "
        "umount /mnt && P=$(btrfs-map-logical -l $((L * 4096)) {dev} | "
        "awk '/physical/ {print $6; exit}') && "
        "dd if=/dev/zero of={dev} bs=4096 seek=$((P / 4096)) count=1 conv=notrunc",
        "fs-corruption",
        "a data block zeroed under its checksum: scrub fails",
    ),
    Case(
        "ext4-deleted-inode",
        "ext4-overlay2",
        STORE % ("overlay2", "overlay2/l") + " && echo x > /mnt/overlay2/l/f && umount /mnt && "
        "debugfs -w -R 'clri /overlay2/l/f' {dev} && mount {dev} /mnt && "
        "{ ls -l /mnt/overlay2/l/ || true; } && umount /mnt",
        "fs-corruption",
        "a file's inode cleared under its name, then looked up: ext4 and fsck see it",
    ),
)


def record(series: str, case: Case) -> Path:
    with tempfile.TemporaryDirectory(prefix="crashtest-golden-") as td:
        disk = make_test_disk(BACKENDS[case.backend], Path(td) / "disk.img")
        report = check_image(disk, SERIES[series], before=case.before)
    others = [v for v in report.violations if v.check != "kernel.console"]
    header = [
        f"# kernel: {report.kernel} ({SERIES[series]})",
        f"# case: {case.name}: {case.about}",
        f"# others: {'clean' if is_clean(others) else 'failing'}"
        + "".join(sorted({f" {v.check}" for v in others if v.cls != "leak"})),
        f"# expect: {case.expect}",
    ]
    out = OUT / series / f"{case.name}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header) + "\n" + report.console.rstrip("\n") + "\n")
    return out


def main(argv: list[str]) -> int:
    for arg in argv or list(SERIES):
        series, _, only = arg.partition("/")
        for case in CASES:
            if only in ("", case.name):
                print(record(series, case), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
