"""Deliberate damage for self-tests: each proves an oracle catches what it claims to."""

from __future__ import annotations

import shlex

from harness.errors import HarnessError
from harness.guest.agent import AgentClient
from harness.storage.backends import DOCKER_ROOT, Backend

DRIVER_DIRS = (f"{DOCKER_ROOT}/overlay2", f"{DOCKER_ROOT}/btrfs/subvolumes")


def zero_layer_file(agent: AgentClient, backend: Backend, path_in_image: str) -> list[str]:
    """Truncate every copy of an image file in docker's driver directories to 0 bytes:
    the "0-byte files in committed layers after power loss" failure, made on purpose."""
    pattern = "*/" + path_in_image.lstrip("/")
    res = agent.run(f"find {' '.join(DRIVER_DIRS)} -path {shlex.quote(pattern)} -type f "
                    "2>/dev/null", timeout=120)
    hits = res.stdout.split()
    if not hits:
        raise HarnessError(f"tamper: no copy of {path_in_image} under the {backend.driver} store")
    agent.run("truncate -s 0 " + " ".join(shlex.quote(h) for h in hits), timeout=60)
    return hits
