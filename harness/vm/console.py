"""The serial console: drained to a log file by one thread that owns a pexpect
spawn on the console socket, with boot markers noted live."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pexpect.fdpexpect

MARKERS = {
    "stage1": "crashtest: stage1",
    "stage2": "crashtest: stage2",
    "agent": "crashtest: agent ready",
}


@dataclass(frozen=True)
class ConsoleLine:
    t: float  # seconds since the watcher started
    text: str


class ConsoleWatcher:
    def __init__(self, sock: socket.socket, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("a", encoding="utf-8", errors="replace")
        self._sock = sock
        self._spawn = pexpect.fdpexpect.fdspawn(
            sock.fileno(),
            encoding="utf-8",
            codec_errors="replace",
            searchwindowsize=4096,
            timeout=0.5,
        )
        self._spawn.logfile_read = self._log
        self.lines: list[ConsoleLine] = []
        self.markers: dict[str, float] = {}
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._drain, name="console", daemon=True)
        self.panicked = threading.Event()
        self._thread.start()

    def _drain(self) -> None:
        pattern: list[re.Pattern[str] | type[pexpect.EOF] | type[pexpect.TIMEOUT]] = [
            re.compile(r"\r?\n"),
            pexpect.EOF,
            pexpect.TIMEOUT,
        ]
        while True:
            try:
                idx = self._spawn.expect_list(pattern, timeout=0.5)
            except (OSError, ValueError):
                break
            if idx == 1:
                break
            if idx == 2:
                continue
            self._note(str(self._spawn.before))

    def _note(self, text: str) -> None:
        text = text.rstrip("\r")
        line = ConsoleLine(round(time.monotonic() - self._start, 3), text)
        with self._lock:
            self.lines.append(line)
            for name, marker in MARKERS.items():
                if marker in text and name not in self.markers:
                    self.markers[name] = line.t
            if "Kernel panic - not syncing" in text:
                self.panicked.set()

    def mark(self) -> int:
        """A position in the console; `since()` returns what came after it."""
        with self._lock:
            return len(self.lines)

    def since(self, mark: int) -> list[ConsoleLine]:
        with self._lock:
            return self.lines[mark:]

    def tail(self, n: int = 40) -> str:
        with self._lock:
            return "\n".join(line.text for line in self.lines[-n:])

    def close(self) -> None:
        # Shut down first so the drain thread sees EOF before the fd is released.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=2)
        self._sock.close()
        self._log.close()
