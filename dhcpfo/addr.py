"""Addresses and lease times: one representation, converted in one place.

Inside dhcpfo an IPv4 address is an ``int`` (pools, allocation, the hot
path); a :class:`~dhcpfo.leases.lease.Lease` and everything a person or a
peer reads carries the dotted string; packets carry 4 packed bytes.  Every
conversion between these goes through this module, so none is written out
by hand elsewhere.

"Infinite" has exactly two spellings, one per unit: :data:`INFINITE` is a
lease *duration* (RFC 2131's 0xffffffff, as configured and on the wire) and
:data:`NEVER` is the *expiry time* of such a lease.  :func:`expiry_after`
turns the first into the second.
"""

import socket
import struct

__all__ = ["INFINITE", "NEVER", "expiry_after", "is_infinite", "ip_int",
           "ip_str", "ip_bytes", "int_from_str", "str_from_bytes",
           "int_from_bytes", "bytes_from_str"]

INFINITE = 0xFFFFFFFF
"""A lease time (seconds) meaning "never expires" (RFC 2131 section 3.3)."""

NEVER = float(1 << 62)
"""The expiry (POSIX seconds) of an infinite lease: later than any real time,
exact as a float and as a 64-bit integer, so every store keeps it as is."""

_U32 = struct.Struct("!I")


def expiry_after(now, lease_time):
    """When a lease granted at ``now`` for ``lease_time`` seconds ends."""
    return NEVER if lease_time >= INFINITE else now + lease_time


def is_infinite(expiry):
    return expiry >= NEVER


def ip_int(packed):
    """4 packed bytes -> int."""
    return int.from_bytes(packed, "big")


int_from_bytes = ip_int


def ip_bytes(value):
    """int -> 4 packed bytes."""
    return _U32.pack(value)


def ip_str(value):
    """int -> dotted quad."""
    return socket.inet_ntoa(_U32.pack(value))


def int_from_str(text):
    """Dotted quad -> int; ``OSError``/``ValueError`` for anything else."""
    return _U32.unpack(bytes_from_str(text))[0]


def bytes_from_str(text):
    """Dotted quad -> 4 packed bytes.

    Only the canonical form: ``inet_aton`` alone also takes ``1``, ``1.2``,
    ``0x7f.0.0.1`` and reads ``010`` as octal, so the result must print back
    as the same text.
    """
    packed = socket.inet_aton(text)
    if socket.inet_ntoa(packed) != text:
        raise ValueError("%r is not a dotted-quad IPv4 address" % (text,))
    return packed


def str_from_bytes(packed):
    """4 packed bytes -> dotted quad."""
    return socket.inet_ntoa(packed)
