"""Running a workload's steps in a live guest, and deriving the values its promises
expect from what the guest holds once a barrier has returned."""

from __future__ import annotations

from dataclasses import replace

from crashtest_guest import CHECKER
from crashtest_guest.protocol import Derived, DeriveRequest
from harness.errors import HarnessError
from harness.guest.agent import AgentClient, Result
from harness.guest.host import guest_host
from harness.model import Promise, PromiseKind
from harness.workloads.api import Step

DERIVE_TIMEOUT_S = 300.0


class StepFailed(HarnessError):
    """A workload step failed before any power cut: the workload, the harness or the
    guest is broken, not the storage stack."""


class StepRunner:
    """Runs steps through the guest agent on a disk that dockerd (driver `driver`)
    keeps its store on."""

    def __init__(self, agent: AgentClient, driver: str) -> None:
        self.agent = agent
        self.driver = driver

    def _must(self, step: Step, cmd: str) -> Result:
        res = self.agent.run(cmd, timeout=step.timeout_s)
        if not res.ok:
            raise StepFailed(
                f"{step.origin}: workload step {step.name} failed: {res.evidence(600)}"
            )
        return res

    def run(self, step: Step) -> None:
        """The step's files and commands, without its barrier."""
        for f in step.files:
            self.agent.put(f.path, f.data, f.mode)
        for cmd in step.run:
            self._must(step, cmd)

    def finish(self, step: Step) -> None:
        """The step's own `sync`, run apart from its commands so a cut can land
        between them (cut kind "returned")."""
        if step.syncs:
            self._must(step, "sync")

    def settle(self, step: Step) -> list[Promise]:
        """After the barrier: the step's checks, then its promises with every
        expected value filled in from the live guest."""
        if step.check:
            host = guest_host(self.agent)
            for cmd in step.check:
                res = host.run(cmd)
                if res.rc != 0:
                    raise StepFailed(
                        f"{step.origin}: workload step {step.name}: check "
                        f"`{cmd}` failed (exit {res.rc}): "
                        f"{(res.stdout + res.stderr).strip()[-600:]}"
                    )
        return derive(self.agent, self.driver, list(step.promises), step)

    def execute(self, step: Step) -> list[Promise]:
        self.run(step)
        self.finish(step)
        return self.settle(step)


def needs_derive(p: Promise) -> bool:
    return (p.kind == PromiseKind.FILE and (not p.sha256 or p.meta == "derive")) or (
        p.kind == PromiseKind.IMAGE and (not p.manifest or not p.image_id)
    )


def derive(
    agent: AgentClient, driver: str, promises: list[Promise], step: Step | None = None
) -> list[Promise]:
    """Fill in what each promise expects (a file's sha256; an image's id and file
    manifest) by reading docker's store in the guest, read-only (no atime writes:
    a recording's write log must show only the workload's writes)."""
    todo = [p for p in promises if needs_derive(p)]
    if not todo:
        return promises
    req = DeriveRequest(driver, tuple(p.to_check() for p in todo))
    got = agent.call(CHECKER, "derive", req.to_json(), timeout=DERIVE_TIMEOUT_S)
    if not isinstance(got, list) or len(got) != len(todo):
        raise HarnessError(f"deriving promise values returned {got!r}")
    values = {p.key(): Derived.from_json(v) for p, v in zip(todo, got, strict=True)}
    out = []
    for p in promises:
        v = values.get(p.key())
        if v is None:
            out.append(p)
            continue
        if v.error:
            where = f"{step.origin}: workload step {step.name}" if step else "promise"
            raise StepFailed(f"{where}: cannot derive what {p.describe()} expects: {v.error}")
        out.append(
            replace(
                p,
                sha256=p.sha256 or v.sha256,
                meta=v.meta if p.meta == "derive" else p.meta,
                manifest=p.manifest or v.manifest,
                image_id=p.image_id or v.image_id,
            )
        )
    return out
