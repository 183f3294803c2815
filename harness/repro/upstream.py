"""`crashtest upstream BUNDLE`: a plain-text report of one finding for the
maintainers of what broke: the kernel build, the filesystem with its mkfs and
mount options, the workload as the shell commands that matter, which writes the
crash state kept, what was expected and what was found, and how to reproduce it
with crashtest (the bundle) and without it (the fstests test, and a standalone
dm-flakey script where the workload runs on the test filesystem alone)."""

from __future__ import annotations

import shlex
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.model import ViolationClass
from harness.report.diff import find_runs
from harness.report.summary import load_summary
from harness.repro.bundle import Bundle
from harness.storage.backends import DOCKER_ROOT

MNT = "$MNT"
WIDTH = 78


@dataclass(frozen=True)
class UpstreamFix:
    """The fix a finding is known by (the known-bug corpus names it)."""

    commit: str
    title: str
    landed: str
    fstests: str


@dataclass(frozen=True)
class Outcome:
    """How a workload fared on one kernel in runs given as evidence."""

    kernel: str
    source: str
    runs: int
    states: int
    failing_states: int  # states showing the bundle's signature
    failing_runs: int

    def line(self) -> str:
        verdict = (
            f"the failure in {self.failing_runs} of {self.runs} run(s) "
            f"({self.failing_states} of {self.states} crash states)"
            if self.failing_runs
            else f"clean in {self.runs} run(s) ({self.states} crash states)"
        )
        return f"{self.kernel} ({self.source or 'source not recorded'}): {verdict}"


@dataclass
class Evidence:
    outcomes: list[Outcome] = field(default_factory=list)


def evidence(dirs: list[Path], workload: str, signatures: set[str]) -> Evidence:
    """Per kernel, the runs of `workload` under `dirs` and how many of their
    states show one of `signatures` (`check | class | fault | object`)."""
    per: dict[str, dict[str, Any]] = {}
    for run in find_runs(dirs):
        doc = load_summary(run)
        sources = {
            str(k.get("version")): str(k.get("source", ""))
            for k in doc.kernels or [doc.kernel_info]
        }
        for b in doc.backends:
            if (b.workload or doc.workload) != workload:
                continue
            kernel = b.kernel
            acc = per.setdefault(
                kernel,
                {
                    "source": sources.get(kernel, ""),
                    "runs": 0,
                    "states": 0,
                    "failing": 0,
                    "failing_runs": 0,
                },
            )
            bad = [s for s in b.states if any(v.signature in signatures for v in s.violations)]
            acc["runs"] += 1
            acc["states"] += len(b.states)
            acc["failing"] += len(bad)
            acc["failing_runs"] += 1 if bad else 0
    return Evidence(
        [
            Outcome(k, a["source"], a["runs"], a["states"], a["failing"], a["failing_runs"])
            for k, a in sorted(per.items())
        ]
    )


def _on_disk(command: str) -> str:
    return command.replace(DOCKER_ROOT, MNT)


def standalone_script(bundle: Bundle, workload: dict[str, Any]) -> str | None:
    """A shell script that reproduces the finding without crashtest, as fstests
    does: the workload on a dm-flakey device, every write after the last step
    dropped (the power cut after it returned), remount, compare. None when the
    workload needs more than the test filesystem (docker, containers, volumes)."""
    backend = bundle.meta["backend"]
    steps = workload["steps"]
    promises = [p for s in steps for p in s["promises"]]
    if not promises or any(
        not p["target"].startswith("disk:/") or p["kind"] not in ("file", "absent-file")
        for p in promises
    ):
        return None
    if any("docker" in c.split()[0:1] for s in steps for c in s["run"]):
        return None
    fs = backend["fs"]
    mkfs = f"mkfs.{fs} -f" if fs in ("btrfs", "xfs") else f"mkfs.{fs} -F"
    mkfs_opts = backend.get("mkfs_options", "")
    mount_opts = backend.get("mount_options", "")
    lines = [
        "#!/bin/bash",
        f"# Standalone reproducer of crashtest bundle {bundle.path.name}: {fs}, the workload",
        f"# {workload['name']!r}, a power cut right after its last step returned (dm-flakey",
        "# drops every write from then on, as fstests' _flakey_drop_and_remount does).",
        "# Run as root in a throwaway VM on the kernel under test. Exit 1: reproduced.",
        "set -euo pipefail",
        "IMG=$(mktemp /tmp/crashtest-repro.XXXXXX.img)",
        "MNT=$(mktemp -d /tmp/crashtest-repro.XXXXXX)",
        "EXPECT=$(mktemp -d /tmp/crashtest-expect.XXXXXX)",
        'truncate -s 1G "$IMG"',
        'LOOP=$(losetup -f --show "$IMG")',
        'SECTORS=$(blockdev --getsz "$LOOP")',
        'cleanup() { umount "$MNT" 2>/dev/null || true; dmsetup remove crashtest-flakey '
        '2>/dev/null || true; losetup -d "$LOOP"; rm -rf "$IMG" "$MNT" "$EXPECT"; }',
        "trap cleanup EXIT",
        f'{mkfs} {mkfs_opts} "$LOOP" >/dev/null'.replace("  ", " "),
        'dmsetup create --noudevsync crashtest-flakey --table "0 $SECTORS flakey $LOOP 0 180 0"',
        "dmsetup mknodes crashtest-flakey  # /dev/mapper/ without udev too",
        f"mount {'-o ' + shlex.quote(mount_opts) + ' ' if mount_opts else ''}"
        '/dev/mapper/crashtest-flakey "$MNT"',
    ]
    record: list[str] = []
    for s in steps:
        lines.append(f"# step {s['name']}" + (f" ({s['barrier']} barrier)" if s["barrier"] else ""))
        lines += [_on_disk(c) for c in s["run"]]
        if s["barrier"] == "sync":
            lines.append("sync")
        for i, p in enumerate(s["promises"]):
            path = MNT + p["target"].removeprefix("disk:")
            name = f'"$EXPECT/{s["name"]}.{i}"'
            if p["kind"] == "absent-file":
                record.append(f'if [ -e "{path}" ]; then echo "FAIL: {path} is back"; bad=1; fi')
                continue
            lines.append(
                f'if [ -d "{path}" ]; then ls -1 "{path}"; else sha256sum < "{path}"; fi > {name}'
            )
            record.append(
                f'if [ -d "{path}" ]; then ls -1 "{path}"; else sha256sum < '
                f'"{path}"; fi > "$EXPECT/found" 2>&1 || true'
            )
            record.append(
                f'if ! cmp -s {name} "$EXPECT/found"; then echo "FAIL: {path} '
                'differs from what its fsync made durable"; diff '
                + name
                + ' "$EXPECT/found" || true; bad=1; fi'
            )
    lines += [
        "# the power cut: drop every write from here on, unmount, then recover",
        "dmsetup suspend crashtest-flakey",
        'dmsetup load crashtest-flakey --table "0 $SECTORS flakey $LOOP 0 0 180 1 drop_writes"',
        "dmsetup resume crashtest-flakey",
        'umount "$MNT"',
        "dmsetup suspend crashtest-flakey",
        'dmsetup load crashtest-flakey --table "0 $SECTORS flakey $LOOP 0 180 0"',
        "dmsetup resume crashtest-flakey",
        f"mount {'-o ' + shlex.quote(mount_opts) + ' ' if mount_opts else ''}"
        '/dev/mapper/crashtest-flakey "$MNT"',
        "bad=0",
        *record,
        '[ "$bad" = 0 ] && echo "not reproduced: every promise held"',
        'exit "$bad"',
    ]
    return "\n".join(lines) + "\n"


def _wrap(text: str, indent: str = "  ") -> str:
    return "\n".join(
        textwrap.fill(
            p, WIDTH, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
        )
        for p in text.split("\n")
    )


def _state_words(bundle: Bundle) -> str:
    meta = bundle.meta
    if bundle.kind == "live":
        return (
            f"a live power cut of the running guest ({meta['verdict']['plan']}): the "
            "disk as QEMU left it, with whatever the guest had not yet written lost"
        )
    epoch, subset = meta.get("epoch"), meta.get("subset", "")
    kept = (
        "none of them"
        if subset == "none"
        else "all of them"
        if subset == "all"
        else f"the subset {subset!r} of them"
    )
    return (
        f"replayed from the write log recorded while the workload ran: every write "
        f"before flush epoch {epoch} (all flushed, so durable), and of the writes in "
        f"epoch {epoch} (not yet flushed, in the disk's volatile cache when the power "
        f"went) {kept} ({meta['verdict']['plan']})"
    )


def report(
    bundle: Bundle,
    workload: dict[str, Any],
    proof: Evidence | None = None,
    bug: UpstreamFix | None = None,
    bundle_ref: str = "",
) -> str:
    """The plain-text report for one bundle."""
    meta = bundle.meta
    kernel, backend = meta["kernel"], meta["backend"]
    violations = [v for v in meta["verdict"]["violations"] if ViolationClass(v["class"]).fails]
    out = [
        f"crashtest finding: {workload['name']} on {backend['fs']}, kernel {kernel['version']}",
        "=" * min(WIDTH, 60),
        "",
    ]
    out += [
        "Kernel",
        f"  {kernel['version']}",
        f"  package: {kernel.get('source', '')}",
        f"  sha256 {kernel.get('sha256', '')}",
        f"  GNU build id {kernel.get('build_id', 'unknown')}",
        "",
    ]
    out += [
        "Filesystem",
        f"  {backend['fs']} (crashtest backend {backend['name']})",
        f"  mkfs options: {backend.get('mkfs_options') or '(defaults)'}",
        f"  mount options: {backend.get('mount_options') or '(defaults)'}",
        f"  guest userspace: Debian {meta.get('release', '')}",
        "",
    ]
    out += [
        "Workload (the shell commands, in order; the test filesystem is mounted at "
        f"{DOCKER_ROOT}, written $MNT below)"
    ]
    for s in workload["steps"]:
        barrier = {"sync": ", then sync", "fsync": ", its commands fsync"}.get(s["barrier"], "")
        out.append(f"  # step {s['name']}{barrier}")
        out += [f"  {_on_disk(c)}" for c in s["run"]]
    out += ["", "The crash state", _wrap(_state_words(bundle)), ""]
    out += ["Expected and found"]
    for v in violations:
        out.append(_wrap(f"expected: {v['promise']}"))
        out.append(_wrap(f"found: {v['evidence'].get('output') or v['evidence']}"))
        out.append(_wrap(f"({v['class']}, {v['fault']}'s fault; crashtest check {v['check']})"))
    out.append("")
    if bug is not None:
        out += [
            "Known upstream",
            f'  fix: {bug.commit} ("{bug.title}")',
            f"  landed: {bug.landed}",
            f"  fstests: {bug.fstests}",
            "",
        ]
    if proof is not None and proof.outcomes:
        out += ["The same workload on other kernels (crashtest runs given as evidence)"]
        out += [_wrap(o.line()) for o in proof.outcomes]
        out.append("")
    ref = bundle_ref or str(bundle.path)
    out += [
        "Reproduce with crashtest (exit 1 = reproduced)",
        f"  crashtest repro {ref}",
        f"  crashtest repro {ref} --kernel KERNEL   # another kernel, e.g. a fix",
        f"  crashtest repro {ref} --bisect          # as `git bisect run` wants",
        "",
    ]
    out += ["Reproduce without crashtest"]
    if bug is not None and bug.fstests not in ("", "none"):
        out.append(f"  fstests: ./check {bug.fstests} (SCRATCH_DEV on {backend['fs']})")
    script = standalone_script(bundle, workload)
    out.append(
        "  the standalone script below (root, a throwaway VM, dm-flakey and a loop device)"
        if script
        else "  not standalone: the workload needs docker; use the bundle"
    )
    text = "\n".join(out) + "\n"
    if script:
        text += "\n----- reproduce.sh -----\n" + script
    return text
