"""Where built guest images live, and the recipe hashes that name them."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[2] / "images"


def cache_root() -> Path:
    env = os.environ.get("CRASHTEST_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "crashtest"
    base.mkdir(parents=True, exist_ok=True)
    return base


def recipe_digest(*parts: str | bytes | Path) -> str:
    """A short stable hash of a recipe: strings, bytes and the content of files."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            h.update(part.name.encode() + b"\0" + part.read_bytes())
        elif isinstance(part, str):
            h.update(part.encode())
        else:
            h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def read_list(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """Build into a temp dir beside `final` and rename it into place only on success,
    so an interrupted build never leaves a half-written image in the cache. Two
    processes building the same recipe at once: the first rename wins, the other
    build is dropped (the same recipe, the same image)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        try:
            tmp.rename(final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
