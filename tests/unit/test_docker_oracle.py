"""The live docker oracle's decisions, against a scripted guest (the real-VM tests
show the same checks on real docker)."""

import pytest

from harness.guest.agent import Result
from harness.oracles.docker import check_promises
from harness.storage.backends import BACKENDS
from harness.workloads.promises import Ledger, Promise


class ScriptedAgent:
    def __init__(self, answers: dict[str, tuple[int, str]]) -> None:
        self.answers = answers
        self.commands: list[str] = []

    def run(self, cmd: str, timeout: float = 0, stdin: bytes = b"") -> Result:
        self.commands.append(cmd)
        for key, (rc, out) in self.answers.items():
            if key in cmd:
                return Result(cmd, rc, out, "", 0.0)
        return Result(cmd, 0, "", "", 0.0)

    def put(self, path: str, data: bytes, mode: int = 0o644, timeout: float = 0) -> None:
        return None


def verdicts(answers: dict[str, tuple[int, str]], *promises: Promise) -> list[tuple[str, str]]:
    led = Ledger()
    led.grant("step", list(promises))
    found, _ = check_promises(ScriptedAgent(answers), BACKENDS["btrfs"], "s",  # type: ignore[arg-type]
                              led)
    return [(v.cls, v.promise) for v in found]


RUNNING = Promise("container", "writer", "commit", "sync", check="exited 255")


def test_container_back_as_exited_255_passes() -> None:
    assert verdicts({"docker version": (0, "26"), "{{.State.Status}}": (0, "exited 255\n")},
                    RUNNING) == []


def test_container_with_another_state_is_corruption() -> None:
    got = verdicts({"docker version": (0, "26"), "{{.State.Status}}": (0, "exited 0\n")},
                   RUNNING)
    assert got == [("docker-corruption", RUNNING.describe())]


def test_missing_container_is_lost() -> None:
    got = verdicts({"docker version": (0, "26"), "container inspect": (1, "No such")},
                   RUNNING)
    assert got == [("docker-lost", RUNNING.describe())]


def test_file_with_other_content_is_a_durability_violation() -> None:
    p = Promise("file", "volume:v:/f", "fsync-volume", "fsync", sha256="a" * 64)
    got = verdicts({"docker version": (0, "26"), "sha256sum": (0, "b" * 64 + "  /v/f\n")}, p)
    assert got == [("fs-durability", p.describe())]


def test_dockerd_that_does_not_start_is_corruption() -> None:
    got = verdicts({"docker version": (1, "Cannot connect"), "pidof": (1, "")}, RUNNING)
    assert got == [("docker-corruption", "dockerd starts on the recovered disk")]


def test_object_listed_at_the_durability_point_and_gone_is_lost() -> None:
    from harness.oracles.docker import check_inventory

    agent = ScriptedAgent({"docker images": (0, "sha256:a\n"), "docker ps": (0, "writer\n")})
    before = {"images": ["sha256:a", "sha256:b"], "containers": ["writer"]}
    found = check_inventory(agent, "s", "commit", before)  # type: ignore[arg-type]
    assert [(v.cls, v.evidence["missing"]) for v in found] == [("docker-lost", "sha256:b")]
    assert check_inventory(agent, "s", "commit",  # type: ignore[arg-type]
                           {"images": ["sha256:a"], "containers": ["writer"]}) == []


@pytest.mark.parametrize(("failing_cmd", "promise"), [
    ("mount -t btrfs", "the filesystem mounts after the cut"),
    ("btrfs check", "btrfs fsck is clean after recovery"),
    ("btrfs scrub", "every btrfs checksum verifies (scrub)"),
])
def test_filesystem_oracle_reports_each_failing_step(failing_cmd: str, promise: str) -> None:
    from harness.oracles.filesystem import recover_and_fsck

    agent = ScriptedAgent({"serial": (0, "/dev/vdb\n"), failing_cmd: (1, "damage\n")})
    found = recover_and_fsck(agent, BACKENDS["btrfs"], "s")  # type: ignore[arg-type]
    assert [(v.cls, v.promise) for v in found] == [("fs-corruption", promise)]
    assert "damage" in found[0].evidence["output"]
