"""The durability model: what a crash state of a generated program must hold.

The program is simulated on an in-memory file system (`Tree`), one snapshot
after each operation. Each persistence point promises a set of *facts* about
the tree as it was when the point returned:

- fsync of a file: its data, size, mode and xattrs, and its names: every name
  that pointed at it since the last sync (present, or gone where it was
  removed), and the directories on the path to each present name as they
  were at the file's own last change;
- fdatasync of a file, and a write (or a reflink that remapped the whole
  destination, as generic/628 checks) through an O_SYNC descriptor: its data
  and size;
- fsync of a directory: its entries (every name in it since the last sync,
  present with its kind or gone), its symlinks' targets, its mode and xattrs;
- sync and syncfs, and the initial tree: everything.

These are the guarantees ext4, xfs and btrfs give and fstests checks
(generic/ tests of fsync after rename, link and unlink); POSIX alone promises
less. A crash state whose durable operations include a promise must show, for
each promised fact, a value the fact had at the promise or later, up to the
last operation that may have started before the crash. Facts are checked at
names the state must hold (a name promised to point at exactly one object).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

from crashtest_guest.protocol import (
    DIR_MODE,
    FILE_MODE,
    INITIAL_TREE,
    CrashState,
    Node,
    Op,
    OpKind,
)

ROOT = 0
# (kind, ino) for a present entry, None for an absent one; data as a digest
Value = object


@dataclass
class Inode:
    ino: int
    kind: str  # "f", "d", "l"
    data: bytes = b""
    mode: int = FILE_MODE
    xattrs: dict[str, bytes] = field(default_factory=dict)
    target: str = ""
    children: dict[str, int] = field(default_factory=dict)


class Invalid(Exception):
    """The operation fails on a POSIX file system (the model predicts an errno)."""


class Tree:
    """An in-memory file system: inodes, directory entries, open descriptors."""

    def __init__(self) -> None:
        self.inodes: dict[int, Inode] = {ROOT: Inode(ROOT, "d", mode=DIR_MODE)}
        self.fds: dict[int, tuple[int, tuple[str, ...]]] = {}
        self.next = 1
        for path, kind, size, byte in INITIAL_TREE:
            parent, name = self.parent(path)
            ino = self.new(kind)
            self.inodes[ino].data = bytes([byte]) * size
            self.inodes[parent].children[name] = ino

    def new(self, kind: str) -> int:
        ino = self.next
        self.next += 1
        self.inodes[ino] = Inode(ino, kind, mode=DIR_MODE if kind == "d" else FILE_MODE)
        return ino

    def lookup(self, path: str) -> int | None:
        ino = ROOT
        for part in [p for p in path.split("/") if p]:
            node = self.inodes[ino]
            if node.kind != "d" or part not in node.children:
                return None
            ino = node.children[part]
        return ino

    def parent(self, path: str) -> tuple[int, str]:
        head, _, name = path.rpartition("/")
        d = self.lookup(head)
        if d is None or self.inodes[d].kind != "d" or not name:
            raise Invalid(f"no directory for {path!r}")
        return d, name

    def names(self, ino: int) -> list[tuple[int, str]]:
        return [
            (d.ino, n)
            for d in self.inodes.values()
            if d.kind == "d"
            for n, c in d.children.items()
            if c == ino
        ]

    def path_of(self, ino: int) -> str | None:
        """A directory's path ("" for the root); None when it has no name."""
        if ino == ROOT:
            return ""
        found = self.names(ino)
        if not found:
            return None
        d, n = found[0]
        up = self.path_of(d)
        return None if up is None else (f"{up}/{n}" if up else n)

    def ancestors(self, d: int) -> list[int]:
        out = []
        while d != ROOT:
            out.append(d)
            found = self.names(d)
            if not found:
                break
            d = found[0][0]
        return out

    def file_of(self, op: Op) -> int:
        if op.fd >= 0:
            if op.fd not in self.fds:
                raise Invalid(f"fd{op.fd} is not open")
            return self.fds[op.fd][0]
        ino = self.lookup(op.path)
        if ino is None:
            raise Invalid(f"{op.path!r} does not exist")
        return ino

    def source(self, op: Op) -> int:
        """reflink's and copy_range's source: a regular file by its path."""
        ino = self.lookup(op.path)
        if ino is None or self.inodes[ino].kind != "f":
            raise Invalid("no source file")
        return ino

    def write_at(self, ino: int, offset: int, data: bytes) -> None:
        node = self.inodes[ino]
        buf = bytearray(node.data)
        if len(buf) < offset:
            buf.extend(bytes(offset - len(buf)))
        buf[offset : offset + len(data)] = data
        node.data = bytes(buf)

    def apply(self, op: Op) -> None:
        """Change the tree as `op` does, or raise Invalid where it would fail."""
        k = op.kind
        if k is OpKind.OPEN:
            ino = self.lookup(op.path)
            if ino is None:
                if "creat" not in op.flags:
                    raise Invalid("no such file")
                d, name = self.parent(op.path)
                ino = self.new("f")
                self.inodes[d].children[name] = ino
            if self.inodes[ino].kind != "f":
                raise Invalid("not a regular file")
            if "trunc" in op.flags:
                self.inodes[ino].data = b""
            self.fds[op.fd] = (ino, op.flags)
        elif k is OpKind.OPENDIR:
            ino = self.lookup(op.path)
            if ino is None or self.inodes[ino].kind != "d":
                raise Invalid("not a directory")
            self.fds[op.fd] = (ino, ())
        elif k is OpKind.CLOSE:
            if self.fds.pop(op.fd, None) is None:
                raise Invalid("not open")
        elif k is OpKind.WRITE:
            ino = self.file_of(op)
            flags = self.fds[op.fd][1]
            offset = len(self.inodes[ino].data) if "append" in flags else op.offset
            self.write_at(ino, offset, bytes([op.value]) * op.length)
        elif k is OpKind.TRUNCATE:
            ino = self.file_of(op)
            if self.inodes[ino].kind != "f":
                raise Invalid("not a file")
            data = self.inodes[ino].data
            self.inodes[ino].data = data[: op.length] + bytes(max(0, op.length - len(data)))
        elif k is OpKind.FALLOCATE:
            ino = self.file_of(op)
            node = self.inodes[ino]
            end = op.offset + op.length
            if "punch" in op.flags or "zero" in op.flags:
                keep = len(node.data)
                self.write_at(ino, op.offset, bytes(op.length))
                if "punch" in op.flags or "keep" in op.flags:
                    node.data = node.data[:keep]
            elif "keep" not in op.flags and end > len(node.data):
                node.data = node.data + bytes(end - len(node.data))
        elif k is OpKind.LINK:
            ino = self.file_of(op)
            if self.inodes[ino].kind == "d":
                raise Invalid("link of a directory")
            d, name = self.parent(op.dest)
            if name in self.inodes[d].children:
                raise Invalid("exists")
            self.inodes[d].children[name] = ino
        elif k is OpKind.SYMLINK:
            d, name = self.parent(op.dest)
            if name in self.inodes[d].children:
                raise Invalid("exists")
            ino = self.new("l")
            self.inodes[ino].target = op.name
            self.inodes[ino].mode = 0o777
            self.inodes[d].children[name] = ino
        elif k is OpKind.UNLINK:
            d, name = self.parent(op.path)
            ino = self.inodes[d].children.get(name)
            if ino is None or self.inodes[ino].kind == "d":
                raise Invalid("no such file")
            del self.inodes[d].children[name]
        elif k is OpKind.RENAME:
            self.rename(op)
        elif k is OpKind.MKDIR:
            d, name = self.parent(op.path)
            if name in self.inodes[d].children:
                raise Invalid("exists")
            self.inodes[d].children[name] = self.new("d")
        elif k is OpKind.RMDIR:
            d, name = self.parent(op.path)
            ino = self.inodes[d].children.get(name)
            if ino is None or self.inodes[ino].kind != "d" or self.inodes[ino].children:
                raise Invalid("not an empty directory")
            del self.inodes[d].children[name]
        elif k is OpKind.SETXATTR:
            ino = self.file_of(op)
            if self.inodes[ino].kind == "l":
                raise Invalid("xattr on a symlink")
            self.inodes[ino].xattrs[op.name] = bytes([op.value]) * 8
        elif k is OpKind.REMOVEXATTR:
            ino = self.file_of(op)
            if op.name not in self.inodes[ino].xattrs:
                raise Invalid("no such xattr")
            del self.inodes[ino].xattrs[op.name]
        elif k is OpKind.CHMOD:
            ino = self.file_of(op)
            self.inodes[ino].mode = op.value
        elif k is OpKind.REFLINK:
            src, dst = self.source(op), self.file_of(op)
            if src == dst:
                raise Invalid("clone onto itself")
            # the source's whole range over the destination's start: a longer
            # destination keeps its size and its tail (FICLONE never truncates)
            self.write_at(dst, 0, self.inodes[src].data)
        elif k is OpKind.COPY_RANGE:
            src, dst = self.source(op), self.file_of(op)
            if src == dst:
                raise Invalid("copy onto itself")
            data = self.inodes[src].data[: op.length]
            if data:
                self.write_at(dst, op.offset, data)
        elif k in (OpKind.FSYNC, OpKind.FDATASYNC, OpKind.SYNCFS):
            self.file_of(op)

    def rename(self, op: Op) -> None:
        sd, sname = self.parent(op.path)
        dd, dname = self.parent(op.dest)
        src = self.inodes[sd].children.get(sname)
        if src is None:
            raise Invalid("no such source")
        dst = self.inodes[dd].children.get(dname)
        if self.inodes[src].kind == "d" and (dd == src or src in self.ancestors(dd)):
            raise Invalid("a directory into itself")
        if "exchange" in op.flags:
            if dst is None:
                raise Invalid("exchange with nothing")
            if self.inodes[dst].kind == "d" and (sd == dst or dst in self.ancestors(sd)):
                raise Invalid("a directory into itself")
            self.inodes[sd].children[sname], self.inodes[dd].children[dname] = dst, src
            return
        if dst is not None:
            if "noreplace" in op.flags or "whiteout" in op.flags:
                raise Invalid("exists")
            a, b = self.inodes[src], self.inodes[dst]
            if (a.kind == "d") != (b.kind == "d") or (b.kind == "d" and b.children):
                raise Invalid("cannot replace")
            if src == dst:
                return
        del self.inodes[sd].children[sname]
        self.inodes[dd].children[dname] = src
        if "whiteout" in op.flags:  # a character device 0:0, mode 0, stands in the old name
            whiteout = self.new("?")
            self.inodes[whiteout].mode = 0
            self.inodes[sd].children[sname] = whiteout


def simulate(ops: tuple[Op, ...], errnos: tuple[int, ...] | None = None) -> list[Tree] | None:
    """The tree after each operation (index -1 of the result: before the first),
    applying only what succeeded; None where the model cannot follow (it
    predicts a failure the filesystem did not have)."""
    tree = Tree()
    trees = [copy.deepcopy(tree)]
    for i, op in enumerate(ops):
        ok = errnos is None or errnos[i] == 0
        if ok:
            try:
                tree.apply(op)
            except Invalid:
                if errnos is not None:
                    return None
        trees.append(copy.deepcopy(tree))
    return trees


# A fact: ("e", dir ino, name) an entry; ("gone", dir ino, name, ino) the entry
# no longer names that object (an old name of a fsync'd file); (attr, ino) an
# object's data, size, mode, xattrs or target.
Fact = tuple[object, ...]
INODE_FACTS = ("data", "size", "mode", "xattrs", "target")


def value(tree: Tree, fact: Fact) -> Value:
    if fact[0] == "gone":
        d = tree.inodes.get(int(str(fact[1])))
        return d is None or d.children.get(str(fact[2])) != fact[3]
    if fact[0] == "e":
        d = tree.inodes.get(int(str(fact[1])))
        if d is None or d.kind != "d" or fact[2] not in d.children:
            return None
        ino = d.children[str(fact[2])]
        return (tree.inodes[ino].kind, ino)
    node = tree.inodes.get(int(str(fact[1])))
    if node is None:
        return None
    attr = fact[0]
    if attr == "data":
        return hashlib.sha256(node.data).hexdigest() if node.kind == "f" else None
    if attr == "size":
        return len(node.data) if node.kind == "f" else None
    if attr == "mode":
        return node.mode
    if attr == "xattrs":
        return tuple(sorted((k, v.hex()) for k, v in node.xattrs.items()))
    return node.target if node.kind == "l" else None


@dataclass(frozen=True)
class Promise:
    op: int  # -1: the initial tree
    facts: frozenset[Fact]
    why: str


def _since(trees: list[Tree], last_sync: int, upto: int) -> list[Tree]:
    return trees[last_sync + 1 : upto + 2]


def _last_change(
    trees: list[Tree], last_sync: int, upto: int, ino: int, names: bool = False
) -> int:
    """The last operation since the last sync and before `upto` that changed
    inode `ino` (with `names`, also its names); `last_sync` when none did."""
    return max(
        (
            j
            for j in range(last_sync + 1, upto)
            if trees[j].inodes.get(ino) != trees[j + 1].inodes.get(ino)
            or (names and trees[j].names(ino) != trees[j + 1].names(ino))
        ),
        default=last_sync,
    )


def _kept(steady: list[Tree], p: int, n: str, c: int) -> bool:
    """Entry `n` of directory `p` named `c` in every tree of `steady`."""
    return all(p in t.inodes and t.inodes[p].children.get(n) == c for t in steady)


def _placed(steady: list[Tree], tree: Tree, d: int) -> bool:
    """Directory `d` had its path of `tree` all through `steady` (or is gone)."""
    return d not in tree.inodes or all(
        _kept(steady, p, n, a) for a in tree.ancestors(d) for p, n in tree.names(a)
    )


def _new_dirs_below(synced: Tree, after: Tree, ino: int, fsynced: set[int]) -> list[int]:
    """The directories made since the last sync under directory `ino` and not
    fsync'd since, through such ones only: a directory's fsync persists their
    entries too (btrfs logs a new subdirectory's entries on an explicit
    directory fsync, generic/785; ext4 and xfs commit them with their journal,
    xfs only those before the directory's own last change). One logged since
    (its own fsync, its parent's, or a fsync of a file named in it) takes its
    own fsync for what it gains later."""
    found: list[int] = []
    todo = [ino]
    while todo:
        for child in after.inodes[todo.pop()].children.values():
            new = child not in synced.inodes and child not in fsynced
            if after.inodes[child].kind == "d" and new:
                found.append(child)
                todo.append(child)
    return found


def _all_facts(tree: Tree) -> set[Fact]:
    facts: set[Fact] = set()
    for node in tree.inodes.values():
        facts.update((a, node.ino) for a in INODE_FACTS)
        if node.kind == "d":
            facts.update(("e", node.ino, n) for n in node.children)
    return facts


def promises(
    ops: tuple[Op, ...], trees: list[Tree], errnos: tuple[int, ...], scope: bool = False
) -> list[Promise]:
    """What each persistence point (and the initial tree) makes durable; an
    operation that failed promises nothing. `scope`: what each is *about*
    instead (fdatasync and an O_SYNC write as wide as fsync), the facts the
    differential check compares across filesystems."""
    out = [Promise(-1, frozenset(_all_facts(trees[0])), "the initial tree, synced")]
    last_sync = -1
    fsynced: set[int] = set()  # the directories fsync'd since the last sync
    for i, op in enumerate(ops):
        before, after = trees[i], trees[i + 1]
        if errnos[i]:
            continue
        window = _since(trees, last_sync, i)
        facts: set[Fact] = set()
        k = op.kind
        sync_fd = op.fd >= 0 and "sync" in before.fds.get(op.fd, (0, ()))[1]
        if k in (OpKind.SYNC, OpKind.SYNCFS):
            for t in window:
                facts |= _all_facts(t)
            last_sync = i
            fsynced.clear()
            why = f"{k.value}() returned"
        elif k in (OpKind.FSYNC, OpKind.FDATASYNC):
            try:
                ino = after.file_of(op)
            except Invalid:
                continue
            node = after.inodes[ino]
            if k is OpKind.FDATASYNC and not scope:
                facts |= {("data", ino), ("size", ino)}
            elif node.kind == "d":
                facts |= {("mode", ino), ("xattrs", ino)}
                below = _new_dirs_below(trees[last_sync + 1], after, ino, fsynced)
                # a new subdirectory's entries only as of the directory's own last
                # change: xfs forces its log only up to that change
                until = trees[last_sync + 1 : _last_change(trees, last_sync, i, ino) + 2]
                for dino, seen in ((ino, window), *((b, until) for b in below)):
                    for t in seen:
                        d = t.inodes.get(dino)
                        if d is not None and d.kind == "d":
                            facts |= {("e", dino, n) for n in d.children}
                fsynced.update((ino, *below))
                for c in node.children.values():
                    if after.inodes[c].kind == "l":
                        facts.add(("target", c))
            else:
                facts |= {(a, ino) for a in INODE_FACTS}
                # its names and the directories on their paths only as they were at
                # the file's own last change: a fsync of a file nothing changed
                # since commits nothing (ext4, xfs and btrfs alike), so a directory
                # moved after that change may still be at its old place, holding
                # the file's names there
                steady = trees[_last_change(trees, last_sync, i, ino, names=True) + 1 : i + 1]
                now = set(after.names(ino))
                for t in window:
                    for parent, n in t.names(ino):
                        if not _placed(steady, after, parent):
                            continue
                        old_name = (parent, n) not in now
                        facts.add(("gone", parent, n, ino) if old_name else ("e", parent, n))
                for parent, _ in after.names(ino):
                    for a in after.ancestors(parent):
                        facts |= {("e", p, n) for p, n in after.names(a) if _kept(steady, p, n, a)}
                    # the directories of its names are logged with it (btrfs)
                    fsynced.update((parent, *after.ancestors(parent)))
            why = f"{describe(op)} returned"
        elif sync_fd and k in (OpKind.WRITE, OpKind.REFLINK):
            # O_SYNC is write(2)'s promise; generic/628 holds a remap to it too.
            # fallocate and copy_file_range promise nothing of the kind.
            ino = before.fds[op.fd][0]
            if k is OpKind.REFLINK:
                cloned = len(before.inodes[before.source(op)].data)
                # btrfs and xfs return before their sync when the source is empty
                # (nothing remapped), and sync only the remapped range: a longer
                # destination's tail and size may still be in memory only
                if not cloned or len(after.inodes[ino].data) != cloned:
                    continue
            facts |= {("data", ino), ("size", ino)}
            why = f"{describe(op)} returned (O_SYNC)"
        else:
            continue
        out.append(Promise(i, frozenset(facts), why))
    return out


def describe(op: Op) -> str:
    """An operation in words, as a C programmer would write the call."""
    k = op.kind.value
    fd = f"fd{op.fd}" if op.fd >= 0 else ""
    if op.kind is OpKind.OPEN:
        flags = "|".join(["O_RDWR", *(f"O_{f.upper()}" for f in op.flags)])
        return f"fd{op.fd} = open({op.path}, {flags})"
    if op.kind is OpKind.OPENDIR:
        return f"fd{op.fd} = open({op.path or '.'}, O_DIRECTORY)"
    if op.kind is OpKind.WRITE:
        return f"pwrite({fd}, 0x{op.value:02x} x {op.length}, {op.offset})"
    if op.kind is OpKind.TRUNCATE:
        return f"truncate({op.path}, {op.length})"
    if op.kind is OpKind.FALLOCATE:
        return f"fallocate({fd}, {'|'.join(op.flags) or '0'}, {op.offset}, {op.length})"
    if op.kind in (OpKind.LINK, OpKind.RENAME):
        flags = f", {'|'.join(op.flags)}" if op.flags else ""
        return f"{k}({op.path}, {op.dest}{flags})"
    if op.kind is OpKind.SYMLINK:
        return f"symlink({op.name}, {op.dest})"
    if op.kind is OpKind.SETXATTR:
        return f"setxattr({op.path}, {op.name})"
    if op.kind is OpKind.REMOVEXATTR:
        return f"removexattr({op.path}, {op.name})"
    if op.kind is OpKind.CHMOD:
        return f"chmod({op.path}, {op.value:o})"
    if op.kind is OpKind.REFLINK:
        return f"ioctl({fd}, FICLONE, open({op.path}))"
    if op.kind is OpKind.COPY_RANGE:
        return f"copy_file_range(open({op.path}), 0, {fd}, {op.offset}, {op.length})"
    if op.kind is OpKind.SYNC:
        return "sync()"
    if op.kind.persists or op.kind is OpKind.CLOSE:
        return f"{k}({fd or (op.path or '.') + ' (fresh fd)'})"
    return f"{k}({op.path})"


@dataclass(frozen=True)
class Broken:
    """A promised fact a crash state does not hold."""

    fact: str  # "entry", "data", ...
    path: str
    promise: str
    promised_op: int
    expected: str
    found: str


def _kind_word(v: Value) -> str:
    if v is None:
        return "absent"
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
        return {"f": "file", "d": "directory", "l": "symlink"}.get(v[0], "other")
    return str(v)


def observed(node: Node | None, attr: str) -> Value:
    if node is None:
        return None
    if attr == "data":
        return node.sha256 if node.kind == "f" else None
    if attr == "size":
        return node.size if node.kind == "f" else None
    if attr == "mode":
        return node.mode
    if attr == "xattrs":
        return tuple((k, v) for k, v in node.xattrs)
    return node.target if node.kind == "l" else None


def check(made: list[Promise], trees: list[Tree], state: CrashState) -> list[Broken]:
    """Every promised fact the state breaks."""
    seen = {n.path: n for n in state.tree}
    window = trees[: state.issued_through + 2]
    latest: dict[Fact, Promise] = {}
    for p in made:
        if p.op <= state.durable_through:
            for f in p.facts:
                latest[f] = p
    broken: list[Broken] = []
    # name -> the one object it must hold, from promised entries, and that promise
    holds: dict[str, int] = {}
    entries: dict[str, tuple[Fact, Promise]] = {}
    for f, p in sorted(latest.items(), key=lambda x: str(x[0])):
        if f[0] not in ("e", "gone"):
            continue
        allowed = {value(t, f) for t in window[p.op + 1 :]}
        dirs = {t.path_of(int(str(f[1]))) for t in window[p.op + 1 :]}
        if len(dirs) != 1 or None in dirs:
            continue  # the directory moved or went: its entries are checked elsewhere
        d = dirs.pop()
        path = f"{d}/{f[2]}" if d else str(f[2])
        if not _parent_present(seen, path):
            continue  # the directory itself is not durable: nothing to judge here
        node = seen.get(path)
        if f[0] == "gone":
            ino = int(str(f[3]))
            # an object the name also held may look the same (two empty files)
            if (
                allowed == {True}
                and _is_object(trees, ino, node)
                and not any(_is_object(trees, o, node) for o in _held(trees, f) - {ino})
            ):
                broken.append(
                    Broken("entry", path, p.why, p.op, "not the fsync'd object", "that object")
                )
            continue
        found = node.kind if node else None
        kinds = {v[0] if isinstance(v, tuple) else None for v in allowed}
        if found not in kinds:
            broken.append(
                Broken(
                    "entry",
                    path,
                    p.why,
                    p.op,
                    " or ".join(sorted(_kind_word(v) for v in allowed)),
                    _kind_word(None if node is None else (node.kind, 0)),
                )
            )
        inos = {v[1] for v in allowed if isinstance(v, tuple)}
        if len(inos) == 1 and None not in allowed:
            holds[path] = int(str(inos.pop()))
            entries[path] = (f, p)
    stale: set[str] = set()
    for f, p in sorted(latest.items(), key=lambda x: str(x[0])):
        if f[0] in ("e", "gone"):
            continue
        ino = int(str(f[1]))
        allowed = {value(t, f) for t in window[p.op + 1 :]}
        if f[0] == "data" and len(allowed) > 1:
            # changed since its promise: a write, truncate or fallocate is not
            # atomic on disk (a partial block zeroed before the size commits),
            # so only data nothing has touched since is judged (as CrashMonkey)
            continue
        for path in sorted(n for n, i in holds.items() if i == ino):
            node = seen.get(path)
            if node is None or path in stale:
                continue  # reported as a missing entry, or as an older object
            got = observed(node, str(f[0]))
            if got in allowed:
                continue
            ef, ep = entries[path]
            if _older_object(trees, window, ef, ino, node):
                stale.add(path)
                broken.append(
                    Broken("entry", path, ep.why, ep.op, "the object promised", "an older one")
                )
            else:
                broken.append(Broken(str(f[0]), path, p.why, p.op, _show(allowed), _show({got})))
    return broken


def _is_object(trees: list[Tree], ino: int, node: Node | None) -> bool:
    """The node is that object as it was at some point (same kind; a file's
    data and size, a symlink's target): where no identity survives a crash,
    content is what tells one object from another."""
    if node is None:
        return False
    for t in trees:
        obj = t.inodes.get(ino)
        if obj is None or obj.kind != node.kind:
            continue
        if obj.kind == "f" and value(t, ("data", ino)) == node.sha256:
            return True
        if obj.kind == "l" and obj.target == node.target:
            return True
        if obj.kind == "d":
            return True
    return False


def _held(trees: list[Tree], fact: Fact) -> set[int]:
    """Every object the fact's name pointed at in the program."""
    out = set()
    for t in trees:
        d = t.inodes.get(int(str(fact[1])))
        if d is not None and d.kind == "d" and str(fact[2]) in d.children:
            out.add(d.children[str(fact[2])])
    return out


def _older_object(trees: list[Tree], window: list[Tree], entry: Fact, ino: int, node: Node) -> bool:
    """The name holds another object it held before (its data and size are that
    one's): the change of object was lost, not the object's content."""
    others = {v[1] for t in window for v in [value(t, entry)] if isinstance(v, tuple)} - {ino}
    for other in others:
        for t in trees:
            if value(t, ("data", other)) == node.sha256 and value(t, ("size", other)) == node.size:
                return True
    return False


def _parent_present(seen: dict[str, Node], path: str) -> bool:
    head = path.rpartition("/")[0]
    return not head or (head in seen and seen[head].kind == "d")


def _show(values: set[Value], octal: bool = False) -> str:
    def one(v: Value) -> str:
        if octal and isinstance(v, int):
            return f"{v:o}"
        return v[:16] if isinstance(v, str) else str(v)

    return " or ".join(sorted(one(v) for v in values))
