"""Generated programs: seeded random sequences and bounded-exhaustive ones over
a small namespace, with descriptors as objects.

The namespace is the initial tree (`A/`, `A/foo` of 16 KiB, `B/`) plus the
names programs may create: `foo` and `bar` in `A`, `B` and `A/C`, and the
directories `A/C` and `B/C`. Every generated operation is valid where it stands
(the model applies it without error), so a program spends its length on what a
file system must get right rather than on errors. A descriptor is opened by an
`open` and used by later operations until closed; a persistence point goes
through a kept descriptor or a fresh one.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

from crashtest_guest.protocol import Op, OpKind
from harness.errors import InputError
from harness.explore.model import Invalid, Tree

DIRS = ("", "A", "B", "A/C", "B/C")
NEW_DIRS = ("A/C", "B/C")
FILES = ("A/foo", "A/bar", "B/foo", "B/bar", "A/C/foo", "A/C/bar")
# a new file may also take a directory's name once it is free (a file where a
# directory was: btrfs's "conflicting inode" logging)
NAMES = (*FILES, *NEW_DIRS, "A", "B")
XATTRS = ("user.a", "user.b")
SYMLINK_TARGET = "foobar"
OFFSETS = ((0, 4096), (1000, 3000), (4096, 8192), (20000, 4096), (0, 65536))
DIRECT = ((0, 4096), (4096, 8192), (16384, 65536))
TRUNCATES = (0, 1000, 8192, 24576)
FALLOCS = ((0, 4096), (4096, 8192), (16384, 8192))
OPEN_FLAGS: tuple[tuple[str, ...], ...] = (
    (),
    ("trunc",),
    ("append",),
    ("sync",),
    ("direct",),
    ("sync", "direct"),
)
# a new file's open: O_CREAT alone or with what shapes its first writes
NEW_FLAGS: tuple[tuple[str, ...], ...] = ((), ("sync",), ("direct",), ("sync", "direct"))
PERSIST = (OpKind.FSYNC, OpKind.FDATASYNC, OpKind.SYNC, OpKind.SYNCFS)
ALL_OPS = frozenset(OpKind)
# How often a core operation is followed by a persistence point (ACE follows
# each), drawn per program: some programs run several core operations between
# two persistence points, others persist after nearly every one.
_PERSIST_SHARES = (0.3, 0.6, 0.9)
# The chance a random program may use each kind of the grammar (swarm testing).
_SWARM = 0.5
# How often an operation is drawn among those on what the last ones touched.
_LOCALITY = 0.8
# How many of the last operations count as "touched", persistence points
# included: a fsync'd object changed and fsync'd again is where logs go wrong.
_LOOKBACK = 2
# How often a persistence point goes to an object changed since it was last
# persisted: fsync of an unchanged object is a no-op that tests nothing (btrfs
# logs nothing for it), and the corpus's bugs all persist an object just changed.
_CHANGED = 0.9
# How often the next core operation makes a name freed since the last sync: a
# new object at a moved or removed one's name, while the last commit still has
# the old owner there, is btrfs's "conflicting inode" (generic/784's family).
_REUSE = 0.5
# How often the operation right after a fsync gives the object it persisted a
# new name (a rename or link of it): btrfs logs a logged inode's new name on
# its own (`logging_new_name`), the path of 782's, 785's and 788's bugs.
_NEW_NAME = 0.5
# How often a missing directory is made at a random earlier place since the
# last sync rather than right before the name that needs it (ACE makes its
# dependencies first): what is persisted between the mkdir and the new name
# then meets a directory new in the transaction (generic/782's shape).
_EARLY_PARENT = 0.5
MAX_LENGTH = 64


@dataclass(frozen=True)
class Grammar:
    ops: frozenset[OpKind] = ALL_OPS

    @classmethod
    def parse(cls, text: str | None) -> Grammar:
        """`--ops`: a comma list of operation names (all when none)."""
        if not text:
            return cls()
        names = [t.strip() for t in text.split(",") if t.strip()]
        known = {k.value for k in OpKind}
        bad = [n for n in names if n not in known]
        if bad or not names:
            raise InputError(
                f"--ops: unknown operation {bad[0] if bad else text!r} "
                f"(known: {', '.join(sorted(known))})"
            )
        ops = frozenset(OpKind(n) for n in names)
        if not ops & set(PERSIST):
            raise InputError("--ops: name at least one persistence point (fsync, sync, ...)")
        return cls(ops)

    def names(self) -> list[str]:
        return sorted(k.value for k in self.ops)


def _valid(tree: Tree, op: Op) -> bool:
    return _valid_all(tree, (op,))


def _valid_all(tree: Tree, ops: tuple[Op, ...]) -> bool:
    """The operations apply, in order, where they stand."""
    try:
        after = copy.deepcopy(tree)
        for op in ops:
            after.apply(op)
    except (Invalid, KeyError):
        return False
    return True


def _exists(tree: Tree, path: str) -> bool:
    return tree.lookup(path) is not None


def _kind(tree: Tree, path: str) -> str:
    ino = tree.lookup(path)
    return "" if ino is None else tree.inodes[ino].kind


def _file_fds(tree: Tree) -> list[int]:
    return [fd for fd, (ino, _) in tree.fds.items() if tree.inodes[ino].kind == "f"]


def _missing_parent(tree: Tree, op: Op) -> str:
    """The new directory an operation's new name needs first, if it is missing."""
    name = op.path if op.kind is OpKind.OPEN else op.dest
    head = name.rpartition("/")[0]
    return head if head in NEW_DIRS and not _exists(tree, head) else ""


def _with_parent(tree: Tree, op: Op) -> tuple[Op, ...]:
    """The operation, after the `mkdir` of its missing parent if it needs one."""
    parent = _missing_parent(tree, op)
    return (Op(OpKind.MKDIR, parent), op) if parent else (op,)


def core_candidates(
    tree: Tree, kind: OpKind, next_fd: int, byte: int, parents: bool = False
) -> list[Op]:
    """Every valid operation of `kind` in this state (persistence points apart);
    with `parents`, also those valid once their missing parent directory is made."""
    files = [p for p in NAMES if _kind(tree, p) == "f"]
    free = [p for p in FILES if not _exists(tree, p)]
    out: list[Op] = []
    if kind is OpKind.OPEN:
        for p in NAMES:
            if _kind(tree, p) == "f":
                out += [Op(kind, p, fd=next_fd, flags=f) for f in OPEN_FLAGS]
            elif not _exists(tree, p):
                out += [Op(kind, p, fd=next_fd, flags=("creat", *f)) for f in NEW_FLAGS]
    elif kind is OpKind.OPENDIR:
        out = [Op(kind, d, fd=next_fd) for d in DIRS if _kind(tree, d) == "d"]
    elif kind is OpKind.CLOSE:
        out = [Op(kind, fd=fd) for fd in tree.fds]
    elif kind is OpKind.WRITE:
        for fd in _file_fds(tree):
            direct = "direct" in tree.fds[fd][1]
            for off, n in DIRECT if direct else OFFSETS:
                out.append(Op(kind, fd=fd, offset=off, length=n, value=byte, flags=tree.fds[fd][1]))
    elif kind is OpKind.TRUNCATE:
        out = [Op(kind, p, length=n) for p in files for n in TRUNCATES]
    elif kind is OpKind.FALLOCATE:
        for fd in _file_fds(tree):
            for flags in ((), ("keep",), ("punch",), ("zero",)):
                out += [Op(kind, fd=fd, flags=flags, offset=o, length=n) for o, n in FALLOCS]
    elif kind is OpKind.LINK:
        out = [Op(kind, s, d) for s in files for d in free]
    elif kind is OpKind.SYMLINK:
        out = [Op(kind, dest=d, name=SYMLINK_TARGET) for d in free]
    elif kind is OpKind.UNLINK:
        out = [Op(kind, p) for p in FILES if _kind(tree, p) in ("f", "l")]
    elif kind is OpKind.RENAME:
        sources = [p for p in (*FILES, *NEW_DIRS, "A", "B") if _exists(tree, p)]
        for s in sources:
            for d in (*FILES, *NEW_DIRS):
                if d == s:
                    continue
                if _exists(tree, d):
                    out += [Op(kind, s, d), Op(kind, s, d, flags=("exchange",))]
                else:
                    out += [Op(kind, s, d), Op(kind, s, d, flags=("whiteout",))]
    elif kind is OpKind.MKDIR:
        out = [Op(kind, d) for d in NEW_DIRS if not _exists(tree, d)]
    elif kind is OpKind.RMDIR:
        out = [Op(kind, d) for d in NEW_DIRS if _kind(tree, d) == "d"]
    elif kind is OpKind.SETXATTR:
        targets = [p for p in (*FILES, *DIRS[1:]) if _kind(tree, p) in ("f", "d")]
        out = [Op(kind, p, name=x, value=byte) for p in targets for x in XATTRS]
    elif kind is OpKind.REMOVEXATTR:
        for p in (*FILES, *DIRS[1:]):
            ino = tree.lookup(p)
            if ino is not None:
                out += [Op(kind, p, name=x) for x in tree.inodes[ino].xattrs]
    elif kind is OpKind.CHMOD:
        out = [Op(kind, p, value=m) for p in files for m in (0o600, 0o755)]
    elif kind in (OpKind.REFLINK, OpKind.COPY_RANGE):
        for dst in _file_fds(tree):
            for src in files:
                if kind is OpKind.REFLINK:
                    out.append(Op(kind, src, fd=dst))
                else:
                    out += [Op(kind, src, fd=dst, offset=o, length=4096) for o in (0, 4096)]
    return [op for op in out if _valid_all(tree, _with_parent(tree, op) if parents else (op,))]


def persist_candidates(tree: Tree, kind: OpKind) -> list[Op]:
    """A persistence point of `kind`: through each kept descriptor, or a fresh
    one on each object of the namespace."""
    if kind is OpKind.SYNC:
        return [Op(kind)]
    out = [Op(kind, fd=fd) for fd in tree.fds]
    out += [Op(kind, p) for p in (*DIRS, *FILES) if _kind(tree, p) in ("f", "d")]
    if kind is OpKind.FDATASYNC:
        out = [op for op in out if _target_kind(tree, op) == "f"]
    return [op for op in out if _valid(tree, op)]


def _target_kind(tree: Tree, op: Op) -> str:
    ino = tree.fds[op.fd][0] if op.fd >= 0 else tree.lookup(op.path)
    return "" if ino is None else tree.inodes[ino].kind


def _next_fd(ops: list[Op]) -> int:
    return max((op.fd for op in ops if op.kind in (OpKind.OPEN, OpKind.OPENDIR)), default=-1) + 1


def swarm(grammar: Grammar, rng: random.Random) -> tuple[list[OpKind], list[OpKind]]:
    """The kinds one random program draws from: a random few of the grammar's
    (swarm testing, Groce et al., ISSTA 2012: a program that leaves most
    features out goes deeper into the ones it keeps)."""
    core = sorted(grammar.ops - set(PERSIST), key=lambda k: k.value)
    persist = sorted(grammar.ops & set(PERSIST), key=lambda k: k.value)
    some_core = [k for k in core if rng.random() < _SWARM]
    while core and len(some_core) < min(2, len(core)):
        some_core = sorted(set(some_core) | {rng.choice(core)}, key=lambda k: k.value)
    # fsync always: the persistence point whose promises are the richest
    some_persist = [k for k in persist if k is OpKind.FSYNC or rng.random() < _SWARM]
    some_persist = some_persist or [rng.choice(persist)]
    return some_core, some_persist


def random_program(grammar: Grammar, seed: int, index: int, length: int) -> tuple[Op, ...]:
    """Program `index` of `seed`: 2 to `length` operations, ending in a
    persistence point (the same seed and index: the same program)."""
    rng = random.Random(f"{seed}:{index}")
    tree = Tree()
    ops: list[Op] = []
    core, persist = swarm(grammar, rng)
    share = rng.choice(_PERSIST_SHARES)
    changed: set[int] = set()  # inodes changed since they were last persisted
    freed: set[str] = set()  # names removed since the last sync
    n = rng.randint(2, max(2, length))
    while len(ops) < n:
        after_core = bool(ops) and not ops[-1].kind.persists
        if len(ops) == n - 1 or not core or (after_core and rng.random() < share):
            kinds = persist
        else:
            kinds = core
        byte = 0x21 + len(ops)
        # room for a missing parent's mkdir before the op and a persistence point after
        parents = OpKind.MKDIR in grammar.ops and len(ops) < n - 2
        options = {
            k: persist_candidates(tree, k)
            if k.persists
            else core_candidates(tree, k, _next_fd(ops), byte, parents)
            for k in kinds
        }
        usable = [k for k in kinds if options[k]]
        if not usable:  # nothing of that sort fits here: a persistence point mostly does
            options = {k: persist_candidates(tree, k) for k in grammar.ops & set(PERSIST)}
            usable = sorted((k for k in options if options[k]), key=lambda k: k.value)
            if not usable:
                break
        choices = options[rng.choice(usable)]
        if kinds is core:
            choices = _favoured(tree, ops, options, usable, freed, rng) or choices
        fresh = [c for c in choices if _persists_changed(c, tree, changed)]
        if fresh and rng.random() < _CHANGED:
            choices = fresh
        recent = [_subject(o, ops) for o in ops[-_LOOKBACK:]]
        near = [c for c in choices if _touches(_subject(c, ops), tree, recent)]
        chosen = rng.choice(near if near and rng.random() < _LOCALITY else choices)
        parent = _missing_parent(tree, chosen)
        if parent and rng.random() < _EARLY_PARENT:
            at = _early_place(ops, Op(OpKind.MKDIR, parent), chosen, rng)
            if at is not None:
                ops = [*ops[:at], Op(OpKind.MKDIR, parent), *ops[at:], chosen]
                tree, changed, freed = _replay(ops)
                continue
        for op in _with_parent(tree, chosen):
            before = copy.deepcopy(tree)
            tree.apply(op)
            ops.append(op)
            freed = _account(before, tree, op, changed, freed)
    return tuple(ops)


def _favoured(
    tree: Tree,
    ops: list[Op],
    options: dict[OpKind, list[Op]],
    usable: list[OpKind],
    freed: set[str],
    rng: random.Random,
) -> list[Op]:
    """The core operations of the two patterns the generator prefers, if one is
    drawn: a freed name made again, or a new name for what was just persisted."""

    def every() -> Iterator[Op]:
        return (c for k in usable for c in options[k])

    if freed and rng.random() < _REUSE:
        again = [c for c in every() if _new_name(c) in freed]
        if again:
            return again
    last = ops[-1] if ops else None
    if (
        last is not None
        and last.kind in (OpKind.FSYNC, OpKind.FDATASYNC)
        and rng.random() < _NEW_NAME
    ):
        persisted = tree.file_of(last)
        new_names = (OpKind.RENAME, OpKind.LINK)
        return [c for c in every() if c.kind in new_names and tree.lookup(c.path) == persisted]
    return []


def _early_place(ops: list[Op], mkdir: Op, chosen: Op, rng: random.Random) -> int | None:
    """A random place since the last sync where the mkdir fits, with everything
    after it and the chosen operation still valid."""
    since = max(
        (i + 1 for i, o in enumerate(ops) if o.kind in (OpKind.SYNC, OpKind.SYNCFS)), default=0
    )
    places = [
        i for i in range(since, len(ops)) if _valid_all(Tree(), (*ops[:i], mkdir, *ops[i:], chosen))
    ]
    return rng.choice(places) if places else None


def _replay(ops: list[Op]) -> tuple[Tree, set[int], set[str]]:
    """The tree after `ops`, with the inodes changed since persisted and the
    names freed since the last sync."""
    tree, changed, freed = Tree(), set[int](), set[str]()
    for op in ops:
        before = copy.deepcopy(tree)
        tree.apply(op)
        freed = _account(before, tree, op, changed, freed)
    return tree, changed, freed


def _account(before: Tree, after: Tree, op: Op, changed: set[int], freed: set[str]) -> set[str]:
    """Updates `changed` for `op`; returns the names freed since the last sync."""
    if op.kind in (OpKind.SYNC, OpKind.SYNCFS):
        changed.clear()
        return set()
    if op.kind.persists:
        changed.discard(before.file_of(op))
        return freed
    changed |= _changed(before, after)
    gone = {p for p in NAMES if before.lookup(p) is not None and after.lookup(p) is None}
    return (freed | gone) - {_new_name(op)}


def _new_name(op: Op) -> str:
    """The name an operation makes, if it makes one."""
    if op.kind is OpKind.MKDIR or (op.kind is OpKind.OPEN and "creat" in op.flags):
        return op.path
    if op.kind in (OpKind.LINK, OpKind.SYMLINK, OpKind.RENAME):
        return op.dest
    return ""


def _changed(before: Tree, after: Tree) -> set[int]:
    """The inodes an operation changed: contents, attributes, entries or names."""
    return {
        i
        for i in before.inodes.keys() | after.inodes.keys()
        if before.inodes.get(i) != after.inodes.get(i) or before.names(i) != after.names(i)
    }


def _persists_changed(op: Op, tree: Tree, changed: set[int]) -> bool:
    """A persistence point on something changed since it was last persisted."""
    if not op.kind.persists:
        return False
    if op.kind in (OpKind.SYNC, OpKind.SYNCFS):
        return bool(changed)
    return tree.file_of(op) in changed


def _subject(op: Op, ops: list[Op]) -> Op:
    """A persistence point through a kept descriptor, with the path it was opened at."""
    if op.kind.persists and op.fd >= 0:
        opened = [o for o in ops if o.kind in (OpKind.OPEN, OpKind.OPENDIR) and o.fd == op.fd]
        return replace(op, path=opened[-1].path)
    return op


def _places(op: Op) -> set[str]:
    """The names an operation is about, and their directories."""
    out = set()
    for path in (op.path, op.dest):
        if path or op.kind.persists:
            out |= {path, path.rpartition("/")[0]}
    return out


def _touches(candidate: Op, tree: Tree, recent: list[Op]) -> bool:
    """The candidate works on what the last few operations worked on (a name, its
    directory, an entry of it, or a descriptor of it): bugs live in such interplay."""
    if not recent:
        return False
    places = set().union(*(_places(o) for o in recent))
    fds = {o.fd for o in recent if o.fd >= 0}
    if candidate.fd >= 0 and candidate.fd in fds:
        return True
    names = {candidate.path, candidate.dest} - {""}
    if names & places or (candidate.kind.persists and candidate.path in places):
        return True
    objects = {p for o in recent for p in (o.path, o.dest) if p or o.kind.persists}
    return any(n.rpartition("/")[0] in objects for n in names)


# Directories whose names all start fresh: there `foo` and `bar` are symmetric.
_SYMMETRIC_DIRS = ("B", "A/C", "B/C")


def canonical(ops: tuple[Op, ...]) -> tuple[Op, ...]:
    """The program with symmetric choices made one: in a directory that starts
    empty, its names renamed in order of first use (`foo` then `bar`), and the
    xattr names likewise, so programs that differ only in such a choice count
    once."""
    rename: dict[str, str] = {}
    used: dict[str, int] = {}
    order = ("foo", "bar")

    def fix(path: str) -> str:
        head, _, name = path.rpartition("/")
        if head in _SYMMETRIC_DIRS and name in order:
            key = f"{head}/{name}"
            if key not in rename:
                rename[key] = f"{head}/{order[used.get(head, 0)]}"
                used[head] = used.get(head, 0) + 1
            return rename[key]
        return path

    xattrs: dict[str, str] = {}

    def fix_x(name: str) -> str:
        if name in XATTRS:
            xattrs.setdefault(name, XATTRS[len(xattrs)])
            return xattrs[name]
        return name

    out = []
    for op in ops:
        name = fix_x(op.name) if op.kind in (OpKind.SETXATTR, OpKind.REMOVEXATTR) else op.name
        out.append(replace(op, path=fix(op.path), dest=fix(op.dest), name=name))
    return tuple(out)


def exhaustive(grammar: Grammar, length: int) -> Iterator[tuple[Op, ...]]:
    """Every program of up to `length` core operations, each followed by no
    persistence point or by one of every kind, through every descriptor,
    ending in one (ACE's bounded-exhaustive idea), duplicates by symmetry
    removed."""
    core = sorted(grammar.ops - set(PERSIST), key=lambda k: k.value)
    persist = sorted(grammar.ops & set(PERSIST), key=lambda k: k.value)
    seen: set[tuple[Op, ...]] = set()

    def walk(tree: Tree, ops: tuple[Op, ...], left: int) -> Iterator[tuple[Op, ...]]:
        if left == 0:
            return
        for kind in core:
            for op in core_candidates(tree, kind, _next_fd(list(ops)), 0x21 + len(ops)):
                after = copy.deepcopy(tree)
                after.apply(op)
                for kind_p in persist:
                    for p in persist_candidates(after, kind_p):
                        done = copy.deepcopy(after)
                        done.apply(p)
                        prog = (*ops, op, p)
                        key = canonical(prog)
                        if key in seen:
                            continue
                        seen.add(key)
                        yield prog
                        yield from walk(done, prog, left - 1)
                yield from walk(after, (*ops, op), left - 1)

    yield from walk(Tree(), (), length)
