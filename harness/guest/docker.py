"""Docker inside the guest: mount the test disk, configure and start dockerd, stop it."""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

from crashtest_guest import CHECKER
from harness.errors import GuestTimeout, HarnessError
from harness.guest.agent import AgentClient, Result
from harness.storage.backends import DATA_SERIAL, DOCKER_ROOT, Backend

DOCKERD_LOG = "/run/dockerd.log"
DOCKER_JSON = "docker.json"  # per backend's results: the driver and versions dockerd reported


def device_by_serial(agent: AgentClient, serial: str = DATA_SERIAL) -> str:
    """The guest's block device for a virtio disk serial (the one lookup, shared
    with the in-guest checker)."""
    try:
        return str(agent.call(CHECKER, "find_device", serial, timeout=30))
    except HarnessError as e:
        raise GuestTimeout(f"guest sees no disk with virtio serial {serial!r} ({e})") from e


def daemon_config(backend: Backend) -> dict[str, object]:
    # No network in the guest: no iptables, no bridge; containers use --network none.
    return {
        "storage-driver": backend.driver,
        "iptables": False,
        "ip6tables": False,
        "bridge": "none",
        "debug": True,
        "log-level": "debug",
        "features": {"containerd-snapshotter": False},
    }


def start_dockerd(agent: AgentClient, backend: Backend, timeout: float = 90) -> Result:
    """Start dockerd (with its own containerd, state on the test disk); return the
    `docker info` result once it answers, or the failed last attempt."""
    agent.put("/etc/docker/daemon.json", json.dumps(daemon_config(backend)).encode())
    agent.run(f"setsid dockerd >{DOCKERD_LOG} 2>&1 </dev/null &", timeout=10)
    deadline = time.monotonic() + timeout
    res = agent.run("docker version --format '{{.Server.Version}}'", timeout=30)
    while not res.ok and time.monotonic() < deadline:
        if not agent.run("pidof dockerd", timeout=10).ok:
            break  # dockerd exited: no use waiting
        time.sleep(0.5)
        res = agent.run("docker version --format '{{.Server.Version}}'", timeout=30)
    return res


def stop_dockerd(agent: AgentClient, timeout: float = 60) -> Result:
    return agent.run(
        "kill $(pidof dockerd) 2>/dev/null; "
        f"for i in $(seq {int(timeout * 5)}); do pidof dockerd >/dev/null || exit 0; "
        "sleep 0.2; done; exit 1",
        timeout=timeout + 5,
    )


def dockerd_log(agent: AgentClient) -> str:
    return agent.run(f"cat {DOCKERD_LOG}", timeout=30).stdout


def mount_data(agent: AgentClient, backend: Backend, serial: str = DATA_SERIAL) -> Result:
    """Mount the disk with this virtio serial at docker's root, read-write."""
    dev = device_by_serial(agent, serial)
    return agent.run(
        f"mkdir -p {DOCKER_ROOT} && {backend.mount_cmd(shlex.quote(dev))}", timeout=120
    )


def start_on_fresh_disk(agent: AgentClient, backend: Backend) -> None:
    """Mount the freshly made test disk and start dockerd on it, before a workload."""
    mount = mount_data(agent, backend)
    if not mount.ok:
        raise HarnessError(f"mounting the fresh test disk failed: {mount.evidence(400)}")
    started = start_dockerd(agent, backend)
    if not started.ok:
        raise HarnessError(
            f"dockerd did not start on a fresh disk: {started.evidence(400)}\n"
            + dockerd_log(agent)[-2000:]
        )


def versions(agent: AgentClient, backend: Backend) -> dict[str, str]:
    """What dockerd says it runs: the effective storage driver (`docker info`) and
    the versions of docker, containerd and runc. A driver other than the pinned
    one means the campaign would test something else: a harness error."""
    ver = agent.run("docker version --format '{{json .Server}}'", timeout=60)
    info = agent.run("docker info --format '{{.Driver}}'", timeout=60)
    if not ver.ok or not info.ok:
        raise HarnessError(f"docker version/info failed: {ver.evidence(300)} {info.evidence(300)}")
    try:
        server = json.loads(ver.stdout)
        parts = {c["Name"]: c["Version"] for c in server.get("Components") or ()}
    except (ValueError, KeyError, TypeError) as e:
        raise HarnessError(f"docker version printed {ver.stdout[:300]!r}: {e}") from e
    driver = info.stdout.strip()
    if driver != backend.driver:
        raise HarnessError(
            f"dockerd runs storage driver {driver!r}, not the {backend.driver!r} "
            f"that {backend.name} pins in daemon.json"
        )
    return {
        "driver": driver,
        "docker": str(server.get("Version", "")),
        "containerd": str(parts.get("containerd", "")),
        "runc": str(parts.get("runc", "")),
        "api": str(server.get("ApiVersion", "")),
    }


def note_versions(agent: AgentClient, backend: Backend, dest: Path) -> None:
    """`versions` into `dest` (JSON), written whole: units of one backend share it."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
    tmp.write_text(json.dumps(versions(agent, backend), indent=1) + "\n")
    os.replace(tmp, dest)


def inventory(agent: AgentClient) -> dict[str, list[str]]:
    """Every image (all, with intermediates) and container docker knows of."""
    images = agent.run("docker images -a -q --no-trunc", timeout=60)
    containers = agent.run("docker ps -a --format '{{.Names}}'", timeout=60)
    return {
        "images": sorted(set(images.stdout.split())),
        "containers": sorted(set(containers.stdout.split())),
    }
