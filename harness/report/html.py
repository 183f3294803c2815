"""`crashtest report DIR...`: one static HTML page from result directories.

The kernel x backend x workload matrix (pass/fail, states checked), every
violation with its evidence and reproducer command, timings, and small inline
SVG plots. No scripts and no external files: the page can be mailed or archived.
"""

from __future__ import annotations

import html
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.model import CLASSES, FAULTS
from harness.report.corpus import corpus_section, load_corpus
from harness.report.diff import find_runs
from harness.report.regress import candidates
from harness.report.summary import BackendRecord, FindingGroup, Summary, load_summary
from harness.rundir import write_atomic


@dataclass
class Cell:
    run: str
    run_dir: Path
    kernel: str
    backend: str
    workload: str
    data: BackendRecord
    release: str = ""
    findings: list[FindingGroup] = field(default_factory=list)  # the run's
    known_entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def row(self) -> str:
        return " · ".join(x for x in (self.kernel, self.release) if x)

    @property
    def failing(self) -> int:
        return sum(1 for v in self.data.violations if v.fails)

    @property
    def status(self) -> str:
        if self.failing:
            return "fail"
        return "error" if self.data.harness_errors else "pass"


def load_cells(docs: dict[Path, Summary]) -> list[Cell]:
    return [
        Cell(
            doc.run_id or run.name,
            run,
            b.kernel,
            b.backend,
            b.workload or doc.workload or "default",
            b,
            b.release,
            doc.findings,
            list(doc.known_failures.get("entries", [])),
        )
        for run, doc in docs.items()
        for b in doc.backends
    ]


def _bars(title: str, values: dict[str, float], unit: str = "") -> str:
    """A horizontal bar chart as inline SVG."""
    if not values:
        return ""
    width, row = 520, 22
    top = max(values.values()) or 1
    label_w = min(260, 8 * max(len(k) for k in values) + 10)
    h = row * len(values) + 30
    out = [
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f'<svg width="{width}" height="{h}" role="img">'
    ]
    for i, (k, v) in enumerate(values.items()):
        y = 10 + i * row
        w = (width - label_w - 70) * v / top
        out.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{html.escape(k)}'
            f'</text><rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row - 6}" '
            f'class="bar"/><text x="{label_w + w + 4:.1f}" y="{y + 14}">'
            f"{v:g}{html.escape(unit)}</text>"
        )
    out.append("</svg></figure>")
    return "".join(out)


def _cell_findings(cell: Cell) -> list[FindingGroup]:
    return [
        f
        for f in cell.findings
        if (f.backend, f.workload or cell.workload, f.release, f.kernel)
        == (cell.backend, cell.workload, cell.release, cell.kernel)
    ]


def _matrix(cells: list[Cell]) -> str:
    """Each cell says whose fault its violations are, new and known apart: docker's
    bugs show as docker's, not as the backend failing."""
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
            found = [f for c in here for f in _cell_findings(c)]
            new = [f for f in found if not f.known]
            errs = sum(len(c.data.harness_errors) for c in here)
            faults = Counter(str(f.fault) for f in new)
            status = (
                ("new-fs" if set(faults) - {"docker"} else "new-docker")
                if new
                else "known"
                if found
                else "error"
                if errs
                else "pass"
            )
            head = {
                "new-fs": "NEW: " + ", ".join(f"{f}'s fault" for f in sorted(faults)),
                "new-docker": "NEW: docker's fault",
                "known": "known only",
                "error": "harness errors",
                "pass": "PASS",
            }[status]
            lines = [f"{sum(c.data.states_checked for c in here)} states"]
            by_fault = Counter[tuple[str, bool]]()
            for f in found:
                by_fault[(f.fault, bool(f.known))] += f.states
            lines += [
                f"{n} states: {fault}'s fault" + (" (known)" if known else "")
                for (fault, known), n in sorted(by_fault.items())
            ]
            if errs:
                lines.append(f"{errs} harness errors")
            out.append(
                f'<td class="{status}"><b>{html.escape(head)}</b><br>'
                + "<br>".join(html.escape(x) for x in lines)
                + "</td>"
            )
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _rel(path: Path, base: Path) -> str:
    return os.path.relpath(path, base)


def _findings(cells: list[Cell], base: Path) -> str:
    """Findings grouped by signature, new first: whose fault, where and how often,
    one example's evidence in full, and the command that reproduces it."""
    groups: dict[str, list[tuple[Cell, FindingGroup]]] = {}
    for c in cells:
        for f in _cell_findings(c):
            groups.setdefault(f.signature, []).append((c, f))
    if not groups:
        return "<p>No violations.</p>"
    known = {e["id"]: e for c in cells for e in c.known_entries}
    out = []
    for sig, members in sorted(
        groups.items(),
        key=lambda kv: (all(f.known for _, f in kv[1]), kv[1][0][1].fault == "docker", kv[0]),
    ):
        first_c, first = members[0]
        is_known = all(f.known for _, f in members)
        fault = first.fault
        states = sum(f.states for _, f in members)
        out.append(
            f'<section class="finding {"known" if is_known else "new"} '
            f'fault-{html.escape(fault)}"><h3><span class="badge">'
            f'{"KNOWN" if is_known else "NEW"}</span> <span class="whose">'
            f"{html.escape(fault)}'s fault</span> {html.escape(first.cls)}: "
            f"{html.escape(sig.rsplit(' | ', 1)[-1])}</h3>"
            f'<p class="sig"><code>{html.escape(sig)}</code></p>'
            f"<p>{states} states in {len(members)} cell(s): "
            + ", ".join(
                html.escape(f"{f.workload} {f.release} {f.kernel} {f.backend} ({f.states})")
                for _, f in members
            )
            + "</p>"
        )
        entry = known.get(first.known)
        if entry:
            links = " ".join(
                f'<a href="{html.escape(u)}">{html.escape(u.split("github.com/")[-1])}</a>'
                for u in entry.get("links", [])
            )
            out.append(
                f"<p>known as <b>{html.escape(entry['id'])}</b>: "
                f"{html.escape(entry.get('reason', ''))} {links}</p>"
            )
        out.append(f'<p class="why">{html.escape(FAULTS.get(fault, ""))}</p>')
        ex = first.example
        out.append(
            f"<p>example: state <code>{html.escape(ex.state)}</code>: {html.escape(ex.promise)}</p>"
        )
        if ex.bundle:
            bundle = first_c.run_dir / ex.bundle
            out.append(
                f"<p>reproduce: <code>crashtest repro {html.escape(_rel(bundle, base))}"
                f'</code> · <a href="{html.escape(_rel(bundle / "console", base))}/">'
                "console logs</a></p>"
            )
        for k, val in ex.evidence.items():
            out.append(
                f'<p class="evk">{html.escape(k)}</p><pre>{html.escape(str(val)[-6000:])}</pre>'
            )
        out.append("</section>")
    return "".join(out)


def _regressions(runs: list[Path]) -> str:
    found = candidates(runs)
    if not found:
        return ""
    rows = "".join(
        f"<tr><td><code>{html.escape(c.signature)}</code></td><td>{html.escape(c.workload)} "
        f"{html.escape(c.release)} {html.escape(c.backend)}</td><td>{html.escape(c.kernel)}</td>"
        f"<td>{html.escape(c.predecessor)}</td><td>{html.escape(c.why)}</td></tr>"
        for c in found
    )
    return (
        "<h2>Regression candidates</h2><p>A signature on a kernel whose predecessor ran "
        "the same cell without it: bisect between the two.</p><table><tr><th>signature</th>"
        "<th>cell</th><th>appeared on</th><th>absent on</th><th>predecessor</th></tr>"
        f"{rows}</table>"
    )


def _not_seen(runs: dict[Path, Summary]) -> str:
    """Known failures that could have shown in these runs and did not: fixed, or
    not hit this time (worth a look before dropping the entry)."""
    docs = list(runs.values())
    lists = [set(d.totals.known_not_seen) for d in docs if d.known_failures.get("entries")]
    gone = set.intersection(*lists) if lists else set()
    if not gone:
        return ""
    entries = {e["id"]: e for d in docs for e in d.known_failures["entries"]}
    items = "".join(
        f"<li><b>{html.escape(i)}</b>: {html.escape(entries[i].get('reason', ''))}</li>"
        for i in sorted(gone)
    )
    return (
        f"<h3>Known, not seen in {'this run' if len(docs) == 1 else 'these runs'}</h3>"
        f"<ul>{items}</ul>"
    )


def _history(cells: list[Cell]) -> str:
    """Each signature across the runs given, oldest first: states that showed it."""
    runs = sorted({c.run for c in cells})
    if len(runs) < 2:
        return ""
    seen: dict[str, Counter[str]] = {}
    for c in cells:
        for f in _cell_findings(c):
            seen.setdefault(f.signature, Counter())[c.run] += f.states
    if not seen:
        return ""
    out = [
        "<h2>History</h2><table><tr><th>signature</th>"
        + "".join(f"<th>{html.escape(r)}</th>" for r in runs)
        + "</tr>"
    ]
    for sig, counts in sorted(seen.items()):
        out.append(
            f"<tr><td><code>{html.escape(sig)}</code></td>"
            + "".join(
                f'<td class="{"hit" if counts[r] else "miss"}">{counts[r] or "-"}</td>'
                for r in runs
            )
            + "</tr>"
        )
    out.append("</table>")
    return "".join(out)


def _environment(runs: dict[Path, Summary]) -> str:
    """What ran, per run: kernels, images, docker, QEMU, accel, seed."""
    out = [
        '<table class="env"><tr><th>run</th><th>kernel</th><th>image · docker</th>'
        "<th>QEMU · accel · seed</th><th>known failures</th></tr>"
    ]
    for run, doc in runs.items():
        kernels = doc.kernels or [doc.kernel_info]
        ktext = "<br>".join(
            html.escape(
                f"{k.get('version', '?')} ({k.get('source', '')}; "
                f"build id {k.get('build_id', '?')[:16]})"
            )
            for k in kernels
        )
        images = "<br>".join(
            html.escape(
                f"{rel}: docker.io {p.get('docker.io', '?')}, "
                f"containerd {p.get('containerd', '?')}, runc {p.get('runc', '?')}"
            )
            for rel, p in doc.releases.items()
        )
        manifest = ", ".join(f"{r} {m}" for r, m in doc.images.items()) or str(
            doc.image_manifest.get("id", "")
        )
        accel = sorted({b.accel for b in doc.backends})
        known = doc.known_failures
        out.append(
            f"<tr><td>{html.escape(doc.run_id or run.name)}</td>"
            f"<td>{ktext}</td><td>{html.escape(manifest)}<br>{images}</td>"
            f"<td>{html.escape(doc.qemu_version or doc.qemu)} · "
            f"{html.escape(', '.join(accel))} · seed {doc.seed}</td>"
            f"<td>{html.escape(known.get('source') or 'none')} "
            f"(fail on {html.escape(doc.fail_on)})</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _timings(cells: list[Cell]) -> str:
    keys = ["live_cycle_wall_s", "replay_state_wall_s", "verify_boot_s", "workload_workload_s"]
    out = [
        "<table><tr><th>run</th><th>kernel</th><th>backend</th><th>accel</th>"
        "<th>wall s</th>" + "".join(f"<th>{k}</th>" for k in keys) + "</tr>"
    ]
    for c in cells:
        t = c.data.mean_timings_s
        out.append(
            f"<tr><td>{html.escape(c.run)}</td><td>{html.escape(c.kernel)}</td>"
            f"<td>{html.escape(c.backend)}</td><td>{html.escape(c.data.accel)}"
            f"</td><td>{c.data.wall_s}</td>"
            + "".join(f"<td>{t.get(k, '')}</td>" for k in keys)
            + "</tr>"
        )
    out.append("</table>")
    return "".join(out)


def _observed(cells: list[Cell]) -> str:
    """What observed files (files changed without fsync) were in the crash states."""
    rows = []
    for c in cells:
        for target, counts in c.data.observed.items():
            text = ", ".join(f"{label} {n}" for label, n in counts.items())
            rows.append(
                f"<tr><td>{html.escape(c.workload)}</td><td>{html.escape(c.row)}</td>"
                f"<td>{html.escape(c.backend)}</td><td><code>{html.escape(target)}"
                f"</code></td><td>{html.escape(text)}</td></tr>"
            )
    if not rows:
        return "<p>None.</p>"
    return (
        "<table><tr><th>workload</th><th>kernel · release</th><th>backend</th>"
        "<th>file</th><th>states by outcome</th></tr>" + "".join(rows) + "</table>"
    )


def _errors(cells: list[Cell]) -> str:
    rows = [
        f"<li>{html.escape(c.run)} {html.escape(e.state)}: <code>{html.escape(e.error)}</code></li>"
        for c in cells
        for e in c.data.harness_errors
    ]
    return f"<ul>{''.join(rows)}</ul>" if rows else "<p>None.</p>"


STYLE = """body{font:14px sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;
vertical-align:top}
td.pass{background:#d8f0d8}td.new-fs{background:#f6caca}td.new-docker{background:#f3d9b1}
td.known{background:#e4e4ea;color:#444}td.error{background:#f6e7b0}td.none{color:#888}
td.hit{background:#f3d9b1;text-align:right}td.miss{color:#888;text-align:right}
.headline{font-size:17px;padding:8px 12px;border-radius:4px}
.headline.red{background:#f6caca}.headline.green{background:#d8f0d8}
.bar{fill:#4a78b5}svg text{font:12px sans-serif}
.finding{border-left:6px solid #c33;padding-left:1em;margin:1.5em 0}
.finding.fault-docker{border-color:#d98a1c}.finding.known{border-color:#999}
.badge{background:#c33;color:#fff;padding:1px 6px;border-radius:3px;font-size:13px}
.known .badge{background:#888}.whose{text-transform:uppercase}
.sig code{background:#eee;padding:2px 4px}.why{color:#555;font-style:italic}
.evk{font-weight:bold;margin:.5em 0 0}
pre{background:#f4f4f4;padding:6px;white-space:pre-wrap;overflow-wrap:anywhere;
max-height:30em;overflow:auto}
figure{display:inline-block;margin:0 2em 1em 0}figcaption{font-weight:bold}"""


def _headline(cells: list[Cell]) -> str:
    """What is new and whose fault, in one sentence, before anything else."""
    found = [f for c in cells for f in _cell_findings(c)]
    new = [f for f in found if not f.known]
    known = [f for f in found if f.known]
    errs = sum(len(c.data.harness_errors) for c in cells)
    parts = []
    for label, group in (("new", new), ("known", known)):
        by_fault: dict[str, list[FindingGroup]] = {}
        for f in group:
            by_fault.setdefault(f.fault, []).append(f)
        for fault, fs in sorted(by_fault.items(), key=lambda kv: kv[0] == "docker"):
            n = len({f.signature for f in fs})
            parts.append(
                f"{n} {label} signature{'s' if n > 1 else ''}, {fault}'s fault "
                f"({sum(f.states for f in fs)} states in {len(fs)} cells)"
            )
    text = (
        "; ".join(parts) if new else "Nothing new" + (": " + "; ".join(parts) if parts else "")
    ) + "."
    if errs:
        text += f" {errs} states the harness could not decide."
    return f'<p class="headline {"red" if new or errs else "green"}">{html.escape(text)}</p>'


def write_report(dirs: list[Path], out: Path | None = None) -> Path:
    try:
        runs = find_runs(dirs)
        docs = {run: load_summary(run) for run in runs}  # each read once
        cells = load_cells(docs)
    except InputError as e:
        raise InputError(f"report: {e}") from e
    out = out or (runs[0] / "report.html" if len(runs) == 1 else dirs[0] / "report.html")
    base = out.resolve().parent
    label = {id(c): f"{c.kernel.split('-')[0]} {c.backend}" for c in cells}
    states = Counter[str]()
    for c in cells:
        states[label[id(c)]] += c.data.states_checked
    classes = Counter(str(v.cls) for c in cells for v in c.data.violations)
    per_state: dict[str, float] = {}
    for kind in ("live", "replay"):
        walls = [s.wall_s for c in cells for s in c.data.states if s.kind == kind]
        if walls:
            per_state[f"{kind} (mean of {len(walls)})"] = round(sum(walls) / len(walls), 1)
    totals = {
        "states": sum(c.data.states_checked for c in cells),
        "violations": sum(c.failing for c in cells),
        "errors": sum(len(c.data.harness_errors) for c in cells),
    }
    corpora = "".join(
        corpus_section(doc, _rel(d, base) + "/")
        for d in dirs
        if (doc := load_corpus(d)) is not None
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>crashtest report</title><style>{STYLE}</style></head><body>
<h1>crashtest report</h1>
{_headline(cells)}
{corpora}
<p>{len(runs)} run(s): {html.escape(", ".join(r.name for r in runs))}. {totals["states"]} states
checked, {totals["violations"]} violations, {totals["errors"]} harness errors.
Generated {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.</p>
<h2>Matrix: whose fault, per cell</h2>{_matrix(cells)}
<h2>Findings, by signature</h2>{_findings(cells, base)}
{_regressions(runs)}
{_not_seen(docs)}
{_history(cells)}
<h2>Environment</h2>{_environment(docs)}
<h2>Plots</h2>
{_bars("states checked", dict(states))}
{_bars("violations by class", {k: classes.get(k, 0) for k in CLASSES if k != "harness-error"})}
{_bars("time per state", per_state, " s")}
<h2>Observed (not judged): files changed without fsync, per crash state</h2>{_observed(cells)}
<h2>Harness errors</h2>{_errors(cells)}
<h2>Timings (mean seconds)</h2>{_timings(cells)}
</body></html>
"""
    write_atomic(out, page)
    return out
