"""The built-in scenarios as data: each loads, validates, pickles and round-trips;
the stress generator's model is what a real filesystem holds after its commands;
observations and withdrawn promises apply to the right crash states."""

import hashlib
import pickle
import random
import subprocess
from pathlib import Path

import pytest

from crashtest_guest.seeded import seeded_bytes
from harness.campaign.plan import Cell, RunOptions, plan_units, workload_cuts
from harness.model import Promise
from harness.storage.backends import parse_backends
from harness.workloads import (
    Barrier,
    Step,
    Workload,
    WorkloadError,
    file,
    load_workload,
    observe,
)
from harness.workloads.scenarios import SCENARIOS, sequence
from harness.workloads.scenarios.stress import Location, Model, epoch, settle
from harness.writelog.record import Event, Recording


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_scenario_loads_pickles_and_round_trips(name: str) -> None:
    w = load_workload(name, 3)
    assert w.name == name and w.source == name and w.description
    assert pickle.loads(pickle.dumps(w)) == w
    assert Workload.from_json(w.to_json()).digest == w.digest
    assert load_workload(name, 4).digest != w.digest  # the seed matters
    assert len(pickle.dumps(w)) < 64 << 10  # names and sizes travel, not megabytes
    assert w.cuts and all(p.step in w.step_names for p in workload_cuts(3, "b", 5, w))


def test_seeded_bytes_are_the_key_s_alone() -> None:
    assert seeded_bytes("k", 100) == seeded_bytes("k", 100)
    assert seeded_bytes("k", 100)[:10] == seeded_bytes("k", 10)
    assert seeded_bytes("k", 10) != seeded_bytes("j", 10)


def test_the_stress_model_is_what_a_real_filesystem_holds(tmp_path: Path) -> None:
    """Run the generated commands with the host's coreutils: every promised file has
    the model's bytes, every name promised absent is gone."""
    blob = seeded_bytes("blob", 512 * 512)
    (tmp_path / "blob.bin").write_bytes(blob)
    root = tmp_path / "root"
    root.mkdir()
    loc = Location(str(root), "disk:")
    model, rng = Model(), random.Random(7)
    checked, ran = 0, []
    for _ in range(6):
        cmds, touched = epoch(rng, model, blob, str(root), str(tmp_path / "blob.bin"))
        sync, promises = settle(model, touched, loc)
        subprocess.run(["sh", "-e", "-c", " && ".join([*cmds, sync])], check=True)
        ran += cmds
        for p in promises:
            path = root / p.target.removeprefix("disk:/")
            if p.kind == "absent-file":
                assert not path.exists(), p.target
            else:
                assert hashlib.sha256(path.read_bytes()).hexdigest() == p.sha256, p.target
            checked += 1
    assert checked > 20
    assert {c.split()[0] for c in ran} == {"dd", "truncate", "mv", "ln", "rm", "sync", "mkdir"}
    assert any(c.startswith("sync -d ") for c in ran)  # fdatasync too


def _step(name: str, promises: list[Promise] = (), observes: tuple = ()) -> Step:  # type: ignore[assignment]
    return Step(
        name,
        "true",
        Barrier.SYNC if promises else Barrier.NONE,
        promises=promises,
        observes=observes,
    )


def test_a_step_that_changes_a_promised_file_withdraws_its_promise_while_it_runs() -> None:
    old = Promise("file", "disk:/f", "one", "fsync", sha256="a" * 64)
    new = Promise("file", "disk:/f", "two", "fsync", sha256="b" * 64)
    rec = Recording(
        Path("o"),
        Path("d"),
        Path("l"),
        [
            Event("one", 10, [old], started=0),
            Event("two", 30, [new], started=20, withdraws=[new.key()]),
        ],
        0.0,
    )
    assert rec.promises_at(15, 20) == [old]
    assert rec.promises_at(15, 25) == []  # two's writes may be in: old or new, both fine
    assert rec.promises_at(30, 30) == [new]
    w = Workload(
        "w", [_step("one", [file("disk:/f", "a" * 64)]), _step("two", [file("disk:/f", "b" * 64)])]
    )
    assert w.steps[1].withdraws == ["file:disk:/f"] and w.steps[1].removes == []


def test_observations_hold_from_their_step_until_a_promise_covers_the_file() -> None:
    seen = observe("disk:/f", old="absent", new="c" * 64 + " 644 0 0")
    cover = Promise("file", "disk:/f", "sync", "sync", sha256="c" * 64)
    rec = Recording(
        Path("o"),
        Path("d"),
        Path("l"),
        [
            Event("change", 10, [], started=5, observes=[seen]),
            Event("sync", 20, [cover], started=10),
        ],
        0.0,
    )
    assert rec.observations_at(4, 5) == []  # nothing of the change can be in
    assert rec.observations_at(5, 12) == [seen]
    assert rec.observations_at(12, 19) == [seen]  # the sync has not returned
    assert rec.observations_at(20, 25) == []  # the promise judges it now


@pytest.mark.parametrize(
    "outcomes, message",
    [
        ({"old": "nonsense"}, 'must be "absent" or "SHA256 MODE UID GID"'),
        ({"empty": "absent"}, "labels empty and other are taken"),
        ({}, "at least one outcome"),
    ],
)
def test_a_bad_observation_names_its_line(outcomes: dict[str, str], message: str) -> None:
    with pytest.raises(WorkloadError, match=message) as e:
        Workload("w", [_step("s", observes=(observe("disk:/f", **outcomes),))])
    assert "test_scenario_data.py:" in str(e.value)


@pytest.mark.parametrize(
    "cut, message",
    [
        ("sideways:s", "must be KIND:STEP"),
        ("after:nope", "must be KIND:STEP"),
        ("returned:s", "only a step with barrier"),
        ("after:s:2", 'only a "during" cut'),
    ],
)
def test_a_workload_s_own_cut_points_are_checked(cut: str, message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        Workload("w", [_step("s")], cuts=[cut])


def test_units_follow_the_matrix_and_the_workload_s_cut_points() -> None:
    pull, churn = load_workload("pull", 1), load_workload("churn", 1)
    cells = [Cell(0, r, w, None) for w in (pull, churn) for r in ("bookworm", "trixie")]
    backends = parse_backends("btrfs,ext4-overlay2", "", "")
    units = plan_units(RunOptions(cuts=2, states=5), backends, cells)
    assert len(units) == 4 * 2 * 3
    first = [u.plan.describe() for u in units if u.cell == 0 and u.plan]
    assert (
        first == ["after pull's docker command returned, before its sync", "during pull +2.00s"] * 2
    )


def test_the_copy_up_model_is_what_a_real_filesystem_holds(tmp_path: Path) -> None:
    """The copy-up commands run with the host's coreutils on the image's files: each
    changed path ends as the model says (content, mode, owner), or gone."""
    import os
    import stat

    from harness.workloads.scenarios import copy_up

    lower = {
        f"{op}-{size}-n": seeded_bytes(f"l{op}{size}", n)
        for op in copy_up.OPS
        for size, n in copy_up.SIZES.items()
    }
    payload = {
        k: seeded_bytes(f"p{k}", min(copy_up.PAYLOAD, len(v) // 2))
        for k, v in lower.items()
        if k.startswith(("append", "overwrite"))
    }
    for d, files in (("lower", lower), ("src", payload)):
        (tmp_path / d).mkdir()
        for name, data in files.items():
            (tmp_path / d / name).write_bytes(data)
            (tmp_path / d / name).chmod(0o644)
            os.chown(tmp_path / d / name, 0, 0)
    cmds, _, after = copy_up._changes(lower, payload, "n")
    script = (
        " && ".join(cmds)
        .replace("/lower/", f"{tmp_path}/lower/")
        .replace("/src/", f"{tmp_path}/src/")
    )
    subprocess.run(["sh", "-e", "-c", script], check=True)
    assert len(after) == 16
    for path, state in after.items():
        real = tmp_path / path.lstrip("/")
        if state is None:
            assert not real.exists(), path
            continue
        st = real.stat()
        assert real.read_bytes() == state[0], path
        assert f"{stat.S_IMODE(st.st_mode):o} {st.st_uid} {st.st_gid}" == state[1], path


def test_generated_docker_sequences_are_valid_and_cover_every_operation() -> None:
    """`sequence`: each seed a valid workload (every step needs only earlier ones),
    the same for the same seed, different across seeds, and every operation of
    the grammar drawn somewhere; a container holding a promised file is never
    removed (its promise stays checkable)."""
    seen: set[str] = set()
    shapes = set()
    for seed in range(1, 301):
        w = sequence.workload(seed)
        assert w == sequence.workload(seed)
        names = [s.name for s in w.steps]
        for i, step in enumerate(w.steps):
            assert set(step.needs) <= set(names[:i]), (seed, step.name, step.needs)
        ops = [n.rsplit("-", 1)[0] for n in names[2:]]
        seen |= set(ops)
        shapes.add(tuple(ops))
        written = {p.target.split(":")[1] for s in w.steps for p in s.promises if p.kind == "file"}
        gone = {p.target for s in w.steps for p in s.promises if p.kind == "absent-container"}
        assert not written & gone, seed
        assert sequence.MIN_OPERATIONS <= len(ops) <= sequence.MAX_OPERATIONS
    assert seen == set(sequence.OPERATIONS)
    assert len(shapes) > 250
