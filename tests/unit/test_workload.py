"""The workload API: built-in and user workloads in both forms, as plain data, and
every mistake a workload file can hold as one line naming file:line."""

import hashlib
import json
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.model import Ledger, Promise
from harness.workloads import (
    Barrier,
    Step,
    Workload,
    WorkloadError,
    file,
    load_workload,
    registered,
)
from harness.workloads.default import build_context

HERE = Path(__file__).parents[1] / "workloads"


def test_same_seed_same_workload_other_seed_differs() -> None:
    a, b, c = (load_workload("default", s) for s in (7, 7, 8))
    assert a == b and a.digest == b.digest
    assert a.digest != c.digest


def test_manifest_hashes_match_the_context_files() -> None:
    ctx, _ = build_context(random.Random("crashtest-workload:3"), 3)
    lines = ctx["manifest.sha256"].decode().splitlines()
    entries = dict(reversed(line.split("  ", 1)) for line in lines)
    assert entries["/data/l3/f0.bin"] == hashlib.sha256(ctx["layer3/f0.bin"]).hexdigest()
    # f5 is renamed into layer 2 by a RUN step; f4 is deleted and must not be listed
    assert entries["/data/l2/moved.bin"] == hashlib.sha256(ctx["layer1/f5.bin"]).hexdigest()
    assert "/data/l1/f4.bin" not in entries


def test_every_default_step_but_start_declares_a_durability_point() -> None:
    wl = load_workload("default", 1)
    assert [s.name for s in wl.steps if not s.promises] == ["start-writer"]
    assert {p.how for s in wl.steps for p in s.promises} == {"sync", "fsync"}
    assert all(p.step == s.name for s in wl.steps for p in s.promises)
    assert wl.damage_target.startswith("/data/l3/")


def test_ledger_keeps_latest_promise_per_object() -> None:
    led = Ledger()
    led.grant("build", [Promise("image", "x:1", "build", "sync", run="true")])
    led.grant("rm", [Promise("absent-image", "x:1", "rm", "sync")])
    assert [p.kind for p in led.in_force()] == ["absent-image"]
    assert led.last_point == "rm"


@pytest.mark.parametrize(
    "spec", ["default", str(HERE / "volume_fsync.py"), str(HERE / "layer_fsync.toml")]
)
def test_workloads_are_plain_data(spec: str) -> None:
    """They pickle (parallel units) and round-trip through JSON (bundles) unchanged."""
    wl = load_workload(spec, 2)
    assert pickle.loads(pickle.dumps(wl)) == wl
    again = Workload.from_json(json.loads(json.dumps(wl.to_json())))
    assert again == wl and again.digest == wl.digest


def test_python_workload_from_a_file_anywhere() -> None:
    wl = load_workload(str(HERE / "volume_fsync.py"), 5)
    assert wl.name == "volume-fsync" and wl.seed == 5 and wl.source.endswith("volume_fsync.py")
    assert wl.step_names == ["import-base", "write-volume", "keeper", "clobber", "settle"]
    assert wl.synced == ["import-base", "clobber", "settle"]
    p = wl.steps[1].promises[0]
    assert (p.kind, p.target, p.step, p.how, p.sha256) == (
        "file",
        "volume:vol:/data.txt",
        "write-volume",
        "fsync",
        "",
    )  # derived at run time
    assert "2005" in wl.steps[1].run[1]  # the seed reached the commands
    assert p.origin.startswith(str(HERE / "volume_fsync.py") + ":")


def test_toml_workload_compiles_to_the_same_data() -> None:
    wl = load_workload(str(HERE / "layer_fsync.toml"), 3)
    assert wl.name == "layer-fsync" and wl.step_names == [
        "import-base",
        "write-layer",
        "clobber",
        "stop",
    ]
    assert "seq 1 3000" in wl.steps[1].run[2]
    stop = wl.steps[3].promises[0]
    assert (stop.kind, stop.target, stop.state, stop.step) == (
        "container",
        "keeper",
        "exited 137",
        "stop",
    )
    assert [i.kind for i in wl.invariants] == ["docker-intact", "dockerd-starts", "command"]
    assert wl.steps[1].origin == f"{HERE / 'layer_fsync.toml'}:17"


def test_the_digest_names_what_runs_not_where_it_came_from(tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere.toml"
    moved.write_text((HERE / "layer_fsync.toml").read_text())
    a = load_workload(str(HERE / "layer_fsync.toml"), 1)
    assert load_workload(str(moved), 1).digest == a.digest
    assert load_workload(str(HERE / "layer_fsync.toml"), 2).digest != a.digest


def test_registered_names_include_the_builtin() -> None:
    assert registered()["default"] == "harness.workloads.default:workload"


def test_keeping_adds_what_steps_need() -> None:
    wl = load_workload(str(HERE / "volume_fsync.py"), 1)
    assert wl.keeping({"clobber"}).step_names == ["import-base", "write-volume", "clobber"]


TOML_STEP = '[[step]]\nname = "a"\nrun = "true"\nbarrier = "sync"\n'
BAD = [
    ("syntax.toml", 'name = "x"\n[[step]\nname = "a"\n', 2, "not valid TOML"),
    ("needs.toml", TOML_STEP + 'needs = ["nope"]\n', 1, "needs unknown step 'nope'"),
    (
        "cycle.toml",
        '[[step]]\nname = "a"\nrun = "true"\nneeds = ["b"]\n'
        '[[step]]\nname = "b"\nrun = "true"\nneeds = ["a"]\n',
        1,
        "cycle in `needs`: a -> b -> a",
    ),
    (
        "later.toml",
        '[[step]]\nname = "a"\nrun = "true"\nneeds = ["b"]\n[[step]]\nname = "b"\nrun = "true"\n',
        1,
        "needs 'b', which runs after it",
    ),
    (
        "kind.toml",
        TOML_STEP + '[[step.promise]]\nkind = "teapot"\ntarget = "x"\n',
        5,
        "unknown promise kind 'teapot'",
    ),
    (
        "nostep.toml",
        TOML_STEP + '[[promise]]\nafter = "b"\nkind = "image"\ntarget = "x"\n',
        5,
        "promise about step 'b', which does not exist",
    ),
    (
        "barrier.toml",
        '[[step]]\nname = "a"\nrun = "true"\n[[step.promise]]\nkind = "image"\ntarget = "x"\n',
        4,
        "has no barrier",
    ),
    ("key.toml", TOML_STEP + 'rn = "typo"\n', 1, "unknown key 'rn' in a step"),
    (
        "target.toml",
        TOML_STEP + '[[step.promise]]\nkind = "file"\ntarget = "/etc/x"\n',
        5,
        "must be container:NAME:/path",
    ),
    ("syntax.py", "from harness.workloads import Step\n\ndef workload(seed)\n", 3, "syntax error"),
    (
        "needs.py",
        "from harness.workloads import Step, Workload\n\n\ndef workload(seed):\n"
        "    return Workload('w', [\n        Step('a', 'true', needs=['zz'])])\n",
        6,
        "needs unknown step 'zz'",
    ),
    (
        "kind.py",
        "from harness.workloads import Barrier, Promise, Step, Workload\n\n\n"
        "def workload(seed):\n    return Workload('w', [Step('a', 'true', Barrier.SYNC,\n"
        "        promises=[Promise('teapot', 'x')])])\n",
        5,
        "unknown promise kind 'teapot'",
    ),
    ("raises.py", "def workload(seed):\n    return 1 / 0\n", 2, "ZeroDivisionError"),
    ("nofunc.py", "X = 1\n", 1, "defines no function `workload(seed)`"),
]


@pytest.mark.parametrize(("name", "text", "line", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_workload_file_is_one_error_naming_file_and_line(
    tmp_path: Path, name: str, text: str, line: int, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(WorkloadError) as e:
        load_workload(str(path), 1)
    assert str(e.value).startswith(f"{path}:{line}: "), str(e.value)
    assert message in str(e.value)


def test_bad_workload_through_the_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cycle.toml"
    path.write_text(BAD[2][1])
    out = tmp_path / "res"
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--workload", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"crashtest: bad input: {path}:1: ")
    assert not any(out.iterdir())
    missing = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--workload", "nosuch", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "not a file and not a registered workload" in missing.stderr


def test_workloads_command_lists_and_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    assert main(["workloads"]) == 0
    listed = capsys.readouterr().out
    assert "default" in listed and "btrfs-764" in listed
    assert main(["workloads", str(HERE / "layer_fsync.toml")]) == 0
    table = capsys.readouterr().out
    assert "layer-fsync" in table and "fsync" in table and "{" not in table
    assert main(["workloads", str(HERE / "layer_fsync.toml"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "layer-fsync" and doc["steps"][1]["barrier"] == "fsync"


def test_a_step_without_barrier_cannot_promise() -> None:
    with pytest.raises(WorkloadError, match="has no barrier"):
        Workload("w", [Step("a", "true", promises=[file("volume:v:/f")])])
    assert Workload("w", [Step("a", "true", Barrier.FSYNC, promises=[file("volume:v:/f")])])


def test_toml_says_what_python_says(tmp_path: Path) -> None:
    """Metadata promises, observations and default cuts: the TOML form compiles
    to the same workload as the Python form."""
    from harness.workloads import Step, Workload, file, observe

    toml = tmp_path / "same.toml"
    toml.write_text(
        """name = "same"
cuts = ["after:write", "during:write:0.5"]

[[step]]
name = "write"
run = "echo {seed} > /var/lib/docker/f && sync /var/lib/docker/f"
barrier = "fsync"

[[step.promise]]
kind = "file"
target = "disk:/f"
metadata = true

[[step.observe]]
target = "disk:/g"
outcomes = {gone = "absent"}
"""
    )
    python = Workload(
        "same",
        [
            Step(
                "write",
                "echo 3 > /var/lib/docker/f && sync /var/lib/docker/f",
                "fsync",
                promises=[file("disk:/f", metadata=True)],
                observes=[observe("disk:/g", gone="absent")],
            )
        ],
        seed=3,
        cuts=["after:write", "during:write:0.5"],
    )
    loaded = load_workload(str(toml), 3)
    assert loaded.steps == python.steps and loaded.cuts == python.cuts
    assert loaded.steps[0].promises[0].meta == "derive"
    toml.write_text(toml.read_text().replace("outcomes =", "outcome ="))
    with pytest.raises(WorkloadError, match=r"same.toml:\d+: unknown key 'outcome'"):
        load_workload(str(toml), 3)


def test_the_readmes_examples_are_the_shipped_files_and_say_the_same() -> None:
    """The README's TOML and Python workloads are examples/volume.{toml,py}, word for
    word, and compile to the same workload (checked in a guest by the dry-run test)."""
    import re

    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text()
    shown = {
        m.group(2): m.group(0).split("\n", 1)[1].rsplit("```", 1)[0]
        for m in re.finditer(r"```(toml|python)\n# (examples/\S+):.*?```", readme, re.S)
    }
    assert set(shown) == {"examples/volume.toml", "examples/volume.py"}
    for path, text in shown.items():
        assert (root / path).read_text() == text, path
    python, toml = (load_workload(str(root / p), 3) for p in sorted(shown))
    assert python.steps == toml.steps and python.cuts == toml.cuts
