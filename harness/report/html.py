"""`crashtest report DIR...`: one static HTML page from result directories.

The kernel x backend x workload matrix (pass/fail, states checked), every
violation with its evidence and reproducer command, timings, and small inline
SVG plots. No scripts and no external files: the page can be mailed or archived.
"""

from __future__ import annotations

import html
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.model import CLASSES, FAULTS


@dataclass
class Cell:
    run: str
    run_dir: Path
    kernel: str
    backend: str
    workload: str
    data: dict[str, Any]
    release: str = ""

    @property
    def row(self) -> str:
        return " · ".join(x for x in (self.kernel, self.release) if x)

    @property
    def failing(self) -> int:
        return sum(1 for v in self.data["violations"] if v["class"] != "leak")

    @property
    def status(self) -> str:
        if self.failing:
            return "fail"
        return "error" if self.data["harness_errors"] else "pass"


def find_runs(dirs: list[Path]) -> list[Path]:
    """Result directories holding a summary.json: the ones given, or the runs under them."""
    runs: list[Path] = []
    for d in dirs:
        if (d / "summary.json").is_file():
            runs.append(d)
            continue
        if not d.is_dir():
            raise InputError(f"report: {d} is not a directory")
        found = sorted(p.parent for p in d.glob("*/summary.json") if not p.parent.is_symlink())
        if not found:
            raise InputError(f"report: no summary.json in {d} or its subdirectories")
        runs.extend(found)
    return list(dict.fromkeys(r.resolve() for r in runs))


def load_cells(runs: list[Path]) -> list[Cell]:
    cells = []
    for run in runs:
        try:
            doc = json.loads((run / "summary.json").read_text())
            for b in doc["backends"]:
                cells.append(Cell(str(doc.get("run_id", run.name)), run, b["kernel"],
                                  b["backend"],
                                  str(b.get("workload") or doc.get("workload", "default")), b,
                                  str(b.get("release", ""))))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"report: {run}/summary.json is not a crashtest summary ({e})") from e
    return cells


def _bars(title: str, values: dict[str, float], unit: str = "") -> str:
    """A horizontal bar chart as inline SVG."""
    if not values:
        return ""
    width, row = 520, 22
    top = max(values.values()) or 1
    label_w = min(260, 8 * max(len(k) for k in values) + 10)
    h = row * len(values) + 30
    out = [f'<figure><figcaption>{html.escape(title)}</figcaption>'
           f'<svg width="{width}" height="{h}" role="img">']
    for i, (k, v) in enumerate(values.items()):
        y = 10 + i * row
        w = (width - label_w - 70) * v / top
        out.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{html.escape(k)}'
                   f'</text><rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row - 6}" '
                   f'class="bar"/><text x="{label_w + w + 4:.1f}" y="{y + 14}">'
                   f'{v:g}{html.escape(unit)}</text>')
    out.append("</svg></figure>")
    return "".join(out)


def _matrix(cells: list[Cell]) -> str:
    rows = sorted({c.row for c in cells})
    cols = sorted({(c.workload, c.backend) for c in cells})
    out = ['<table class="matrix"><tr><th>kernel · release \\ workload / backend</th>']
    out += [f"<th>{html.escape(w)}<br><small>{html.escape(b)}</small></th>" for w, b in cols]
    out.append("</tr>")
    for k in rows:
        out.append(f"<tr><th>{html.escape(k)}</th>")
        for w, b in cols:
            here = [c for c in cells if (c.row, c.backend, c.workload) == (k, b, w)]
            if not here:
                out.append('<td class="none">not run</td>')
                continue
            status = ("fail" if any(c.status == "fail" for c in here) else
                      "error" if any(c.status == "error" for c in here) else "pass")
            states = sum(c.data["states_checked"] for c in here)
            bad = sum(c.failing for c in here)
            errs = sum(len(c.data["harness_errors"]) for c in here)
            out.append(f'<td class="{status}"><b>{status.upper()}</b><br>{states} states'
                       f"<br>{bad} violations" + (f", {errs} harness errors" if errs else "")
                       + f"<br><small>{len(here)} run(s)</small></td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _violations(cells: list[Cell]) -> str:
    out = []
    for c in cells:
        for s in c.data.get("states", []):
            bad = [v for v in s["violations"] if v["class"] != "leak"]
            if not bad:
                continue
            out.append(f'<section class="violation"><h3>{html.escape(s["state"])}</h3>'
                       f"<p>{html.escape(c.kernel)} · {html.escape(c.backend)} · run "
                       f"{html.escape(c.run)} · {html.escape(s.get('plan', ''))}</p>")
            if s.get("bundle"):
                cmd = f"crashtest repro {c.run_dir / s['bundle']}"
                out.append(f"<p>reproduce: <code>{html.escape(cmd)}</code></p>")
            for v in bad:
                fault = v.get("fault", "")
                out.append(f'<p><span class="cls">{html.escape(v["class"])}</span> '
                           f'{html.escape(v["promise"])} <span class="fault" title="'
                           f'{html.escape(FAULTS.get(fault, ""))}">fault: '
                           f'{html.escape(fault)}</span></p>')
                for key, val in v.get("evidence", {}).items():
                    out.append(f"<details><summary>{html.escape(key)}</summary>"
                               f"<pre>{html.escape(str(val)[-6000:])}</pre></details>")
            out.append("</section>")
    return "".join(out) or "<p>No violations.</p>"


def _timings(cells: list[Cell]) -> str:
    keys = ["live_cycle_wall_s", "replay_state_wall_s", "verify_boot_s", "workload_workload_s"]
    out = ["<table><tr><th>run</th><th>kernel</th><th>backend</th><th>accel</th>"
           "<th>wall s</th>" + "".join(f"<th>{k}</th>" for k in keys) + "</tr>"]
    for c in cells:
        t = c.data.get("mean_timings_s", {})
        out.append(f"<tr><td>{html.escape(c.run)}</td><td>{html.escape(c.kernel)}</td>"
                   f"<td>{html.escape(c.backend)}</td><td>{html.escape(str(c.data['accel']))}"
                   f"</td><td>{c.data['wall_s']}</td>"
                   + "".join(f"<td>{t.get(k, '')}</td>" for k in keys) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _observed(cells: list[Cell]) -> str:
    """What observed files (files changed without fsync) were in the crash states."""
    rows = []
    for c in cells:
        for target, counts in c.data.get("observed", {}).items():
            text = ", ".join(f"{label} {n}" for label, n in counts.items())
            rows.append(f"<tr><td>{html.escape(c.workload)}</td><td>{html.escape(c.row)}</td>"
                        f"<td>{html.escape(c.backend)}</td><td><code>{html.escape(target)}"
                        f"</code></td><td>{html.escape(text)}</td></tr>")
    if not rows:
        return "<p>None.</p>"
    return ("<table><tr><th>workload</th><th>kernel · release</th><th>backend</th>"
            "<th>file</th><th>states by outcome</th></tr>" + "".join(rows) + "</table>")


def _errors(cells: list[Cell]) -> str:
    rows = [f"<li>{html.escape(c.run)} {html.escape(e['state'])}: "
            f"<code>{html.escape(e['error'])}</code></li>"
            for c in cells for e in c.data["harness_errors"]]
    return f"<ul>{''.join(rows)}</ul>" if rows else "<p>None.</p>"


STYLE = """body{font:14px sans-serif;margin:2em;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px}
td.pass{background:#d8f0d8}td.fail{background:#f6caca}td.error{background:#f6e7b0}
td.none{color:#888}.bar{fill:#4a78b5}svg text{font:12px sans-serif}
.violation{border-left:4px solid #c33;padding-left:1em;margin:1em 0}
.cls{background:#c33;color:#fff;padding:1px 6px;border-radius:3px}
.fault{color:#555;font-style:italic}
pre{background:#f4f4f4;padding:6px;overflow:auto;max-height:24em}
figure{display:inline-block;margin:0 2em 1em 0}figcaption{font-weight:bold}"""


def write_report(dirs: list[Path], out: Path | None = None) -> Path:
    runs = find_runs(dirs)
    cells = load_cells(runs)
    out = out or (runs[0] / "report.html" if len(runs) == 1 else dirs[0] / "report.html")
    label = {id(c): f"{c.kernel.split('-')[0]} {c.backend}" for c in cells}
    states = Counter[str]()
    for c in cells:
        states[label[id(c)]] += c.data["states_checked"]
    classes = Counter(v["class"] for c in cells for v in c.data["violations"])
    per_state: dict[str, float] = {}
    for kind in ("live", "replay"):
        walls = [s["wall_s"] for c in cells for s in c.data.get("states", []) if s["kind"] == kind]
        if walls:
            per_state[f"{kind} (mean of {len(walls)})"] = round(sum(walls) / len(walls), 1)
    totals = {"states": sum(c.data["states_checked"] for c in cells),
              "violations": sum(c.failing for c in cells),
              "errors": sum(len(c.data["harness_errors"]) for c in cells)}
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>crashtest report</title><style>{STYLE}</style></head><body>
<h1>crashtest report</h1>
<p>{len(runs)} run(s): {html.escape(", ".join(r.name for r in runs))}. {totals['states']} states
checked, {totals['violations']} violations, {totals['errors']} harness errors.
Generated {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.</p>
<h2>Matrix</h2>{_matrix(cells)}
<h2>Plots</h2>
{_bars("states checked", dict(states))}
{_bars("violations by class", {k: classes.get(k, 0) for k in CLASSES if k != "harness-error"})}
{_bars("time per state", per_state, " s")}
<h2>Violations</h2>{_violations(cells)}
<h2>Observed (not judged): files changed without fsync, per crash state</h2>{_observed(cells)}
<h2>Harness errors</h2>{_errors(cells)}
<h2>Timings (mean seconds)</h2>{_timings(cells)}
</body></html>
"""
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page)
    tmp.replace(out)
    return out
