"""Skip lab tests cleanly where the lab cannot run (not root, programs missing)."""

import os
import shutil
import sys

SBIN_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def missing(binaries):
    """Why a lab test needing ``binaries`` cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not os.path.exists(TWISTD):
        return "no twistd next to %s (run scripts/bootstrap)" % sys.executable
    gone = [b for b in ("ip", "ss") + tuple(binaries)
            if shutil.which(b, path=SBIN_PATH) is None]
    if gone:
        return "missing program(s): %s (run scripts/bootstrap)" % ", ".join(gone)
    return None


def needs(*binaries):
    """Skip the decorated test (or class) unless root and ``binaries`` exist."""
    def decorate(f):
        reason = missing(binaries)
        if reason:
            f.skip = reason
        return f
    return decorate
