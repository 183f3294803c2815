"""Host side of the guest command channel (virtio-serial, JSON lines, base64 payloads)."""

from __future__ import annotations

import base64
import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from harness.errors import GuestTimeout, HarnessError, PowerCut

# After a power cut, answers the guest sent before it stopped are still in flight;
# wait this long for them before declaring the step cut.
CUT_GRACE_S = 0.5


@dataclass(frozen=True)
class Result:
    cmd: str
    rc: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def evidence(self, limit: int = 4000) -> str:
        out = (self.stdout + self.stderr).strip()
        if len(out) > limit:
            out = "...\n" + out[-limit:]
        return f"$ {self.cmd}\n(exit {self.rc})\n{out}"


class AgentClient:
    def __init__(
        self, sock: socket.socket, health: Callable[[], None], transcript: TextIO | None = None
    ) -> None:
        """`health()` raises when the VM is gone (HarnessError) or panicked (GuestPanic)."""
        self._sock = sock
        self._health = health
        self._transcript = transcript
        self._t0 = time.monotonic()
        self._buf = b""
        self._next_id = 0
        self.ready_uptime: float | None = None
        self.cut = threading.Event()
        self._cut_at: float | None = None

    def _send(self, req: dict[str, object]) -> int:
        self._next_id += 1
        req["id"] = self._next_id
        try:
            self._sock.sendall((json.dumps(req) + "\n").encode())
        except OSError as e:
            self._gone(f"agent channel closed ({e})")
        return self._next_id

    def _gone(self, why: str) -> None:
        if self.cut.is_set():
            raise PowerCut(why)
        # The channel closes a moment before QEMU can be reaped: give health() the
        # chance to name the real cause.
        for _ in range(30):
            self._health()
            time.sleep(0.1)
        raise HarnessError(why)

    def _read_line(self, deadline: float) -> dict[str, object]:
        while b"\n" not in self._buf:
            now = time.monotonic()
            if self.cut.is_set():
                self._cut_at = self._cut_at or now
                if now - self._cut_at > CUT_GRACE_S:
                    raise PowerCut("power cut while the guest was working")
            elif now > deadline:
                raise GuestTimeout("guest agent did not answer in time")
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if not ready:
                if not self.cut.is_set():
                    self._health()
                continue
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                self._gone("agent channel closed")
                # _gone always raises; keep mypy aware the loop cannot spin
                raise AssertionError("unreachable")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg: dict[str, object] = json.loads(line)
        return msg

    def _call(self, req: dict[str, object], timeout: float) -> dict[str, object]:
        want = self._send(req)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_line(deadline)
            if msg.get("event") == "ready":
                self.ready_uptime = float(str(msg.get("uptime", 0)))
                continue
            if msg.get("id") == want:
                return msg

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def wait_ready(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while self.ready_uptime is None:
            msg = self._read_line(deadline)
            if msg.get("event") == "ready":
                self.ready_uptime = float(str(msg.get("uptime", 0)))
        return self.ready_uptime

    def note(self, text: str) -> None:
        """A line in the transcript (what a guest call did, for the record)."""
        self._note(text)

    def _note(self, text: str) -> None:
        if self._transcript is not None:
            self._transcript.write(f"[{time.monotonic() - self._t0:8.2f}] {text}\n")
            self._transcript.flush()

    def run(self, cmd: str, timeout: float = 120, stdin: bytes = b"") -> Result:
        self._note(f"$ {cmd}")
        msg = self._call(
            {
                "op": "run",
                "cmd": cmd,
                "timeout": timeout,
                "stdin": base64.b64encode(stdin).decode(),
            },
            timeout + 15,
        )
        res = Result(
            cmd=cmd,
            rc=int(str(msg["rc"])),
            stdout=base64.b64decode(str(msg.get("stdout", ""))).decode("utf-8", "replace"),
            stderr=base64.b64decode(str(msg.get("stderr", ""))).decode("utf-8", "replace"),
            duration=float(str(msg.get("duration", 0.0))),
        )
        self._note(f"(exit {res.rc} in {res.duration:.2f}s) {(res.stdout + res.stderr)[-2000:]}")
        return res

    def call(self, module: str, func: str, arg: object, timeout: float = 120) -> object:
        """Call `module.func(arg)` inside the agent's own process (a guest module in
        /crashtest); JSON in, JSON out."""
        self._note(f"call {module}.{func}")
        msg = self._call({"op": "call", "module": module, "func": func, "arg": arg}, timeout)
        if msg.get("rc") != 0:
            err = base64.b64decode(str(msg.get("stderr", ""))).decode("utf-8", "replace")
            self._note(f"(failed) {err[-2000:]}")
            raise HarnessError(f"guest {module}.{func} failed: {err.strip().splitlines()[-1:]}")
        self._note(
            f"(ok in {float(str(msg.get('duration', 0))):.2f}s) "
            f"{json.dumps(msg.get('result'))[-2000:]}"
        )
        return msg.get("result")

    def put(self, path: str, data: bytes, mode: int = 0o644, timeout: float = 60) -> None:
        self._note(f"put {path} ({len(data)} bytes)")
        msg = self._call(
            {"op": "put", "path": path, "mode": mode, "data": base64.b64encode(data).decode()},
            timeout,
        )
        if msg.get("rc") != 0:
            err = base64.b64decode(str(msg.get("stderr", ""))).decode("utf-8", "replace")
            raise HarnessError(f"writing {path} in the guest failed: {err.strip()}")

    def get(self, path: str, timeout: float = 60) -> bytes:
        msg = self._call({"op": "get", "path": path}, timeout)
        if msg.get("rc") != 0:
            err = base64.b64decode(str(msg.get("stderr", ""))).decode("utf-8", "replace")
            raise HarnessError(f"reading {path} from the guest failed: {err.strip()}")
        return base64.b64decode(str(msg["data"]))
