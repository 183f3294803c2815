"""Filesystem oracle: the filesystem mounts (running the kernel's own recovery)
and is clean by fsck after unmount."""

from __future__ import annotations

from harness.guest.agent import AgentClient
from harness.guest.docker import data_device
from harness.oracles.verdict import Violation
from harness.storage.backends import DOCKER_ROOT, Backend


def recover_and_fsck(agent: AgentClient, backend: Backend, state: str) -> list[Violation]:
    """Mount (recovery), unmount, fsck read-only, mount again for the next oracles.
    A failed mount ends the check: nothing later can run."""
    dev = data_device(agent)
    mount = agent.run(f"mkdir -p {DOCKER_ROOT} && {backend.mount_cmd(dev)}", timeout=300)
    if not mount.ok:
        return [Violation("fs-corruption", state, "the filesystem mounts after the cut",
                          {"command": mount.cmd, "output": mount.evidence()})]
    found = []
    umount = agent.run(f"umount {DOCKER_ROOT}", timeout=120)
    if not umount.ok:
        found.append(Violation("fs-corruption", state, "the recovered filesystem unmounts",
                               {"command": umount.cmd, "output": umount.evidence()}))
        return found
    fsck = agent.run(backend.fsck_cmd(dev), timeout=600)
    if not fsck.ok:
        found.append(Violation("fs-corruption", state, f"{backend.fs} fsck is clean after recovery",
                               {"command": fsck.cmd, "output": fsck.evidence()}))
    remount = agent.run(backend.mount_cmd(dev), timeout=300)
    if not remount.ok:
        found.append(Violation("fs-corruption", state, "the filesystem mounts after fsck",
                               {"command": remount.cmd, "output": remount.evidence()}))
    elif backend.scrub_cmd():
        scrub = agent.run(backend.scrub_cmd(), timeout=600)
        if not scrub.ok:
            found.append(Violation("fs-corruption", state,
                                   "every btrfs checksum verifies (scrub)",
                                   {"command": scrub.cmd, "output": scrub.evidence()}))
    return found
