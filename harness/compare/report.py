"""compare.json and compare.html from a compare run's pieces: the arm sessions
(arms/ARM/repN.json), the ENOSPC sessions (enospc/ARM.json) and the M1 campaign
(m1/RUN/summary.json). An arm or metric that failed is reported as failed, with
its error, never as a zero."""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup

from harness.compare.stats import per_1000, ratio, spread
from harness.errors import InputError
from harness.report.render import write_page
from harness.report.summary import load_summary


@dataclass(frozen=True)
class Metric:
    key: str
    group: str  # M2..M7
    label: str
    unit: str  # "s", "bytes", "per min", "" ...
    kind: str  # "time" (reported as a ratio to the reference) or "count"
    get: Callable[[dict[str, Any]], float | None]  # from one session's metrics


def _m(group: str, *path: str | int) -> Callable[[dict[str, Any]], float | None]:
    def get(metrics: dict[str, Any]) -> float | None:
        v: Any = metrics.get(group)
        for p in path:
            if not isinstance(v, (dict, list)) or "error" in v:
                return None
            try:
                v = v[p]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                return None
        return float(v) if isinstance(v, (int, float)) else None

    return get


def _mean(group: str, key: str) -> Callable[[dict[str, Any]], float | None]:
    def get(metrics: dict[str, Any]) -> float | None:
        v = metrics.get(group) or {}
        xs = v.get(key) if isinstance(v, dict) else None
        return sum(xs) / len(xs) if xs else None

    return get


def _copy_up(s: int, field: str) -> Callable[[dict[str, Any]], float | None]:
    def get(metrics: dict[str, Any]) -> float | None:
        for f in (metrics.get("M5") or {}).get("files", []):
            if f.get("mib") == s:
                return float(f[field])
        return None

    return get


def session_metrics(copy_up_mib: list[int], ops: list[str]) -> list[Metric]:
    out = [
        Metric(
            "M2.containers_per_min",
            "M2",
            "containers per minute (create+start+stop+rm)",
            "per min",
            "time",
            _m("M2", "containers_per_min"),
        ),
        Metric(
            "M2.lifecycle_s",
            "M2",
            "one container's create+start+stop+rm",
            "s",
            "time",
            _m("M2", "lifecycle_s"),
        ),
        *(
            Metric(f"M2.{step}_s", "M2", f"docker {cmd}", "s", "time", _m("M2", f"{step}_s"))
            for step, cmd in (
                ("create", "create"),
                ("start", "start"),
                ("stop", "stop -t 0"),
                ("rm", "rm"),
            )
        ),
        Metric(
            "M3.build_step_s",
            "M3",
            "build step (rewrite 1% of the large file, commit)",
            "s",
            "time",
            _mean("M3", "step_s"),
        ),
        Metric(
            "M3.build_growth_per_step_bytes",
            "M3",
            "disk used per build step (df)",
            "bytes",
            "count",
            _m("M3", "build_growth_per_step_bytes"),
        ),
        Metric(
            "M3.image_size_bytes",
            "M3",
            "built image size (docker image inspect)",
            "bytes",
            "count",
            _m("M3", "image_size_bytes"),
        ),
        Metric(
            "M3.commit_one_file_s",
            "M3",
            "commit after touching 1 file of many",
            "s",
            "time",
            _m("M3", "commit_one_file_s"),
        ),
        Metric(
            "M3.commit_one_file_growth_bytes",
            "M3",
            "disk used by that commit (df)",
            "bytes",
            "count",
            _m("M3", "commit_one_file_growth_bytes"),
        ),
        Metric(
            "M4.copies_per_extra_reader",
            "M4",
            "page-cache copies of the file per extra container (1 = none shared)",
            "",
            "count",
            _m("M4", "copies_per_extra_reader"),
        ),
        Metric(
            "M4.per_extra_reader_bytes",
            "M4",
            "page cache growth per extra container",
            "bytes",
            "count",
            _m("M4", "per_extra_reader_bytes"),
        ),
    ]
    for s in copy_up_mib:
        out += [
            Metric(
                f"M5.copy_up_{s}mib_first_s",
                "M5",
                f"first 1-byte write to a {s} MiB lower file (timed in the container)",
                "s",
                "time",
                _copy_up(s, "first_s"),
            ),
            Metric(
                f"M5.copy_up_{s}mib_net_s",
                "M5",
                "that write less the second one (the copy-up alone)",
                "s",
                "count",
                _copy_up(s, "net_s"),
            ),
            Metric(
                f"M5.copy_up_{s}mib_bytes",
                "M5",
                f"bytes written by that first write ({s} MiB file)",
                "bytes",
                "count",
                _copy_up(s, "first_wr_bytes"),
            ),
            Metric(
                f"M5.copy_up_{s}mib_flushes",
                "M5",
                "flushes of that first write",
                "",
                "count",
                _copy_up(s, "first_flushes"),
            ),
        ]
    for op in ops:
        out += [
            Metric(
                f"M7.{op}.wr_bytes",
                "M7",
                f"{op}: bytes written",
                "bytes",
                "count",
                _m("M7", op, "wr_bytes"),
            ),
            Metric(
                f"M7.{op}.flushes", "M7", f"{op}: flushes", "", "count", _m("M7", op, "flushes")
            ),
        ]
    return out


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _m1(run_dir: Path, arms: list[str]) -> dict[str, Any]:
    """Violations per 1000 crash states per arm, by class and fault, 95% CIs."""
    err = _read(run_dir / "m1" / "error.json")
    summaries = sorted((run_dir / "m1").glob("2*/summary.json"))
    try:
        summary = load_summary(summaries[-1].parent) if summaries else None
    except InputError:
        summary = None
    if summary is None:
        return {"error": err["error"] if err else "the M1 campaign did not finish"}
    out: dict[str, Any] = {
        "run": str(summaries[-1].parent.relative_to(run_dir)),
        "workload": summary.workload,
        "arms": {},
    }
    if summary.incomplete:
        out["incomplete"] = summary.incomplete
    for b in summary.backends:
        if b.backend not in arms:
            continue
        states = [s for s in b.states if not s.harness_error]
        n = len(states)
        by: Counter[tuple[str, str]] = Counter()
        bad = 0
        for s in states:
            kinds = {(str(v.cls), str(v.fault)) for v in s.violations if v.fails}
            by.update(kinds)
            bad += bool(kinds)
        leaks = sum(1 for s in states if any(not v.fails for v in s.violations))
        out["arms"][b.backend] = {
            "states": n,
            "harness_errors": len(b.states) - n,
            "any": per_1000(bad, n),
            "leaks": per_1000(leaks, n),
            "by_class_fault": {
                f"{c} ({f}'s fault)": per_1000(k, n) for (c, f), k in sorted(by.items())
            },
            "faults": dict(Counter(f for (_, f) in by.elements())),
        }
    for a in arms:
        out["arms"].setdefault(a, {"error": "no crash states checked"})
    return out


def _m6(run_dir: Path, arm: str) -> dict[str, Any]:
    doc = _read(run_dir / "enospc" / f"{arm}.json")
    if doc is None:
        return {"error": "did not run"}
    if "error" in doc:
        return {"error": doc["error"]}
    m6: dict[str, Any] = doc.get("M6") or {"error": "no result"}
    return m6


def build_compare(
    run_dir: Path, meta: dict[str, Any], arms: list[str], metrics: tuple[str, ...]
) -> dict[str, Any]:
    sessions: dict[str, list[dict[str, Any]]] = {
        a: [
            d
            for p in sorted((run_dir / "arms" / a).glob("rep*.json"))
            if (d := _read(p)) is not None
        ]
        for a in arms
    }
    reference = meta["reference"] if meta["reference"] in arms else arms[0]
    copy_up = list(meta.get("budget", {}).get("copy_up_mib", []))
    ops = list(
        dict.fromkeys(
            o
            for ss in sessions.values()
            for s in ss
            for o in (s.get("metrics", {}).get("M7") or {})
            if isinstance(o, str) and o != "error"
        )
    )
    table = [m for m in session_metrics(copy_up, ops) if m.group in metrics]
    arm_docs: dict[str, Any] = {}
    for a in arms:
        ok = [s for s in sessions[a] if "error" not in s]
        errors = [f"rep {s['rep'] + 1}: {s['error']}" for s in sessions[a] if "error" in s]
        errors += [
            f"rep {s['rep'] + 1} {k}: {v['error']}"
            for s in ok
            for k, v in s.get("metrics", {}).items()
            if isinstance(v, dict) and "error" in v
        ]
        values = {}
        for m in table:
            xs = [x for s in ok if (x := m.get(s.get("metrics", {}))) is not None]
            if xs:
                values[m.key] = spread(xs)
        arm_docs[a] = {
            "sessions": len(sessions[a]),
            "sessions_ok": len(ok),
            "errors": errors,
            "environment": ok[0].get("environment") if ok else None,
            "values": values,
        }
        if "M6" in metrics:
            arm_docs[a]["M6"] = _m6(run_dir, a)
    ref = arm_docs[reference]["values"]
    for a in arms:
        arm_docs[a]["ratio_to_reference"] = {
            m.key: ratio(arm_docs[a]["values"][m.key]["median"], ref[m.key]["median"])
            for m in table
            if m.kind == "time" and m.key in arm_docs[a]["values"] and m.key in ref
        }
        expected = meta["reps"] if table else 0
        if arm_docs[a]["sessions_ok"] < expected and not arm_docs[a]["errors"]:
            arm_docs[a]["errors"].append(
                f"{arm_docs[a]['sessions_ok']} of {expected} sessions finished"
            )
        if "error" in arm_docs[a].get("M6", {}):
            arm_docs[a]["errors"].append(f"M6: {arm_docs[a]['M6']['error']}")
        arm_docs[a]["status"] = "failed" if arm_docs[a]["errors"] else "ok"
    doc: dict[str, Any] = {
        **meta,
        "arms": arm_docs,
        "reference_arm": reference,
        "metrics": [
            {"key": m.key, "group": m.group, "label": m.label, "unit": m.unit, "kind": m.kind}
            for m in table
        ],
    }
    if "M6" in metrics and meta.get("enospc_variants"):
        doc["M6_variants"] = {v: _m6(run_dir, v) for v in meta["enospc_variants"]}
    if "M1" in metrics:
        doc["M1"] = _m1(run_dir, arms)
        for a in arms:
            why = doc["M1"].get("error") or doc["M1"]["arms"].get(a, {}).get("error")
            if why:
                arm_docs[a]["errors"].append(f"M1: {why}")
                arm_docs[a]["status"] = "failed"
    doc["complete"] = (
        not meta.get("incomplete")
        and all(d["status"] == "ok" for d in arm_docs.values())
        and "error" not in doc.get("M1", {})
        and not any("error" in m for m in doc.get("M6_variants", {}).values())
    )
    return doc


# ------------------------------------------------------------------ HTML

COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2"]


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "bytes":
        for div, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(v) >= div:
                return f"{v / div:.1f} {suffix}"
        return f"{v:.0f} B"
    return f"{v:.3g}" + (f" {unit}" if unit else "")


def bars(
    values: dict[str, float | None],
    unit: str,
    colours: dict[str, str],
    errors: dict[str, tuple[float, float]] | None = None,
) -> str:
    """A horizontal bar per arm (inline SVG): the arms side by side at a glance."""
    present = [v for v in values.values() if v is not None]
    top = max([abs(v) for v in present] + [hi for _, hi in (errors or {}).values()] + [1e-12])
    rows = []
    for i, (arm, v) in enumerate(values.items()):
        y = i * 18
        rows.append(f'<text x="0" y="{y + 12}">{html.escape(arm)}</text>')
        if v is None:
            rows.append(f'<text x="110" y="{y + 12}" fill="#c00">failed / not run</text>')
            continue
        w = 220 * abs(v) / top
        rows.append(
            f'<rect x="110" y="{y + 2}" width="{w:.1f}" height="13" fill="{colours[arm]}"/>'
        )
        if errors and arm in errors:
            lo, hi = errors[arm]
            rows.append(
                f'<line x1="{110 + 220 * lo / top:.1f}" x2="{110 + 220 * hi / top:.1f}" '
                f'y1="{y + 8}" y2="{y + 8}" stroke="#000"/>'
            )
        rows.append(f'<text x="{114 + w:.1f}" y="{y + 12}">{html.escape(fmt(v, unit))}</text>')
    return (
        f'<svg width="420" height="{18 * len(values) + 2}" role="img">' + "".join(rows) + "</svg>"
    )


def write_compare_html(doc: dict[str, Any], path: Path) -> Path:
    arms = list(doc["arms"])
    colours = {a: COLOURS[i % len(COLOURS)] for i, a in enumerate(arms)}
    e = html.escape
    ref = doc["reference_arm"]
    parts = [
        f"<h1>Storage stacks compared: {', '.join(map(e, arms))}</h1>",
        f"<p>Kernel {e(str(doc['kernel'].get('version', '')))}, {e(doc['release'])} image "
        f"{e(doc['image'])}, accel {e(doc['accel'])}, {e(doc['setting'])} setting, "
        f"{doc['reps']} repetitions, arms interleaved. Times are ratios to {e(ref)} "
        "measured in this run (TCG distorts absolute times); counts are host-side "
        "(QMP query-blockstats) or the guest's own (df, /proc/meminfo).</p>",
    ]
    if doc.get("incomplete"):
        parts.append(f"<p class='failed'>Incomplete: {e(doc['incomplete'])}</p>")
    parts.append(
        "<h2>Headline</h2><table><tr><th class='l'></th>"
        + "".join(f"<th>{e(a)}</th>" for a in arms)
        + "</tr>"
        + "".join(
            f"<tr><td class='l'>{e(label)}</td>"
            + "".join(
                f"<td class='{'failed' if c[a] == 'failed' else ''}'>{e(c[a])}</td>" for a in arms
            )
            + "</tr>"
            for label, c in headline_rows(doc)
        )
        + "</table>"
    )
    failed = [a for a in arms if doc["arms"][a]["status"] != "ok"]
    if failed:
        parts.append(
            "<h2>Failed</h2><ul>"
            + "".join(
                f"<li class='failed'><b>{e(a)}</b>: "
                + e("; ".join(doc["arms"][a]["errors"] or ["see below"]))[:2000]
                + "</li>"
                for a in failed
            )
            + "</ul>"
        )
    if "M1" in doc:
        parts.append(_m1_html(doc["M1"], arms, colours))
    groups = {
        "M2": "M2 container lifecycle",
        "M3": "M3 build and commit",
        "M4": "M4 page-cache sharing",
        "M5": "M5 copy-up cost",
        "M7": "M7 write amplification (per operation, less a bare sync)",
    }
    for g, title in groups.items():
        rows = [m for m in doc["metrics"] if m["group"] == g]
        if not rows:
            continue
        parts.append(
            f"<h2>{e(title)}</h2><table><tr><th class='l'>metric</th>"
            + "".join(f"<th>{e(a)}</th>" for a in arms)
            + "<th>plot</th></tr>"
        )
        for m in rows:
            meds: dict[str, float | None] = {}
            cells = []
            for a in arms:
                v = doc["arms"][a]["values"].get(m["key"])
                meds[a] = v["median"] if v else None
                if v is None:
                    cells.append("<td class='failed'>failed</td>")
                    continue
                r = doc["arms"][a]["ratio_to_reference"].get(m["key"])
                cells.append(
                    f"<td>{e(fmt(v['median'], m['unit']))}"
                    + (
                        f"<br><span class='note'>{r:.2f}x {e(ref)}</span>"
                        if r is not None and m["kind"] == "time"
                        else ""
                    )
                    + (
                        f"<br><span class='note'>IQR {e(fmt(v['q1'], m['unit']))}-"
                        f"{e(fmt(v['q3'], m['unit']))}, n={v['n']}</span>"
                        if v["n"] > 1
                        else ""
                    )
                    + "</td>"
                )
            parts.append(
                f"<tr><td class='l'>{e(m['label'])}</td>{''.join(cells)}"
                f"<td>{bars(meds, m['unit'], colours)}</td></tr>"
            )
        parts.append("</table>")
    if any("M6" in doc["arms"][a] for a in arms):
        parts.append(_m6_html(doc, arms, colours))
    parts.append(
        "<h2>Environment</h2><table><tr><th class='l'>arm</th><th class='l'>docker"
        "</th><th class='l'>mounted as</th><th class='l'>driver status</th></tr>"
    )
    for a in arms:
        env = doc["arms"][a].get("environment") or {}
        parts.append(
            f"<tr><td class='l'>{e(a)}</td><td class='l'>"
            f"{e(json.dumps(env.get('docker', {})))}</td>"
            f"<td class='l'><code>{e(env.get('mounted', ''))}</code></td>"
            f"<td class='l'>{e(json.dumps(env.get('driver_status', {})))}</td></tr>"
        )
    parts.append(
        f"</table><p class='note'>Image packages: "
        f"{e(json.dumps(doc.get('image_packages', {})))}; QEMU "
        f"{e(doc.get('qemu_version', ''))}; crashtest {e(doc['crashtest_version'])}; "
        f"{doc.get('wall_s', 0) / 60:.1f} min.</p>"
    )
    # every value above went through html.escape: the parts are markup
    body = Markup("\n".join(parts).replace("<table>", "<table class='numbers'>"))
    write_page(path, "compare.html.j2", title=f"crashtest compare {doc['run_id']}", body=body)
    return path


def _m1_html(m1: dict[str, Any], arms: list[str], colours: dict[str, str]) -> str:
    e = html.escape
    if "error" in m1:
        return f"<h2>M1 crash safety</h2><p class='failed'>M1 failed: {e(m1['error'])}</p>"
    keys = sorted({k for a in m1["arms"].values() for k in a.get("by_class_fault", {})})
    out = [
        f"<h2>M1 crash safety: crash states with a violation, per 1000 (95% Wilson CI)</h2>"
        f"<p class='note'>Lost-cache crash states of the <code>{e(str(m1['workload']))}"
        f"</code> workload, from the campaign in <code>{e(m1['run'])}</code>.</p>"
        "<table><tr><th class='l'>class</th>"
        + "".join(f"<th>{e(a)}</th>" for a in arms)
        + "<th>plot</th></tr>"
    ]
    for k in ("any", *keys, "leaks"):
        vals: dict[str, float | None] = {}
        cis: dict[str, tuple[float, float]] = {}
        cells = []
        for a in arms:
            d = m1["arms"].get(a, {})
            if "error" in d:
                vals[a] = None
                cells.append("<td class='failed'>failed</td>")
                continue
            r = (
                d[k]
                if k in ("any", "leaks")
                else d["by_class_fault"].get(
                    k, {"per_1000": 0.0, "count": 0, "states": d["states"], "ci95": [0.0, 0.0]}
                )
            )
            vals[a] = r["per_1000"]
            cis[a] = (r["ci95"][0], r["ci95"][1])
            cells.append(
                f"<td>{r['per_1000']} <span class='note'>[{r['ci95'][0]}, "
                f"{r['ci95'][1]}]<br>{r['count']}/{r['states']}</span></td>"
            )
        label = {"any": "any violation", "leaks": "leaks (wasted space only)"}.get(k, k)
        out.append(
            f"<tr><td class='l'>{e(label)}</td>{''.join(cells)}"
            f"<td>{bars(vals, '', colours, cis)}</td></tr>"
        )
    return "".join(out) + "</table>"


def _m6_html(doc: dict[str, Any], arms: list[str], colours: dict[str, str]) -> str:
    e = html.escape
    out = [
        "<h2>M6 ENOSPC under layer churn</h2><table><tr><th class='l'>arm</th>"
        "<th>layers before ENOSPC</th><th>df Used/Size then</th><th>df Avail then</th>"
        "<th class='l'>btrfs filesystem usage</th><th class='l'>balance</th></tr>"
    ]
    used: dict[str, float | None] = {}
    rows = {a: doc["arms"][a].get("M6", {}) for a in arms} | doc.get("M6_variants", {})
    for a, m6 in rows.items():
        if "error" in m6:
            used[a] = None
            out.append(
                f"<tr><td class='l'>{e(a)}</td><td class='failed' colspan='5'>failed: "
                f"{e(m6['error'])[:600]}</td></tr>"
            )
            continue
        sp = m6.get("space", {})
        used[a] = sp.get("df_used_of_size")
        bu = sp.get("btrfs_usage", {})
        usage = ", ".join(f"{k} {fmt(v, 'bytes')}" for k, v in bu.items()) if bu else "-"
        rec = (
            "; ".join(
                f"{r['balance']}: retry {'ok' if r['retry_ok'] else 'failed'}"
                for r in m6.get("recovery", [])
            )
            or "-"
        )
        reached = m6.get("reached_enospc")
        out.append(
            f"<tr><td class='l'>{e(a)}</td><td>{m6.get('layers_before_enospc')}"
            f"{'' if reached else ' (no ENOSPC)'}</td>"
            f"<td>{100 * sp.get('df_used_of_size', 0):.0f}%</td>"
            f"<td>{e(fmt(sp.get('df_avail'), 'bytes'))}</td><td class='l'>{e(usage)}</td>"
            f"<td class='l'>{e(rec)}</td></tr>"
        )
    colours = colours | {v: "#999" for v in doc.get("M6_variants", {})}
    out.append(
        "</table><p>df Used/Size at the first ENOSPC:</p>"
        + bars({a: (100 * v if v is not None else None) for a, v in used.items()}, "%", colours)
    )
    return "".join(out)


def headline_rows(doc: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """The comparison in a few rows, one text cell per arm: counts first, times
    as ratios to the reference arm."""
    arms = list(doc["arms"])
    ref = doc["reference_arm"]
    rows: list[tuple[str, dict[str, str]]] = []
    m1 = doc.get("M1")
    if m1 is not None:
        cells = {}
        for a in arms:
            d = m1.get("arms", {}).get(a, {}) if "error" not in m1 else {"error": m1["error"]}
            cells[a] = (
                "failed"
                if "error" in d
                else (
                    f"{d['any']['per_1000']} [{d['any']['ci95'][0]}-{d['any']['ci95'][1]}]"
                    + "".join(f", {n} {f}" for f, n in sorted(d.get("faults", {}).items()))
                )
            )
        rows.append(("M1 violations per 1000 crash states [95% CI], by fault", cells))
    picks = [
        ("M4.copies_per_extra_reader", "M4 page-cache copies per extra container"),
        ("M3.build_growth_per_step_bytes", "M3 disk used per build step (1% of file)"),
        ("M3.commit_one_file_growth_bytes", "M3 disk used by a one-file commit"),
    ]
    largest = max(doc.get("budget", {}).get("copy_up_mib") or [0])
    if largest:
        picks.append(
            (
                f"M5.copy_up_{largest}mib_bytes",
                f"M5 bytes written by a 1-byte write to a {largest} MiB lower file",
            )
        )
    picks += [
        ("M2.containers_per_min", f"M2 containers per minute (ratio to {ref})"),
        ("M3.build_step_s", f"M3 build step time (ratio to {ref})"),
        ("M3.commit_one_file_s", f"M3 one-file commit time (ratio to {ref})"),
    ]
    if largest:
        picks.append(
            (
                f"M5.copy_up_{largest}mib_first_s",
                f"M5 first write to a {largest} MiB lower file (ratio to {ref})",
            )
        )
    units = {m["key"]: m for m in doc["metrics"]}
    for key, label in picks:
        if key not in units:
            continue
        cells = {}
        for a in arms:
            v = doc["arms"][a]["values"].get(key)
            if v is None:
                cells[a] = "failed"
            elif units[key]["kind"] == "time":
                r = doc["arms"][a]["ratio_to_reference"].get(key)
                cells[a] = f"{r:.2f}x" if r is not None else "-"
            else:
                cells[a] = fmt(v["median"], units[key]["unit"])
        rows.append((label, cells))
    if any("M6" in doc["arms"][a] for a in arms):
        cells = {}
        for a in arms:
            m6 = doc["arms"][a].get("M6", {})
            sp = m6.get("space", {})
            cells[a] = (
                "failed"
                if "error" in m6
                else f"{100 * sp.get('df_used_of_size', 0):.0f}% after "
                f"{m6.get('layers_before_enospc')} layers"
                if m6.get("reached_enospc")
                else f"no ENOSPC in {m6.get('layers_before_enospc')} layers"
            )
        rows.append(
            (
                f"M6 df Used/Size at the first ENOSPC "
                f"({doc.get('budget', {}).get('enospc_disk_mib')} MiB disk)",
                cells,
            )
        )
    return rows


def headline(doc: dict[str, Any]) -> str:
    """The headline rows as a plain-text table, for the terminal."""
    arms = list(doc["arms"])
    rows = headline_rows(doc)
    width = max([len(r[0]) for r in rows] + [6])
    cols = {a: max([len(a)] + [len(r[1][a]) for r in rows]) for a in arms}
    lines = [" " * width + "  " + "  ".join(a.ljust(cols[a]) for a in arms)]
    lines += [
        label.ljust(width) + "  " + "  ".join(c[a].ljust(cols[a]) for a in arms)
        for label, c in rows
    ]
    failed = [a for a in arms if doc["arms"][a]["status"] != "ok"]
    if failed:
        lines.append(f"FAILED arms: {', '.join(failed)} (see compare.html)")
    return "\n".join(lines)
