"""HTML pages from templates (report/templates): one stylesheet for every page,
inlined, so each page stands alone. Everything a template prints is escaped
unless the code that made it marks it as markup (inline SVG plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from harness.rundir import write_atomic

_ENV = Environment(
    loader=PackageLoader("harness.report", "templates"),
    autoescape=select_autoescape(["j2", "html"], default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def write_page(path: Path, template: str, **context: Any) -> Path:
    write_atomic(path, _ENV.get_template(template).render(**context))
    return path
