"""The known-bug corpus in HTML: one row per entry (the fix, its fstests test, how
often crashtest caught it with the fix undone, whether the stock tree stayed
clean, build and run time), then each entry's first signature and evidence.
A section of `crashtest report` and the page corpus.html."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from harness.rundir import write_atomic

STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em;max-width:80em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;
vertical-align:top;text-align:left}th{background:#f3f3f3}.ok{background:#e3f5e1}
.bad{background:#fbe3e1}code,pre{font-size:12px}pre{white-space:pre-wrap;margin:0}"""


def load_corpus(run_dir: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads((run_dir / "corpus.json").read_text())
    except (OSError, ValueError):
        return None
    return doc


def _rate(entry: dict[str, Any], role: str) -> str:
    r = entry["rate"].get(role)
    if not r:
        return "not run"
    return f"{r['caught']}/{r['runs']}"


def _mean_wall(entry: dict[str, Any]) -> str:
    walls = [o["wall_s"] for outs in entry["runs"].values() for o in outs]
    return f"{sum(walls) / len(walls):.0f} s" if walls else ""


def _build_s(entry: dict[str, Any]) -> str:
    b = entry["builds"].get("buggy") or entry["builds"].get("stock")
    return f"{b['build_s'] / 60:.1f} min" if b else ""


def corpus_section(doc: dict[str, Any], link_base: str = "") -> str:
    """The corpus table and each entry's evidence; links are relative to the run
    directory, prefixed with `link_base`."""
    e = html.escape
    rows = []
    for en in doc["entries"]:
        cls = "ok" if en["as_expected"] else "bad"
        rows.append(
            f'<tr class="{cls}"><td><b>{e(en["id"])}</b><br>{e(en["kind"])}</td>'
            f"<td>{e(en['fs'])}<br><small>{e(en['backend'])}</small></td>"
            f"<td><code>{e(en['fix'])}</code> {e(en['title'])}<br>"
            f"<small>{e(en['landed'])}</small></td><td>{e(en['fstests'])}</td>"
            f"<td>{e(_rate(en, 'buggy'))}</td><td>{e(_rate(en, 'stock'))}</td>"
            f"<td>{e(en['result'])}</td><td>{e(_build_s(en))}</td>"
            f"<td>{e(_mean_wall(en))}</td></tr>"
        )
    evidence = []
    for en in doc["entries"]:
        for role, outs in en["runs"].items():
            first = next((o for o in outs if o["violations"]), None)
            if first is None:
                continue
            v = first["violations"][0]
            ev = v["evidence"]
            link = f"{link_base}{first['run_dir']}"
            bundle = (
                f" reproducer bundle: <code>{e(link)}/{e(v['bundle'])}</code>"
                if v.get("bundle")
                else ""
            )
            evidence.append(
                f"<h3>{e(en['id'])} on the {e(role)} kernel</h3>"
                f"<p>expected: {e(en['expected'])}</p>"
                f"<p><code>{e(v['signature'])}</code> in {v['states']} state(s), first "
                f"<code>{e(v['state'])}</code> (run <code>{e(link)}</code>).{bundle}</p>"
                f"<p>{e(v['promise'])}</p>"
                f"<pre>{e(str(ev.get('command', '')))}: {e(str(ev.get('output', ''))[:1500])}"
                f"</pre>"
            )
    status = "complete" if doc["complete"] else f"incomplete ({doc['incomplete']})"
    where = f"tree {doc['tree']}" if doc["tree"] else f"kernel {doc['kernel']}"
    return (
        f"<h2>Known-bug corpus</h2><p>{e(where)}; {doc['runs']} runs per entry on "
        f"the buggy kernel, {doc['baseline_runs']} on the stock tree; "
        f"{doc['states']} lost-cache states and {doc['cuts']} live cut(s) per run; "
        f"caught means a violation in at least {doc['caught_rate']:.0%} of the runs. "
        f"{e(status)}, {doc['wall_s'] / 60:.1f} min.</p>"
        "<table><tr><th>entry</th><th>fs</th><th>fix</th><th>fstests</th>"
        "<th>caught, fix undone</th><th>violations, stock tree</th><th>result</th>"
        "<th>build</th><th>mean run</th></tr>" + "".join(rows) + "</table>" + "".join(evidence)
    )


def write_corpus_html(doc: dict[str, Any], path: Path) -> Path:
    page = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>crashtest corpus '
        f"{html.escape(doc['run_id'])}</title><style>{STYLE}</style></head><body>"
        f"<h1>crashtest known-bug corpus {html.escape(doc['run_id'])}</h1>"
        f"{corpus_section(doc)}</body></html>\n"
    )
    write_atomic(path, page)
    return path
