"""Reader for the dm-log-writes format that QEMU's blklogwrites filter writes.

Layout (little endian): a superblock in log sector 0 {u64 magic, u64 version,
u64 nr_entries, u32 sectorsize}; then entries, each a header sector {u64 sector,
u64 nr_sectors, u64 flags, u64 data_len} followed by its data. Sector numbers and
counts are in units of the log's sector size (blklogwrites' `log-sector-size`).

A power cut leaves valid entries past the superblock's `nr_entries` (it is only
rewritten at flushes): those are read too, up to the first entry that is not whole.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError

MAGIC = 0x6A736677736872
VERSION = 1
FLUSH, FUA, DISCARD, MARK, METADATA = 1, 2, 4, 8, 16
KNOWN_FLAGS = FLUSH | FUA | DISCARD | MARK | METADATA
_SUPER = struct.Struct("<QQQI")
_ENTRY = struct.Struct("<QQQQ")


class LogError(InputError):
    """The file is not a usable write log; the message names the offset."""


@dataclass(frozen=True)
class Entry:
    index: int
    offset: int  # byte offset of the header in the log file
    sector: int  # in log sectors
    nr_sectors: int
    flags: int
    data_offset: int  # byte offset of the data in the log file (writes only)

    @property
    def is_flush(self) -> bool:
        return bool(self.flags & (FLUSH | FUA))

    @property
    def is_discard(self) -> bool:
        return bool(self.flags & DISCARD)

    @property
    def is_write(self) -> bool:
        return self.nr_sectors > 0 and not self.flags & (DISCARD | MARK)


@dataclass(frozen=True)
class WriteLog:
    path: Path
    sectorsize: int
    nr_entries_super: int  # what the superblock says
    entries: tuple[Entry, ...]  # everything valid, possibly more than nr_entries_super
    end_offset: int  # where the next entry would start
    digest: str  # identifies the log content read (header + entries)

    def data(self, entry: Entry) -> bytes:
        with self.path.open("rb") as fh:
            fh.seek(entry.data_offset)
            return fh.read(entry.nr_sectors * self.sectorsize)


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def read_log(
    path: Path, device_bytes: int | None = None, unflushed_sectorsize: int | None = None
) -> WriteLog:
    """Parse a write log. `device_bytes` bounds sector numbers (catches foreign logs).
    blklogwrites writes its superblock only at a flush: a log the guest never flushed
    has a zero superblock, readable only when the caller knows its sector size."""
    try:
        size = path.stat().st_size
        fh = path.open("rb")
    except OSError as e:
        raise LogError(f"write log {path}: {e.strerror}") from e
    with fh:
        head = fh.read(_SUPER.size)
        if len(head) < _SUPER.size:
            raise LogError(
                f"write log {path}: offset 0: too short for a superblock ({len(head)} bytes)"
            )
        magic, version, nr_entries, sectorsize = _SUPER.unpack(head)
        if head == bytes(_SUPER.size) and unflushed_sectorsize and size > unflushed_sectorsize:
            magic, version, sectorsize = MAGIC, VERSION, unflushed_sectorsize
        if magic != MAGIC:
            raise LogError(
                f"write log {path}: offset 0: bad magic {magic:#x} "
                f"(not a dm-log-writes/blklogwrites log)"
            )
        if version != VERSION:
            raise LogError(f"write log {path}: offset 8: unsupported version {version}")
        if sectorsize < 512 or sectorsize & (sectorsize - 1) or sectorsize > 1 << 16:
            raise LogError(f"write log {path}: offset 24: bad sector size {sectorsize}")
        entries: list[Entry] = []
        h = hashlib.sha256(struct.pack("<I", sectorsize))
        offset = sectorsize
        while offset + _ENTRY.size <= size:
            fh.seek(offset)
            raw = fh.read(_ENTRY.size)
            sector, nr_sectors, flags, data_len = _ENTRY.unpack(raw)
            idx = len(entries)
            within = idx < nr_entries  # the superblock vouches for this entry
            problem = _check(sector, nr_sectors, flags, data_len, sectorsize, device_bytes)
            if problem is None and raw == bytes(_ENTRY.size):
                problem = "empty entry header"
            if problem is None:
                data_bytes = (
                    _round_up(data_len, sectorsize)
                    if flags & MARK
                    else 0
                    if flags & (DISCARD | FLUSH) and not nr_sectors
                    else 0
                    if flags & DISCARD
                    else nr_sectors * sectorsize
                )
                if offset + sectorsize + data_bytes > size:
                    problem = (
                        f"entry {idx} claims {data_bytes} data bytes past the end "
                        f"of the file ({size} bytes)"
                    )
            if problem is not None:
                if within:
                    raise LogError(f"write log {path}: offset {offset}: corrupted: {problem}")
                break  # the tail a power cut left unfinished
            entries.append(Entry(idx, offset, sector, nr_sectors, flags, offset + sectorsize))
            h.update(raw)
            offset += sectorsize + data_bytes
        if len(entries) < nr_entries:
            raise LogError(
                f"write log {path}: offset {offset}: truncated: superblock "
                f"promises {nr_entries} entries, found {len(entries)}"
            )
    return WriteLog(path, sectorsize, nr_entries, tuple(entries), offset, h.hexdigest()[:12])


def _check(
    sector: int,
    nr_sectors: int,
    flags: int,
    data_len: int,
    sectorsize: int,
    device_bytes: int | None,
) -> str | None:
    if flags & ~KNOWN_FLAGS:
        return f"unknown flags {flags:#x}"
    if flags & MARK:
        return None if 0 < data_len <= sectorsize * 16 else f"bad mark length {data_len}"
    if data_len:
        return f"data_len {data_len} on a non-mark entry"
    if not flags & FLUSH and nr_sectors == 0:
        return "zero-length write"
    if device_bytes is not None and (sector + nr_sectors) * sectorsize > device_bytes:
        return (
            f"write at sector {sector} (+{nr_sectors}) lies past the end of the "
            f"{device_bytes}-byte device"
        )
    return None
