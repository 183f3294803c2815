"""The known-bug corpus in HTML: one row per entry (the fix, its fstests test, how
often crashtest caught it with the fix undone, whether the stock tree stayed
clean, build and run time), then each entry's first signature and evidence.
A section of `crashtest report` and the page corpus.html (templates/corpus*.j2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report.render import write_page
from harness.report.summary import Corpus, CorpusEntry


def _rate(entry: CorpusEntry, role: str) -> str:
    r = entry.rate.get(role)
    return f"{r.caught}/{r.runs}" if r else "not run"


def _mean_wall(entry: CorpusEntry) -> str:
    walls = [o.wall_s for outs in entry.runs.values() for o in outs]
    return f"{sum(walls) / len(walls):.0f} s" if walls else ""


def _build_s(entry: CorpusEntry) -> str:
    b = entry.builds.get("buggy") or entry.builds.get("stock")
    return f"{b.build_s / 60:.1f} min" if b else ""


@dataclass(frozen=True)
class CorpusView:
    """What the corpus templates show of one corpus.json; links are relative to
    the page, through `link_base`."""

    doc: Corpus
    link_base: str = ""

    @property
    def where(self) -> str:
        return f"tree {self.doc.tree}" if self.doc.tree else f"kernel {self.doc.kernel}"

    @property
    def status(self) -> str:
        return "complete" if self.doc.complete else f"incomplete ({self.doc.incomplete})"

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "entry": en,
                "buggy": _rate(en, "buggy"),
                "stock": _rate(en, "stock"),
                "build": _build_s(en),
                "mean_run": _mean_wall(en),
            }
            for en in self.doc.entries
        ]

    @property
    def evidence(self) -> list[dict[str, Any]]:
        """Each entry's first violation, per kernel it ran on."""
        out = []
        for en in self.doc.entries:
            for role, outs in en.runs.items():
                first = next((o for o in outs if o.violations), None)
                if first is not None:
                    out.append(
                        {
                            "id": en.id,
                            "role": role,
                            "expected": en.expected,
                            "v": first.violations[0],
                            "link": f"{self.link_base}{first.run_dir}",
                        }
                    )
        return out


def write_corpus_html(doc: Corpus, path: Path) -> Path:
    return write_page(
        path, "corpus.html.j2", title=f"crashtest corpus {doc.run_id}", corpus=CorpusView(doc)
    )
