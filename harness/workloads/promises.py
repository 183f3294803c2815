"""What a workload promises at its durability points, and the ledger of kept promises.

A promise is granted only when the step that makes it durable (a `sync`, an
fsync'd write) has returned in the guest before the power cut. A step that removes
an object withdraws every promise about it from the moment it starts: until its own
durability point, the object may or may not be there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Promise:
    kind: str  # image | container | file | absent-image | absent-container
    target: str  # image ref, container name, or "container:NAME:/path" / "volume:NAME:/path"
    step: str  # the durability point that made it
    how: str  # "sync" or "fsync": what made it durable
    sha256: str = ""  # files: the content that must be there
    check: str = ""  # images: the command a fresh container must pass
    manifest: str = ""  # images: "sha256  /path" lines the image's files must match

    def key(self) -> str:
        """Later promises about the same object replace earlier ones."""
        base = self.kind.removeprefix("absent-")
        return f"{base}:{self.target}"

    def describe(self) -> str:
        verb = {
            "image": "image {t} exists, saves and runs",
            "container": "container {t} exists" + (f" ({self.check})" if self.check else ""),
            "file": "{t} has sha256 {s}",
            "absent-image": "removed image {t} stays removed",
            "absent-container": "removed container {t} stays removed",
        }[self.kind]
        return f"{verb.format(t=self.target, s=self.sha256[:16])} (after {self.how} in {self.step})"

    def to_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Ledger:
    """Promises in force: the latest one for each object."""

    promises: dict[str, Promise] = field(default_factory=dict)
    last_point: str = ""  # the last durability point reached

    def grant(self, step: str, promises: list[Promise]) -> None:
        for p in promises:
            self.promises[p.key()] = p
        if promises:
            self.last_point = step

    def revoke(self, keys: list[str]) -> None:
        for k in keys:
            self.promises.pop(k, None)

    def in_force(self) -> list[Promise]:
        return list(self.promises.values())
