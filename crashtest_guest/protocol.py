"""What crosses the VM boundary, typed on both sides: the verdict vocabulary, the
offline check's request and outcome, and promise derivation. The host's
`harness.model` re-exports the vocabulary; the guest builds and reads these types
and only the agent's framing turns them into JSON.

Standard library only: it runs on the guest's python3 (3.11 on bookworm).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, TypeVar


class ViolationClass(StrEnum):
    FS_CORRUPTION = "fs-corruption"  # fsck, scrub, mount or kernel console show damage
    FS_DURABILITY = "fs-durability"  # something made durable (sync/fsync) is missing or differs
    DOCKER_CORRUPTION = "docker-corruption"  # layer content or docker metadata is damaged
    DOCKER_LOST = "docker-lost"  # a docker object promised durable is missing
    LEAK = "leak"  # left-over state that wastes space but breaks nothing
    # the console reports a filesystem error in words the oracle does not know,
    # in a state every other check passed: a new kernel's wording, or a bug to triage
    CONSOLE_ONLY = "console-only"
    # a generated program's crash state on one filesystem differs from what every
    # other filesystem recovered, where none of them broke the durability model
    DISCREPANCY = "discrepancy"
    HARNESS_ERROR = "harness-error"  # the harness could not decide

    @property
    def fails(self) -> bool:
        """Leaks and discrepancies alone do not fail a state: a leak breaks no
        promise, a discrepancy breaks none any filesystem documents."""
        return self not in (ViolationClass.LEAK, ViolationClass.DISCREPANCY)


class Fault(StrEnum):
    FILESYSTEM = "filesystem"
    KERNEL = "kernel"
    DOCKER = "docker"
    CONFIGURATION = "configuration"
    HARNESS = "harness"
    UNKNOWN = "unknown"


class PromiseKind(StrEnum):
    FILE = "file"
    IMAGE = "image"
    CONTAINER = "container"
    ABSENT_IMAGE = "absent-image"
    ABSENT_CONTAINER = "absent-container"
    ABSENT_FILE = "absent-file"


class RecordKind(StrEnum):
    """Which step of the offline check a record comes from."""

    MOUNT = "mount"
    REMOUNT = "remount"
    UMOUNT = "umount"
    FSCK = "fsck"
    SCRUB = "scrub"
    STORE = "store"  # docker's store: present, structure, content, leaks
    PROMISE = "promise"
    INVARIANT = "invariant"


_T = TypeVar("_T")


def _build(cls: type[_T], d: dict[str, Any]) -> _T:
    """A dataclass from its JSON form, ignoring keys it does not have."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class PromiseCheck:
    """One promise as the guest checks it: what the host's `model.Promise` holds,
    with its description and key (the host's words for it)."""

    kind: PromiseKind
    target: str
    describe: str = ""
    key: str = ""
    sha256: str = ""
    manifest: str = ""
    image_id: str = ""
    meta: str = ""
    paths: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PromiseCheck:
        p = _build(cls, d)
        return replace(p, kind=PromiseKind(p.kind), paths=tuple(p.paths))


@dataclass(frozen=True)
class ObserveCheck:
    """A file whose outcome is recorded, not judged: `outcomes` maps a label to a
    fingerprint ("absent", or "SHA256 MODE UID GID")."""

    target: str
    outcomes: dict[str, str]


@dataclass(frozen=True)
class CommandCheck:
    """A workload's offline invariant: a command that must succeed."""

    id: str
    command: str
    cls: ViolationClass
    promise: str
    timeout: float = 300.0


@dataclass(frozen=True)
class CheckRequest:
    """One crash state, every offline check. Commands may use {dev}, replaced by
    the disk's device once the guest has found it by `serial`."""

    serial: str
    mount: str
    fsck: str
    fsck_mounted: str = ""  # fsck on the read-only mount, where the tool can
    scrub: str = ""
    driver: str = ""  # docker's storage driver; empty: detect it (a full check)
    full: bool = False  # every image, and leaks (a disk with no promises)
    before: str = ""  # run on the raw disk first
    after_mount: str = ""  # run on the recovered tree first (self-tests damage it)
    registered: bool = False  # every image docker restores must be intact
    promises: tuple[PromiseCheck, ...] = ()
    observe: tuple[ObserveCheck, ...] = ()
    commands: tuple[CommandCheck, ...] = ()

    def with_device(self, dev: str) -> CheckRequest:
        """Its commands with {dev} replaced by the disk's device."""
        commands = ("mount", "fsck", "fsck_mounted", "scrub", "before", "after_mount")
        return replace(self, **{k: getattr(self, k).replace("{dev}", dev) for k in commands})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CheckRequest:
        return replace(
            _build(cls, d),
            promises=tuple(PromiseCheck.from_json(p) for p in d.get("promises", ())),
            observe=tuple(_build(ObserveCheck, o) for o in d.get("observe", ())),
            commands=tuple(
                CommandCheck(**{**c, "cls": ViolationClass(c["cls"])})
                for c in d.get("commands", ())
            ),
        )


@dataclass(frozen=True)
class CheckRecord:
    """One check's result. A failed one (`ok` false) carries its class and, where
    the check knows it, whose fault it is (None: the class's usual one)."""

    check: RecordKind
    ok: bool
    command: str = ""
    output: str = ""
    cls: ViolationClass | None = None
    fault: Fault | None = None
    promise: str = ""  # the promise the check stands for, in words
    subject: str = ""  # a promise's key
    kind: str = ""  # a promise's kind
    id: str = ""  # an invariant's id
    image: str = ""  # the image a store finding is about
    no_trace: bool = False  # store: the disk holds no trace of docker at all

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CheckRecord:
        r = _build(cls, d)
        return replace(
            r,
            check=RecordKind(r.check),
            cls=ViolationClass(r.cls) if r.cls else None,
            fault=Fault(r.fault) if r.fault else None,
        )


@dataclass(frozen=True)
class Observed:
    """What an observed file turned out to be: an outcome's label, "empty" or
    "other", and the fingerprint seen."""

    target: str
    label: str
    value: str


@dataclass
class CheckOutcome:
    """Everything one state's offline check found, and what each phase took (s)."""

    records: list[CheckRecord] = field(default_factory=list)
    observed: list[Observed] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: object) -> CheckOutcome:
        if not isinstance(d, dict):
            raise ValueError(f"a check outcome is an object, not {type(d).__name__}")
        return CheckOutcome(
            [CheckRecord.from_json(r) for r in d.get("records", ())],
            [_build(Observed, o) for o in d.get("observed", ())],
            {str(k): float(v) for k, v in d.get("times", {}).items()},
        )


@dataclass(frozen=True)
class DeriveRequest:
    """Read what promises expect from a live guest's store (read-only)."""

    driver: str
    promises: tuple[PromiseCheck, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DeriveRequest:
        return DeriveRequest(
            str(d["driver"]), tuple(PromiseCheck.from_json(p) for p in d["promises"])
        )


@dataclass(frozen=True)
class Derived:
    """What one promise expects, as the live guest shows it; `error` when it
    cannot be read."""

    sha256: str = ""
    meta: str = ""
    image_id: str = ""
    manifest: str = ""
    error: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Derived:
        return _build(cls, d)


@dataclass(frozen=True)
class ImageToRun:
    """A promised image the daemon stage checks: listed, saved, and run."""

    ref: str
    run: str = "true"


@dataclass(frozen=True)
class ImageCheckRequest:
    images: tuple[ImageToRun, ...]
    timeout: float = 120.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImageCheckRequest:
        return ImageCheckRequest(
            tuple(_build(ImageToRun, i) for i in d["images"]), float(d.get("timeout", 120))
        )


@dataclass(frozen=True)
class CommandRun:
    """One command the guest ran: what it printed, how it exited, how long it took."""

    cmd: str
    rc: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CommandRun:
        return _build(cls, d)


class OpKind(StrEnum):
    """A generated program's file-system operations (crashtest explore)."""

    OPEN = "open"
    OPENDIR = "opendir"
    CLOSE = "close"
    WRITE = "write"
    TRUNCATE = "truncate"
    FALLOCATE = "fallocate"
    LINK = "link"
    SYMLINK = "symlink"
    UNLINK = "unlink"
    RENAME = "rename"
    MKDIR = "mkdir"
    RMDIR = "rmdir"
    SETXATTR = "setxattr"
    REMOVEXATTR = "removexattr"
    CHMOD = "chmod"
    REFLINK = "reflink"
    COPY_RANGE = "copy_range"
    FSYNC = "fsync"
    FDATASYNC = "fdatasync"
    SYNC = "sync"
    SYNCFS = "syncfs"

    @property
    def persists(self) -> bool:
        """A persistence point: what it makes durable is the model's promise."""
        return self in (OpKind.FSYNC, OpKind.FDATASYNC, OpKind.SYNC, OpKind.SYNCFS)


@dataclass(frozen=True)
class Op:
    """One operation. Paths are relative to the program's root. `fd` names a
    descriptor: the one an open makes, or the one an operation uses; a
    persistence point with `fd` -1 and a `path` opens a fresh descriptor for it
    and closes it after; reflink and copy_range write into `fd` from `path`.
    `flags`: open's (creat, trunc, append, sync, direct), rename's (noreplace,
    exchange, whiteout), fallocate's (keep, punch, zero)."""

    kind: OpKind
    path: str = ""
    dest: str = ""  # link, rename and symlink: the new name
    fd: int = -1
    flags: tuple[str, ...] = ()
    offset: int = 0
    length: int = 0
    value: int = 0  # write: the byte written; chmod: the mode; setxattr: the value's byte
    name: str = ""  # an xattr's name; a symlink's target

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Op:
        op = _build(cls, d)
        return replace(op, kind=OpKind(op.kind), flags=tuple(op.flags))


# The tree every generated program starts from, made durable before it runs:
# (path, kind "d"/"f", size, byte). A program's files are filled with one byte.
INITIAL_TREE: tuple[tuple[str, str, int, int], ...] = (
    ("A", "d", 0, 0),
    ("A/foo", "f", 16384, 0x11),
    ("B", "d", 0, 0),
)
FILE_MODE = 0o644
DIR_MODE = 0o755


@dataclass(frozen=True)
class ExploreRequest:
    """Run one program on one filesystem in the guest, record its writes, and
    check each of its crash states. `overlay`: the program runs in an overlay
    whose lower layer holds the initial tree and whose upper is on `fs`."""

    fs: str
    ops: tuple[Op, ...]
    overlay: bool = False
    mount_options: str = ""
    lost: int = 1  # lost-cache states per epoch (subsets of its writes)
    seed: int = 0
    fsck: bool = True
    damage: bool = False  # self-test: each state's superblocks zeroed before it mounts

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExploreRequest:
        r = _build(cls, d)
        return replace(r, ops=tuple(Op.from_json(o) for o in d["ops"]))


@dataclass(frozen=True)
class Node:
    """One name in a recovered tree, as lstat and a read see it."""

    path: str
    kind: str  # "f", "d", "l", or "?" for anything else
    size: int = 0
    sha256: str = ""
    mode: int = 0
    target: str = ""
    xattrs: tuple[tuple[str, str], ...] = ()  # user.* names and hex values, sorted
    ino: int = 0


@dataclass(frozen=True)
class CrashState:
    """One crash state of a program: the log replayed up to `entries` minus
    `dropped`, then mounted and checked. Operations up to `durable_through` had
    returned (their marks are in the replayed log); operations after
    `issued_through` had not started."""

    id: str
    entries: int
    durable_through: int
    issued_through: int
    dropped: tuple[int, ...] = ()
    mounted: bool = True
    mount_output: str = ""
    fsck_rc: int = 0
    fsck_output: str = ""
    console: str = ""
    tree: tuple[Node, ...] = ()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CrashState:
        s = _build(cls, d)
        tree = tuple(
            replace(_build(Node, n), xattrs=tuple((str(k), str(v)) for k, v in n["xattrs"]))
            for n in d.get("tree", ())
        )
        return replace(s, dropped=tuple(s.dropped), tree=tree)


@dataclass(frozen=True)
class ExploreOutcome:
    """One program on one filesystem: each operation's errno (0: it succeeded),
    and every crash state checked."""

    fs: str
    overlay: bool
    errnos: tuple[int, ...]
    states: tuple[CrashState, ...]
    log_entries: int = 0
    run_s: float = 0.0
    check_s: float = 0.0
    error: str = ""  # the guest could not run or check it (a harness error)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExploreOutcome:
        o = _build(cls, d)
        return replace(
            o,
            errnos=tuple(o.errnos),
            states=tuple(CrashState.from_json(s) for s in d.get("states", ())),
        )
