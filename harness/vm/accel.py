"""Pick the accelerator: KVM only where it really works, TCG otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import InputError

CHOICES = ("auto", "kvm", "tcg")


def kvm_usable(cpuinfo: str | None = None, dev: Path = Path("/dev/kvm")) -> tuple[bool, str]:
    """KVM needs /dev/kvm *and* hardware virtualization flags: a nested PVM-style
    /dev/kvm without vmx/svm hangs stock kernels at boot."""
    if not dev.exists():
        return False, "/dev/kvm missing"
    if not os.access(dev, os.R_OK | os.W_OK):
        return False, "/dev/kvm not accessible"
    if cpuinfo is None:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    flags = {
        f
        for line in cpuinfo.splitlines()
        if line.startswith("flags")
        for f in line.split(":", 1)[1].split()
    }
    if not flags & {"vmx", "svm"}:
        return False, "no vmx/svm CPU flag (nested or paravirtual /dev/kvm)"
    return True, "vmx/svm present"


def choose(requested: str | None = None) -> tuple[str, str]:
    """Return (accel, why). CRASHTEST_ACCEL or the argument can force one."""
    req = (requested or os.environ.get("CRASHTEST_ACCEL") or "auto").lower()
    if req not in CHOICES:
        raise InputError(f"accelerator {req!r}: choose one of {', '.join(CHOICES)}")
    if req == "tcg":
        return "tcg", "requested"
    ok, why = kvm_usable()
    if req == "kvm":
        if not ok:
            raise InputError(f"accelerator kvm requested but not usable: {why}")
        return "kvm", "requested"
    return ("kvm", why) if ok else ("tcg", why)


def default_cpus(accel: str) -> int:
    """Multi-threaded TCG with more than one vCPU crashes x86 guests now and then
    (an int3 Oops in code the kernel live-patches with text_poke, e.g. when docker
    toggles static keys): use one vCPU under TCG, two under KVM."""
    return 2 if accel == "kvm" else 1
