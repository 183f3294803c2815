"""Lost-cache states for one backend: record the workload's writes, pick crash
states within a budget, replay each forward from the log, check it in the checker."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from harness.campaign import snapshots
from harness.campaign.context import CampaignConfig, Progress, machine_config
from harness.errors import GuestError, GuestSetupError, HarnessError, ResumeError
from harness.model import Promise, StateResult, UnitKind, Violation, blame_configuration
from harness.oracles.checker import Checker, StateCheck
from harness.repro.bundle import compress_disk, compress_log, reproduces, signature
from harness.repro.capture import qemu_argv, replay_bundle
from harness.repro.minimize import Minimized, minimize
from harness.storage.backends import Backend
from harness.writelog.format import WriteLog
from harness.writelog.record import Event, Recording, record
from harness.writelog.replay import Replayer, ReplayStats
from harness.writelog.states import CrashState, Epoch, epochs, select_states


def run_lost_cache(
    cfg: CampaignConfig, backend: Backend, budget: int, progress: Progress
) -> tuple[list[StateResult], dict[str, object]]:
    """Returns one StateResult per crash state, and replay statistics."""
    workdir = cfg.run_dir / backend.name / "replay"
    t0 = time.monotonic()
    stats: dict[str, object] = {}
    try:
        rec = _record(cfg, backend, workdir, progress)
        log = rec.parse()
        eps = epochs(log)
        stats.update(
            {
                "log_digest": log.digest,
                "log_entries": len(log.entries),
                "log_bytes": rec.log.stat().st_size,
                "epochs": len(eps),
                "record_s": round(time.monotonic() - t0, 1),
                "events": [{"step": e.step, "entry": e.entry} for e in rec.events],
            }
        )
        progress(
            f"  recorded {len(log.entries)} log entries in {len(eps)} epochs; "
            f"checking up to {budget} lost-cache states"
        )
    except GuestSetupError:
        raise
    except (HarnessError, GuestError) as e:
        res = StateResult(
            f"{backend.name}/replay/record",
            backend.name,
            "record the workload",
            kind=UnitKind.REPLAY,
            harness_error=f"{type(e).__name__}: {e}",
        )
        return [res], stats
    results, rstats = check_recording(cfg, backend, rec, log, budget, progress, workdir)
    stats.update(rstats)
    stats["replay_wall_s"] = round(time.monotonic() - t0, 1)
    (workdir / "replay.json").write_text(json.dumps(stats, indent=1) + "\n")
    # The log and origin are what a state is rebuilt from: bundles hold them
    # compressed; failing states without a bundle keep a compressed copy here. No
    # raw (4 GiB sparse) copy stays unless --keep-disks.
    rec.disk.unlink(missing_ok=True)
    if not cfg.keep_disks:
        if any(r.verdict != "pass" and not r.bundle for r in results) and rec.log.exists():
            compress_log(rec.log, workdir / "writes.log.zst")
            compress_disk(rec.origin, workdir / "origin.qcow2")
        rec.log.unlink(missing_ok=True)
        rec.origin.unlink(missing_ok=True)
    return results, stats


def _record(cfg: CampaignConfig, backend: Backend, workdir: Path, progress: Progress) -> Recording:
    """Record from the saved docker-ready guest when there is one, else from a boot."""
    saved = snapshots.docker_ready(cfg, backend, progress)
    if saved is not None and saved.disk is not None:
        try:
            return record(
                machine_config(cfg, None),
                backend,
                cfg.workload,
                workdir,
                resume_from=(saved.vmstate, saved.disk),
                progress=progress,
            )
        except ResumeError as e:
            snapshots.discard(saved, str(e), progress)
    return record(machine_config(cfg, None), backend, cfg.workload, workdir, progress=progress)


def check_recording(
    cfg: CampaignConfig,
    backend: Backend,
    rec: Recording,
    log: WriteLog,
    budget: int,
    progress: Progress,
    workdir: Path,
) -> tuple[list[StateResult], dict[str, object]]:
    """Replay and check `budget` seeded crash states of a recording. The same log
    and seed give the same states (and, on a deterministic stack, the same verdicts)."""
    selection = select_states(log, cfg.seed, budget)
    eps, states = selection.epochs, selection.states
    replayer = Replayer(log, rec.origin, workdir / "work")
    results: list[StateResult] = []
    t0 = time.monotonic()
    saved = snapshots.idle_guest(cfg, progress)
    with Checker(machine_config(cfg, None), backend, workdir, saved=saved) as checker:
        bundler = _Bundler(cfg, backend, rec, eps, replayer, checker, workdir, progress)
        for st in states:
            t = time.monotonic()
            epoch = eps[st.epoch]
            promises = rec.promises_at(epoch.first_entry, epoch.end_entry)
            res = StateResult(
                f"{backend.name}/replay/{st.id}",
                backend.name,
                f"lost cache in epoch {st.epoch} ({len(epoch.entries)} writes): keep {st.subset}",
                kind=UnitKind.REPLAY,
                actual="replayed",
                last_durability_point=_last_step(rec.events, epoch.first_entry),
                promises=len(promises),
            )
            disk = workdir / "state.qcow2"
            try:
                replayer.build(eps, st, disk)
                res.timings["replay_build_s"] = round(time.monotonic() - t, 3)
                got = checker.check(
                    StateCheck(
                        st.id,
                        disk,
                        tuple(promises),
                        cfg.workload.invariants,
                        tuple(rec.observations_at(epoch.first_entry, epoch.end_entry)),
                        after_mount=cfg.damage,
                        daemon=cfg.daemon_checks,
                    )
                )
                res.violations = blame_configuration(got.violations, backend.flushes_off())
                res.timings.update(got.times)
                res.observed = got.observed
                res.started = f"checker {got.started}"
            except GuestSetupError:
                raise
            except (HarnessError, GuestError) as e:
                res.harness_error = f"{type(e).__name__}: {e}"
            finally:
                disk.unlink(missing_ok=True)
            if res.verdict == "violation":
                progress(f"  {res.state}: VIOLATION; writing its reproducer")
                try:
                    bundler.capture(res, st, promises)
                except (HarnessError, GuestError) as e:
                    res.harness_error = f"reproducer: {type(e).__name__}: {e}"
            res.wall_s = round(time.monotonic() - t, 2)
            results.append(res)
            if res.verdict != "pass":
                progress(f"  {res.state}: {res.verdict.upper()}")
        bundler.close()
    shutil.rmtree(workdir / "work", ignore_errors=True)
    stats = _replay_stats(replayer.stats, len(results), checker.boots, time.monotonic() - t0)
    stats["checker_resumes"] = checker.resumed
    stats.update(selection.to_json())
    if selection.stands_for:  # which states each checked one stands for (identical disks)
        stats["stands_for"] = selection.stands_for
    return results, stats


def _last_step(events: list[Event], entry: int) -> str:
    done = [e.step for e in events if e.entry <= entry]
    return done[-1] if done else "(none)"


def _replay_stats(s: ReplayStats, checked: int, boots: int, wall: float) -> dict[str, object]:
    """`states`: the campaign's states; `states_built` also counts minimization's."""
    return {
        "states": checked,
        "states_built": s.states,
        "replay_bytes": s.replay_bytes,
        "naive_replay_bytes": s.naive_bytes,
        "checker_boots": boots,
        "check_wall_s": round(wall, 1),
    }


def _short(subset: str) -> str:
    """Random-subset masks of big epochs are long; a bundle's directory name is not."""
    if len(subset) <= 16:
        return subset
    return subset[0] + hashlib.sha256(subset.encode()).hexdigest()[:12]


MINIMIZE_SIGNATURES = 2  # per recording: each distinct broken-promise set costs checks


class _Bundler:
    """Reproducer bundles for failing states. The first state to break a given set
    of promises is minimized; bundles of one recording share its compressed log."""

    def __init__(
        self,
        cfg: CampaignConfig,
        backend: Backend,
        rec: Recording,
        eps: list[Epoch],
        replayer: Replayer,
        checker: Checker,
        workdir: Path,
        progress: Progress,
    ) -> None:
        self.cfg, self.backend, self.rec, self.eps = cfg, backend, rec, eps
        self.replayer, self.checker, self.progress = replayer, checker, progress
        self.shared = workdir / "bundle-shared"
        self.minimized: set[tuple[str, ...]] = set()

    def _artifacts(self) -> tuple[Path, Path]:
        log, origin = self.shared / "writes.log.zst", self.shared / "origin.qcow2"
        if not log.exists():
            self.shared.mkdir(parents=True, exist_ok=True)
            compress_log(self.rec.log, log)
            compress_disk(self.rec.origin, origin)
        return log, origin

    def _check(self, st: CrashState, promises: list[Promise]) -> list[Violation]:
        """A candidate state's verdicts, blamed as the campaign blames its states (the
        signatures minimization compares carry the fault)."""
        disk = self.replayer.build(self.eps, st, self.shared / "candidate.qcow2")
        try:
            return blame_configuration(
                self.checker.check(
                    StateCheck(
                        st.id,
                        disk,
                        tuple(promises),
                        self.cfg.workload.invariants,
                        after_mount=self.cfg.damage,
                        daemon=self.cfg.daemon_checks,
                    )
                ).violations,
                self.backend.flushes_off(),
            )
        finally:
            disk.unlink(missing_ok=True)

    def capture(self, res: StateResult, st: CrashState, promises: list[Promise]) -> None:
        want = signature(res.violations)
        minimal: Minimized | None = None
        minimal_found: list[Violation] = []
        if (
            self.cfg.minimize_tests
            and tuple(want) not in self.minimized
            and len(self.minimized) < MINIMIZE_SIGNATURES
        ):
            self.minimized.add(tuple(want))
            self.shared.mkdir(parents=True, exist_ok=True)
            minimal = minimize(
                st,
                self.eps[st.epoch],
                lambda cand: reproduces(want, signature(self._check(cand, promises))),
                self.cfg.minimize_tests,
            )
            if minimal is not None:
                minimal_found = self._check(minimal.state, promises)  # its evidence
                self.progress(
                    f"  minimized: drops {len(minimal.dropped)} of "
                    f"{minimal.original_dropped} writes ({minimal.tests} checks)"
                )
        log, origin = self._artifacts()
        dest = self.cfg.run_dir / "bundles" / f"{self.backend.name}-e{st.epoch}-{_short(st.subset)}"
        argv = qemu_argv(machine_config(self.cfg, None))
        replay_bundle(
            dest,
            self.cfg,
            self.backend,
            res,
            argv,
            st.id,
            promises,
            log,
            origin,
            [self.checker.console_log],
            minimal,
            minimal_found,
        )
        res.bundle = str(dest.relative_to(self.cfg.run_dir))

    def close(self) -> None:
        shutil.rmtree(self.shared, ignore_errors=True)
