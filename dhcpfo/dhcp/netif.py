"""Per-interface DHCP sockets and interface addresses (Linux).

Twisted's UDP port cannot tell on which interface a broadcast arrived, so we
open one socket per interface, bound to port 67 with SO_BINDTODEVICE, and let
the reactor adopt it.
"""

import fcntl
import socket
import struct

from dhcpfo.addr import int_from_bytes

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RECEIVE_BUFFER = 8 << 20  # absorbs bursts while a batch is being handled


class InterfaceError(OSError):
    """An interface is missing or unusable; the message says what to fix."""


def _ioctl_address(sock, request, name):
    req = struct.pack("256s", name.encode()[:15])
    try:
        res = fcntl.ioctl(sock.fileno(), request, req)
    except OSError as e:
        raise InterfaceError(
            "interface %s: %s (does it exist, and does it have an IPv4 address? "
            "dhcpfo needs one on every interface it serves)" % (name, e.strerror)
        ) from None
    return int_from_bytes(res[20:24])


def interface_address(name):
    """``(address, netmask)`` as ints: the primary IPv4 address of ``name``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return (_ioctl_address(sock, SIOCGIFADDR, name),
                _ioctl_address(sock, SIOCGIFNETMASK, name))


def ipv4_interfaces():
    """Names of the interfaces that have an IPv4 address, loopback excluded."""
    found = []
    for _, name in socket.if_nameindex():
        if name == "lo":
            continue
        try:
            interface_address(name)
        except InterfaceError:
            continue
        found.append(name)
    return found


def dhcp_socket(name, port=67):
    """A non-blocking UDP socket on ``port`` that sees only ``name``'s traffic."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            # As root, past net.core.rmem_max (often only 208 KiB).
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, name.encode())
        sock.bind(("0.0.0.0", port))
    except OSError as e:
        sock.close()
        raise InterfaceError("cannot listen for DHCP on %s port %d: %s%s" % (
            name, port, e.strerror,
            " (run as root)" if e.errno in (1, 13) else "")) from None
    sock.setblocking(False)
    return sock
