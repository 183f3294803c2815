"""crashtest's own version: the package's, and the commit when run from a git
checkout (bundles and reports name it, so a result says what produced it)."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1]


@cache
def crashtest_version() -> str:
    try:
        base = version("crashtest")
    except PackageNotFoundError:
        base = "0+unknown"
    try:
        commit = subprocess.run(
            [
                "git",
                "-C",
                str(SOURCE),
                "describe",
                "--always",
                "--dirty",
                "--abbrev=12",
                "--exclude",
                "*",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return f"{base}+g{commit}" if commit else base
