"""Verdicts: a violated promise, its class and the evidence that shows it."""

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


@dataclass(frozen=True)
class Violation:
    cls: str
    state: str
    promise: str
    evidence: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cls not in CLASSES:
            raise ValueError(f"unknown verdict class {self.cls!r}")

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["class"] = d.pop("cls")
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Violation:
        ev = d.get("evidence") or {}
        return cls(str(d["class"]), str(d["state"]), str(d["promise"]),
                   {str(k): str(v) for k, v in dict(ev).items()})  # type: ignore[call-overload]

    def headline(self) -> str:
        return f"[{self.cls}] {self.state}: {self.promise}"
