import hashlib

from harness.workloads.default import default_workload
from harness.workloads.promises import Ledger, Promise


def test_same_seed_same_workload_other_seed_differs() -> None:
    a, b, c = default_workload(7), default_workload(7), default_workload(8)
    assert a.context == b.context
    assert a.context != c.context
    assert [p.to_json() for s in a.steps for p in s.promises] == \
        [p.to_json() for s in b.steps for p in s.promises]


def test_manifest_hashes_match_the_context_files() -> None:
    wl = default_workload(3)
    lines = wl.context["manifest.sha256"].decode().splitlines()
    entries = dict(reversed(line.split("  ", 1)) for line in lines)
    assert entries["/data/l3/f0.bin"] == hashlib.sha256(wl.context["layer3/f0.bin"]).hexdigest()
    # f5 is renamed into layer 2 by a RUN step; f4 is deleted and must not be listed
    assert entries["/data/l2/moved.bin"] == hashlib.sha256(wl.context["layer1/f5.bin"]).hexdigest()
    assert "/data/l1/f4.bin" not in entries


def test_every_step_but_start_declares_a_durability_point() -> None:
    wl = default_workload(1)
    assert [s.name for s in wl.steps if not s.promises] == ["start-writer"]
    hows = {p.how for s in wl.steps for p in s.promises}
    assert hows == {"sync", "fsync"}


def test_ledger_keeps_latest_promise_per_object() -> None:
    led = Ledger()
    led.grant("build", [Promise("image", "x:1", "build", "sync", check="true")])
    led.grant("rm", [Promise("absent-image", "x:1", "rm", "sync")])
    assert [p.kind for p in led.in_force()] == ["absent-image"]
    assert led.last_point == "rm"
