"""The Kubernetes Indexed Job (deploy/kubernetes): valid against the Kubernetes
schema (offline, kubernetes-validate), and its shell run here with stand-ins:
each pod's completion index becomes its SHARD, the merge waits for every shard."""

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).parents[2]
MANIFEST = REPO / "deploy" / "kubernetes" / "crashtest-shards.yaml"
K8S_VERSION = "1.30.0"


def docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def job(name: str) -> dict[str, Any]:
    [found] = [d for d in docs() if d["kind"] == "Job" and d["metadata"]["name"] == name]
    return found


def container(name: str) -> dict[str, Any]:
    [c] = job(name)["spec"]["template"]["spec"]["containers"]
    return dict(c)


def run(tmp_path: Path, c: dict[str, Any], env: dict[str, str]) -> tuple[int, str]:
    bindir = tmp_path / "bin"
    calls = tmp_path / "calls"
    calls.write_text("")
    script = c["args"][0]
    values = {e["name"]: e["value"] for e in c.get("env", [])}
    res = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            **values,
            "CALLS": str(calls),
            "PATH": f"{bindir}:{os.environ['PATH']}",
            **env,
        },
        timeout=30,
    )
    return res.returncode, calls.read_text()


def stand_in(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{path.name} $*" >> "$CALLS"\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_every_document_is_valid_kubernetes() -> None:
    kinds = []
    for d in docs():
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        kinds.append(d["kind"])
    assert kinds == ["PersistentVolumeClaim", "Job", "Job"]
    shards = job("crashtest-shards")["spec"]
    assert shards["completionMode"] == "Indexed"
    n = {e["name"]: e["value"] for e in container("crashtest-shards")["env"]}["SHARDS"]
    assert shards["completions"] == shards["parallelism"] == int(n)


def test_a_schema_violation_is_caught() -> None:
    for field, value in (("completions", "four"), ("shards", 4)):  # wrong type, unknown field
        broken = job("crashtest-shards")
        broken["spec"][field] = value
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize(("rc", "pod_ok"), [(0, True), (1, True), (2, False)])
def test_each_pod_runs_the_shard_of_its_completion_index(
    tmp_path: Path, rc: int, pod_ok: bool
) -> None:
    stand_in(tmp_path / "bin" / "make", f"exit {rc}")
    code, calls = run(tmp_path, container("crashtest-shards"), {"JOB_COMPLETION_INDEX": "2"})
    assert (code == 0) == pod_ok
    make = calls.splitlines()[0]
    assert "crashtest" in make.split() and "SHARD=3/4" in make
    assert "OUT=/results/shards/3" in make and "KNOWN=known-failures.toml" in make
    makefile = (REPO / "Makefile").read_text()
    for var in ("KERNEL", "BACKENDS", "CUTS", "STATES", "SEED", "JOBS", "KNOWN", "SHARD", "OUT"):
        assert f"{var}=" in make and f"$({var})" in makefile


def test_the_merge_waits_for_every_shard_then_merges(tmp_path: Path) -> None:
    c = container("crashtest-merge")
    c["args"] = [
        c["args"][0].replace("/results", str(tmp_path / "results")).replace("sleep 60", "exit 9")
    ]
    stand_in(tmp_path / ".venv" / "bin" / "crashtest", 'case "$1" in merge) exit 1;; esac')
    for i in (1, 2, 3):
        run_dir = tmp_path / "results" / "shards" / str(i) / "20261205-1-s1"
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text("{}")
    code, calls = run(tmp_path, c, {})
    assert code == 9 and calls == ""  # three of four: still waiting
    (tmp_path / "results/shards/4/20261205-1-s1").mkdir(parents=True)
    (tmp_path / "results/shards/4/20261205-1-s1/summary.json").write_text("{}")
    code, calls = run(tmp_path, c, {})
    assert code == 1  # merge's verdict: a new signature
    assert calls.splitlines()[0].startswith("crashtest merge --all ")
    assert "crashtest report" in calls
