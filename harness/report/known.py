"""Known failures: a TOML list of failure signatures a run expects (kdevops'
expunge lists, syzbot's known titles), so a nightly run stays green until
something new breaks. Each finding is new, or known by the first entry whose
fields all match it; entries that could have matched a cell of the run but
matched nothing are "known but not seen" (fixed, or not hit this time).

    [[known]]
    id = "docker-unsynced-layer-files"         # required, unique
    check = "invariant.docker-intact"          # the rest are globs (fnmatch), "*" if absent
    class = "docker-corruption"
    fault = "docker"
    object = "layer files match their tar-split CRC64"
    backend = "*"
    kernel = "*"
    release = "*"
    workload = "*"
    links = ["https://github.com/containerd/containerd/issues/5854"]
    reason = "docker never fsyncs layer contents it unpacks"
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.model import CLASSES, FAULTS, Violation

GLOBS = ("check", "class", "fault", "object", "backend", "kernel", "release", "workload")
CELL = ("backend", "kernel", "release", "workload")


@dataclass(frozen=True)
class KnownFailure:
    id: str
    globs: dict[str, str]  # field -> glob, only the fields given
    links: tuple[str, ...] = ()
    reason: str = ""

    def matches(self, v: Violation, cell: dict[str, str]) -> bool:
        values = {
            "check": v.check,
            "class": v.cls,
            "fault": v.fault,
            "object": v.object(),
            **{k: cell.get(k, "") for k in CELL},
        }
        return all(fnmatchcase(values[k], g) for k, g in self.globs.items())

    def applies_to(self, cell: dict[str, str]) -> bool:
        """Could match a finding in this cell (its cell globs match)."""
        return all(fnmatchcase(cell.get(k, ""), g) for k, g in self.globs.items() if k in CELL)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["links"] = list(self.links)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KnownFailure:
        return cls(
            str(d["id"]),
            {str(k): str(v) for k, v in d["globs"].items()},
            tuple(d.get("links") or ()),
            str(d.get("reason") or ""),
        )


@dataclass
class KnownList:
    source: str = ""  # the file it was read from, as given
    entries: list[KnownFailure] = field(default_factory=list)

    def match(self, v: Violation, cell: dict[str, str]) -> str:
        """The id of the first entry that matches, "" for a new finding."""
        if not v.fails:
            return ""
        return next((e.id for e in self.entries if e.matches(v, cell)), "")

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "entries": [e.to_json() for e in self.entries]}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> KnownList:
        d = d or {}
        return cls(
            str(d.get("source", "")), [KnownFailure.from_json(e) for e in d.get("entries", [])]
        )


def load_known(path: Path) -> KnownList:
    """Read and check a known-failures file; every mistake is an InputError."""
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as err:
        raise InputError(f"KNOWN {path}: cannot read it ({err.strerror})") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"KNOWN {path}: not valid TOML ({err})") from err
    extra = set(doc) - {"known"}
    if extra:
        raise InputError(
            f"KNOWN {path}: unknown table(s) {', '.join(sorted(extra))}; entries go in [[known]]"
        )
    raw = doc.get("known", [])
    if not isinstance(raw, list):
        raise InputError(f"KNOWN {path}: `known` must be an array of tables ([[known]])")
    entries: list[KnownFailure] = []
    for n, item in enumerate(raw, 1):
        where = f"KNOWN {path}: entry {n}"
        if not isinstance(item, dict):
            raise InputError(f"{where}: not a table")
        e: dict[str, Any] = item
        unknown = set(e) - {"id", "links", "reason", *GLOBS}
        if unknown:
            raise InputError(
                f"{where}: unknown field(s) {', '.join(sorted(unknown))} "
                f"(fields: id, {', '.join(GLOBS)}, links, reason)"
            )
        ident = e.get("id")
        if not isinstance(ident, str) or not ident:
            raise InputError(f"{where}: needs an id (a non-empty string)")
        where = f"KNOWN {path}: entry {ident!r}"
        if any(x.id == ident for x in entries):
            raise InputError(f"{where}: the id is used twice")
        globs = {k: e[k] for k in GLOBS if k in e}
        bad = [k for k, g in globs.items() if not isinstance(g, str) or not g]
        if bad:
            raise InputError(f"{where}: {', '.join(bad)} must be non-empty strings (globs)")
        for k, allowed in (("class", CLASSES), ("fault", tuple(FAULTS))):
            if k in globs and not any(fnmatchcase(a, globs[k]) for a in allowed):
                raise InputError(f"{where}: {k} {globs[k]!r} matches none of {', '.join(allowed)}")
        links = e.get("links", [])
        if not isinstance(links, list) or not all(isinstance(x, str) for x in links):
            raise InputError(f"{where}: links must be a list of strings")
        reason = e.get("reason", "")
        if not isinstance(reason, str):
            raise InputError(f"{where}: reason must be a string")
        entries.append(KnownFailure(ident, globs, tuple(links), reason))
    return KnownList(str(path), entries)
