"""One QEMU guest as a context manager: launch paused, connect QMP, console and
agent, run, and always end with no QEMU process and no socket left behind."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from qemu.qmp import ExecuteError, QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from harness import hosttools
from harness.errors import (
    GuestBootError,
    GuestError,
    GuestPanic,
    GuestSetupError,
    HarnessError,
    ResumeError,
)
from harness.guest.agent import AgentClient
from harness.vm import snapshot
from harness.vm.console import ConsoleWatcher
from harness.vm.qemu import MachineConfig, Sockets, build_argv

BOOT_TIMEOUT_S = 120.0
EVENT_POLL_S = 2.0  # how often a waiting agent call also asks QMP for a panic event

# Every live Machine, so a Ctrl-C or fatal signal can kill them all.
_LIVE: set[Machine] = set()
_LIVE_LOCK = threading.Lock()


def kill_all() -> None:
    with _LIVE_LOCK:
        machines = list(_LIVE)
    for m in machines:
        m.kill()


class Machine:
    def __init__(
        self,
        config: MachineConfig,
        console_log: Path,
        name: str = "vm",
        restore_from: Path | None = None,
    ) -> None:
        """`restore_from`: a saved guest (vm.snapshot) to resume instead of a boot."""
        self.config = config
        self.restore_from = restore_from
        self.name = name
        self.console_log = console_log
        # (our end, QEMU's end) per channel; QEMU's ends are closed once it has them.
        self._pairs = [socket.socketpair() for _ in range(3)]
        self.sockets = Sockets(*(theirs.fileno() for _, theirs in self._pairs))
        self.stderr_log = console_log.with_suffix(".qemu-stderr.log")
        self.argv = build_argv(config, self.sockets, incoming=restore_from is not None)
        self._proc: subprocess.Popen[bytes] | None = None
        self._qmp: Any = None
        self._qmp_lock = threading.Lock()
        self.console: ConsoleWatcher | None = None
        self._agent: AgentClient | None = None
        self._transcript: TextIO | None = None
        self.events: list[dict[str, Any]] = []
        self.boot_s: float | None = None
        self._launched = 0.0
        self._events_polled = 0.0

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Machine:
        if self._proc is not None:  # launched already: `with` only takes ownership
            return self
        try:
            self.launch()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()

    def launch(self) -> None:
        hosttools.require(self.config.qemu_binary, "setpriv")
        self._launched = time.monotonic()
        with _LIVE_LOCK:
            _LIVE.add(self)
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        with self.stderr_log.open("wb") as err:
            # setpriv --pdeathsig: QEMU dies with the harness, even if the harness is
            # SIGKILLed; the new session keeps a terminal's Ctrl-C for the harness.
            try:
                self._proc = subprocess.Popen(
                    ["setpriv", "--pdeathsig", "KILL", *self.argv],
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    start_new_session=True,
                    pass_fds=[theirs.fileno() for _, theirs in self._pairs],
                )
            except OSError as e:
                raise HarnessError(f"{self.name}: cannot start QEMU: {e}") from e
        for _, theirs in self._pairs:
            theirs.close()
        (qmp_sock, _), (con_sock, _), (agent_sock, _) = self._pairs
        self._qmp = QEMUMonitorProtocol(qmp_sock)
        try:
            self._qmp.connect(negotiate=True)
        except Exception as e:  # the channel closed: QEMU refused its command line or died
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
            raise HarnessError(f"QEMU failed to start ({self.exited() or e})") from e
        self.console = ConsoleWatcher(con_sock, self.console_log)
        self._transcript = self.console_log.with_suffix(".agent.log").open("w")
        self._agent = AgentClient(agent_sock, self.health, self._transcript)
        if self.restore_from is not None:
            try:
                snapshot.load(self, self.restore_from)
            except HarnessError as e:
                raise ResumeError(str(e)) from e
        self.qmp("cont")

    def exited(self) -> str | None:
        """None while QEMU runs; else its exit code and last stderr line."""
        if self._proc is None or self._proc.poll() is None:
            return None
        err = self.stderr_log.read_text(errors="replace").strip().splitlines()
        return f"exit code {self._proc.returncode}: {err[-1] if err else 'no stderr'}"

    def health(self) -> None:
        """Raise if QEMU is gone or the guest kernel panicked."""
        dead = self.exited()
        if dead:
            raise HarnessError(f"{self.name}: QEMU died ({dead})")
        if self.console is not None and self.console.panicked.is_set():
            raise GuestPanic(f"{self.name}: guest kernel panicked", self.console_tail())
        now = time.monotonic()
        if now - self._events_polled > EVENT_POLL_S:
            self._events_polled = now
            if self.panicked():
                time.sleep(1)  # let the guest print the panic before we report it
                raise GuestPanic(
                    f"{self.name}: guest kernel panicked (pvpanic)", self.console_tail()
                )

    def wait_booted(self, timeout: float = BOOT_TIMEOUT_S) -> float:
        """Wait for the guest agent; return the guest's uptime when it got there
        (for a resumed guest: the seconds from launch until its agent answered)."""
        try:
            if self.restore_from is not None:
                try:
                    snapshot.resume_guest(self, timeout)
                except (GuestError, HarnessError) as e:
                    raise ResumeError(
                        f"{self.name}: the resumed guest does not answer ({e}; "
                        f"last console line: {self.console_tail(1) or 'none'})"
                    ) from e
                self.boot_s = time.monotonic() - self._launched
                return self.boot_s
            self.boot_s = self.agent.wait_ready(timeout)
        except (GuestError, HarnessError) as e:
            fatal = [
                line for line in self.console_tail(200).splitlines() if "crashtest: FATAL " in line
            ]
            if fatal:  # the guest's own init said why it could not go on
                raise GuestSetupError(
                    f"{self.name}: the guest could not boot: "
                    f"{fatal[-1].split('crashtest: FATAL ', 1)[1]}",
                    self.console_tail(),
                ) from e
            raise GuestBootError(
                f"{self.name}: guest did not boot within {timeout:.0f}s ({e}; "
                f"last console line: {self.console_tail(1) or 'none'})",
                self.console_tail(),
            ) from e
        return self.boot_s

    @property
    def agent(self) -> AgentClient:
        if self._agent is None:
            raise HarnessError(f"{self.name}: not launched")
        return self._agent

    def qmp(self, cmd: str, **args: Any) -> Any:
        with self._qmp_lock:
            if self._qmp is None:
                raise HarnessError(f"{self.name}: QMP not connected")
            try:
                res = self._qmp.cmd(cmd, **args)
            except ExecuteError as e:  # QEMU refused: our request or host state is wrong
                raise HarnessError(f"{self.name}: QMP {cmd} failed: {e}") from e
            except (QMPError, OSError, EOFError) as e:  # the monitor went away with QEMU
                time.sleep(0.2)  # let it be reaped, to name its exit
                raise HarnessError(
                    f"{self.name}: QMP {cmd}: QEMU went away ({self.exited() or e!r})"
                ) from e
            self.events.extend(self._qmp.get_events(wait=False))
            self._qmp.clear_events()
            return res

    def pass_fd(self, name: str, fd: int) -> None:
        """Hand QEMU an open file descriptor under `name` (QMP getfd)."""
        with self._qmp_lock:
            if self._qmp is None:
                raise HarnessError(f"{self.name}: QMP not connected")
            self._qmp.send_fd_scm(fd)
        self.qmp("getfd", fdname=name)

    def panicked(self) -> bool:
        with contextlib.suppress(Exception):
            self.qmp("query-status")
        return any(e.get("event") == "GUEST_PANICKED" for e in self.events)

    def diagnose(self) -> str:
        """What QEMU says about a guest that stopped answering: run state and vCPU
        registers twice, a second apart (moving RIPs = busy guest, fixed = stuck)."""
        parts = []
        for i in range(2):
            for cmd in ("info status", "info cpus", "info registers -a"):
                try:
                    out = self.qmp("human-monitor-command", **{"command-line": cmd})
                except Exception as e:  # diagnostics must never raise
                    out = f"({type(e).__name__}: {e})"
                parts.append(f"### {cmd} (sample {i + 1})\n{out}")
            time.sleep(1)
        return "\n".join(parts)

    def console_since(self, mark: int) -> str:
        """Console text printed after `mark` (from console.mark())."""
        if self.console is None:
            return ""
        return "\n".join(line.text for line in self.console.since(mark))

    def console_mark(self) -> int:
        return self.console.mark() if self.console else 0

    def console_tail(self, n: int = 40) -> str:
        return self.console.tail(n) if self.console else ""

    def power_cut(self) -> float:
        """Cut power with no help from the guest: freeze the vCPUs through QMP, then
        kill QEMU. What the guest had handed to QEMU stays on the image file."""
        self.agent.cut.set()
        t = time.monotonic()
        self.qmp("stop")
        return t

    def kill(self) -> None:
        """Idempotent hard stop and cleanup: QEMU gone, sockets and temp dir removed."""
        if self._qmp is not None:
            with self._qmp_lock, contextlib.suppress(Exception):
                self._qmp.close()
            self._qmp = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
        if self.console is not None:
            self.console.close()
            self.console = None
        if self._agent is not None:
            self._agent.close()
        if self._transcript is not None:
            self._transcript.close()
            self._transcript = None
        for pair in self._pairs:
            for sock in pair:
                sock.close()
        with _LIVE_LOCK:
            _LIVE.discard(self)
