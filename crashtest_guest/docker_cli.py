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
from typing import Any

Step = Callable[[str, float], dict[str, Any]]


def _step(cmd: str, timeout: float) -> dict[str, Any]:
    t = time.monotonic()
    try:
        p = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = 124, b"", f"timed out after {timeout:.0f}s".encode()
    return {
        "cmd": cmd,
        "rc": rc,
        "stdout": out.decode("utf-8", "replace")[-8000:],
        "stderr": err.decode("utf-8", "replace")[-8000:],
        "duration": time.monotonic() - t,
    }


def _one(i: int, ref: str, run: str, timeout: float, step: Step) -> list[dict[str, Any]]:
    q = shlex.quote(ref)
    steps = [step(f"docker image inspect --format '{{{{.Id}}}}' {q}", timeout)]
    if steps[0]["rc"] != 0:
        return steps
    tar = f"/tmp/crashtest-save-{i}.tar"
    steps.append(step(f"docker save -o {tar} {q}; rc=$?; rm -f {tar}; exit $rc", timeout))
    steps.append(
        step(f"docker run --rm --network none {q} sh -c {shlex.quote(run or 'true')}", timeout)
    )
    return steps


def check_images(arg: dict[str, Any], step: Step = _step) -> list[list[dict[str, Any]]]:
    """`arg`: {"images": [{"ref", "run"}], "timeout"}. Returns, per image in order,
    the steps run (inspect; then save and run if it is listed), each with its
    command, exit code, output and duration. `step` runs one command (tests
    script it)."""
    images = arg["images"]
    timeout = float(arg.get("timeout", 120))
    results: list[list[dict[str, Any]]] = [[] for _ in images]

    def work(i: int) -> None:
        results[i] = _one(i, images[i]["ref"], images[i].get("run", ""), timeout, step)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
