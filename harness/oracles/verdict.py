"""Verdicts: a violated promise, its class, whose fault it is and the evidence."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# fs-corruption: fsck, scrub, mount or kernel console show filesystem damage.
# fs-durability: something made durable (sync/fsync) is missing or different.
# docker-corruption: layer content or docker metadata is damaged.
# docker-lost: a docker object promised durable is missing.
# leak: left-over state that wastes space but breaks nothing.
# harness-error: the harness could not decide (reported apart, never a pass).
CLASSES = ("fs-corruption", "fs-durability", "docker-corruption", "docker-lost", "leak",
           "harness-error")

# Whose promise was broken. A workload promise is made by `sync`/fsync, so breaking
# it is the filesystem's fault; docker's own promise (an object it lists after a
# restart is usable) is docker's, as docker registers layers durably without making
# their files durable first.
FAULTS = {
    "filesystem": "the filesystem lost or damaged what sync/fsync had made durable, or "
                  "its recovery left it inconsistent",
    "kernel": "the kernel failed (BUG, Oops, panic, hung task) outside filesystem code",
    "docker": "docker left an object it lists as usable with content or metadata that "
              "was never made durable, or did not restore or clean up its own state",
    "configuration": "the filesystem was told not to flush the disk cache (barrier=0, "
                     "nobarrier), so a power cut may lose anything written since mount",
    "harness": "the harness could not decide",
    "unknown": "no durability point is known for this disk (crashtest check), so the "
               "damage cannot be laid at anyone's door",
}
_DEFAULT_FAULT = {"fs-corruption": "filesystem", "fs-durability": "filesystem",
                  "docker-corruption": "filesystem", "docker-lost": "filesystem",
                  "leak": "docker", "harness-error": "harness"}


@dataclass(frozen=True)
class Violation:
    cls: str
    state: str
    promise: str
    evidence: dict[str, str] = field(default_factory=dict)
    fault: str = ""  # a FAULTS key; empty: the class's usual one

    def __post_init__(self) -> None:
        if self.cls not in CLASSES:
            raise ValueError(f"unknown verdict class {self.cls!r}")
        if not self.fault:
            object.__setattr__(self, "fault", _DEFAULT_FAULT[self.cls])
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}")

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["class"] = d.pop("cls")
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Violation:
        ev = d.get("evidence") or {}
        return cls(str(d["class"]), str(d["state"]), str(d["promise"]),
                   {str(k): str(v) for k, v in dict(ev).items()},  # type: ignore[call-overload]
                   str(d.get("fault") or ""))

    def headline(self) -> str:
        return f"[{self.cls}, {self.fault}'s fault] {self.state}: {self.promise}"


def blame_configuration(found: list[Violation], option: str) -> list[Violation]:
    """A lost disk cache under `option` (which turns flushes off): what the
    filesystem could not keep is the configuration's fault."""
    if not option:
        return found
    return [Violation(v.cls, v.state, v.promise, {**v.evidence, "configuration": option},
                      "configuration") if v.fault == "filesystem" else v for v in found]
