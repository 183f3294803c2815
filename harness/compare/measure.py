"""What `crashtest compare` measures inside one guest (M2-M7): each operation timed
in the guest and its disk traffic counted on the host (QMP `query-blockstats` of
the test disk, around a `sync` on each side, so the bytes an operation dirtied
are the bytes it cost). Counts are what TCG does not distort; times are only
compared as ratios within one run (compare.stats)."""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any

from harness.errors import HarnessError
from harness.guest.agent import AgentClient
from harness.images.rootfs import BASE_TAR_IN_GUEST
from harness.storage.backends import DOCKER_ROOT, Backend
from harness.vm.machine import Machine

MIB = 1 << 20
BASE = "compare/base:1"
RUN = "docker run --network none"


class MetricError(HarnessError):
    """A measured operation failed: the metric (and its arm) is reported as failed."""


@dataclass(frozen=True)
class Budget:
    """How much each metric does. `short` fits `make compare` in its 20 minutes
    on 2 TCG cores; `long` is the nightly setting."""

    lifecycle: int = 2  # M2: containers created, started, stopped, removed one by one
    big_mib: int = 16  # M3/M4: the large file in an image layer
    build_steps: int = 2  # M3a: steps, each rewriting 1% of the large file
    many_files: int = 300  # M3b: files in the image a one-file commit starts from
    readers: int = 2  # M4: containers reading the large file
    copy_up_mib: tuple[int, ...] = (1, 8)  # M5: lower files written once
    random_writes: int = 16  # M7: 4 KiB writes with fsync
    seq_mib: int = 8  # M7: one sequential write with fsync
    enospc_disk_mib: int = 320  # M6: the small disk filled by layer churn
    enospc_blob_mib: int = 64  # M6: data per churned layer
    enospc_files: int = 100  # M6: 1 KiB files per churned layer
    enospc_rmi_every: int = 0  # M6: remove the oldest image every N layers (0: never)
    enospc_max_layers: int = 60


SETTINGS = {
    "short": Budget(),
    "long": Budget(
        lifecycle=50,
        big_mib=64,
        build_steps=5,
        many_files=5000,
        readers=8,
        copy_up_mib=(1, 16, 64),
        random_writes=256,
        seq_mib=64,
        enospc_disk_mib=3072,
        enospc_blob_mib=32,
        enospc_files=5000,
        enospc_rmi_every=5,
        enospc_max_layers=500,
    ),
}


@dataclass(frozen=True)
class Reclaim:
    """A btrfs ENOSPC variant (M6b): how the filesystem is made or tuned to give
    back space it allocated to chunks."""

    name: str
    mkfs_options: tuple[str, ...] = ()
    after_mount: str = ""  # a guest command once the test filesystem is mounted
    balance_every: int = 0  # `balance -dusage=10` every N layers, as docker's docs advise


_SYSFS = f"/sys/fs/btrfs/$(findmnt -no UUID {DOCKER_ROOT})/allocation/data"
RECLAIM = {
    r.name: r
    for r in (
        Reclaim("bg-reclaim", after_mount=f"echo 50 > {_SYSFS}/bg_reclaim_threshold"),  # >= 5.19
        Reclaim(
            "dynamic-reclaim",
            after_mount=f"echo 1 > {_SYSFS}/dynamic_reclaim && echo 1 > {_SYSFS}/periodic_reclaim",
        ),  # >= 6.11
        Reclaim("balance-cron", balance_every=5),
        Reclaim("mixed", mkfs_options=("--mixed",)),
    )
}
MIN_ENOSPC_DISK_MIB = 320  # mkfs.xfs refuses less than 300 MB; the base image must fit


@dataclass(frozen=True)
class Counters:
    wr_bytes: int
    wr_ops: int
    flushes: int

    def __sub__(self, o: Counters) -> Counters:
        return Counters(
            self.wr_bytes - o.wr_bytes, self.wr_ops - o.wr_ops, self.flushes - o.flushes
        )


@dataclass(frozen=True)
class Op:
    """One measured operation: guest wall time and the test disk's traffic."""

    name: str
    wall_s: float
    wr_bytes: int
    wr_ops: int
    flushes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def disk_counters(vm: Machine, node: str) -> Counters:
    """The test disk's write counters as QEMU counts them (host side)."""
    for dev in vm.qmp("query-blockstats"):
        if dev.get("node-name") == node:
            s = dev["stats"]
            return Counters(int(s["wr_bytes"]), int(s["wr_operations"]), int(s["flush_operations"]))
    raise HarnessError(f"{vm.name}: QMP query-blockstats has no node {node!r}")


class Probe:
    """Runs guest commands on a docker-ready guest and measures each."""

    def __init__(self, vm: Machine, node: str, say: Any = print) -> None:
        self.vm = vm
        self.node = node
        self.say = say
        self.ops: list[Op] = []
        self.last_stdout = ""

    @property
    def agent(self) -> AgentClient:
        return self.vm.agent

    def sh(self, cmd: str, timeout: float = 600) -> str:
        """An unmeasured guest command that must succeed."""
        res = self.agent.run(cmd, timeout=timeout)
        if not res.ok:
            raise MetricError(f"guest command failed: {res.evidence(600)}")
        return res.stdout

    def op(self, name: str, cmd: str, timeout: float = 600) -> Op:
        """`cmd` timed in the guest; its traffic counted from a sync before to a
        sync after (what it dirtied is written back and flushed)."""
        self.sh("sync", timeout=120)
        c0 = disk_counters(self.vm, self.node)
        res = self.agent.run(cmd, timeout=timeout)
        if not res.ok:
            raise MetricError(f"{name}: {res.evidence(600)}")
        self.last_stdout = res.stdout
        self.sh("sync", timeout=120)
        d = disk_counters(self.vm, self.node) - c0
        op = Op(name, round(res.duration, 3), d.wr_bytes, d.wr_ops, d.flushes)
        self.ops.append(op)
        return op

    def used_bytes(self) -> int:
        """`df` Used of docker's filesystem, after a sync."""
        out = self.sh(f"sync; df -B1 --output=used {DOCKER_ROOT} | tail -1")
        return int(out.strip())

    def cached_bytes(self) -> int:
        """The guest's page cache of files (Cached less tmpfs/shmem)."""
        info = dict(
            line.split(":", 1) for line in self.sh("cat /proc/meminfo").splitlines() if ":" in line
        )
        kib = int(info["Cached"].split()[0]) - int(info["Shmem"].split()[0])
        return kib * 1024


def _fill(path: str, mib: int) -> str:
    # dd, not head: busybox head reports any failed write as "I/O error", dd
    # names the errno (an ENOSPC must be told from another failure)
    return f"dd if=/dev/urandom of={path} bs=1M count={mib}"


FIXTURE = "compare/fixture:0"


def base(p: Probe) -> Op:
    """The base image (an `import` of the busybox tarball), measured."""
    return p.op("import", f"docker import {BASE_TAR_IN_GUEST} {BASE}")


def setup(p: Probe, b: Budget) -> None:
    """The images every metric starts from, each made once and measured: the base
    (an `import`) and the fixture, one layer holding the large file (M3, M4) and
    the lower files M5 writes to."""
    base(p)
    files = " && ".join(_fill(f"/c{s}", s) for s in b.copy_up_mib)
    make = f"{_fill('/big', b.big_mib)} && {files}"
    p.op(
        "fixture-layer",
        f"{RUN} --name fixture {BASE} sh -c {shlex.quote(make)} && "
        f"docker commit fixture {FIXTURE} && docker rm fixture",
    )


def noop(p: Probe) -> Op:
    """What a `sync` with nothing dirty costs: the floor under every op's counts."""
    return p.op("noop", "true")


def lifecycle(p: Probe, b: Budget) -> dict[str, Any]:
    """M2: create, start, stop -t0, rm, one container at a time."""
    walls: dict[str, list[float]] = {"create": [], "start": [], "stop": [], "rm": []}
    for i in range(b.lifecycle):
        name = f"lc{i}"
        for step, cmd in (
            ("create", f"docker create --network none --name {name} {BASE} sleep 1d"),
            ("start", f"docker start {name}"),
            ("stop", f"docker stop -t 0 {name}"),
            ("rm", f"docker rm {name}"),
        ):
            walls[step].append(p.op(step, cmd).wall_s)
    total = sum(sum(v) for v in walls.values())
    return {
        "n": b.lifecycle,
        "containers_per_min": round(60 * b.lifecycle / total, 2),
        "lifecycle_s": round(total / b.lifecycle, 3),
        **{f"{step}_s": round(sum(w) / len(w), 3) for step, w in walls.items()},
    }


def build_commit(p: Probe, b: Budget) -> dict[str, Any]:
    """M3: (a) a build whose steps each rewrite 1% of a large file (run + commit,
    what the classic builder does per RUN); (b) a commit after touching one file
    of an image of many files."""
    used1 = p.used_bytes()
    chunk = max(1, b.big_mib * MIB // 100 // 65536)  # 1% of the file, in 64 KiB blocks
    steps = []
    for k in range(1, b.build_steps + 1):
        seek = (k * 37 * chunk) % max(1, b.big_mib * 16 - chunk)
        parent = FIXTURE if k == 1 else f"compare/build:{k - 1}"
        steps.append(
            p.op(
                "build-step",
                f"{RUN} --name m3s{k} {parent} dd "
                f"if=/dev/urandom of=/big bs=64k count={chunk} seek={seek} "
                f"conv=notrunc && docker commit m3s{k} compare/build:{k} && "
                f"docker rm m3s{k}",
            )
        )
    used2 = p.used_bytes()
    img = p.sh(f"docker image inspect --format '{{{{.Size}}}}' compare/build:{b.build_steps}")
    make_many = (
        f"mkdir /many && cd /many && i=0; while [ $i -lt {b.many_files} ]; do "
        "echo $i > f$i; i=$((i+1)); done"
    )  # builtins only: no process per file
    p.op(
        "many-files-layer",
        f"{RUN} --name m3f {BASE} sh -c {shlex.quote(make_many)} && "
        "docker commit m3f compare/many:0 && docker rm m3f",
    )
    p.sh(f"{RUN} --name m3t compare/many:0 touch /many/f1")
    used3 = p.used_bytes()
    commit = p.op("commit-one-file", "docker commit m3t compare/many:1")
    used4 = p.used_bytes()
    return {
        "big_mib": b.big_mib,
        "steps": b.build_steps,
        "many_files": b.many_files,
        "step_s": [s.wall_s for s in steps],
        "build_growth_bytes": used2 - used1,
        "build_growth_per_step_bytes": (used2 - used1) // b.build_steps,
        "image_size_bytes": int(img.strip()),
        "commit_one_file_s": commit.wall_s,
        "commit_one_file_growth_bytes": used4 - used3,
    }


def page_cache(p: Probe, b: Budget) -> dict[str, Any]:
    """M4: containers of one image each read its large file; how much the page
    cache grows per extra container (one shared copy, or one per container)."""
    p.sh("sync; echo 3 > /proc/sys/vm/drop_caches")
    cached = [p.cached_bytes()]
    for m in range(1, b.readers + 1):
        # Inside the container: its output would otherwise fill docker's json log.
        p.sh(f"{RUN} --name m4r{m} {FIXTURE} sh -c 'cat /big > /dev/null'")
        cached.append(p.cached_bytes())
    growth = [cached[i] - cached[i - 1] for i in range(1, len(cached))]
    extra = (cached[-1] - cached[1]) / max(1, b.readers - 1)
    size = b.big_mib * MIB
    p.sh(f"docker rm {' '.join(f'm4r{m}' for m in range(1, b.readers + 1))}")
    return {
        "file_bytes": size,
        "readers": b.readers,
        "cached_growth_bytes": growth,
        "first_reader_bytes": growth[0],
        "per_extra_reader_bytes": round(extra),
        # 1.0: every extra reader cached the file again; 0.0: all share one copy
        "copies_per_extra_reader": round(extra / size, 3),
    }


def copy_up(p: Probe, b: Budget) -> dict[str, Any]:
    """M5: the first 1-byte write to the end of each lower file (a copy-up on
    overlay2), then the same write again as the control; plus (M7) a sequential
    write and small random writes with fsync in the container's layer."""
    p.sh(f"docker run -d --network none --name m5 {FIXTURE} sleep 1d")
    out = []
    for s in b.copy_up_mib:
        # Timed inside the container from /proc/uptime (shell builtins, 10 ms steps):
        # docker exec's own seconds under TCG would drown a copy-up.
        write = (
            "read a _ < /proc/uptime; dd if=/dev/zero of=/c{s} bs=1 count=1 "
            f"seek={s * MIB - 1} conv=notrunc 2>/dev/null; read b _ < /proc/uptime; "
            "echo $a $b"
        ).replace("{s}", str(s))
        cmd = f"docker exec m5 sh -c {shlex.quote(write)}"
        first = p.op("copy-up", cmd)
        first_s = _elapsed(p.last_stdout)
        second = p.op("rewrite", cmd)
        second_s = _elapsed(p.last_stdout)
        out.append(
            {
                "mib": s,
                "first_s": first_s,
                "second_s": second_s,
                "net_s": round(first_s - second_s, 3),
                "first_exec_s": first.wall_s,
                "second_exec_s": second.wall_s,
                "first_wr_bytes": first.wr_bytes,
                "second_wr_bytes": second.wr_bytes,
                "first_flushes": first.flushes,
                "second_flushes": second.flushes,
            }
        )
    p.op(
        "seq-write-fsync",
        f"docker exec m5 dd if=/dev/zero of=/seq bs=1M count={b.seq_mib} conv=fsync",
    )
    blocks = b.copy_up_mib[-1] * 256
    rand = (
        f"i=0; while [ $i -lt {b.random_writes} ]; do dd if=/dev/zero of=/c{b.copy_up_mib[-1]}"
        f" bs=4k count=1 seek=$(( (i * 2654435761) % {blocks} )) conv=notrunc,fsync "
        "2>/dev/null; i=$((i+1)); done"
    )
    p.op("random-4k-fsync", f"docker exec m5 sh -c {shlex.quote(rand)}")
    p.sh("docker rm -f m5")
    return {"files": out}


def _elapsed(stdout: str) -> float:
    try:
        a, b = (float(x) for x in stdout.split())
    except ValueError as e:
        raise MetricError(f"the timed write printed {stdout!r}, not two uptimes") from e
    return round(b - a, 3)


def per_op(ops: list[Op]) -> dict[str, dict[str, float]]:
    """M7: each operation's mean traffic, less what a bare sync costs."""
    floor = [o for o in ops if o.name == "noop"]
    f = floor[0] if floor else Op("noop", 0, 0, 0, 0)
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(o.name for o in ops if o.name != "noop"):
        mine = [o for o in ops if o.name == name]
        n = len(mine)
        out[name] = {
            "n": n,
            "wr_bytes": round(sum(o.wr_bytes for o in mine) / n - f.wr_bytes),
            "wr_ops": round(sum(o.wr_ops for o in mine) / n - f.wr_ops, 1),
            "flushes": round(sum(o.flushes for o in mine) / n - f.flushes, 1),
            "wall_s": round(sum(o.wall_s for o in mine) / n, 3),
        }
    return out


_SIZE = re.compile(r"Size:(\d+), Used:(\d+)")


def btrfs_usage(text: str) -> dict[str, int]:
    """The numbers of `btrfs filesystem usage -b` that explain an ENOSPC."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Device unallocated:"):
            out["unallocated"] = int(s.split()[2])
        elif s.startswith("Global reserve:"):
            out["global_reserve"] = int(s.split()[2])
            used = re.search(r"used: (\d+)", s)
            out["global_reserve_used"] = int(used.group(1)) if used else 0
        elif s.startswith(("Data,", "Metadata,", "System,")):
            m = _SIZE.search(s)
            kind = s.split(",")[0].lower()
            if m:
                out[f"{kind}_total"] = int(m.group(1))
                out[f"{kind}_used"] = int(m.group(2))
    return out


def _space(p: Probe, backend: Backend) -> dict[str, Any]:
    df = p.sh(f"df -B1 --output=size,used,avail {DOCKER_ROOT} | tail -1").split()
    dfi = p.sh(f"df --output=itotal,iused {DOCKER_ROOT} | tail -1").split()
    size, used, avail = (int(x) for x in df)
    out: dict[str, Any] = {
        "df_size": size,
        "df_used": used,
        "df_avail": avail,
        "df_used_of_size": round(used / size, 3),
        "inodes_total": int(dfi[0]),
        "inodes_used": int(dfi[1]),
    }
    if backend.fs == "btrfs":
        text = p.sh(f"btrfs filesystem usage -b {DOCKER_ROOT}")
        out["btrfs_usage"] = btrfs_usage(text)
        out["btrfs_usage_text"] = text
    return out


def enospc(p: Probe, backend: Backend, b: Budget, reclaim: Reclaim | None = None) -> dict[str, Any]:
    """M6: layer churn on a small disk until the first ENOSPC; where `df` stood
    then, and (btrfs) whether a balance lets the failed step through."""
    if reclaim and reclaim.after_mount:
        p.sh(reclaim.after_mount)
    balances = 0
    # printf and [ are shell builtins: no process per small file
    make = (
        f"mkdir /d && cd /d && i=0; while [ $i -lt {b.enospc_files} ]; do "
        "printf '%1023d\\n' $i > f$i; i=$((i+1)); done && "
        f"{_fill('blob', b.enospc_blob_mib)}"
    )
    layers = 0
    failed = ""

    def step(i: int) -> str:
        return (
            f"{RUN} --name e{i} {BASE} sh -c {shlex.quote(make)} && "
            f"docker commit e{i} compare/churn:{i} && docker rm e{i} && "
            f"{RUN} --rm compare/churn:{i} sh -c {shlex.quote(_fill('/w', 4))}"
            + (
                f" && docker rmi compare/churn:{i - b.enospc_rmi_every}"
                if b.enospc_rmi_every and i >= b.enospc_rmi_every and i % b.enospc_rmi_every == 0
                else ""
            )
        )

    for i in range(b.enospc_max_layers):
        if reclaim and reclaim.balance_every and i and i % reclaim.balance_every == 0:
            p.agent.run(f"btrfs balance start -dusage=10 {DOCKER_ROOT}", timeout=900)
            balances += 1
        res = p.agent.run(step(i), timeout=900)
        if not res.ok:
            failed = res.evidence(800)
            break
        layers += 1
    out: dict[str, Any] = {
        "disk_mib": b.enospc_disk_mib,
        "layers_before_enospc": layers,
        "reached_enospc": False,
        "max_layers": b.enospc_max_layers,
        "reclaim": reclaim.name if reclaim else "",
        "balances": balances,
    }
    if not failed:
        out["space"] = _space(p, backend)
        return out
    if "no space left on device" not in failed.lower():
        raise MetricError(f"layer churn failed, not with ENOSPC: {failed}")
    out["reached_enospc"] = True
    out["enospc_message"] = next(
        line for line in failed.splitlines() if "no space left on device" in line.lower()
    )[:400]
    out["space"] = _space(p, backend)
    p.agent.run(f"docker rm -f e{layers}", timeout=300)
    if backend.fs == "btrfs":
        out["recovery"] = []
        for how in ("-dusage=0", "-dusage=50"):
            bal = p.agent.run(f"btrfs balance start {how} {DOCKER_ROOT}", timeout=900)
            retry = p.agent.run(step(layers), timeout=900)
            out["recovery"].append(
                {
                    "balance": how,
                    "balance_ok": bal.ok,
                    "retry_ok": retry.ok,
                    "space": _space(p, backend),
                }
            )
            if retry.ok:
                break
            p.agent.run(f"docker rm -f e{layers}", timeout=300)
    return out
