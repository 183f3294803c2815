"""The real guest agent (crashtest_guest.agent) against the real host client, over a
socketpair standing in for the virtio-serial port."""

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crashtest_guest import agent as guest_agent
from harness.errors import GuestTimeout, HarnessError, PowerCut
from harness.guest.agent import AgentClient
from harness.guest.host import guest_host

# The guest loop never exits (it waits for a host to reconnect), so its socket is
# kept open for the whole session: a closed fd number could be reused by a later test.
_GUEST_ENDS: list[socket.socket] = []


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentClient]:
    host_end, guest_end = socket.socketpair()
    _GUEST_ENDS.append(guest_end)
    # the host's /proc/uptime is not the point here
    monkeypatch.setattr(guest_agent, "uptime", lambda: 1.5)
    t = threading.Thread(target=guest_agent.serve, args=(guest_end.fileno(),), daemon=True)
    t.start()
    c = AgentClient(host_end, lambda: None)
    yield c
    host_end.shutdown(socket.SHUT_RDWR)


def test_ready_then_commands(client: AgentClient) -> None:
    assert client.wait_ready(5) == 1.5
    res = client.run("printf 'a\\nb'; echo err >&2; exit 3")
    assert (res.rc, res.stdout, res.stderr) == (3, "a\nb", "err\n")
    assert "(exit 3)" in res.evidence()


def test_binary_safe_put_get(client: AgentClient, tmp_path: Path) -> None:
    data = bytes(range(256)) * 100 + b"\n{not json}\n"
    client.put(str(tmp_path / "sub" / "f.bin"), data, mode=0o600)
    assert client.get(str(tmp_path / "sub" / "f.bin")) == data
    assert (tmp_path / "sub" / "f.bin").stat().st_mode & 0o777 == 0o600


def test_guest_side_timeout_kills_the_whole_command(client: AgentClient) -> None:
    res = client.run("sleep 30 & sleep 30; echo never", timeout=0.5)
    assert res.rc == 124 and "timed out" in res.stderr


def test_testinfra_host_over_the_agent(client: AgentClient, tmp_path: Path) -> None:
    (tmp_path / "x").write_text("hello")
    host = guest_host(client)
    assert host.file(str(tmp_path / "x")).content_string == "hello"
    assert host.run("echo %s", "hi there").stdout == "hi there\n"
    assert host.exists("sh")


def test_silent_guest_is_a_timeout() -> None:
    host_end, _guest_end = socket.socketpair()
    c = AgentClient(host_end, lambda: None)
    with pytest.raises(GuestTimeout):
        c.wait_ready(0.3)


def test_dead_qemu_is_a_harness_error() -> None:
    host_end, _guest_end = socket.socketpair()

    def health() -> None:
        raise HarnessError("vm: QEMU died (exit code -9: killed)")

    c = AgentClient(host_end, health)
    with pytest.raises(HarnessError, match="QEMU died"):
        c.run("true", timeout=5)


def test_power_cut_interrupts_a_waiting_call() -> None:
    host_end, _guest_end = socket.socketpair()
    c = AgentClient(host_end, lambda: None)
    threading.Timer(0.2, c.cut.set).start()
    with pytest.raises(PowerCut):
        c.run("sync", timeout=30)


def test_call_runs_a_function_in_the_agent_process(client: AgentClient) -> None:
    assert client.call("json", "dumps", [1, "a"]) == '[1, "a"]'
    with pytest.raises(HarnessError, match=r"guest json\.loads failed: .*JSONDecodeError"):
        client.call("json", "loads", "{not json")


def test_the_daemon_stages_image_checks_cross_as_typed_data() -> None:
    """What the host sends and gets back (JSON on the wire) is the protocol's types:
    an image that is not listed stops after inspect; a listed one is saved and run."""
    import json

    from crashtest_guest import docker_cli
    from crashtest_guest.protocol import CommandRun, ImageCheckRequest, ImageToRun

    def step(cmd: str, timeout: float) -> CommandRun:
        return CommandRun(cmd, 1 if "gone" in cmd and "inspect" in cmd else 0, "out", "", 0.1)

    req = ImageCheckRequest((ImageToRun("a:1", "test -f /x"), ImageToRun("gone:1")))
    wire = json.loads(json.dumps(req.to_json()))
    got = json.loads(json.dumps(docker_cli.check_images(wire, step)))
    runs = [[CommandRun.from_json(r) for r in steps] for steps in got]
    assert [len(r) for r in runs] == [3, 1]
    assert runs[0][2].cmd.endswith("sh -c 'test -f /x'") and runs[1][0].rc == 1
