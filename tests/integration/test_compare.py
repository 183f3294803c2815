"""`crashtest compare` on real guests with tiny budgets: each metric measured for
real, a real difference between overlay2 and the btrfs driver where the storage
stacks differ by design, and a real ENOSPC on a tiny disk."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.campaign.context import CampaignConfig
from harness.compare.measure import Budget
from harness.compare.run import CompareOptions, Plan, arm_session, enospc_session, run_compare
from harness.images.guest import GuestImages
from harness.storage.backends import BACKENDS
from harness.vm import accel
from harness.workloads.default import workload

MIB = 1 << 20
TINY = Budget(
    lifecycle=1,
    big_mib=8,
    build_steps=1,
    many_files=50,
    readers=2,
    copy_up_mib=(4,),
    random_writes=4,
    seq_mib=2,
    enospc_disk_mib=320,
    enospc_blob_mib=64,
    enospc_files=20,
    enospc_max_layers=12,
)


def _cfg(images: GuestImages, run_dir: Path) -> CampaignConfig:
    return CampaignConfig(
        images=images, accel=accel.choose()[0], workload=workload(1), run_dir=run_dir
    )


def test_compare_run_m1_and_page_cache_sharing(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    """The whole command on two arms: M1 from a real crash-state campaign, M4's
    page cache: one shared copy of a lower file on overlay2, one per container
    under the btrfs driver (each container is a snapshot: its own inodes)."""
    out = tmp_path / "results"
    run = run_compare(
        CompareOptions(
            arms="btrfs,ext4-overlay2", reps=1, metrics="M1,M4", m1_states=3, budget=TINY, out=out
        )
    )
    assert (out / "compare" / "latest").resolve() == run.resolve()
    doc = json.loads((run / "compare.json").read_text())
    assert doc["complete"], json.dumps(doc)[:3000]
    btrfs, ext4 = doc["arms"]["btrfs"], doc["arms"]["ext4-overlay2"]
    copies = {
        a: d["values"]["M4.copies_per_extra_reader"]["median"]
        for a, d in (("btrfs", btrfs), ("ext4", ext4))
    }
    assert copies["btrfs"] > 0.7 and copies["ext4"] < 0.4, copies
    assert btrfs["environment"]["docker"]["driver"] == "btrfs"
    assert ext4["environment"]["docker"]["driver"] == "overlay2"
    for arm in ("btrfs", "ext4-overlay2"):
        m1 = doc["M1"]["arms"][arm]
        assert m1["states"] == 3 and m1["harness_errors"] == 0
        assert 0 <= m1["any"]["ci95"][0] <= m1["any"]["per_1000"] <= m1["any"]["ci95"][1]
    html = (run / "compare.html").read_text()
    assert "M4 page-cache sharing" in html and "M1 crash safety" in html
    assert not list(run.rglob("disk.img"))


@pytest.mark.full
def test_every_session_metric_on_a_real_guest(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    """M2, M3, M5 and M7 measured in one ext4 + overlay2 session: a copy-up writes
    the whole lower file (host-side bytes), the second write does not."""
    arm = BACKENDS["ext4-overlay2"]
    plan = Plan((arm,), ("M2", "M3", "M5", "M7"), TINY, 1)
    doc = arm_session(_cfg(images, tmp_path), arm, 0, plan, tmp_path / "rep1.json", print)
    assert "error" not in doc, doc.get("error")
    m = doc["metrics"]
    assert all("error" not in m[k] for k in ("M2", "M3", "M5", "M7")), m
    assert m["M2"]["containers_per_min"] > 0 and m["M2"]["n"] == 1
    assert all(m["M2"][f"{op}_s"] > 0 for op in ("create", "start", "stop", "rm"))
    assert m["M3"]["build_growth_per_step_bytes"] >= 8 * MIB  # overlay2 copies the file up
    assert m["M3"]["commit_one_file_s"] > 0 and m["M3"]["image_size_bytes"] > 8 * MIB
    up = m["M5"]["files"][0]
    assert up["first_wr_bytes"] >= 4 * MIB > 10 * up["second_wr_bytes"], up
    assert up["first_flushes"] >= 1
    for op in (
        "create",
        "start",
        "stop",
        "rm",
        "build-step",
        "commit-one-file",
        "copy-up",
        "seq-write-fsync",
        "random-4k-fsync",
    ):
        assert m["M7"][op]["n"] >= 1, op
    assert m["M7"]["seq-write-fsync"]["wr_bytes"] >= 2 * MIB
    assert m["M7"]["random-4k-fsync"]["flushes"] >= 4
    assert json.loads((tmp_path / "rep1.json").read_text())["arm"] == "ext4-overlay2"
    assert not (tmp_path / "rep1" / "disk.img").exists()


@pytest.mark.full
def test_layer_churn_reaches_enospc_on_a_tiny_btrfs(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    arm = BACKENDS["btrfs"]
    plan = Plan((arm,), ("M6",), TINY, 1)
    doc = enospc_session(_cfg(images, tmp_path), arm, plan, tmp_path / "btrfs.json", print)
    m6 = doc["M6"]
    assert m6["reached_enospc"], doc
    # at least one layer fit, and no more of them than the disk can hold
    assert m6["layers_before_enospc"] >= 1
    assert m6["layers_before_enospc"] * TINY.enospc_blob_mib <= TINY.enospc_disk_mib
    sp = m6["space"]
    assert 0 < sp["df_used"] <= sp["df_size"] <= 320 * MIB
    assert {"unallocated", "data_total", "data_used", "metadata_total", "global_reserve"} <= set(
        sp["btrfs_usage"]
    )
    assert next(r["balance"] for r in m6["recovery"]) == "-dusage=0"
    assert "no space left on device" in m6["enospc_message"].lower()


def _default_sigint() -> None:
    # A background job (CI, `make test &`) starts with SIGINT ignored; a terminal's
    # Ctrl-C reaches a process that has its default handler.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.full
def test_ctrl_c_keeps_what_finished(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    """Ctrl-C during the second session: exit 130, every guest gone, no disk image
    left, and the first session's numbers in an incomplete compare.json."""
    out = tmp_path / "results"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "compare",
            "--arms",
            "ext4-overlay2",
            "--metrics",
            "M4",
            "--reps",
            "3",
            "--jobs",
            "1",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "rep 1/3: done" in line:
                break
        time.sleep(5)  # inside the second session's guest
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted" in err
    finally:
        if proc.poll() is None:  # a failed test stops what it started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    [run] = [p for p in (out / "compare").iterdir() if p.is_dir()]
    doc = json.loads((run / "compare.json").read_text())
    assert doc["incomplete"] == "interrupted" and not doc["complete"]
    values = doc["arms"]["ext4-overlay2"]["values"]["M4.copies_per_extra_reader"]
    assert values["n"] == 1 and values["median"] < 0.4
    assert (run / "compare.html").exists() and not list(run.rglob("disk.img"))
    assert not (out / "compare" / "latest").exists()  # only a run that ran to its end
