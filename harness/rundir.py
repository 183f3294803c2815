"""One run's life cycle, the same for every driver (campaign, compare, corpus):
OUT checked before anything starts, a run id and its directory, documents written
atomically, a run that is interrupted or fails leaves its document marked
incomplete (and the exception goes on), and OUT/latest names the newest complete
run."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import InputError

log = logging.getLogger(__name__)

MIN_FREE_BYTES = 2 << 30  # a unit's disks and write log, before compression


def require_out(out: Path) -> None:
    """OUT must be a directory this user can write, with room for a unit."""
    if out.exists() and not out.is_dir():
        raise InputError(f"OUT {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".crashtest-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InputError(f"OUT {out}: cannot write results there ({e.strerror})") from e
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise InputError(
            f"OUT {out}: only {free >> 20} MiB free; a campaign needs at least "
            f"{MIN_FREE_BYTES >> 20} MiB for its disks and write logs"
        )


def write_atomic(path: Path, text: str | bytes) -> None:
    """Readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(text, bytes):
            tmp.write_bytes(text)
        else:
            tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, doc: object) -> None:
    write_atomic(path, json.dumps(doc, indent=1) + "\n")


def point_latest(parent: Path, run_dir: Path) -> None:
    """Atomically repoint PARENT/latest at the newest complete run."""
    tmp = parent / ".latest.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, parent / "latest")


def new_run_id(seed: int, suffix: str = "") -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-s{seed}" + suffix


def why_stopped(e: BaseException) -> str:
    return "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"


class Run:
    """A run directory under `parent` (OUT, OUT/compare, OUT/corpus): made new, or
    an incomplete one taken up again (`resume`)."""

    def __init__(self, parent: Path, seed: int, suffix: str = "", resume: Path | None = None):
        self.parent = parent
        if resume is not None:
            self.dir = resume
        else:
            self.dir = parent / new_run_id(seed, suffix)
            self.dir.mkdir(parents=True, exist_ok=False)
        self.id = self.dir.name

    @contextmanager
    def lifetime(self, write: Callable[[str], None]) -> Iterator[Run]:
        """Around the run's work: `write(incomplete)` writes its documents, with
        why it stopped when it did not finish (and the exception goes on), with ""
        when it did; then `latest` names it."""
        try:
            yield self
        except BaseException as e:
            try:
                write(why_stopped(e))
            except Exception as w:  # what finished stays on disk; the first failure is the story
                log.warning("could not write the incomplete results of %s (%s)", self.dir, w)
            raise
        write("")
        point_latest(self.parent, self.dir)
