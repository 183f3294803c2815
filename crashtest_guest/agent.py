"""Guest agent: runs the host's commands over a virtio-serial port.

One JSON object per line each way; payloads are base64 so kernel noise or
binary output can never break the framing. Standard library only: it runs on
the guest's python3.
"""

import base64
import glob
import importlib
import json
import os
import signal
import subprocess
import time
import traceback
from typing import Any

PORT_NAME = "org.crashtest.agent"
MAX_GET = 64 * 1024 * 1024


def find_port() -> str:
    for name_file in glob.glob("/sys/class/virtio-ports/*/name"):
        with open(name_file) as f:
            if f.read().strip() == PORT_NAME:
                return "/dev/" + name_file.split("/")[-2]
    raise SystemExit("crashtest-agent: no virtio port named " + PORT_NAME)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def handle(req: dict[str, Any]) -> dict[str, Any]:
    op = req.get("op")
    if op == "run":
        started = time.monotonic()
        stdin = base64.b64decode(req.get("stdin", ""))
        # A session of its own, so a timeout kills every process the command
        # started (a hung docker CLI would otherwise hold the pipes open forever).
        proc = subprocess.Popen(
            ["/bin/sh", "-c", req["cmd"]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(stdin, timeout=req.get("timeout"))
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            rc = 124
            err += b"\ncrashtest-agent: command timed out\n"
        return {
            "rc": rc,
            "stdout": b64(out),
            "stderr": b64(err),
            "duration": time.monotonic() - started,
        }
    if op == "put":
        path = req["path"]
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(req["data"]))
        os.chmod(path, req.get("mode", 0o644))
        return {"rc": 0}
    if op == "call":
        # A function of a module beside this agent, in this process: no interpreter
        # start-up per call (about 0.3 s under TCG).
        started = time.monotonic()
        try:
            result = getattr(importlib.import_module(req["module"]), req["func"])(req["arg"])
            return {"rc": 0, "result": result, "duration": time.monotonic() - started}
        except Exception:
            return {
                "rc": 1,
                "stderr": b64(traceback.format_exc().encode()),
                "duration": time.monotonic() - started,
            }
    if op == "get":
        with open(req["path"], "rb") as f:
            return {"rc": 0, "data": b64(f.read(MAX_GET))}
    return {"rc": 127, "stderr": b64((f"unknown op {op!r}\n").encode())}


def serve(fd: int) -> None:
    buf = b""
    os.write(fd, (json.dumps({"event": "ready", "uptime": uptime()}) + "\n").encode())
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            # Host side not connected (yet, or any more): wait for it.
            time.sleep(0.1)
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.strip():
                continue
            req = json.loads(line)
            try:
                resp = handle(req)
            except Exception as e:  # report, never die: the host decides what it means
                resp = {"rc": 126, "stderr": b64((f"crashtest-agent: {e!r}\n").encode())}
            resp["id"] = req.get("id")
            data = (json.dumps(resp) + "\n").encode()
            while data:
                data = data[os.write(fd, data) :]


def main() -> None:
    fd = os.open(find_port(), os.O_RDWR)
    with open("/dev/kmsg", "w") as kmsg:
        kmsg.write("crashtest: agent ready\n")
    serve(fd)


if __name__ == "__main__":
    main()
