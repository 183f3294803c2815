"""One exception hierarchy, split by whose fault a failure is.

- HarnessError: the harness, the host or the user's input failed (exit 2).
- GuestError: the guest did not boot, hung or died (exit 2, but reported apart).
- ConsistencyViolation: the storage stack broke a promise (exit 1).
"""

from __future__ import annotations


class CrashtestError(Exception):
    """Base of every error the harness raises on purpose."""

    exit_code = 2


class HarnessError(CrashtestError):
    """The harness or the host failed: missing tool, QEMU died, bad image cache."""


class ResumeError(HarnessError):
    """A saved guest could not be resumed: the caller boots instead."""


class InputError(HarnessError):
    """The user's input is wrong: unknown backend, not a kernel, bad number."""


class GuestError(CrashtestError):
    """The guest misbehaved outside the storage stack under test; carries its console tail."""

    def __init__(self, message: str, console_tail: str = "") -> None:
        super().__init__(message)
        self.console_tail = console_tail


class GuestBootError(GuestError):
    """The guest did not reach its agent in time."""


class GuestSetupError(GuestBootError):
    """The guest cannot boot at all with this kernel and image (its init said why):
    the same in every unit, so the campaign stops."""


class GuestTimeout(GuestError):
    """A guest command did not answer in time (hung guest)."""


class GuestPanic(GuestError):
    """The guest kernel panicked (pvpanic event or console)."""


class PowerCut(CrashtestError):
    """Raised inside a workload step when the power was cut under it: expected, not a failure."""


class ConsistencyViolation(CrashtestError):
    """The storage stack broke a promise; the verdict carries the evidence."""

    exit_code = 1
