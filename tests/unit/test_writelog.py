import os
import struct
import subprocess
from pathlib import Path

import pytest

from harness.writelog.format import LogError, read_log
from harness.writelog.replay import Replayer
from harness.writelog.states import (
    CrashState,
    crash_states,
    epochs,
    fingerprint,
    parse_state_id,
    select_states,
)
from tests.logfactory import LogBuilder

SS = 512


def blk(byte: int, sectors: int = 1) -> bytes:
    return bytes([byte]) * (SS * sectors)


def sample_log(tmp: Path) -> Path:
    b = LogBuilder()
    b.write(0, blk(1)).write(8, blk(2, 2)).flush()  # epoch 0
    b.write(0, blk(3)).write(16, blk(4, 16)).discard(8, 2)  # epoch 1 (open tail)
    b.write(24, blk(5)).flush()
    b.write(32, blk(6, 8)).write(40, blk(7))  # epoch 2, no flush
    return b.save(tmp / "w.log")


def test_reads_entries_and_flags(tmp_path: Path) -> None:
    log = read_log(sample_log(tmp_path))
    assert log.sectorsize == SS and len(log.entries) == 10
    assert [e.flags for e in log.entries][:3] == [0, 0, 1]
    assert log.data(log.entries[1]) == blk(2, 2)
    assert log.entries[5].is_discard and not log.entries[5].is_write


def test_entries_past_superblock_count_are_read(tmp_path: Path) -> None:
    """A power cut leaves entries the superblock does not count yet."""
    path = (
        LogBuilder()
        .write(0, blk(1))
        .flush()
        .write(8, blk(2))
        .write(9, blk(3))
        .save(tmp_path / "w.log", nr_entries=2)
    )
    log = read_log(path)
    assert log.nr_entries_super == 2 and len(log.entries) == 4


def test_torn_tail_after_the_counted_entries_is_dropped(tmp_path: Path) -> None:
    path = (
        LogBuilder()
        .write(0, blk(1))
        .flush()
        .write(8, blk(2, 4))
        .save(tmp_path / "w.log", nr_entries=2)
    )
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 100)  # the last write's data is cut short
    assert len(read_log(path).entries) == 2


def test_truncated_counted_entry_names_the_offset(tmp_path: Path) -> None:
    path = LogBuilder().write(0, blk(1)).write(8, blk(2, 4)).save(tmp_path / "w.log")
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 100)
    with pytest.raises(
        LogError,
        match=r"offset 1536: corrupted: entry 1 claims 2048 data "
        r"bytes past the end",
    ):
        read_log(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"ELF\x7f" + d[4:], "offset 0: bad magic"),
        (lambda d: d[:8] + struct.pack("<Q", 7) + d[16:], "offset 8: unsupported version 7"),
        (lambda d: d[:24] + struct.pack("<I", 3000) + d[28:], "offset 24: bad sector size 3000"),
        (lambda d: d[:10], "offset 0: too short"),
        (
            lambda d: d[: 512 + 16] + struct.pack("<Q", 0x400) + d[512 + 24 :],
            "offset 512: corrupted: unknown flags 0x400",
        ),
    ],
)
def test_foreign_or_corrupted_logs_are_clear_errors(tmp_path: Path, mutate, message) -> None:  # type: ignore[no-untyped-def]
    path = sample_log(tmp_path)
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(LogError, match=message):
        read_log(path)


def test_write_past_the_device_is_caught(tmp_path: Path) -> None:
    path = LogBuilder().write(10_000, blk(1)).save(tmp_path / "w.log")
    with pytest.raises(LogError, match="past the end of the 4096-byte device"):
        read_log(path, device_bytes=4096)


def test_epochs_split_at_flushes(tmp_path: Path) -> None:
    eps = epochs(read_log(sample_log(tmp_path)))
    assert [len(e.entries) for e in eps] == [2, 4, 2]
    assert [e.first_entry for e in eps] == [0, 3, 8]


def test_states_are_deterministic_and_within_budget(tmp_path: Path) -> None:
    log = read_log(sample_log(tmp_path))
    _, a = crash_states(log, 1, 100)
    _, b = crash_states(log, 1, 100)
    assert [s.id for s in a] == [s.id for s in b]
    ids = {s.subset for s in a if s.epoch == 0}
    assert ids == {"none", "s1", "s2"}  # small epochs are exhaustive
    assert any(s.subset.startswith("t") for s in a)  # a torn write
    _, few = crash_states(log, 1, 5)
    assert len(few) == 5 and [s.epoch for s in few] == sorted(s.epoch for s in few)


def test_state_id_round_trip() -> None:
    st = parse_state_id("abc123:e4:t2.8")
    assert st == CrashState("abc123", 4, "t2.8") and st.id == "abc123:e4:t2.8"
    with pytest.raises(Exception, match="expected DIGEST"):
        parse_state_id("nonsense")


def qemu_read(img: Path, offset: int, length: int) -> bytes:
    raw = img.with_suffix(".raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(img), str(raw)], check=True)
    with raw.open("rb") as f:
        f.seek(offset)
        return f.read(length)


def test_replay_builds_states_forward_without_touching_shared_files(tmp_path: Path) -> None:
    path = sample_log(tmp_path)
    log = read_log(path)
    origin = tmp_path / "origin.img"
    origin.write_bytes(blk(0xEE, 64))
    before = (origin.read_bytes(), path.read_bytes())
    eps = epochs(log)
    rep = Replayer(log, origin, tmp_path / "work")
    # epoch 1, keep only the discard (index 2 of the epoch): epoch 0 applied, then zeroes
    s1 = rep.build(eps, CrashState(log.digest, 1, "s4"), tmp_path / "s1.qcow2")
    img = qemu_read(s1, 0, 64 * SS)
    assert img[0:SS] == blk(1)  # epoch 0's write
    assert img[8 * SS : 10 * SS] == bytes(2 * SS)  # discard replayed as zeroes
    assert img[16 * SS : 17 * SS] == blk(0xEE)  # dropped write of epoch 1
    # torn: write 1 of epoch 1 (16 sectors) keeps its first 8 sectors only
    s2 = rep.build(eps, CrashState(log.digest, 1, "t1.8"), tmp_path / "s2.qcow2")
    img = qemu_read(s2, 0, 64 * SS)
    assert img[0:SS] == blk(3)
    assert img[16 * SS : 24 * SS] == blk(4, 8) and img[24 * SS : 32 * SS] == blk(0xEE, 8)
    assert (origin.read_bytes(), path.read_bytes()) == before
    # forward replay: the base got epoch 0 once; naive would replay it for each state
    assert rep.stats.base_bytes == 3 * SS
    assert rep.stats.naive_bytes == 2 * 3 * SS + rep.stats.state_bytes
    with pytest.raises(Exception, match="walk forward"):
        rep.advance(eps, 0)
    os.sync()


def test_cli_lists_states_and_rejects_a_foreign_log(tmp_path: Path) -> None:
    import json
    import sys

    path = sample_log(tmp_path)
    ok = subprocess.run(
        [sys.executable, "-m", "harness.cli", "states", str(path), "--budget", "4"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["entries"] == 10 and doc["epochs"] == 3 and len(doc["states"]) == 4
    # a bundle's compressed log reads the same
    subprocess.run(["zstd", "-q", str(path), "-o", str(tmp_path / "writes.log.zst")], check=True)
    packed = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "states",
            str(tmp_path / "writes.log.zst"),
            "--budget",
            "4",
        ],
        capture_output=True,
        text=True,
    )
    assert packed.returncode == 0, packed.stderr
    assert json.loads(packed.stdout)["states"] == doc["states"]
    foreign = tmp_path / "foreign.log"
    foreign.write_bytes(b"\x7fELF" + bytes(4096))
    bad = subprocess.run(
        [sys.executable, "-m", "harness.cli", "states", str(foreign)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"crashtest: bad input: write log {foreign}: offset 0: bad magic 0x464c457f "
        "(not a dm-log-writes/blklogwrites log)"
    ]


def test_never_flushed_log_needs_its_sector_size(tmp_path: Path) -> None:
    """blklogwrites writes the superblock only at a flush."""
    path = LogBuilder().write(0, blk(1)).write(8, blk(2)).save(tmp_path / "w.log")
    data = bytearray(path.read_bytes())
    data[:SS] = bytes(SS)
    path.write_bytes(bytes(data))
    with pytest.raises(LogError, match="offset 0: bad magic 0x0"):
        read_log(path)
    assert len(read_log(path, unflushed_sectorsize=SS).entries) == 2


def test_a_removal_in_flight_withdraws_the_promise_for_replayed_states() -> None:
    from harness.model import Promise
    from harness.writelog.record import Event, Recording

    img = Promise("image", "scratch", "build", "sync", run="true")
    gone = Promise("absent-image", "scratch", "churn", "sync")
    rec = Recording(
        Path("o"),
        Path("d"),
        Path("l"),
        [
            Event("build", 10, [img], started=0),
            Event("churn", 30, [gone], started=20, withdraws=[gone.key()]),
        ],
        0.0,
    )
    assert rec.promises_at(15, 20) == [img]  # churn's writes cannot be in the state
    assert rec.promises_at(15, 25) == []  # they may be: exists or not, both fine
    assert rec.promises_at(20, 29) == []
    assert rec.promises_at(30, 40) == [gone]  # churn's sync is in: it stays removed


def test_a_barrier_that_issued_no_flush_is_judged_in_the_epoch_it_returned_in() -> None:
    from harness.model import Promise
    from harness.writelog.record import Event, Recording

    f = Promise("file", "disk:/f", "fsync", "fsync", sha256="a" * 64)
    # The fsync returned at entry 12; the epoch around it runs from 10 to the flush
    # at 20: a cut right after the return loses everything since entry 10.
    rec = Recording(Path("o"), Path("d"), Path("l"), [Event("fsync", 12, [f], started=5)], 0.0)
    assert rec.promises_at(10, 20) == [f]
    assert rec.promises_at(0, 10) == []  # that epoch ended before the fsync returned
    # A correct fsync ends with its flush (entry 11): it counts from the next epoch.
    ok = Recording(Path("o"), Path("d"), Path("l"), [Event("fsync", 12, [f], started=5)], 0.0)
    assert ok.promises_at(0, 11) == [] and ok.promises_at(12, 30) == [f]


def test_states_that_are_the_same_disk_share_a_fingerprint(tmp_path: Path) -> None:
    """A write wholly overwritten by a later kept write does not show; keeping all
    of an epoch is the next epoch's flush boundary; anything else differs."""
    b = LogBuilder()
    b.write(0, blk(1)).flush()  # epoch 0
    b.write(8, blk(2)).write(8, blk(3)).write(16, blk(4, 2))  # epoch 1
    b.flush()
    b.write(32, blk(5))  # epoch 2
    log = read_log(b.save(tmp_path / "w.log"))
    eps = epochs(log)

    def fp(epoch: int, subset: str) -> object:
        return fingerprint(CrashState(log.digest, epoch, subset), eps)

    assert fp(1, "s3") == fp(1, "s2")  # write 0 hidden under write 1 (same sector)
    assert fp(1, "s1") != fp(1, "s2")
    assert fp(1, "s7") == fp(2, "none")  # all of epoch 1 = epoch 2's boundary
    assert fp(1, "t2.1") != fp(1, "p2")  # a torn write is its own state
    sel = select_states(log, 1, 1000)
    ids = [s.id for s in sel.states]
    assert sel.groups == len(ids) < sel.candidates == sel.covered
    for rep, others in sel.stands_for.items():  # each checked state stands for its twins
        assert rep in ids and not set(others) & set(ids)
    assert sel.to_json()["state_reduction_ratio"] > 1


def test_a_small_budget_checks_every_flush_boundary_first(tmp_path: Path) -> None:
    b = LogBuilder()
    for k in range(12):  # 12 epochs of 3 writes: 12 boundaries among ~90 states
        b.write(8 * k, blk(k)).write(200 + 8 * k, blk(k, 2)).write(400, blk(k)).flush()
    log = read_log(b.save(tmp_path / "w.log"))
    sel = select_states(log, 1, 20)
    boundaries = {s.id for s in sel.states if s.subset == "none"}
    assert len(sel.states) == 20 and sel.groups > 20
    # Epoch 0's boundary is the untouched disk; the rest are one per flush.
    assert len(boundaries) == len(epochs(log)) == 13
    sel = select_states(log, 1, 5)  # fewer than the boundaries: only boundaries
    assert all(s.subset == "none" for s in sel.states) and len(sel.states) == 5
