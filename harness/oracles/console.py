"""Console oracle: kernel failures in a console log, titled and deduplicated.

Pure: text in, findings out. The prefixes are the ones fstests and syzkaller
treat as failures, plus each filesystem's corruption messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.model import Violation

# (title template source, regex). The first group, if any, refines the title.
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("kernel BUG", r"kernel BUG at (\S+)"),
    ("BUG", r"\bBUG: ([^\n]+)"),
    ("WARNING", r"\bWARNING: (?:CPU: \d+ PID: \d+ at )?(\S+)"),
    ("Oops", r"\bOops: ([^\n]*)"),
    ("general protection fault", r"general protection fault"),
    ("Kernel panic", r"Kernel panic - not syncing: ([^\n]+)"),
    ("UBSAN", r"UBSAN: ([^\n]+)"),
    ("lockdep", r"possible (?:recursive locking|circular locking dependency) detected"),
    ("RCU", r"suspicious RCU usage"),
    ("hung task", r"INFO: task (\S+) blocked for more than"),
    ("busy inodes", r"VFS: Busy inodes after unmount"),
    ("EXT4-fs error", r"EXT4-fs error \(device ([^)]+)\)"),
    ("JBD2 error", r"JBD2: ([^\n]*(?:[Ee]rror|[Ff]ail|[Cc]orrupt|[Ii]nvalid)[^\n]*)"),
    ("btrfs transid", r"parent transid verify failed"),
    ("btrfs checksum", r"(?:checksum verify failed|csum failed)"),
    ("transaction aborted", r"Transaction aborted"),
    ("BTRFS error", r"BTRFS:? (?:error|critical) \(device ([^) ]+)"),
    ("XFS corruption", r"XFS \([^)]+\): (?:Metadata corruption|Corruption)"),
    ("XFS log recovery", r"XFS \([^)]+\): Log recovery failed|log mount(?:/recovery)? failed"),
    ("XFS shutdown", r"XFS \([^)]+\): (?:Filesystem has been shut down|xfs_do_force_shutdown)"),
    ("XFS error", r"XFS \(([^)]+)\): [^\n]*(?:[Ee]rror|[Ff]ailed|[Cc]orrupt)"),
)

_COMPILED = tuple((title, re.compile(rx)) for title, rx in _PATTERNS)
FAILURE_RE = re.compile("|".join(f"(?:{rx})" for _, rx in _PATTERNS))

# Noise that matches a prefix but is not a failure. btrfs writes its mirror
# superblocks (at 64 MiB and 256 GiB) without FUA, only the primary with it, so a
# lost disk cache may leave a mirror one generation behind: by design, and scrub
# reports it while finishing with status 0 (up to 6.x `super block at ...`, from
# 6.18/7.x on `scrub: super block at ...`; tests/golden holds each series' lines).
_IGNORE = re.compile(
    r"BTRFS error \(device [^)]+\): (?:unable to find logical -1|"
    r"(?:scrub: )?super block at physical (?:67108864|274877906944) devid \d+ "
    r"has bad generation)|"
    r"WARNING: (?:Spectre|MDS|TAA|MMIO)"
)

# Titles of the catch-all patterns: a filesystem's error line whose words the
# oracle does not recognise as a known sign of damage. Alone (every other check
# of the state passed) it is `console-only`: seen and triaged, not counted as
# corruption, so a new kernel's new wording cannot pass for a bug or hide one.
UNRECOGNISED = ("BTRFS error", "EXT4-fs error", "XFS error")


@dataclass(frozen=True)
class ConsoleFailure:
    title: str
    line: str
    lineno: int
    count: int = 1


def _title(line: str) -> str | None:
    if _IGNORE.search(line):
        return None
    for title, rx in _COMPILED:
        m = rx.search(line)
        if m:
            detail = m.group(1) if m.groups() and m.group(1) else ""
            # Strip per-boot noise (addresses, offsets) so repeats deduplicate.
            detail = re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+|0x[0-9a-f]+|\b\d{3,}\b", "", detail)
            detail = " ".join(detail.split())
            return f"{title}: {detail}" if detail else title
    return None


def failures(text: str) -> list[ConsoleFailure]:
    """Each distinct failure once, in order of first appearance, with a count."""
    found: dict[str, ConsoleFailure] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"^\[\s*\d+\.\d+\]\s*", "", raw.strip())
        title = _title(line)
        if title is None:
            continue
        if title in found:
            prev = found[title]
            found[title] = ConsoleFailure(prev.title, prev.line, prev.lineno, prev.count + 1)
        else:
            found[title] = ConsoleFailure(title, line, lineno)
    return list(found.values())


IN_RECOVERY = "the kernel reports no failure in recovery"
_FS_TITLES = ("EXT4-fs", "JBD2", "btrfs", "BTRFS", "transaction aborted", "XFS", "busy inodes")
# A generic BUG/Oops/WARNING is the filesystem's when its report names filesystem code.
_FS_CODE = re.compile(
    r"\b(?:ext4|jbd2|btrfs|xfs|ovl|overlayfs)_\w+|fs/(?:ext4|jbd2|btrfs|"
    r"xfs|overlayfs)/"
)


def fault_of(failure: ConsoleFailure, context: str) -> str:
    if failure.title.startswith(_FS_TITLES) or _FS_CODE.search(context):
        return "filesystem"
    return "kernel"


def unrecognised(failure: ConsoleFailure) -> bool:
    return failure.title.split(":", 1)[0] in UNRECOGNISED


def violations(
    text: str, state: str, promise: str = IN_RECOVERY, others_clean: bool = False
) -> list[Violation]:
    """One verdict per distinct kernel failure in `text`: fs-corruption, or
    console-only for an unrecognised filesystem error line when `others_clean`
    (every other check of the state passed)."""
    found = []
    for f in failures(text):
        context = excerpt(text, f.lineno)
        evidence = {"console": context, "failure": f"{f.title} (x{f.count})"}
        if others_clean and unrecognised(f):
            found.append(
                Violation(
                    "console-only",
                    state,
                    "a filesystem error on the console is confirmed by a "
                    "check (mount, fsck, scrub, a promise), or is by-design noise crashtest knows",
                    evidence,
                    "unknown",
                    "kernel.console",
                    f.title,
                )
            )
        else:
            found.append(
                Violation(
                    "fs-corruption",
                    state,
                    promise,
                    evidence,
                    fault_of(f, context),
                    "kernel.console",
                    f.title,
                )
            )
    return found


def excerpt(text: str, lineno: int, before: int = 5, after: int = 15) -> str:
    lines = text.splitlines()
    return "\n".join(lines[max(0, lineno - 1 - before) : lineno + after])
