"""The in-guest offline checker (images/guest/check_state.py): its records as
verdicts, and its store checks on a tree a live cut's guest has mounted."""

from __future__ import annotations

from typing import Any

from harness.errors import HarnessError
from harness.guest.agent import AgentClient
from harness.oracles.verdict import Violation
from harness.storage.backends import Backend

CHECK_TIMEOUT_S = 600.0


def verdicts(records: object, backend: Backend, state: str,
             times: dict[str, float] | None = None) -> list[Violation]:
    """Failed check records as violations; the timings record into `times`."""
    if not isinstance(records, list):
        raise HarnessError(f"state checker returned {type(records).__name__}, not a list")
    found = []
    for r in records:
        if r["check"] == "timings":
            if times is not None:
                times.update({f"guest_{k}_s": round(v, 3) for k, v in r["times"].items()})
            continue
        if not r["ok"]:
            promise = r.get("promise") or {
                "mount": "the filesystem mounts (recovery) in this crash state",
                "umount": "the recovered filesystem unmounts",
                "fsck": f"{backend.fs} fsck is clean after recovery",
                "remount": "the recovered filesystem remounts read-only",
                "scrub": "every btrfs checksum verifies (scrub)",
                "store": "the disk holds a docker image store",
            }[r["check"]]
            evidence = {"command": r["command"], "output": r["output"]}
            if r.get("image"):
                evidence["image"] = r["image"]
            found.append(Violation(r["class"], state, promise, evidence, r.get("fault") or ""))
    return found


def check_registered(agent: AgentClient, backend: Backend, state: str,
                     promised_refs: list[str]) -> list[Violation]:
    """Docker's own promise on the mounted, recovered tree before dockerd starts:
    every image it will restore has intact layers. Images in `promised_refs` are
    left to the workload-promise oracles."""
    req: dict[str, Any] = {"driver": backend.driver, "promises": [], "registered": True,
                           "skip_refs": promised_refs}
    records = agent.call("check_state", "check_tree", req, timeout=CHECK_TIMEOUT_S)
    return verdicts(records, backend, state)
