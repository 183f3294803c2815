from pathlib import Path

from harness.oracles.console import FAILURE_RE, excerpt, failures

GOLDEN = Path(__file__).parents[1] / "golden"


def titles(name: str) -> list[str]:
    return [f.title for f in failures((GOLDEN / name).read_text())]


def test_clean_boot_has_no_failures() -> None:
    text = (GOLDEN / "clean-boot-ext4.log").read_text()
    assert "EXT4-fs (vdb): recovery complete" in text  # a real log, recovery included
    assert failures(text) == []


def test_btrfs_oops_log_titles_and_dedup() -> None:
    found = failures((GOLDEN / "oops-btrfs.log").read_text())
    got = {f.title: f.count for f in found}
    assert got["btrfs transid"] == 3
    assert "WARNING: fs/btrfs/extent-tree.c:" in got
    assert "BTRFS error: vdb" in got
    assert any(t.startswith("BUG: kernel NULL pointer dereference") for t in got)
    assert any(t.startswith("Oops") for t in got)
    # first appearance order
    assert found[0].title == "btrfs transid"


def test_ext4_jbd2_hung_task_panic() -> None:
    got = titles("ext4-error.log")
    assert got == [
        "EXT4-fs error: vdb",
        "JBD2 error: Invalid checksum recovering data block in log",
        "hung task: dockerd:",
        "Kernel panic: Fatal exception",
    ]


def test_ext4_errors_deduplicate_with_count() -> None:
    found = failures((GOLDEN / "ext4-error.log").read_text())
    assert found[0].count == 2 and found[0].lineno == 3


def test_xfs_corruption_and_recovery_failure() -> None:
    got = titles("xfs-corruption.log")
    assert got == ["XFS corruption", "XFS log recovery"]


def test_failure_regex_matches_live_lines() -> None:
    assert FAILURE_RE.search("[ 1.0] kernel BUG at fs/ext4/inode.c:123!")
    assert not FAILURE_RE.search("[ 1.0] EXT4-fs (vdb): mounted filesystem")


def test_excerpt_is_centered_on_the_line() -> None:
    text = "\n".join(f"l{i}" for i in range(1, 50))
    ex = excerpt(text, 20, before=2, after=2)
    assert ex.splitlines() == ["l18", "l19", "l20", "l21", "l22"]


def test_dockerd_log_signs_are_picked_out() -> None:
    from harness.oracles.docker import log_signs

    log = (
        'time="x" level=info msg="Loading containers: done."\n'
        'time="x" level=debug msg="Failed to load layer sha256:ab: layer does not exist"\n'
        'time="x" level=info msg="API listen on /var/run/docker.sock"\n'
    )
    assert log_signs(log) == (
        'time="x" level=debug msg="Failed to load layer sha256:ab: layer does not exist"'
    )


def test_lagging_btrfs_mirror_superblock_is_not_a_failure_but_primary_is() -> None:
    mirror = (
        "[    5.99] BTRFS error (device vdb): super block at physical 67108864 devid 1 "
        "has bad generation 6 expect 7"
    )
    primary = mirror.replace("67108864", "65536")
    assert failures(mirror) == []
    assert [f.title for f in failures(primary)] == ["BTRFS error: vdb"]
