"""Errors and small process helpers shared by the lab's parts."""

import ipaddress

__all__ = ["LabError", "tail", "ALLOWED_NETWORKS", "CLIENT_ENV"]

ALLOWED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
              "198.18.0.0/15")
)

#: Environment for client programs and scripts (no inherited surprises).
CLIENT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "LC_ALL": "C"}


class LabError(Exception):
    """A lab command failed; the message says what ran and what it said."""


def tail(path, lines=40):
    """The last *lines* lines of a (log) file, or a note that it is missing."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "(no %s: %s)" % (path, e.strerror)
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


def _decode(data):
    """Text of a (possibly missing) captured output, for error messages."""
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data
