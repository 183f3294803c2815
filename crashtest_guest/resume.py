"""What a guest resumed from a saved state does before anything else: every
resume starts from the same RAM, so its wall clock is the save's and its random
generator would repeat the same numbers (dockerd's ids, temp file names)."""

import fcntl
import time
from typing import Any

RNDRESEEDCRNG = 0x5207  # _IO('R', 0x07): reseed the CRNG from the input pool now


def resume(arg: dict[str, Any]) -> dict[str, float]:
    """Set the clock to the host's, mix the host's entropy into the input pool and
    reseed, so what the guest draws next differs from every other resume."""
    before = time.time()
    time.clock_settime(time.CLOCK_REALTIME, float(arg["time"]))
    with open("/dev/urandom", "wb") as f:
        f.write(bytes.fromhex(str(arg["entropy"])))
        f.flush()
        fcntl.ioctl(f.fileno(), RNDRESEEDCRNG)
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return {"clock_was_behind_s": round(float(arg["time"]) - before, 3), "uptime": uptime}
