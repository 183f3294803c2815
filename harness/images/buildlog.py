"""Progress of a long kernel build (30-40 minutes on two cores): files compiled, of
about how many (the last full build of the same series and config counted them),
elapsed time and an estimate. On a terminal one status line redrawn in place
(rich), else a plain line a minute, as the campaign display does."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from harness.errors import HarnessError
from harness.images.cache import cache_root
from harness.rundir import write_atomic

log = logging.getLogger(__name__)

# kbuild's quiet lines for a compiled object: "  CC      fs/btrfs/inode.o",
# "  CC [M]  fs/xfs/xfs_log.o", "  AS      arch/x86/entry/entry_64.o"
_COMPILED = re.compile(r"^\s+(?:CC|AS)(?: \[M\])?\s+\S+\.o$")
PLAIN_EVERY_S = 60.0
COUNTS = "kbuild-counts.json"


def tree_series(src: Path) -> str:
    """`7.2` from the tree's top Makefile (VERSION, PATCHLEVEL)."""
    try:
        head = (src / "Makefile").read_text()[:2000]
    except OSError:
        return ""
    v = re.search(r"^VERSION = (\d+)", head, re.M)
    p = re.search(r"^PATCHLEVEL = (\d+)", head, re.M)
    return f"{v.group(1)}.{p.group(1)}" if v and p else ""


def expected_files(key: str) -> int:
    try:
        return int(json.loads((cache_root() / COUNTS).read_text()).get(key, 0))
    except (OSError, ValueError):
        return 0


def remember_files(key: str, count: int) -> None:
    path = cache_root() / COUNTS
    try:
        counts = json.loads(path.read_text())
    except (OSError, ValueError):
        counts = {}
    counts[key] = count
    write_atomic(path, json.dumps(counts, indent=1, sort_keys=True) + "\n")


def status_line(label: str, done: int, expected: int, elapsed: float) -> str:
    line = f"{label}: {done} files compiled"
    if expected:
        line += f" of about {expected}"
    line += f", {elapsed / 60:.1f} min"
    if expected and done:
        left = max(0.0, elapsed * (expected - done) / done)
        line += f", about {left / 60:.0f} min left" if done < expected else ", linking"
    return line


def run_build(argv: Sequence[str], label: str, timeout: float, expected: int = 0) -> int:
    """Run a kbuild command showing its progress; the number of files it compiled.
    A failure raises a HarnessError with the build's last error line."""
    console = Console(stderr=False)
    tty = console.is_terminal
    start = last_plain = time.monotonic()
    done = 0
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    assert proc.stdout is not None
    status = console.status(status_line(label, 0, expected, 0.0)) if tty else None
    try:
        if status is not None:
            status.start()
        for raw in proc.stdout:
            tail.append(raw.rstrip("\n"))
            if _COMPILED.match(raw.rstrip("\n")):
                done += 1
            now = time.monotonic()
            if now - start > timeout:
                proc.kill()
                raise HarnessError(f"{label}: timed out after {timeout:.0f}s")
            if status is not None:
                status.update(status_line(label, done, expected, now - start))
            elif now - last_plain >= PLAIN_EVERY_S:
                last_plain = now
                log.info(f"{status_line(label, done, expected, now - start)}")
        rc = proc.wait()
    finally:
        if status is not None:
            status.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if rc != 0:
        errors = [t for t in tail if "error" in t.lower()] or list(tail)[-1:] or ["no output"]
        raise HarnessError(f"{label} failed (exit {rc}): {errors[0].strip()}")
    log.info(f"{label}: {done} files compiled in {(time.monotonic() - start) / 60:.1f} min")
    return done
