"""Build crash states from a write log without touching shared files.

One private base image walks the log forward, epoch by epoch (each write applied
once). A state of epoch k is a throwaway qcow2 overlay over the base (which holds
every epoch < k) plus that state's subset of epoch k, written with qemu-io.
Total bytes written: about log size + N x (part of one epoch), not N x log size.
Discards and write-zeroes are replayed as explicit zeroes.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness import hosttools
from harness.errors import HarnessError
from harness.writelog.format import Entry, WriteLog
from harness.writelog.states import CrashState, Epoch

ZERO_CHUNK = 1 << 20


@dataclass
class ReplayStats:
    base_bytes: int = 0  # written into the base while walking forward
    state_bytes: int = 0  # written into state overlays
    naive_bytes: int = 0  # what replaying from the start for every state would write
    states: int = 0

    @property
    def replay_bytes(self) -> int:
        return self.base_bytes + self.state_bytes


@dataclass
class Replayer:
    log: WriteLog
    origin: Path  # the disk as it was when recording started
    workdir: Path
    stats: ReplayStats = field(default_factory=ReplayStats)

    def __post_init__(self) -> None:
        hosttools.require("qemu-img", "qemu-io")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.base = self.workdir / "base.img"
        subprocess.run(["cp", "--sparse=always", str(self.origin), str(self.base)], check=True)
        self.applied = 0  # epochs fully applied to the base
        self._prefix_bytes = 0  # bytes of epochs < applied (for the naive count)
        self._data_dir = self.workdir / "data"
        self._data_dir.mkdir(exist_ok=True)

    # ---------------------------------------------------------------- base

    def _entry_bytes(self, e: Entry, sectors: int | None = None) -> int:
        return (sectors if sectors is not None else e.nr_sectors) * self.log.sectorsize

    def advance(self, eps: list[Epoch], to_epoch: int) -> None:
        """Apply whole epochs to the base until it holds every epoch < to_epoch."""
        if to_epoch < self.applied:
            raise HarnessError(
                f"replay must walk forward (at epoch {self.applied}, asked for {to_epoch})"
            )
        if to_epoch == self.applied:
            return
        fd = os.open(self.base, os.O_WRONLY)
        try:
            with self.log.path.open("rb") as src:
                for ep in eps[self.applied : to_epoch]:
                    for e in ep.entries:
                        n = self._entry_bytes(e)
                        off = e.sector * self.log.sectorsize
                        if e.is_discard:
                            for pos in range(0, n, ZERO_CHUNK):
                                os.pwrite(fd, bytes(min(ZERO_CHUNK, n - pos)), off + pos)
                        else:
                            src.seek(e.data_offset)
                            os.pwrite(fd, src.read(n), off)
                        self.stats.base_bytes += n
                        self._prefix_bytes += n
        finally:
            os.close(fd)
        self.applied = to_epoch
        # Data files of older epochs are no longer needed.
        for f in self._data_dir.iterdir():
            f.unlink()

    # ---------------------------------------------------------------- states

    def _data_file(self, e: Entry) -> Path:
        path = self._data_dir / f"{e.index}.bin"
        if not path.exists():
            with self.log.path.open("rb") as src:
                src.seek(e.data_offset)
                path.write_bytes(src.read(self._entry_bytes(e)))
        return path

    def build(self, eps: list[Epoch], state: CrashState, out: Path) -> Path:
        """A qcow2 overlay holding the crash state; the base and the log stay as they are."""
        epoch = eps[state.epoch]
        self.advance(eps, state.epoch)
        hosttools.qcow2_overlay(self.base, out)
        cmds: list[str] = []
        written = 0
        for e, sectors in state.kept(epoch):
            n = self._entry_bytes(e, sectors)
            off = e.sector * self.log.sectorsize
            if e.is_discard:
                cmds.append(f"write -q -z {off} {n}")
            else:
                cmds.append(f"write -q -s {self._data_file(e)} {off} {n}")
            written += n
        # Many small commands per process; qemu-io opens the image once per call.
        for i in range(0, len(cmds), 200):
            argv = ["qemu-io", "-f", "qcow2"]
            for c in cmds[i : i + 200]:
                argv += ["-c", c]
            hosttools.run([*argv, str(out)], f"qemu-io replay of {state.id}")
        self.stats.state_bytes += written
        self.stats.naive_bytes += self._prefix_bytes + written
        self.stats.states += 1
        return out
