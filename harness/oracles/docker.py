"""The daemon stage of the check sequence: a live dockerd on the recovered disk."""

from __future__ import annotations

import shlex

from crashtest_guest import DOCKER_CLI
from crashtest_guest.protocol import CommandRun, ImageCheckRequest, ImageToRun
from harness.errors import HarnessError
from harness.guest.agent import AgentClient, Result
from harness.guest.docker import dockerd_log, inventory, start_dockerd
from harness.model import InvariantKind, Promise, PromiseKind, Stage, Violation
from harness.storage.backends import Backend
from harness.workloads.api import Invariant

SAVE_TMP = "/tmp/crashtest-save.tar"
# dockerd log lines that reveal damage it handled quietly (some only at debug level).
LOG_SIGNS = (
    "Failed to load layer",
    "Failed to load mount",
    "not restoring image",
    "layer does not exist",
    "failed to load container",
    "invalid mount id value",
    "could not verify layer data",
    "file integrity checksum failed",
    "error creating overlay mount to",
    "too many levels of symbolic links",
    "readlink /var/lib/docker/overlay2/l: invalid argument",
    "failed to register layer",
    "directory not empty",
    "panic: invalid page type",
    "invalid freelist page",
    "unexpected end of JSON input",
    "Error starting daemon",
)


def _v(
    cls: str, state: str, p: Promise, res: Result, check: str, fault: str = "", **extra: str
) -> Violation:
    return Violation(
        cls,
        state,
        p.describe(),
        {"command": res.cmd, "output": res.evidence(), **extra},
        fault,
        check,
        p.key(),
    )


def _save(a: AgentClient, ref: str) -> Result:
    """`docker save` re-hashes every layer of the image against its diffID."""
    return a.run(f"docker save -o {SAVE_TMP} {ref}; rc=$?; rm -f {SAVE_TMP}; exit $rc", timeout=120)


IMAGE_STEPS = (
    ("docker-lost", "docker.image-listed"),
    ("docker-corruption", "docker.save"),
    ("docker-corruption", "docker.run"),
)


def _check_images(a: AgentClient, state: str, promises: list[Promise]) -> list[Violation]:
    """Each promised image listed, saved and run, all images side by side in one
    guest call; an image promised twice is checked once (with the last promise's
    command)."""
    if not promises:
        return []
    by_ref = {p.target: p for p in promises}
    req = ImageCheckRequest(tuple(ImageToRun(ref, p.run or "true") for ref, p in by_ref.items()))
    got = a.call(DOCKER_CLI, "check_images", req.to_json(), timeout=400)
    if not isinstance(got, list) or len(got) != len(by_ref):
        raise HarnessError(f"the guest's image checks answered {str(got)[:200]!r}")
    found = []
    for steps, p in zip(got, by_ref.values(), strict=True):
        for (cls, check), step in zip(IMAGE_STEPS, steps, strict=False):
            run = CommandRun.from_json(step)
            res = Result(run.cmd, run.rc, run.stdout, run.stderr, run.duration)
            a.note(
                f"$ {res.cmd}\n(exit {res.rc} in {res.duration:.2f}s) "
                f"{(res.stdout + res.stderr)[-2000:]}"
            )
            if not res.ok:
                found.append(_v(cls, state, p, res, check))
    return found


def _check_container_state(a: AgentClient, state: str, p: Promise) -> list[Violation]:
    st = a.run(
        "docker inspect --format '{{.State.Status}} {{.State.ExitCode}}' " + shlex.quote(p.target),
        timeout=60,
    )
    if not st.ok:
        return [_v("docker-lost", state, p, st, "docker.container-listed")]
    if st.stdout.strip() != p.state:
        # restoring a container's state after a crash is dockerd's job
        return [
            _v(
                "docker-corruption",
                state,
                p,
                st,
                "docker.container-state",
                "docker",
                expected=p.state,
            )
        ]
    return []


def daemon_checks(
    a: AgentClient,
    backend: Backend,
    state: str,
    promises: list[Promise],
    invariants: tuple[Invariant, ...],
    offline_found: list[Violation],
) -> tuple[list[Violation], str, bool]:
    """The daemon stage: dockerd starts on the recovered disk (mounted read-write),
    then what only a running dockerd shows: promised images save (a re-hash of every
    layer) and run their command, containers come back in their promised state, and
    the workload's daemon invariants hold. Files and removed objects were settled
    offline; an object the offline stage already found broken gets docker's view
    as evidence instead of a second verdict. Returns verdicts, the dockerd log and
    whether dockerd is up."""
    started = start_dockerd(a, backend)
    if not started.ok:
        log = dockerd_log(a)
        if not any(i.kind == InvariantKind.DOCKERD_STARTS for i in invariants):
            return [], log, False
        return (
            [
                Violation(
                    "docker-corruption",
                    state,
                    "dockerd starts on the recovered disk",
                    {
                        "command": started.cmd,
                        "output": started.evidence(),
                        "dockerd_log_tail": "\n".join(log.splitlines()[-30:]),
                    },
                    "docker",
                    "invariant.dockerd-starts",
                    "dockerd",
                )
            ],
            log,
            False,
        )
    broken = {v.subject for v in offline_found}
    open_promises = [p for p in promises if p.key() not in broken]
    found = _check_images(a, state, [p for p in open_promises if p.kind == PromiseKind.IMAGE])
    for p in open_promises:
        if p.kind == PromiseKind.CONTAINER and p.state:
            found.extend(_check_container_state(a, state, p))
    for inv in invariants:
        if inv.kind == InvariantKind.COMMAND and inv.stage == Stage.DAEMON:
            res = a.run(inv.command, timeout=300)
            if not res.ok:
                found.append(
                    Violation(
                        inv.cls,
                        state,
                        inv.describe(),
                        {"command": res.cmd, "output": res.evidence()},
                        "",
                        inv.id,
                        inv.command,
                    )
                )
    log = dockerd_log(a)
    signs = log_signs(log)
    if signs:
        # Evidence, not verdicts: half-written objects nobody was promised show here too.
        found = [
            v.with_evidence(dockerd_log=signs) if v.cls.startswith("docker-") else v for v in found
        ]
    return found, log, True


def check_inventory(
    a: AgentClient, state: str, point: str, before: dict[str, list[str]]
) -> list[Violation]:
    """Everything docker listed at the last durability point (after a sync, nothing
    deleted since) must still be there: a silent drop is docker-lost."""
    after = inventory(a)
    found = []
    for kind in ("images", "containers"):
        gone = sorted(set(before[kind]) - set(after[kind]))
        if gone:
            found.append(
                Violation(
                    "docker-lost",
                    state,
                    f"every {kind[:-1]} docker listed at the durability "
                    f"point {point} is still listed",
                    {
                        "missing": "\n".join(gone),
                        "before": "\n".join(before[kind]),
                        "after": "\n".join(after[kind]),
                    },
                    check="docker.inventory",
                    subject=kind,
                )
            )
    return found


def log_signs(log: str, limit: int = 20) -> str:
    """The dockerd log lines that carry one of LOG_SIGNS, first `limit` of them."""
    lines = [line for line in log.splitlines() if any(s in line for s in LOG_SIGNS)]
    return "\n".join(lines[:limit])


def what_docker_says(a: AgentClient, found: list[Violation]) -> list[Violation]:
    """For each damaged image the offline stage found, what the running dockerd
    makes of it: it may list the image as usable, and `docker save` (which
    re-hashes every layer) is the only thing that notices."""
    out = []
    seen: dict[str, dict[str, str]] = {}  # one inspect and one save per image
    for v in found:
        image = v.evidence.get("image", "")
        if not image:
            out.append(v)
            continue
        if image not in seen:
            ref = shlex.quote(image)
            listed = a.run(
                f"docker image inspect --format '{{{{.Id}}}} {{{{.RepoTags}}}}' {ref}", timeout=60
            )
            seen[image] = {
                "docker_lists_it": listed.evidence(),
                "docker_save": _save(a, ref).evidence(),
            }
        out.append(v.with_evidence(**seen[image]))
    return out
