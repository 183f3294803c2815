"""Crash states from a write log: what the disk may hold after a power cut that
loses the volatile cache.

An epoch is the run of writes between two flushes. A crash state inside epoch k
keeps every write of epochs < k and some of epoch k's writes:
  none         the flush boundary itself (everything unflushed lost)
  p<j>         the first j writes, in order
  d<i>         all but write i
  s<hex>       a seeded random subset (bit i = write i kept)
  x<i>.<j>...  all but the listed writes (what minimization leaves)
  t<i>.<n>     writes before i, plus only the first n log sectors of write i (torn,
               at 4 KiB boundaries)
State ids are `<log digest>:e<k>:<subset>`: enough to rebuild the state later.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.errors import InputError
from harness.writelog.format import Entry, WriteLog

EXHAUSTIVE_MAX = 4  # epochs with at most this many writes get every subset
ATOMIC_BYTES = 4096


@dataclass(frozen=True)
class Epoch:
    index: int
    entries: tuple[Entry, ...]  # writes and discards, in log order
    first_entry: int  # index in the log of the epoch's first entry
    end_entry: int  # index of the flush that ends it (or len(log) for the open tail)


@dataclass(frozen=True)
class CrashState:
    log_digest: str
    epoch: int
    subset: str  # see module docstring

    @property
    def id(self) -> str:
        return f"{self.log_digest}:e{self.epoch}:{self.subset}"

    def kept(self, epoch: Epoch) -> list[tuple[Entry, int | None]]:
        """Entries of the epoch this state keeps, each with a sector limit (torn) or None."""
        n = len(epoch.entries)
        s = self.subset
        if s == "none":
            return []
        if s == "all":
            return [(e, None) for e in epoch.entries]
        kind, arg = s[0], s[1:]
        if kind == "p":
            return [(e, None) for e in epoch.entries[: int(arg)]]
        if kind == "d":
            drop = int(arg)
            return [(e, None) for i, e in enumerate(epoch.entries) if i != drop]
        if kind == "x":
            drops = {int(x) for x in arg.split(".")}
            return [(e, None) for i, e in enumerate(epoch.entries) if i not in drops]
        if kind == "s":
            mask = int(arg, 16)
            return [(e, None) for i, e in enumerate(epoch.entries) if mask >> i & 1]
        if kind == "t":
            i, sectors = (int(x) for x in arg.split("."))
            return [(e, None) for e in epoch.entries[:i]] + [(epoch.entries[i], sectors)]
        raise InputError(f"crash state {self.id}: unknown subset kind {kind!r} (epoch has {n})")


def epochs(log: WriteLog) -> list[Epoch]:
    """Split the log at flushes. The writes after the last flush form the open epoch."""
    out: list[Epoch] = []
    current: list[Entry] = []
    first = 0
    for e in log.entries:
        if e.is_write or e.is_discard:
            current.append(e)
        if e.is_flush:
            out.append(Epoch(len(out), tuple(current), first, e.index))
            current, first = [], e.index + 1
    out.append(Epoch(len(out), tuple(current), first, len(log.entries)))
    return out


def parse_state_id(state_id: str) -> CrashState:
    try:
        digest, ep, subset = state_id.split(":")
        if not ep.startswith("e"):
            raise ValueError
        return CrashState(digest, int(ep[1:]), subset)
    except ValueError as e:
        raise InputError(f"crash state id {state_id!r}: expected DIGEST:e<N>:<subset>") from e


def _states_for_epoch(
    digest: str, ep: Epoch, rng: random.Random, sectorsize: int
) -> list[CrashState]:
    n = len(ep.entries)

    def mk(subset: str) -> CrashState:
        return CrashState(digest, ep.index, subset)

    if n == 0:
        # No writes between two flushes (or after the last one): its one state is the
        # disk as the flush left it, judged by the promises of steps that returned
        # before the next flush, which an fsync that wrote nothing must still keep.
        return [mk("none")]
    states = [mk("none")]
    if n <= EXHAUSTIVE_MAX:
        states += [mk(f"s{m:x}") for m in range(1, (1 << n) - 1)]
    else:
        states += [mk(f"p{j}") for j in sorted(rng.sample(range(1, n), min(3, n - 1)))]
        states += [mk(f"d{i}") for i in sorted(rng.sample(range(n), min(3, n)))]
        states += [mk(f"s{rng.getrandbits(n) | 1:x}") for _ in range(2)]
    # Tear only at 4 KiB boundaries: disks write a physical sector atomically, and
    # filesystems rely on that for their 4 KiB superblocks.
    unit = max(1, ATOMIC_BYTES // sectorsize)
    multi = [i for i, e in enumerate(ep.entries) if e.is_write and e.nr_sectors > unit]
    if multi:
        i = rng.choice(multi)
        cut = unit * rng.randrange(1, (ep.entries[i].nr_sectors + unit - 1) // unit)
        states.append(mk(f"t{i}.{cut}"))
    return states


Fingerprint = tuple[int, tuple[tuple[int, int], ...]]


def fingerprint(state: CrashState, eps: list[Epoch]) -> Fingerprint:
    """What a state's disk is made of, such that two states with the same
    fingerprint are the same bytes: the epochs applied whole, and the kept writes
    of the next one that still show (a write wholly overwritten by a later kept
    write does not; a state keeping all of epoch k is epoch k+1's `none`). Equal
    fingerprints are identical disks; different ones may still be (this is exact
    only about positions, never about content)."""
    epoch = eps[state.epoch]
    kept = state.kept(epoch)
    if (
        epoch.entries
        and len(kept) == len(epoch.entries)
        and all(limit is None for _, limit in kept)
    ):
        return state.epoch + 1, ()
    shown: list[tuple[int, int]] = []
    covered: list[tuple[int, int]] = []  # sector ranges written by later kept writes
    for e, limit in reversed(kept):
        start = e.sector
        end = start + (limit if limit is not None else e.nr_sectors)
        if not _covers(covered, start, end):
            shown.append((e.index, -1 if limit is None else limit))
            covered.append((start, end))
    return state.epoch, tuple(sorted(shown))


def _covers(ranges: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether the union of `ranges` holds all of [start, end)."""
    pos = start
    for a, b in sorted(ranges):
        if a > pos:
            break
        pos = max(pos, b)
        if pos >= end:
            return True
    return pos >= end


@dataclass(frozen=True)
class Selection:
    """The states to check, and what they stand for: every candidate state has a
    group of identical states (same fingerprint); one state per group is checked,
    and its verdict holds for the whole group."""

    epochs: list[Epoch]
    states: list[CrashState]  # the checked ones, one per group, in epoch order
    candidates: int  # states generated before grouping
    groups: int  # distinct states among them
    stands_for: dict[str, list[str]]  # checked state id -> the group's other state ids

    @property
    def covered(self) -> int:
        """Candidate states whose verdict is known once the selection is checked."""
        return sum(1 + len(self.stands_for.get(s.id, ())) for s in self.states)

    def to_json(self) -> dict[str, object]:
        return {
            "candidate_states": self.candidates,
            "distinct_states": self.groups,
            "states_checked": len(self.states),
            "states_covered": self.covered,
            "state_reduction_ratio": round(self.candidates / max(self.groups, 1), 2),
            "group_coverage": round(len(self.states) / max(self.groups, 1), 3),
        }


def select_states(log: WriteLog, seed: int, budget: int) -> Selection:
    """A seeded, deterministic selection of at most `budget` distinct states,
    spread over the epochs, in epoch order (so replay walks the log forward once).
    Flush boundaries (each epoch's `none`: the disk as dm-log-writes' replay-log
    shows it at each flush) come first; the budget left goes to seeded others."""
    eps = epochs(log)
    rng = random.Random(f"crashtest-states:{seed}:{log.digest}")
    candidates = [s for ep in eps for s in _states_for_epoch(log.digest, ep, rng, log.sectorsize)]
    groups: dict[Fingerprint, list[CrashState]] = {}
    for st in candidates:
        groups.setdefault(fingerprint(st, eps), []).append(st)
    # The group's first state in log order is its representative.
    reps = sorted(groups.values(), key=lambda g: (g[0].epoch, candidates.index(g[0])))
    if len(reps) > budget:
        bounds = [i for i, g in enumerate(reps) if any(s.subset == "none" for s in g)]
        others = [i for i, g in enumerate(reps) if i not in set(bounds)]
        keep = set(rng.sample(bounds, min(budget, len(bounds))))
        keep |= set(rng.sample(others, budget - len(keep)))
        reps = [g for i, g in enumerate(reps) if i in keep]
    return Selection(
        eps,
        [g[0] for g in reps],
        len(candidates),
        len(groups),
        {g[0].id: [s.id for s in g[1:]] for g in reps if len(g) > 1},
    )


def crash_states(log: WriteLog, seed: int, budget: int) -> tuple[list[Epoch], list[CrashState]]:
    sel = select_states(log, seed, budget)
    return sel.epochs, sel.states
