"""`crashtest merge OUT SHARD_DIR...`: join the shards of one campaign (run by
`SHARD=i/N` jobs, e.g. a CI matrix) into one result directory, with the same
totals an unsharded run of the same campaign and seed gives."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from harness.errors import InputError
from harness.report.html import write_report
from harness.report.known import KnownList
from harness.report.results import BackendSummary, write_results
from harness.report.summary import Shard, Summary, load_summary


def _load(run: Path) -> Summary:
    doc = load_summary(run)
    if not doc.campaign or not doc.shard.total_units:
        raise InputError(f"merge: {run}/summary.json is not a sharded crashtest run")
    return doc


def merge_runs(out: Path, runs: list[Path]) -> Path:
    if not runs:
        raise InputError("merge: no shard directories given")
    docs = [_load(r) for r in runs]
    first = docs[0]
    for run, doc in zip(runs, docs, strict=True):
        if doc.campaign != first.campaign:
            raise InputError(
                f"merge: {run} is a shard of a different campaign "
                "(seed, cuts, states, backends or kernels differ)"
            )
    count = first.shard.count
    seen = sorted(d.shard.index for d in docs)
    if any(d.shard.count != count for d in docs) or seen != list(range(1, count + 1)):
        raise InputError(f"merge: shards {seen} of {count}: need each of 1..{count} once")
    if out.exists():
        raise InputError(f"merge: {out} already exists")
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        merged: dict[tuple[str, ...], BackendSummary] = {}
        for doc in docs:
            for b in doc.backends:
                key = (b.workload, b.release, b.kernel, b.backend)
                if key not in merged:
                    merged[key] = BackendSummary(
                        b.backend,
                        b.kernel,
                        b.image,
                        b.accel,
                        b.cuts,
                        b.options,
                        release=b.release,
                        workload=b.workload,
                        docker=b.docker,
                    )
                m = merged[key]
                m.states.extend(s.result() for s in b.states)
                m.wall_s += b.wall_s
                m.replay = m.replay or b.replay
        for run in runs:  # bundles keep their paths relative to the run directory
            for bundles in [run / "bundles", *run.glob("*/bundles")]:
                if bundles.is_dir():
                    shutil.copytree(
                        bundles,
                        partial / bundles.relative_to(run),
                        copy_function=_link_or_copy,
                        dirs_exist_ok=True,
                    )
        meta = first.meta().model_copy(
            update={
                "run_id": out.name,
                "shard": Shard(
                    merged_from=[str(r) for r in runs], total_units=first.shard.total_units
                ),
            }
        )
        summaries = [merged[k] for k in sorted(merged)]
        write_results(
            partial,
            meta,
            summaries,
            KnownList.from_json(first.known_failures),
            first.fail_on,
        )
        write_report([partial], partial / "report.html")
        os.rename(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def merge_all(out_root: Path, dirs: list[Path]) -> tuple[list[Path], list[str]]:
    """Every shard run found in `dirs` (e.g. a CI system's downloaded artifacts),
    grouped by campaign, each group merged into its own run under `out_root`. A
    group that cannot be merged (a shard missing: its job broke) does not stop the
    others: the second list says which and why."""
    runs = sorted(
        {
            p.parent.resolve()
            for d in dirs
            for p in (
                [d / "summary.json"] if (d / "summary.json").is_file() else d.rglob("summary.json")
            )
        }
    )
    groups: dict[str, list[Path]] = {}
    for run in runs:
        doc = _load(run)
        if doc.shard.merged_from:
            continue  # an earlier merge
        groups.setdefault(json.dumps(doc.campaign, sort_keys=True), []).append(run)
    if not groups:
        raise InputError(f"merge: no sharded runs under {', '.join(map(str, dirs))}")
    out, failed = [], []
    for key, members in sorted(groups.items()):
        c = json.loads(key)
        name = "-".join(
            [
                *(k.split("-")[0] for k in c["kernels"]),
                *(b["name"] for b in c["backends"]),
                f"s{c['seed']}",
            ]
        )
        try:
            out.append(merge_runs(out_root / name, members))
        except InputError as e:
            failed.append(f"{name}: {e}")
    return out, failed
