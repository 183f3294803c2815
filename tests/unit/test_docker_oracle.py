"""The daemon stage's decisions, against a scripted guest (the real-VM tests show
the same checks on real docker)."""

import importlib
import json

from crashtest_guest.protocol import CommandRun
from harness.guest.agent import Result
from harness.model import Promise, Violation
from harness.oracles.docker import check_inventory, daemon_checks
from harness.storage.backends import BACKENDS
from harness.workloads.api import DEFAULT_INVARIANTS, command, docker_intact


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

    def call(self, module: str, func: str, arg: object, timeout: float = 0) -> object:
        """The real guest function, with its commands answered by the script."""

        def step(cmd: str, timeout: float) -> CommandRun:
            res = self.run(cmd)
            return CommandRun(cmd, res.rc, res.stdout)

        # through JSON both ways, as the agent carries it
        got = getattr(importlib.import_module(module), func)(json.loads(json.dumps(arg)), step=step)
        return json.loads(json.dumps(got))

    def note(self, text: str) -> None:
        return None


UP = {"docker version": (0, "26")}
RUNNING = Promise("container", "writer", "commit", "sync", state="exited 255")
IMAGE = Promise("image", "app:1", "build", "sync", run="/bin/check")


def verdicts(
    answers: dict[str, tuple[int, str]],
    *promises: Promise,
    invariants: tuple[object, ...] = DEFAULT_INVARIANTS,
    offline: list[Violation] | None = None,
) -> list[tuple[str, str, str]]:
    found, _, _ = daemon_checks(
        ScriptedAgent({**UP, **answers}),  # type: ignore[arg-type]
        BACKENDS["btrfs"],
        "s",
        list(promises),
        invariants,
        offline or [],
    )  # type: ignore[arg-type]
    return [(v.cls, v.check, v.subject) for v in found]


def test_container_back_as_exited_255_passes() -> None:
    assert verdicts({"{{.State.Status}}": (0, "exited 255\n")}, RUNNING) == []


def test_container_with_another_state_is_dockers_corruption() -> None:
    got = verdicts({"{{.State.Status}}": (0, "exited 0\n")}, RUNNING)
    assert got == [("docker-corruption", "docker.container-state", "container:writer")]


def test_image_that_does_not_save_or_run_is_corruption() -> None:
    got = verdicts(
        {"docker save": (1, "file integrity checksum failed"), "/bin/check": (1, "FAILED")}, IMAGE
    )
    assert got == [
        ("docker-corruption", "docker.save", "image:app:1"),
        ("docker-corruption", "docker.run", "image:app:1"),
    ]
    assert verdicts({"image inspect": (1, "No such image")}, IMAGE) == [
        ("docker-lost", "docker.image-listed", "image:app:1")
    ]


def test_an_object_the_offline_stage_found_broken_gets_no_second_verdict() -> None:
    broken = Violation("docker-corruption", "s", "p", check="promise.image", subject="image:app:1")
    assert verdicts({"docker save": (1, "bad")}, IMAGE, offline=[broken]) == []


def test_dockerd_that_does_not_start_breaks_the_invariant_only_if_declared() -> None:
    down = {"docker version": (1, "Cannot connect"), "pidof": (1, "")}
    assert verdicts(down, RUNNING) == [("docker-corruption", "invariant.dockerd-starts", "dockerd")]
    assert verdicts(down, RUNNING, invariants=(docker_intact(),)) == []


def test_a_daemon_stage_command_invariant() -> None:
    inv = command("docker run --rm app:1 true", stage="daemon")
    got = verdicts({"docker run --rm app:1 true": (1, "no")}, invariants=(inv,))
    assert got == [("docker-corruption", inv.id, "docker run --rm app:1 true")]
    assert verdicts({}, invariants=(inv,)) == []


def test_object_listed_at_the_durability_point_and_gone_is_lost() -> None:
    agent = ScriptedAgent({"docker images": (0, "sha256:a\n"), "docker ps": (0, "writer\n")})
    before = {"images": ["sha256:a", "sha256:b"], "containers": ["writer"]}
    found = check_inventory(agent, "s", "commit", before)  # type: ignore[arg-type]
    assert [(v.cls, v.evidence["missing"]) for v in found] == [("docker-lost", "sha256:b")]
    assert (
        check_inventory(
            agent,
            "s",
            "commit",  # type: ignore[arg-type]
            {"images": ["sha256:a"], "containers": ["writer"]},
        )
        == []
    )


def test_an_image_promised_twice_is_saved_and_run_once() -> None:
    agent = ScriptedAgent(UP)
    again = Promise("image", "app:1", "commit", "sync", run="/bin/check")
    found, _, up = daemon_checks(
        agent,
        BACKENDS["btrfs"],
        "s",  # type: ignore[arg-type]
        [IMAGE, again],
        DEFAULT_INVARIANTS,
        [],
    )
    assert up and found == []
    assert sum("docker save" in c for c in agent.commands) == 1
    assert sum("docker run" in c for c in agent.commands) == 1
