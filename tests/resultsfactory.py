"""Results documents written the way a run writes them, read back as JSON."""

from pathlib import Path
from typing import Any

from harness.report.known import KnownList
from harness.report.results import BackendSummary, write_results
from harness.report.summary import RunMeta


def write_summary(
    run_dir: Path,
    meta: dict[str, Any],
    backends: list[BackendSummary],
    known: KnownList | None = None,
    fail_on: str = "",
) -> dict[str, Any]:
    """summary.json (and junit.xml) in `run_dir`; the document as JSON holds it."""
    doc = write_results(run_dir, RunMeta.model_validate(meta), backends, known, fail_on)
    return doc.model_dump(mode="json", exclude_none=True)
