"""Deliberate damage for self-tests: each proves a check catches what it claims to.
Damage is a guest command run on the recovered tree before the checks."""

from __future__ import annotations

import shlex

from harness.storage.backends import DOCKER_ROOT

DRIVER_DIRS = (f"{DOCKER_ROOT}/overlay2", f"{DOCKER_ROOT}/btrfs/subvolumes")
INJECTIONS = ("zero-layer-file",)


def zero_layer_file(path_in_image: str) -> str:
    """Truncate every copy of an image file in docker's driver directories to 0 bytes:
    the "0-byte files in committed layers after power loss" failure, made on purpose.
    A state that holds no copy yet (cut before the image was built) is left alone."""
    pattern = shlex.quote("*/" + path_in_image.lstrip("/"))
    return (
        f"find {' '.join(DRIVER_DIRS)} -path {pattern} -type f "
        "-exec truncate -s 0 {} + 2>/dev/null; true"
    )
