"""`copy-up`: a running container changes files that live in its image's layers:
append, overwrite in place, truncate, rename, delete (a whiteout), chmod and chown
(metadata-only copy-up), on a large and a small file each; once with fsync of the
files and their directory, once without.

Promises: every fsync'd change is exact (content, mode and owner; a renamed or
deleted file stays gone). Measured, not judged: what each unsynced file is in the
crash states before the closing sync (its image's content, the new content,
empty, absent, or something else): overlayfs copy-up had no fsync before 4.9, a
data fsync since, and a metadata fsync from 6.12 (seed-science.md §5).
"""

from __future__ import annotations

from harness.workloads import (
    Barrier,
    Observation,
    Promise,
    Step,
    Workload,
    absent_file,
    container,
    file,
    image,
    observe,
)
from harness.workloads.scenarios.common import BASE, Context, import_base, sha

NAME = "copier"
SIZES = {"big": 1 << 20, "small": 3000}
PAYLOAD = 8192  # bytes appended, or written over the middle of a file
OPS = ("append", "overwrite", "truncate", "rename", "delete", "chmod", "chown")


LOWER_META = "644 0 0"  # as COPY leaves the context's files: mode 0644, root's
State = tuple[bytes, str] | None  # content and "MODE UID GID", or gone


def _changes(
    lower: dict[str, bytes], payload: dict[str, bytes], mode: str
) -> tuple[list[str], list[str], dict[str, State]]:
    """Shell commands for one sync mode ("f": fsync'd, "n": not), the paths to
    fsync, and what each changed path holds afterwards."""
    cmds: list[str] = []
    after: dict[str, State] = {}
    for op in OPS:
        for size in SIZES:
            name = f"{op}-{size}-{mode}"
            path, old, new = f"/lower/{name}", lower[name], payload.get(name, b"")
            if op == "append":
                cmds.append(f"cat /src/{name} >> {path}")
                after[path] = (old + new, LOWER_META)
            elif op == "overwrite":  # in place: 1 KiB in, inside the file
                cmds.append(f"dd if=/src/{name} of={path} bs=512 seek=2 conv=notrunc 2>/dev/null")
                after[path] = (old[:1024] + new + old[1024 + len(new) :], LOWER_META)
            elif op == "truncate":
                cmds.append(f"truncate -s {len(old) // 3} {path}")
                after[path] = (old[: len(old) // 3], LOWER_META)
            elif op == "rename":
                cmds.append(f"mv {path} {path}.renamed")
                after[path], after[path + ".renamed"] = None, (old, LOWER_META)
            elif op == "delete":
                cmds.append(f"rm {path}")
                after[path] = None
            elif op == "chmod":
                cmds.append(f"chmod 600 {path}")
                after[path] = (old, "600 0 0")
            else:
                cmds.append(f"chown 1234:5678 {path}")
                after[path] = (old, "644 1234 5678")
    sync = [p for p, v in after.items() if v is not None]
    return cmds, [*sync, "/lower"], after


def _fingerprint(state: State) -> str:
    return "absent" if state is None else f"{sha(state[0])} {state[1]}"


def _promises(after: dict[str, State]) -> list[Promise]:
    out = []
    for path, state in after.items():
        target = f"container:{NAME}:{path}"
        if state is None:
            out.append(absent_file(target))
        else:
            out.append(file(target, sha(state[0]), metadata=True))
    return out


def _observations(lower: dict[str, bytes], after: dict[str, State]) -> list[Observation]:
    """Each changed path: its image's version ("old": absent for a rename's new
    name) or the change's ("new")."""
    out = []
    for path, state in after.items():
        name = path.removeprefix("/lower/")
        old: State = (lower[name], LOWER_META) if name in lower else None
        out.append(
            observe(f"container:{NAME}:{path}", old=_fingerprint(old), new=_fingerprint(state))
        )
    return out


def workload(seed: int) -> Workload:
    ref = f"crashtest/copy-up-lower:s{seed}"
    seeded = []
    for mode in "fn":
        for op in OPS:
            for size, n in SIZES.items():
                name = f"{op}-{size}-{mode}"
                seeded.append((f"lower/{name}", n))
                if op in ("append", "overwrite"):
                    seeded.append((f"src/{name}", min(PAYLOAD, n // 2)))
    dockerfile = f"FROM {BASE}\nCOPY lower/ /lower/\nCOPY src/ /src/\n"
    ctx = Context(ref, f"{ref}:{seed}", tuple(seeded), (("Dockerfile", dockerfile),))
    lower = {p.removeprefix("lower/"): ctx.content(p) for p, _ in seeded if p.startswith("lower/")}
    payload = {p.removeprefix("src/"): ctx.content(p) for p, _ in seeded if p.startswith("src/")}
    manifest = "".join(f"{sha(v)}  /lower/{k}\n" for k, v in sorted(lower.items()))
    fsynced_cmds, fsynced_paths, fsynced = _changes(lower, payload, "f")
    plain_cmds, _, plain = _changes(lower, payload, "n")
    exec_ = f"docker exec {NAME} sh -e -c"
    steps = [
        import_base(),
        ctx.build("build-lower", barrier=Barrier.SYNC, promises=(image(ref, "true", manifest),)),
        Step(
            "start",
            f"docker run -d --name {NAME} --network none {ref} sleep 100000",
            Barrier.SYNC,
            "build-lower",
            [container(NAME)],
        ),
        Step(
            "change-fsync",
            f"{exec_} '{' && '.join(fsynced_cmds)} && sync {' '.join(fsynced_paths)}'",
            Barrier.FSYNC,
            "start",
            _promises(fsynced),
        ),
        # What a cut leaves of these is observed until the sync below makes them durable.
        Step(
            "change-plain",
            f"{exec_} '{' && '.join(plain_cmds)}'",
            needs="start",
            observes=_observations(lower, plain),
        ),
        Step("sync", "true", Barrier.SYNC, "change-plain", _promises(plain)),
    ]
    return Workload(
        "copy-up",
        steps,
        seed,
        description="a running container appends to, overwrites, truncates, renames, "
        "deletes, chmods and chowns files of its image, with and without fsync",
        damage_target="/lower/append-big-f",
        cuts=("after:change-fsync", "after:change-plain", "during:change-plain:1"),
    )
