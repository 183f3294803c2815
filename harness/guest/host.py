"""The guest as a pytest-testinfra Host, so checks read `host.file(...)`, `host.run(...)`."""

from __future__ import annotations

from typing import Any

import testinfra.backend.base
import testinfra.host

from harness.guest.agent import AgentClient


class AgentBackend(testinfra.backend.base.BaseBackend):  # type: ignore[misc]
    NAME = "crashtest-agent"

    def __init__(self, agent: AgentClient, **kwargs: Any) -> None:
        self.agent = agent
        super().__init__("crashtest-guest", **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> Any:
        cmd = self.get_command(command, *args)
        res = self.agent.run(cmd)
        return self.result(res.rc, self.encode(cmd), res.stdout.encode(), res.stderr.encode())

    def get_encoding(self) -> str:
        # Known: the guest is our own image. Probing would cost a round trip per Host.
        return "utf-8"


def guest_host(agent: AgentClient) -> testinfra.host.Host:
    return testinfra.host.Host(AgentBackend(agent))
