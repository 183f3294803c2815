"""Builds write logs in the dm-log-writes/blklogwrites format for tests."""

import struct
from pathlib import Path

MAGIC = 0x6A736677736872


class LogBuilder:
    def __init__(self, sectorsize: int = 512) -> None:
        self.ss = sectorsize
        self.body = bytearray()
        self.count = 0

    def _entry(self, sector: int, nr: int, flags: int, data: bytes = b"") -> "LogBuilder":
        head = struct.pack("<QQQQ", sector, nr, flags, 0)
        self.body += head + bytes(self.ss - len(head)) + data
        self.count += 1
        return self

    def write(self, sector: int, data: bytes) -> "LogBuilder":
        assert len(data) % self.ss == 0
        return self._entry(sector, len(data) // self.ss, 0, data)

    def flush(self) -> "LogBuilder":
        return self._entry(0, 0, 1)

    def discard(self, sector: int, nr: int) -> "LogBuilder":
        return self._entry(sector, nr, 4)

    def save(self, path: Path, nr_entries: int | None = None) -> Path:
        sup = struct.pack(
            "<QQQI", MAGIC, 1, self.count if nr_entries is None else nr_entries, self.ss
        )
        path.write_bytes(sup + bytes(self.ss - len(sup)) + bytes(self.body))
        return path
