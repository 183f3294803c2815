"""`crashtest`: run a power-cut campaign, or build the guest images.

Exit codes: 0 all states passed; 1 a consistency violation was found; 2 the
harness, the host, the input or the guest failed (never a pass); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from rich import box
from rich.console import Console
from rich.table import Table

from harness import hosttools
from harness.bench import run_bench
from harness.campaign.dry_run import dry_run
from harness.campaign.plan import DEFAULT_CUTS, DEFAULT_JOBS, DEFAULT_STATES, RunOptions
from harness.campaign.reproduce import reproduce
from harness.campaign.run import load_plan, run_campaign
from harness.compare.measure import RECLAIM, SETTINGS
from harness.compare.report import headline
from harness.compare.run import DEFAULT_ARMS, METRICS, CompareOptions, run_compare
from harness.corpus import run as corpus
from harness.corpus.entries import by_id as corpus_by_id
from harness.errors import CrashtestError, HarnessError, InputError
from harness.explore.findings import replay_bundle
from harness.explore.plan import ExploreOptions
from harness.explore.run import explore
from harness.images.cache import cache_root
from harness.images.debian import SUITES
from harness.images.guest import ensure_images
from harness.images.rootfs import DEFAULT_SUITE, RELEASES, check_release
from harness.model import Violation
from harness.oracles.check_image import check_image
from harness.report.diff import describe, diff, find_runs
from harness.report.html import write_report
from harness.report.merge import merge_all, merge_runs
from harness.report.regress import candidates
from harness.report.results import FAIL_ON
from harness.report.summary import Summary, load_corpus, load_summary
from harness.repro.bundle import BundleError, decompress_log, load_bundle
from harness.repro.upstream import UpstreamFix, evidence
from harness.repro.upstream import report as upstream_report
from harness.rundir import write_atomic
from harness.storage.backends import BACKENDS, DEFAULT_BACKENDS
from harness.storage.damage import INJECTIONS
from harness.version import crashtest_version
from harness.vm.machine import kill_all
from harness.workloads.api import Workload, WorkloadError
from harness.workloads.load import BUILTIN, load_workload, registered
from harness.writelog.format import WriteLog, read_log
from harness.writelog.states import select_states

ACCELS = ("auto", "kvm", "tcg")
ACCEL_HELP = "auto (the default: KVM when /dev/kvm works, else TCG), kvm or tcg"
KERNEL_HELP = (
    f"Debian kernel package ([suite:]name[=version]; suites {', '.join(SUITES)}), "
    "a bzImage path, or a kernel source tree"
)


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from e
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    """A usage error is one line (what is wrong, and where the help is), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: bad usage: {message} (see {self.prog} --help)\n")


EXITS = {
    "run": "0 every state passed (or only known findings, with --known); 1 a finding "
    "fails the run; 2 the harness, host, input or a guest failed; 130 interrupted",
    "merge": "0 merged and passing; 1 a finding fails a merged run; 2 a shard could not be merged",
    "diff": "0 nothing new; 1 a new failure signature or regression candidate; 2 bad input",
    "check": "0 clean; 1 a violation; 2 the harness, input or guest failed",
    "repro": "1 the bundle's violation came back; 0 it did not; with --bisect: 0 good, "
    "1 bad, 125 this revision cannot be tested, 128 the bundle cannot be used (stops the "
    "bisection)",
    "corpus": "0 every entry as expected; 1 an entry was not; 2 a kernel did not build "
    "or the harness failed",
    "explore": "0 no new finding (discrepancies and known failures do not fail); 1 a new "
    "finding: a durability, mount, fsck or console failure; 2 bad input, or a program the "
    "harness could not run or judge; 130 interrupted (finished programs kept: --resume goes on)",
    "explore-repro": "1 the bundle's finding came back; 0 it did not; 2 bad input or a "
    "harness failure",
}
DEFAULT_EXIT = "0 done; 2 bad input or a failure (one line on stderr); 130 interrupted"


def _finish_help(parser: argparse.ArgumentParser, name: str = "") -> None:
    """Every (nested) subcommand's --help: what it does, its defaults and exit codes."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        about = {a.dest: a.help for a in action._choices_actions}
        for sub_name, cmd in action.choices.items():
            cmd.formatter_class = Help
            cmd.description = cmd.description or about.get(sub_name)
            cmd.epilog = "exit status: " + EXITS.get(name or sub_name, DEFAULT_EXIT)
            _finish_help(cmd, name or sub_name)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="crashtest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"crashtest {crashtest_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser("run", help="run a power-cut campaign")
    run.add_argument(
        "--backends",
        default=",".join(DEFAULT_BACKENDS),
        help=f"comma list of: {', '.join(BACKENDS)}",
    )
    run.add_argument(
        "--cuts", type=_whole, default=DEFAULT_CUTS, help="live power cuts per backend"
    )
    run.add_argument(
        "--states",
        type=_whole,
        default=DEFAULT_STATES,
        help="lost-cache crash states replayed from the write log, per backend "
        "(distinct states: identical ones are checked once)",
    )
    run.add_argument("--kernel", default=None, help=KERNEL_HELP)
    run.add_argument(
        "--kernel-modules",
        default=None,
        help="modules directory for a bzImage (lib/modules/VERSION)",
    )
    run.add_argument(
        "--seed",
        type=_whole,
        default=1,
        help="seed of the cut points, delays and lost-cache state selection",
    )
    run.add_argument(
        "--daemon-checks",
        action="store_true",
        help="run the daemon stage (dockerd on the recovered disk) on lost-cache "
        "states too, not only on live cuts (about 45 s a state under TCG)",
    )
    run.add_argument(
        "--no-saved-guests",
        dest="saved_guests",
        action="store_false",
        help="boot every guest instead of resuming saved ones (a guest booted "
        "once and saved, per kernel, image and backend, in the cache)",
    )
    run.add_argument(
        "--workload",
        default="default",
        help="a registered workload name, or a workload file (.py or .toml); "
        "`crashtest workloads` lists the names",
    )
    run.add_argument(
        "--workloads",
        default=None,
        help="comma list of workloads (as --workload): run the campaign with each "
        f"(built in: {', '.join(sorted(BUILTIN))})",
    )
    run.add_argument(
        "--release",
        default=DEFAULT_SUITE,
        help=f"Debian suite of the guest root and its docker ({', '.join(RELEASES)})",
    )
    run.add_argument(
        "--releases",
        default=None,
        help="comma list of releases (as --release): run the campaign on each",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        help="where run directories go (OUT/latest names the newest)",
    )
    run.add_argument("--accel", choices=ACCELS, default=None, help=ACCEL_HELP)
    run.add_argument(
        "--cut-at",
        default=None,
        help="cut every cycle at STEP, after:STEP, during:STEP:SECONDS or "
        "returned:STEP (after its docker command, before its sync)",
    )
    run.add_argument("--mkfs-options", default="", help="extra mkfs options for every backend")
    run.add_argument("--mount-options", default="", help="mount options for every backend")
    run.add_argument("--keep-disks", action="store_true", help="keep cut disks of passing states")
    run.add_argument(
        "--inject",
        choices=INJECTIONS,
        default=None,
        help="self-test: damage the recovered disk on purpose before checking",
    )
    run.add_argument("--memory", type=_whole, default=2048, help="guest MiB")
    run.add_argument(
        "--kernels",
        default=None,
        help="comma list of kernels (as --kernel): run the campaign on each",
    )
    run.add_argument(
        "--jobs",
        type=_whole,
        default=DEFAULT_JOBS,
        help="units (live cuts, lost-cache replays) run in parallel, each with "
        "its own guests (about 2 GiB of RAM each)",
    )
    run.add_argument(
        "--minimize-steps",
        type=_whole,
        default=0,
        help="live cycles to spend shrinking the workload of a failing live cut (0: off)",
    )
    run.add_argument(
        "--shard", default=None, help="i/N: run only this job's share of the campaign (merge later)"
    )

    run.add_argument(
        "--dry-run",
        action="store_true",
        help="run the workload's steps once on the first backend, release and "
        "kernel, with no cut and no checks: do its commands work?",
    )
    run.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="finish an interrupted run with its own plan (its other options "
        "come from RUN_DIR/plan.json)",
    )
    run.add_argument(
        "--known",
        type=Path,
        default=None,
        help="a known-failures TOML file: findings it lists are known, not new "
        "(the project ships known-failures.toml)",
    )
    run.add_argument(
        "--fail-on",
        choices=FAIL_ON,
        default=None,
        help="which violations fail the run (exit 1): new ones (the default "
        "with --known) or any (the default without)",
    )
    mrg = sub.add_parser("merge", help="join the shards of one campaign into one run")
    mrg.add_argument("out", type=Path, help="the merged run directory to create")
    mrg.add_argument("shards", type=Path, nargs="+", help="the shards' run directories")
    mrg.add_argument(
        "--all",
        action="store_true",
        help="SHARDS are directories holding shard runs of many campaigns: "
        "merge each campaign into its own run under OUT",
    )

    dif = sub.add_parser(
        "diff",
        help="failure signatures new, gone and still failing between "
        "two runs (exit 1 when something new appears)",
    )
    dif.add_argument("old", type=Path, help="a run directory, or a directory of runs")
    dif.add_argument("new", type=Path, help="a run directory, or a directory of runs")
    dif.add_argument("--json", action="store_true", help="print the difference as JSON")
    bench = sub.add_parser("bench", help="measure checker speed, replay bytes, record overhead")
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("results/bench.json"),
        help="the JSON file the numbers go to",
    )
    bench.add_argument(
        "--backend", default="ext4-overlay2", choices=list(BACKENDS), help="the backend measured"
    )
    bench.add_argument(
        "--states",
        type=_whole,
        default=48,
        help="states for the checker (a campaign checks 24-48 per boot)",
    )
    bench.add_argument(
        "--reboot-states",
        type=_whole,
        default=3,
        help="states checked with a guest boot each, for the speedup",
    )
    bench.add_argument(
        "--campaign-states",
        type=_whole,
        default=0,
        help="also run a campaign of this many states per backend twice, "
        "from saved guests and with boots (the default campaign: "
        f"{DEFAULT_STATES}; 0: skip, it takes about half an hour)",
    )
    bench.add_argument(
        "--campaign-cuts",
        type=_whole,
        default=DEFAULT_CUTS,
        help="live cuts per backend in the measured campaigns",
    )
    bench.add_argument(
        "--explore-programs",
        type=_whole,
        default=0,
        help="also run crashtest explore for this many programs on btrfs "
        "(explore_workloads_per_hour, explore_states_per_s; 0: skip)",
    )

    cmp_ = sub.add_parser(
        "compare",
        help="measure the storage stacks side by side: crash "
        "safety, lifecycle, build, page cache, copy-up, "
        "ENOSPC, write amplification",
    )
    cmp_.add_argument(
        "--arms",
        default=",".join(DEFAULT_ARMS),
        help=f"comma list of storage stacks (of: {', '.join(BACKENDS)})",
    )
    cmp_.add_argument(
        "--reps",
        type=_whole,
        default=2,
        help="repetitions of each arm's timed session, arms interleaved",
    )
    cmp_.add_argument(
        "--setting",
        choices=list(SETTINGS),
        default="short",
        help="budgets: short (`make compare`, about 20 min on 2 cores) or long "
        "(nightly: 50 containers, 5000 files, ENOSPC on a 3 GiB disk)",
    )
    cmp_.add_argument(
        "--m1-states",
        type=_whole,
        default=None,
        help="M1: lost-cache crash states per arm (default: 40 short, 500 long)",
    )
    cmp_.add_argument(
        "--metrics", default=",".join(METRICS), help="comma list of the metrics to measure"
    )
    cmp_.add_argument(
        "--enospc-disk",
        type=_whole,
        default=None,
        metavar="MIB",
        help="M6: size of the disk churned to ENOSPC (default: 320 short, 3072 long)",
    )
    cmp_.add_argument(
        "--enospc-variants",
        default=None,
        help=f"M6: btrfs reclaim variants churned as extra arms (of: "
        f"{', '.join(RECLAIM)}; default: none short, all long)",
    )
    cmp_.add_argument("--kernel", default=None, help=KERNEL_HELP)
    cmp_.add_argument(
        "--release",
        default=DEFAULT_SUITE,
        help=f"Debian suite of the guest root and its docker ({', '.join(RELEASES)})",
    )
    cmp_.add_argument("--seed", type=_whole, default=1, help="seed of M1's crash states")
    cmp_.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        help="runs go to OUT/compare/RUN_ID (OUT/compare/latest: the newest)",
    )
    cmp_.add_argument("--accel", choices=ACCELS, default=None, help=ACCEL_HELP)
    cmp_.add_argument(
        "--jobs",
        type=_whole,
        default=2,
        help="pieces (timed sessions, ENOSPC sessions, the M1 campaign) run at a "
        "time, a guest each",
    )
    cmp_.add_argument(
        "--no-saved-guests",
        dest="saved_guests",
        action="store_false",
        help="boot every guest instead of resuming saved ones",
    )

    cor = sub.add_parser(
        "corpus",
        help="the known-bug corpus: kernel crash-consistency fixes "
        "undone in a 6.12 tree, and whether crashtest catches "
        "them",
    )
    cor_sub = cor.add_subparsers(dest="corpus_command", required=True, parser_class=Parser)
    cls = cor_sub.add_parser("list", help="the entries: fix, fstests test, edit, expected verdict")
    cls.add_argument("--json", action="store_true", help="every field, edits included, as JSON")
    crun = cor_sub.add_parser(
        "run",
        help="build each entry's kernel from TREE with its fix "
        "undone, run its campaign RUNS times, and the same "
        "workload on the stock tree",
    )
    crun.add_argument(
        "--tree",
        type=Path,
        default=None,
        help="a kernel source tree the edits were written for (Debian's "
        "linux-source-6.12, unpacked); never modified: edits go to a "
        "working copy in the cache",
    )
    crun.add_argument(
        "--kernel",
        default=None,
        help="instead of --tree: run the workloads on this kernel only (a "
        "Debian package or a bzImage), as a baseline",
    )
    crun.add_argument("--only", default=None, help="comma list of entry ids (default: all)")
    crun.add_argument(
        "--runs",
        type=_whole,
        default=corpus.DEFAULT_RUNS,
        help="campaigns per entry on the kernel with the fix undone",
    )
    crun.add_argument(
        "--baseline-runs",
        type=_whole,
        default=1,
        help="campaigns per entry on the stock tree (controls: --runs)",
    )
    crun.add_argument(
        "--states",
        type=_whole,
        default=corpus.DEFAULT_STATES,
        help="lost-cache crash states per campaign",
    )
    crun.add_argument(
        "--cuts",
        type=_whole,
        default=corpus.DEFAULT_CUTS,
        help="live cuts per campaign, right after the entry's fsync",
    )
    crun.add_argument("--seed", type=_whole, default=1, help="seed of the first run (+1 each)")
    crun.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        help="runs go to OUT/corpus/RUN_ID (OUT/corpus/latest: the newest)",
    )
    crun.add_argument("--accel", choices=ACCELS, default=None, help=ACCEL_HELP)
    crun.add_argument("--jobs", type=_whole, default=2, help="units of a campaign at a time")
    crun.add_argument(
        "--no-saved-guests",
        dest="saved_guests",
        action="store_false",
        help="boot every guest instead of resuming saved ones",
    )

    exp = sub.add_parser(
        "explore",
        help="generate file-system programs, run each in a guest under a write log, "
        "check every crash state against a durability model and across filesystems",
    )
    exp.add_argument("--kernel", default=None, help="the kernel to test (default: the built-in)")
    exp.add_argument(
        "--fs",
        default="btrfs,ext4,xfs",
        help="comma list of filesystems each program runs on: btrfs, ext4, xfs, and each "
        "with -overlay (an overlayfs upper on it, as overlay2 uses it); three or more "
        "also compare their crash states (discrepancies)",
    )
    exp.add_argument(
        "--mode",
        choices=("random", "exhaustive"),
        default="random",
        help="seeded random programs, or every program up to --length core operations",
    )
    exp.add_argument(
        "--length",
        type=_whole,
        default=32,
        help="random: operations per program at most; exhaustive: core operations (1..3)",
    )
    exp.add_argument("--programs", type=_whole, default=100, help="programs to run at most")
    exp.add_argument(
        "--minutes", type=float, default=0.0, help="stop starting programs after this long"
    )
    exp.add_argument("--seed", type=_whole, default=1, help="the random programs' seed")
    exp.add_argument(
        "--ops",
        default=None,
        help="comma list of the operations programs use (default: all; see docs/explore.md)",
    )
    exp.add_argument(
        "--lost", type=_whole, default=1, help="lost-cache crash states per flush epoch"
    )
    exp.add_argument(
        "--no-fsck", dest="fsck", action="store_false", help="skip fsck of each crash state"
    )
    exp.add_argument(
        "--no-minimize",
        dest="minimize",
        action="store_false",
        help="no minimized programs and bundles at the end",
    )
    exp.add_argument("--jobs", type=_whole, default=2, help="guests at a time")
    exp.add_argument(
        "--out", type=Path, default=Path("results"), help="runs go to OUT/RUN_ID-explore"
    )
    exp.add_argument(
        "--resume", type=Path, default=None, help="go on with an interrupted explore run"
    )
    exp.add_argument("--accel", choices=ACCELS, default=None, help=ACCEL_HELP)
    exp.add_argument(
        "--known",
        type=Path,
        default=None,
        help='a known-failures file (workload "explore", backend: the filesystem): '
        "findings it matches do not fail the run",
    )
    exr = sub.add_parser("explore-repro", help="run an explore finding's bundle again in a guest")
    exr.add_argument("bundle", type=Path, help="a findings/<name> directory of an explore run")
    exr.add_argument("--accel", choices=ACCELS, default=None, help=ACCEL_HELP)

    chk = sub.add_parser("check", help="run every oracle on an existing test-disk image")
    chk.add_argument("image", type=Path, help="a raw or qcow2 disk image of a docker disk")
    chk.add_argument(
        "--kernel", default=None, help="the kernel that checks it (default: the built-in one)"
    )
    chk.add_argument("--json", action="store_true", help="print the report as JSON")

    st = sub.add_parser("states", help="read a write log and list its crash states")
    st.add_argument("log", type=Path, help="a write log, or a bundle's writes.log.zst")
    st.add_argument("--seed", type=_whole, default=1, help="seed of the state selection")
    st.add_argument("--budget", type=_whole, default=24, help="states to list at most")

    rep = sub.add_parser("repro", help="rebuild and recheck a reproducer bundle")
    rep.add_argument("bundle", type=Path, help="a reproducer bundle's directory")
    rep.add_argument(
        "--runs",
        type=_whole,
        default=3,
        help="checks of a lost-cache state, or live cuts to repeat",
    )
    rep.add_argument(
        "--kernel",
        default=None,
        help="check on this kernel instead of the bundle's (bisecting, fixes)",
    )
    rep.add_argument("--json", action="store_true", help="print the report as JSON")
    rep.add_argument(
        "--bisect",
        action="store_true",
        help="exit as `git bisect run` wants: 0 good, 1 bad, 125 cannot test this "
        "revision, 128 the bundle is unusable (stops the bisection)",
    )

    rpt = sub.add_parser("report", help="write a static HTML report from result directories")
    rpt.add_argument(
        "dirs",
        type=Path,
        nargs="+",
        help="run directories, or directories holding runs (e.g. results/)",
    )
    rpt.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="HTML file (default: report.html in the run, or in the first DIR)",
    )

    ups = sub.add_parser(
        "upstream",
        help="a plain-text report of one finding for upstream "
        "maintainers, from its reproducer bundle",
    )
    ups.add_argument("bundle", type=Path, help="a reproducer bundle's directory")
    ups.add_argument(
        "--evidence",
        type=Path,
        action="append",
        default=[],
        help="run directories (or directories of runs) of the same workload on "
        "other kernels: each kernel's outcome goes in the report (repeatable)",
    )
    ups.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="write the report to this file (default: standard output)",
    )

    wls = sub.add_parser(
        "workloads", help="list registered workloads, or check a workload file and show its steps"
    )
    wls.add_argument("workload", nargs="?", default=None, help="a name or a .py/.toml file")
    wls.add_argument("--seed", type=_whole, default=1, help="the seed the workload is built with")
    wls.add_argument("--json", action="store_true", help="a workload file's steps as JSON")

    img = sub.add_parser("images", help="build (or find cached) guest images, print manifests")
    img.add_argument("--kernel", default=None, help=KERNEL_HELP + " (default: the built-in one)")
    img.add_argument(
        "--kernel-modules",
        default=None,
        help="modules directory for a bzImage (lib/modules/VERSION)",
    )
    img.add_argument(
        "--releases",
        default=DEFAULT_SUITE,
        help=f"comma list of Debian suites to build guest roots for ({', '.join(RELEASES)})",
    )
    _finish_help(p)
    return p


class Help(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default == "" or isinstance(action.default, bool):
            return action.help  # nothing worth saying
        return super()._get_help_string(action)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _repro(args: argparse.Namespace) -> int:
    """Exit 1 when the bundle's violation came back, 0 when it did not."""
    try:
        bundle = load_bundle(args.bundle)
        report = reproduce(
            bundle, args.runs, args.kernel, progress=lambda m: print(m, file=sys.stderr, flush=True)
        )
    except CrashtestError as e:
        if not args.bisect:
            raise
        if isinstance(e, BundleError):  # no revision can be tested: stop the bisection
            print(f"crashtest: bad input: {e}", file=sys.stderr)
            return 128
        print(f"crashtest: cannot test this revision: {e}", file=sys.stderr)
        return 125
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(
            f"crashtest: {report.kind} state {report.state} on kernel "
            f"{report.kernel['version']}: reproduced {report.reproduced}/{report.runs} "
            f"(rate {report.rate:.2f}); expected {report.expected}"
        )
        for a in report.attempts:
            if a.what not in ("original", "live cut"):
                print(
                    f"  {a.what} {a.state}: {'REPRODUCED' if a.reproduced else 'not reproduced'}"
                    f" {a.signature or ''}"
                )
    if report.reproduced:
        return 1
    if report.harness_errors:
        return 125 if args.bisect else 2
    return 0


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _read_any_log(path: Path) -> WriteLog:
    """A write log as recorded, or zstd-compressed as a bundle keeps it."""
    try:
        with path.open("rb") as f:
            compressed = f.read(4) == ZSTD_MAGIC
    except OSError as e:
        raise InputError(f"write log {path}: {e.strerror}") from e
    if not compressed:
        return read_log(path)
    with tempfile.TemporaryDirectory(prefix="crashtest-log-") as tmp:
        return read_log(decompress_log(path, Path(tmp) / "writes.log"))


def _diff(args: argparse.Namespace) -> int:
    d = diff([args.old], [args.new])
    regressions = candidates(find_runs([args.new]), find_runs([args.old]))
    if args.json:
        print(
            json.dumps(
                {**d.to_json(), "regression_candidates": [c.to_json() for c in regressions]},
                indent=1,
            )
        )
    else:
        for title, items in (("new", d.appeared), ("gone", d.gone), ("still failing", d.still)):
            print(f"{title}: {len(items)}")
            for f in items:
                print(f"  {describe(f.finding)}")
        print(f"regression candidates: {len(regressions)}")
        for c in regressions:
            print(f"  {c.describe()}")
    return 1 if d.appeared or regressions else 0


def _compare(args: argparse.Namespace) -> int:
    """Exit 0 when every arm measured every metric, 2 when one failed."""
    run_dir = run_compare(
        CompareOptions(
            arms=args.arms,
            reps=args.reps,
            setting=args.setting,
            m1_states=args.m1_states,
            metrics=args.metrics,
            seed=args.seed,
            out=args.out,
            kernel=args.kernel,
            release=args.release,
            accel=args.accel,
            jobs=args.jobs,
            enospc_disk_mib=args.enospc_disk,
            enospc_variants=args.enospc_variants,
            saved_guests=args.saved_guests,
        )
    )
    doc = json.loads((run_dir / "compare.json").read_text())
    print(headline(doc))
    print(f"crashtest: compare results in {run_dir}/compare.json and compare.html")
    return 0 if doc["complete"] else 2


def _explore(args: argparse.Namespace) -> int:
    summary = explore(
        ExploreOptions(
            kernel=args.kernel,
            fs=args.fs,
            mode=args.mode,
            length=args.length,
            programs=args.programs,
            minutes=args.minutes,
            seed=args.seed,
            ops=args.ops,
            lost=args.lost,
            fsck=args.fsck,
            jobs=args.jobs,
            minimize=args.minimize,
            out=args.out,
            resume=args.resume,
            accel=args.accel,
            known=args.known,
        )
    )
    m = summary.meta
    print(
        f"crashtest: explore {m.run_id}: {summary.programs} programs, {summary.states} crash "
        f"states on {', '.join(m.filesystems)} ({m.kernel}), {m.elapsed_s:.0f} s"
    )
    failing = summary.new_failures()
    for g in summary.findings:
        word = f"known ({g.known})" if g.known else "NEW" if g.fails else g.cls
        print(f"  {word}: {g.signature} ({len(g.programs)} programs)")
        if g.minimized:
            print(f"    minimized: {'; '.join(g.minimized)}")
        if g.bundle:
            print(
                f"    bundle: {args.out if args.resume is None else args.resume.parent}/"
                f"{m.run_id}/{g.bundle}"
            )
    if summary.harness_errors:
        print(f"crashtest: {summary.harness_errors} harness errors (see explore.json)")
    if failing:
        return 1
    return 2 if summary.harness_errors else 0


def _explore_repro(args: argparse.Namespace) -> int:
    result = replay_bundle(args.bundle, args.accel)
    for v in result.found:
        print(f"  {v.cls.value}: {v.state}: {v.signature()}")
    print(f"crashtest: {'reproduced' if result.reproduced else 'not reproduced'}")
    return 1 if result.reproduced else 0


def _corpus(args: argparse.Namespace) -> int:
    """list: the entries. run: exit 0 when every entry came out as the corpus
    expects (a revert caught in >= 90% of its runs, the stock tree clean), 2 when
    a kernel did not build or a run had harness errors, else 1 when an entry did
    not come out as expected."""
    if args.corpus_command == "list":
        if args.json:
            print(json.dumps([b.to_json() for b in corpus.CORPUS], indent=1))
            return 0
        for b in corpus.CORPUS:
            files = ", ".join(sorted({e.path for e in b.edits})) or "no edit"
            print(
                f"{b.id}\t{b.kind}\t{b.fix} {b.title}\t{b.fstests}\t{b.backend}\t{files}"
                f"\texpected: {b.expected}"
            )
        return 0
    run_dir = corpus.run_corpus(
        corpus.CorpusOptions(
            tree=args.tree,
            kernel=args.kernel,
            only=args.only,
            runs=args.runs,
            baseline_runs=args.baseline_runs,
            states=args.states,
            cuts=args.cuts,
            seed=args.seed,
            out=args.out,
            accel=args.accel,
            jobs=args.jobs,
            saved_guests=args.saved_guests,
        )
    )
    doc = load_corpus(run_dir)
    if doc is None:
        raise HarnessError(f"{run_dir}: the corpus run wrote no corpus.json")
    for en in doc.entries:
        print(f"crashtest: {en.id}: {en.result}" + ("" if en.as_expected else " (NOT as expected)"))
    print(f"crashtest: corpus results in {run_dir}/corpus.json and corpus.html")
    if any(en.harness_failed for en in doc.entries):
        return 2
    return 0 if all(en.as_expected for en in doc.entries) else 1


def _upstream(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    workload = json.loads(bundle.file("workload.json").read_text())
    proof = None
    if args.evidence:
        try:
            proof = evidence(
                args.evidence,
                workload["name"],
                {Violation.from_json(v).signature() for v in bundle.meta["verdict"]["violations"]},
            )
        except InputError as e:
            raise InputError(f"--evidence: {e}") from e
    entry = corpus_by_id().get(workload["name"])
    fix = UpstreamFix(entry.fix, entry.title, entry.landed, entry.fstests) if entry else None
    text = upstream_report(bundle, workload, proof, fix)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    if not args.output.parent.is_dir():
        raise InputError(f"--output {args.output}: no such directory {args.output.parent}")
    write_atomic(args.output, text)
    print(f"crashtest: upstream report in {args.output}")
    return 0


class Out(Console):
    """Standard output for tables: a closed pipe ends the command as everywhere
    else here (quietly), not with rich's own exit 1."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def _workloads(args: argparse.Namespace) -> int:
    console = Out(soft_wrap=False)
    if args.workload is None:
        table = Table("name", "defined in", "what it does", box=box.SIMPLE_HEAD)
        for name, ref in sorted(registered().items()):
            try:
                about = load_workload(name, args.seed).description
            except WorkloadError as e:
                about = f"(does not load: {e})"
            table.add_row(name, ref, about.strip().splitlines()[0] if about.strip() else "")
        console.print(table)
        return 0
    wl = load_workload(args.workload, args.seed)
    if args.json:
        print(json.dumps(workload_json(wl), indent=1))
        return 0
    console.print(f"[bold]{wl.name}[/bold] ({wl.source}, seed {wl.seed}, digest {wl.digest[:16]})")
    if wl.description:
        console.print(wl.description.strip())
    steps = Table("#", "step", "barrier", "promises once its barrier returns", box=box.SIMPLE_HEAD)
    for n, st in enumerate(wl.steps, 1):
        lines = [p.describe().rsplit(" (after ", 1)[0] for p in st.promises]
        lines += [f"observes {o.target}" for o in st.observes]
        lines += [f"needs {', '.join(st.needs)}"] if st.needs else []
        steps.add_row(str(n), st.name, st.barrier or "none", "\n".join(lines) or "-")
    console.print(steps)
    if wl.cuts:
        console.print("live cuts at: " + ", ".join(wl.cuts))
    console.print("checked on every crash state: " + "; ".join(i.describe() for i in wl.invariants))
    return 0


def workload_json(wl: Workload) -> dict[str, Any]:
    return {
        "name": wl.name,
        "source": wl.source,
        "digest": wl.digest,
        "seed": wl.seed,
        "description": wl.description,
        "cuts": list(wl.cuts),
        "steps": [
            {
                "name": s.name,
                "barrier": s.barrier or "none",
                "needs": list(s.needs),
                "promises": [p.describe() for p in s.promises],
                "observes": [o.target for o in s.observes],
            }
            for s in wl.steps
        ],
        "invariants": [i.describe() for i in wl.invariants],
    }


def _error_log(args: argparse.Namespace) -> Path:
    """Where an unexpected exception's traceback goes: the run's output directory,
    else the cache."""
    out = getattr(args, "out", None)
    mine = args.command in ("run", "compare", "corpus") and isinstance(out, Path) and out.is_dir()
    base = out if mine and isinstance(out, Path) else cache_root() / "errors"
    base.mkdir(parents=True, exist_ok=True)
    return base / f"crashtest-error-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.log"


class _Stdout(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is when a line is logged (tests swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def _show_progress() -> None:
    """The libraries' progress (logged at INFO under `harness`) on standard output,
    one line each."""
    lib = logging.getLogger("harness")
    if not any(isinstance(h, _Stdout) for h in lib.handlers):
        handler = _Stdout()
        handler.setFormatter(logging.Formatter("crashtest: %(message)s"))
        lib.addHandler(handler)
    lib.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _show_progress()
    signal.signal(signal.SIGTERM, _interrupt)
    hosttools.add_sbin_to_path()
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # a reader that stopped early (`| head`): nothing more to say, and Python's
        # own flush at exit must not complain either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        kill_all()
        print("crashtest: interrupted; guests stopped, finished units kept", file=sys.stderr)
        return 130
    except CrashtestError as e:
        kill_all()
        kind = "bad input" if isinstance(e, InputError) else "error"
        print(f"crashtest: {kind}: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:
        # A bug in crashtest, never a finding: one line here, the traceback in a file.
        kill_all()
        log = _error_log(args)
        log.write_text(traceback.format_exc())
        print(
            f"crashtest: internal error: {type(e).__name__}: {e} (traceback in {log})",
            file=sys.stderr,
        )
        return 2
    finally:
        kill_all()


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "images":
        suites = [check_release(r.strip()) for r in args.releases.split(",") if r.strip()]
        for suite in suites:
            images = ensure_images(args.kernel, args.kernel_modules, suite)
            print(
                json.dumps(
                    {
                        "kernel": images.kernel.info,
                        "rootfs": images.root.manifest,
                        "initrd": str(images.initrd),
                    },
                    indent=1,
                )
            )
        return 0
    if args.command == "check":
        report = check_image(args.image, args.kernel)
        if args.json:
            print(json.dumps(report.to_json(), indent=1))
        else:
            print(
                f"crashtest: {args.image}: {report.fs} ({report.backend}), kernel {report.kernel}"
            )
            for v in report.violations:
                print(f"  [{v.cls}, fault: {v.fault}] {v.promise}")
                for key, val in v.evidence.items():
                    print(f"      {key}: {val.strip().splitlines()[0] if val.strip() else ''}")
            print(
                "crashtest: clean"
                if not report.failing
                else f"crashtest: {len(report.failing)} violations"
            )
        return 1 if report.failing else 0
    if args.command == "states":
        log = _read_any_log(args.log)
        sel = select_states(log, args.seed, args.budget)
        eps, states = sel.epochs, sel.states
        print(
            json.dumps(
                {
                    **sel.to_json(),
                    "log": str(args.log),
                    "digest": log.digest,
                    "sector_size": log.sectorsize,
                    "entries": len(log.entries),
                    "superblock_entries": log.nr_entries_super,
                    "flushes": sum(1 for e in log.entries if e.is_flush),
                    "epochs": len(eps),
                    "states": [s.id for s in states],
                },
                indent=1,
            )
        )
        return 0
    if args.command == "merge":
        merged, failed = (
            merge_all(args.out, args.shards)
            if args.all
            else ([merge_runs(args.out, args.shards)], [])
        )
        worst = 2 if failed else 0
        for why in failed:
            print(f"crashtest: could not merge {why}", file=sys.stderr)
        for m in merged:
            summary = load_summary(m)
            print(
                f"crashtest: merged {len(summary.shard.merged_from)} shards into "
                f"{m}: {verdict_line(summary)}"
            )
            for f in summary.findings:
                if not f.known:
                    print(f"  new: {f.signature} ({f.backend}, {f.states} states)")
            rc = exit_status(summary)
            worst = rc if worst == 0 or rc == 1 else worst
        return worst
    if args.command == "diff":
        return _diff(args)
    if args.command == "report":
        if args.output is not None and not args.output.parent.is_dir():
            raise InputError(f"--output {args.output}: no such directory {args.output.parent}")
        print(f"crashtest: report written to {write_report(args.dirs, args.output)}")
        return 0
    if args.command == "repro":
        return _repro(args)
    if args.command == "workloads":
        return _workloads(args)
    if args.command == "upstream":
        return _upstream(args)
    if args.command == "compare":
        return _compare(args)
    if args.command == "corpus":
        return _corpus(args)
    if args.command == "explore":
        return _explore(args)
    if args.command == "explore-repro":
        return _explore_repro(args)
    if args.command == "bench":
        doc = run_bench(
            args.out,
            args.backend,
            args.states,
            args.reboot_states,
            campaign_states=args.campaign_states,
            explore_programs=args.explore_programs,
            campaign_cuts=args.campaign_cuts,
        )
        print(json.dumps({k: v for k, v in doc.items() if k != "verdicts"}, indent=1))
        print(f"crashtest: benchmark written to {args.out}")
        return 0
    opts = RunOptions(
        backends=args.backends,
        cuts=args.cuts,
        states=args.states,
        kernel=args.kernel,
        kernel_modules=args.kernel_modules,
        seed=args.seed,
        out=args.out,
        accel=args.accel,
        cut_at=args.cut_at,
        mkfs_options=args.mkfs_options,
        mount_options=args.mount_options,
        keep_disks=args.keep_disks,
        inject=args.inject,
        memory_mb=args.memory,
        kernels=args.kernels,
        jobs=args.jobs,
        shard=args.shard,
        minimize_steps=args.minimize_steps,
        workload=args.workload,
        daemon_checks=args.daemon_checks,
        saved_guests=args.saved_guests,
        workloads=args.workloads,
        release=args.release,
        releases=args.releases,
        known=args.known,
        fail_on=args.fail_on or "",
    )
    if args.dry_run:
        steps = dry_run(opts)
        print(f"crashtest: dry run: {len(steps)} steps ran; no cut, nothing checked")
        return 0
    if args.resume is not None:
        opts = load_plan(args.resume)
    run_dir = run_campaign(opts, resume=args.resume)
    summary = load_summary(run_dir)
    for line in run_ending(summary, run_dir):
        print(f"crashtest: {line}")
    return exit_status(summary)


def run_ending(summary: Summary, run_dir: Path) -> list[str]:
    """A run's last lines: the verdict, what was new (with its reproducer), what
    was known and why, and where the report is."""
    lines = [verdict_line(summary)]
    reasons = {e["id"]: e.get("reason", "") for e in summary.known_failures.get("entries", [])}
    new = [f for f in summary.findings if not f.known]
    for f in new:
        where = (
            f"; reproduce: crashtest repro {run_dir / f.example.bundle}" if f.example.bundle else ""
        )
        lines.append(f"NEW: {f.signature} ({f.backend}, {f.states} states){where}")
    for known, n in summary.totals.known_seen.items():
        states = sum(f.states for f in summary.findings if f.known == known)
        why = reasons.get(known, "").split(":")[0].strip()
        lines.append(
            f"known: {known} ({n} violations in {states} states)" + (f": {why}" if why else "")
        )
    if summary.fail_on == "new" and summary.totals.known and not new:
        lines.append("nothing new: known failures do not fail the run (KNOWN=, FAIL_ON=any)")
    lines.append(f"report: {run_dir / 'report.html'} (summary.json, junit.xml, bundles/ beside it)")
    return lines


def verdict_line(summary: Summary) -> str:
    """One line for a run's outcome: states, violations by fault, new and known."""
    t = summary.totals
    faults = ", ".join(f"{n} {f}'s fault" for f, n in t.faults.items())
    line = f"{t.states_checked} states checked, {t.violations} violations" + (
        f" ({faults})" if faults else ""
    )
    if summary.known_failures.get("entries"):
        line += f", {t.new} new, {t.known} known"
        if t.known_not_seen:
            line += f" ({len(t.known_not_seen)} known not seen)"
    return line + f", {t.harness_errors} harness errors"


def exit_status(summary: Summary) -> int:
    """1 when violations fail the run (new ones, or any: `fail_on`), else 2 when
    the harness could not decide some states, else 0."""
    t = summary.totals
    if t.failing:
        return 1
    return 2 if t.harness_errors else 0


if __name__ == "__main__":
    sys.exit(main())
