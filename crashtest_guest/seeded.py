"""Seeded file content, the same on the host (which knows what each file must hold)
and in the guest (which writes it): a workload ships a few names and sizes instead
of megabytes of bytes.

    python3 -m crashtest_guest.seeded DIR PATH:SIZE:KEY...
"""

from __future__ import annotations

import hashlib
import os
import sys


def seeded_bytes(key: str, size: int) -> bytes:
    """`size` bytes that only `key` determines (SHAKE-256 as a stream)."""
    return hashlib.shake_256(key.encode()).digest(size)


def write(root: str, specs: list[str]) -> None:
    for spec in specs:
        path, size, key = spec.split(":", 2)
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(seeded_bytes(key, int(size)))


if __name__ == "__main__":
    write(sys.argv[1], sys.argv[2:])
