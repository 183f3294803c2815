"""The daemon stage's image checks, run inside the guest: for each promised
image, is it listed, does `docker save` (a re-hash of every layer) succeed, does
a container of it run its command. The images are checked side by side: under
TCG each docker CLI call costs most of a second and a container start several,
mostly waiting on the daemon."""

import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from crashtest_guest.protocol import CommandRun, ImageCheckRequest

Step = Callable[[str, float], CommandRun]


def _step(cmd: str, timeout: float) -> CommandRun:
    t = time.monotonic()
    try:
        p = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = 124, b"", f"timed out after {timeout:.0f}s".encode()
    return CommandRun(
        cmd,
        rc,
        out.decode("utf-8", "replace")[-8000:],
        err.decode("utf-8", "replace")[-8000:],
        time.monotonic() - t,
    )


def _one(i: int, ref: str, run: str, timeout: float, step: Step) -> list[CommandRun]:
    q = shlex.quote(ref)
    steps = [step(f"docker image inspect --format '{{{{.Id}}}}' {q}", timeout)]
    if steps[0].rc != 0:
        return steps
    tar = f"/tmp/crashtest-save-{i}.tar"
    steps.append(step(f"docker save -o {tar} {q}; rc=$?; rm -f {tar}; exit $rc", timeout))
    steps.append(
        step(f"docker run --rm --network none {q} sh -c {shlex.quote(run or 'true')}", timeout)
    )
    return steps


def check_images(arg: dict[str, Any], step: Step = _step) -> list[list[dict[str, Any]]]:
    """An ImageCheckRequest in; per image in order, the CommandRuns (inspect; then
    save and run if it is listed) out. `step` runs one command (tests script it)."""
    return [
        [asdict(r) for r in steps]
        for steps in run_image_checks(ImageCheckRequest.from_json(arg), step)
    ]


def run_image_checks(req: ImageCheckRequest, step: Step = _step) -> list[list[CommandRun]]:
    images = req.images
    results: list[list[CommandRun]] = [[] for _ in images]

    def work(i: int) -> None:
        results[i] = _one(i, images[i].ref, images[i].run, req.timeout, step)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
