"""What a running campaign shows: an ETA weighted by unit kind, and the units at
work. On a terminal a live display (rich): one line per running unit with its
phase and time, and the overall bar; elsewhere (CI logs, a file) plain lines,
one per unit message and one per finished unit."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from harness.model import UnitKind

# What a unit costs before any has finished, in seconds (TCG here): a live cut
# boots or resumes, runs and checks a guest; a lost-cache unit records once, then
# checks each state in about a second. Refined by what finished units took.
PRIOR_S = {UnitKind.LIVE: 100.0, UnitKind.REPLAY: 80.0}
PRIOR_STATE_S = 2.0


class Eta:
    """Units left by kind times what each kind is expected to cost."""

    def __init__(self, kinds: list[str], states: int, jobs: int) -> None:
        self.left = Counter(kinds)
        self.total, self.jobs = len(kinds), max(1, jobs)
        self.per_replay = PRIOR_S[UnitKind.REPLAY] + PRIOR_STATE_S * states
        self.took: dict[str, list[float]] = {}

    def cost(self, kind: str) -> float:
        """The mean of finished units of `kind`, else the prior scaled by how
        finished units compared with theirs."""
        if self.took.get(kind):
            return sum(self.took[kind]) / len(self.took[kind])
        prior = {UnitKind.LIVE: PRIOR_S[UnitKind.LIVE], UnitKind.REPLAY: self.per_replay}
        ratios = [sum(t) / len(t) / prior[UnitKind(k)] for k, t in self.took.items() if t]
        scale = sum(ratios) / len(ratios) if ratios else 1.0
        return prior[UnitKind(kind)] * scale

    def seconds_left(self) -> float:
        return sum(n * self.cost(k) for k, n in self.left.items()) / self.jobs

    def finished(self, kind: str, wall_s: float) -> None:
        self.left[kind] -= 1
        self.took.setdefault(kind, []).append(wall_s)


class Display:
    """The campaign's progress: `line` for campaign messages, `unit` for a unit's
    progress lines, `finished` when a unit ends. A context manager: on a terminal
    it runs a live display while open."""

    def __init__(
        self,
        kinds: list[str],
        states: int,
        jobs: int,
        plain: Callable[[str], None] | None = None,
        out: TextIO | None = None,
    ) -> None:
        """`plain`: where lines go instead (no live display); `out`: the terminal."""
        self.out = out or sys.stdout
        self.plain = plain
        self.eta = Eta(kinds, states, jobs)
        self.units = self.states = self.bad = 0
        self.t0 = time.monotonic()
        self.running: dict[str, tuple[float, str]] = {}  # label -> (started, last line)
        self.lock = threading.Lock()
        self.live_on = plain is None and self.out.isatty() and Console(file=self.out).is_terminal
        self._live: Live | None = None

    def __enter__(self) -> Display:
        if self.live_on:
            console = Console(file=self.out)
            self._live = Live(
                get_renderable=self._render, console=console, refresh_per_second=2, transient=True
            )
            self._live.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def line(self, msg: str) -> None:
        if self._live is not None:
            self._live.console.print(Text(msg))
        elif self.plain is not None:
            self.plain(msg)
        else:
            self.out.write(msg + "\n")
            self.out.flush()

    def unit(self, label: str, msg: str) -> None:
        with self.lock:
            started = self.running.get(label, (time.monotonic(), ""))[0]
            self.running[label] = (started, msg)
        if self._live is None or msg.startswith("=>"):  # on a terminal, verdicts stay
            self.line(f"[{label}] {msg}")

    def finished(self, label: str, kind: str, wall_s: float, states: int, violations: int) -> None:
        with self.lock:
            self.running.pop(label, None)
            self.eta.finished(kind, wall_s)
            self.units += 1
            self.states += states
            self.bad += violations
        if self._live is None:
            self.line(self.summary(bar=True))

    def summary(self, bar: bool = False) -> str:
        elapsed = time.monotonic() - self.t0
        frac = self.units / max(self.eta.total, 1)
        filled = int(frac * 30)
        head = f"[{'#' * filled}{'.' * (30 - filled)}] " if bar else ""
        return (
            f"{head}{self.units}/{self.eta.total} units, {self.states} states, "
            f"{self.bad} violations, {elapsed / 60:.1f} min elapsed, "
            f"~{self.eta.seconds_left() / 60:.1f} min left"
        )

    def _render(self) -> Group:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column("unit", style="bold")
        table.add_column("time", justify="right")
        table.add_column("doing", overflow="ellipsis", no_wrap=True)
        now = time.monotonic()
        with self.lock:
            for label, (started, msg) in sorted(self.running.items()):
                table.add_row(label, f"{(now - started) / 60:4.1f} min", msg)
            frac = self.units / max(self.eta.total, 1)
            line = Text(self.summary(), style="bold red" if self.bad else "bold")
        done = int(frac * 40)
        bar = Text("█" * done + "░" * (40 - done) + " ")
        return Group(table, bar + line)
