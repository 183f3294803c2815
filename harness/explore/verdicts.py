"""Verdicts on a generated program's crash states: every check on every state
(mount, fsck, kernel console, the durability model), and the differential one
across filesystems (a discrepancy)."""

from __future__ import annotations

from crashtest_guest.protocol import CrashState, ExploreOutcome, Op, OpKind, ViolationClass
from harness.explore.model import (
    Broken,
    Invalid,
    Promise,
    Tree,
    check,
    observed,
    promises,
    simulate,
)
from harness.model import Violation
from harness.oracles import console

MODEL = "explore.model"
DIFFERENTIAL = "explore.differential"


def state_name(fs: str, state: CrashState) -> str:
    return f"{fs}:{state.id}"


def _shown(state: CrashState) -> str:
    return "\n".join(
        f"{n.path} {n.kind} size={n.size} mode={n.mode:o}"
        + (f" -> {n.target}" if n.target else "")
        + (f" sha256={n.sha256[:12]}" if n.sha256 else "")
        for n in state.tree
    )


def _where(state: CrashState) -> str:
    lost = f", {len(state.dropped)} unflushed writes lost" if state.dropped else ""
    return (
        f"log replayed to entry {state.entries}{lost}: operations up to #{state.durable_through} "
        f"had returned, none after #{state.issued_through} had started"
    )


def _promise_kind(ops: tuple[Op, ...], trees: list[Tree], b: Broken) -> str:
    """What made the promise, in words that carry no path: `fsync of a
    directory`, `write (O_SYNC)`, `sync`."""
    if b.promised_op < 0:
        return "the initial tree"
    op = ops[b.promised_op]
    if op.kind in (OpKind.FSYNC, OpKind.FDATASYNC):
        tree = trees[b.promised_op + 1]
        try:
            kind = tree.inodes[tree.file_of(op)].kind
        except (Invalid, KeyError):
            kind = "f"
        how = "a kept descriptor" if op.fd >= 0 else "a fresh descriptor"
        return f"{op.kind.value} of a {'directory' if kind == 'd' else 'file'} through {how}"
    return op.kind.value if op.kind.persists else f"{op.kind.value} (O_SYNC)"


def state_verdicts(
    fs: str, ops: tuple[Op, ...], made: list[Promise], trees: list[Tree], state: CrashState
) -> list[Violation]:
    name = state_name(fs, state)
    found: list[Violation] = []
    ev = {"state": _where(state)}
    if not state.mounted:
        found.append(
            Violation(
                ViolationClass.FS_CORRUPTION,
                name,
                "every crash state mounts",
                {**ev, "mount": state.mount_output},
                check="fs.mount",
                subject="mount",
            )
        )
    if state.fsck_rc:
        found.append(
            Violation(
                ViolationClass.FS_CORRUPTION,
                name,
                "fsck finds a recovered crash state clean",
                {**ev, "fsck": state.fsck_output},
                check="fs.fsck",
                subject="fsck",
            )
        )
    if state.mounted:
        for b in check(made, trees, state):
            found.append(
                Violation(
                    ViolationClass.FS_DURABILITY,
                    name,
                    f"{b.promise}: {b.fact} of {b.path} is {b.expected}",
                    {
                        **ev,
                        "found": f"{b.fact} of {b.path} is {b.found}",
                        "promised by": f"#{b.promised_op} {b.promise}",
                        "tree": _shown(state),
                    },
                    check=MODEL,
                    subject=f"{b.fact} after {_promise_kind(ops, trees, b)}",
                )
            )
    others_clean = not found
    found += console.violations(state.console, name, others_clean=others_clean)
    return found


def outcome_verdicts(fs: str, ops: tuple[Op, ...], out: ExploreOutcome) -> list[Violation]:
    """Every verdict on one filesystem's crash states of a program."""
    if out.error:
        return [
            Violation(
                ViolationClass.HARNESS_ERROR,
                f"{fs}:program",
                "the guest runs and checks the program",
                {"error": out.error},
                check="explore.guest",
                subject="guest",
            )
        ]
    trees = simulate(ops, out.errnos)
    if trees is None:  # the filesystem did what the model calls impossible
        return [
            Violation(
                ViolationClass.HARNESS_ERROR,
                f"{fs}:program",
                "the model follows every operation the filesystem accepted",
                {"errnos": " ".join(map(str, out.errnos))},
                check="explore.model-diverged",
                subject="model",
            )
        ]
    made = promises(ops, trees, out.errnos)
    found: list[Violation] = []
    for state in out.states:
        found += state_verdicts(fs, ops, made, trees, state)
    return found


def _final_states(out: ExploreOutcome) -> dict[int, CrashState]:
    """Per operation, the state right after it returned with nothing unflushed
    kept (the one every filesystem shares)."""
    found: dict[int, CrashState] = {}
    for s in out.states:
        if not s.dropped and s.mounted and s.durable_through >= 0:
            found.setdefault(s.durable_through, s)
    return found


def discrepancies(ops: tuple[Op, ...], outcomes: dict[str, ExploreOutcome]) -> list[Violation]:
    """Where one filesystem recovered a persisted object differently from all
    the others, which agree (three or more filesystems): a `discrepancy`,
    unless the model already calls it a durability finding there."""
    usable = {
        fs: o for fs, o in outcomes.items() if not o.error and simulate(ops, o.errnos) is not None
    }
    if len(usable) < 3:
        return []
    trees = simulate(ops, next(iter(usable.values())).errnos)
    if trees is None:
        return []
    per_fs = {fs: _final_states(o) for fs, o in usable.items()}
    errnos = next(iter(usable.values())).errnos
    made = promises(ops, trees, errnos)
    found: list[Violation] = []
    for p in promises(ops, trees, errnos, scope=True):
        if p.op < 0:
            continue
        states = {fs: s[p.op] for fs, s in per_fs.items() if p.op in s}
        if len(states) < 3:
            continue
        after = trees[p.op + 1]
        for fact in sorted(p.facts, key=str):
            path = _fact_path(after, fact)
            if path is None:
                continue
            seen = {fs: _value_at(s, path, str(fact[0])) for fs, s in states.items()}
            for fs, v in seen.items():
                rest = [w for f, w in seen.items() if f != fs]
                if v == rest[0] or any(w != rest[0] for w in rest):
                    continue
                if any(b.path == path for b in check(made, trees, states[fs])):
                    continue  # the model already reports it as lost
                others = ", ".join(f"{f}: {w}" for f, w in seen.items() if f != fs)
                found.append(
                    Violation(
                        ViolationClass.DISCREPANCY,
                        state_name(fs, states[fs]),
                        f"{p.why}: {fact[0]} of {path} as every other filesystem has it",
                        {"found": f"{fs}: {v}", "others": others},
                        check=DIFFERENTIAL,
                        subject=f"{fact[0]} after {ops[p.op].kind.value}",
                    )
                )
    return found


def _fact_path(tree: Tree, fact: tuple[object, ...]) -> str | None:
    if fact[0] == "gone":
        return None  # no value of its own to compare: the entry's is
    if fact[0] == "e":
        d = tree.path_of(int(str(fact[1])))
        return None if d is None else (f"{d}/{fact[2]}" if d else str(fact[2]))
    names = tree.names(int(str(fact[1])))
    if not names:
        return None
    d = tree.path_of(names[0][0])
    return None if d is None else (f"{d}/{names[0][1]}" if d else names[0][1])


def _value_at(state: CrashState, path: str, attr: str) -> object:
    node = next((n for n in state.tree if n.path == path), None)
    if attr == "e":
        return node.kind if node else None
    return observed(node, attr)
