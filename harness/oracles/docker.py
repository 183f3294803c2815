"""Docker oracle, through a live dockerd on the recovered disk: it starts, and every
promise in force holds (images exist, save and run; containers exist; fsync'd files
have their content; removed objects stay removed)."""

from __future__ import annotations

import shlex

from harness.guest.agent import AgentClient, Result
from harness.guest.docker import dockerd_log, inventory, start_dockerd
from harness.oracles.verdict import Violation
from harness.storage.backends import Backend
from harness.workloads.promises import Ledger, Promise

SAVE_TMP = "/tmp/crashtest-save.tar"
# dockerd log lines that reveal damage it handled quietly (some only at debug level).
LOG_SIGNS = (
    "Failed to load layer", "Failed to load mount", "not restoring image",
    "layer does not exist", "failed to load container", "invalid mount id value",
    "could not verify layer data", "file integrity checksum failed",
    "error creating overlay mount to", "too many levels of symbolic links",
    "readlink /var/lib/docker/overlay2/l: invalid argument", "failed to register layer",
    "directory not empty", "panic: invalid page type", "invalid freelist page",
    "unexpected end of JSON input", "Error starting daemon",
)
COPY_TMP = "/tmp/crashtest-copy.bin"


def _v(cls: str, state: str, p: Promise, res: Result, fault: str = "",
       **extra: str) -> Violation:
    return Violation(cls, state, p.describe(), {"command": res.cmd, "output": res.evidence(),
                                                **extra}, fault)


def _save(a: AgentClient, ref: str) -> Result:
    """`docker save` re-hashes every layer of the image against its diffID."""
    return a.run(f"docker save -o {SAVE_TMP} {ref}; rc=$?; rm -f {SAVE_TMP}; exit $rc",
                 timeout=120)


def _check_image(a: AgentClient, state: str, p: Promise) -> list[Violation]:
    ref = shlex.quote(p.target)
    res = a.run(f"docker image inspect --format '{{{{.Id}}}}' {ref}", timeout=60)
    if not res.ok:
        return [_v("docker-lost", state, p, res)]
    found = []
    save = _save(a, ref)
    if not save.ok:
        found.append(_v("docker-corruption", state, p, save))
    run = a.run(f"docker run --rm --network none {ref} sh -c {shlex.quote(p.check)}",
                timeout=120)
    if not run.ok:
        found.append(_v("docker-corruption", state, p, run))
    return found


def _check_exists(a: AgentClient, kind: str, name: str) -> Result:
    return a.run(f"docker {kind} inspect --format '{{{{.Name}}}}' {shlex.quote(name)}",
                 timeout=60)


def _check_file(a: AgentClient, state: str, p: Promise) -> list[Violation]:
    where, name, path = p.target.split(":", 2)
    if where == "container":
        owner = _check_exists(a, "container", name)
        src = f"{shlex.quote(name)}:{shlex.quote(path)}"
        read = f"docker cp {src} {COPY_TMP} && sha256sum {COPY_TMP}"
    else:
        owner = _check_exists(a, "volume", name)
        read = (f"docker run --rm --network none -v {shlex.quote(name)}:/v crashtest/base "
                f"sha256sum /v{shlex.quote(path)}")
    if not owner.ok:
        return [_v("docker-lost", state, p, owner)]
    res = a.run(f"rm -f {COPY_TMP}; {read}", timeout=120)
    got = res.stdout.split()[0] if res.ok and res.stdout.split() else ""
    if got != p.sha256:
        return [_v("fs-durability", state, p, res, expected=p.sha256, got=got or "(unreadable)")]
    return []


def _check_absent(a: AgentClient, state: str, p: Promise) -> list[Violation]:
    kind = "image" if p.kind == "absent-image" else "container"
    res = _check_exists(a, kind, p.target)
    return [_v("fs-durability", state, p, res)] if res.ok else []


CHECKS = {"image": _check_image, "file": _check_file,
          "absent-image": _check_absent, "absent-container": _check_absent}


def check_promises(a: AgentClient, backend: Backend, state: str,
                   ledger: Ledger) -> tuple[list[Violation], str]:
    """Start dockerd and check every promise in force. Returns violations and the
    dockerd log (evidence)."""
    started = start_dockerd(a, backend)
    if not started.ok:
        log = dockerd_log(a)
        return [Violation("docker-corruption", state, "dockerd starts on the recovered disk",
                          {"command": started.cmd, "output": started.evidence(),
                           "dockerd_log_tail": "\n".join(log.splitlines()[-30:])},
                          "docker")], log
    found: list[Violation] = []
    for p in ledger.in_force():
        if p.kind == "container":
            res = _check_exists(a, "container", p.target)
            if not res.ok:
                found.append(_v("docker-lost", state, p, res))
            elif p.check:
                st = a.run("docker inspect --format '{{.State.Status}} {{.State.ExitCode}}' "
                           + shlex.quote(p.target), timeout=60)
                if st.stdout.strip() != p.check:
                    # restoring a container's state after a crash is dockerd's job
                    found.append(_v("docker-corruption", state, p, st, "docker",
                                    expected=p.check))
        else:
            found.extend(CHECKS[p.kind](a, state, p))
    log = dockerd_log(a)
    signs = log_signs(log)
    if signs:
        # Evidence, not verdicts: half-written objects nobody was promised show here too.
        found = [Violation(v.cls, v.state, v.promise, {**v.evidence, "dockerd_log": signs},
                           v.fault)
                 if v.cls.startswith("docker-") else v for v in found]
    return found, log


def check_inventory(a: AgentClient, state: str, point: str,
                    before: dict[str, list[str]]) -> list[Violation]:
    """Everything docker listed at the last durability point (after a sync, nothing
    deleted since) must still be there: a silent drop is docker-lost."""
    after = inventory(a)
    found = []
    for kind in ("images", "containers"):
        gone = sorted(set(before[kind]) - set(after[kind]))
        if gone:
            found.append(Violation(
                "docker-lost", state, f"every {kind[:-1]} docker listed at the durability "
                f"point {point} is still listed",
                {"missing": "\n".join(gone), "before": "\n".join(before[kind]),
                 "after": "\n".join(after[kind])}))
    return found


def log_signs(log: str, limit: int = 20) -> str:
    """The dockerd log lines that carry one of LOG_SIGNS, first `limit` of them."""
    lines = [line for line in log.splitlines() if any(s in line for s in LOG_SIGNS)]
    return "\n".join(lines[:limit])


def what_docker_says(a: AgentClient, found: list[Violation]) -> list[Violation]:
    """For each damaged image the offline check found, what the running dockerd
    makes of it: it lists the image as usable, and `docker save` (which re-hashes
    every layer) is the only thing that notices."""
    out = []
    for v in found:
        image = v.evidence.get("image", "")
        if not image:
            out.append(v)
            continue
        ref = shlex.quote(image)
        listed = a.run(f"docker image inspect --format '{{{{.Id}}}} {{{{.RepoTags}}}}' {ref}",
                       timeout=60)
        save = _save(a, ref)
        out.append(Violation(v.cls, v.state, v.promise, {
            **v.evidence,
            "docker_lists_it": listed.evidence(), "docker_save": save.evidence()}, v.fault))
    return out
