"""Domain-name helpers shared by the DNS modules.

Inside dhcpfo a name is a ``str``: lower case (ASCII only, as DNS compares),
labels joined by dots, no trailing dot; the root is ``""``.
"""

import ipaddress
import re

#: What a DHCP client's name must look like to be published (one label).
HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def from_wire_name(raw):
    """A name as twisted.names decodes it (``bytes``, dotted) in our form."""
    return raw.lower().decode("latin-1").rstrip(".")


def to_wire(name):
    """Uncompressed wire form of a name in our form."""
    if not name:
        return b"\x00"
    out = bytearray()
    for label in name.encode("ascii").split(b"."):
        out.append(len(label))
        out += label
    out.append(0)
    return bytes(out)


def reverse_name(ip):
    """``d.c.b.a.in-addr.arpa`` for an IPv4 address (int or str), or the
    ``ip6.arpa`` name of an IPv6 address."""
    return ipaddress.ip_address(ip).reverse_pointer


def reverse_zones(network):
    """The ``in-addr.arpa`` zones that cover an ``IPv4Network`` exactly.

    The prefix is rounded up to an octet boundary, so that we never claim
    addresses outside the network: a /24 is one zone, a /15 two /16 zones, a
    /26 sixty-four one-address zones (never more than 128 zones).
    """
    prefix = network.prefixlen
    boundary = -(-prefix // 8) * 8
    if boundary == 0:
        boundary = 8
    zones = []
    for sub in network.subnets(new_prefix=boundary):
        octets = str(sub.network_address).split(".")[:boundary // 8]
        zones.append(".".join(reversed(octets)) + ".in-addr.arpa")
    return zones


def ancestors(name, zone):
    """The names strictly between ``name`` and ``zone`` (both excluded),
    nearest first.  ``name`` must be below ``zone``."""
    labels = name.split(".")
    depth = len(zone.split(".")) if zone else 0
    return [".".join(labels[i:]) for i in range(1, len(labels) - depth)]


def networks_of(interfaces, ranges):
    """The IPv4 networks we serve: the interfaces' and the ranges' (a range
    without a netmask takes its interface's; relayed ones need one)."""
    found = []
    for iface in interfaces:
        net = ipaddress.IPv4Network((iface.address & iface.netmask,
                                     bin(iface.netmask).count("1")))
        if net not in found:
            found.append(net)
    for r in ranges:
        netmask = r.netmask
        if netmask is None:
            for iface in interfaces:
                if r.start & iface.netmask == iface.address & iface.netmask:
                    netmask = iface.netmask
                    break
        if netmask is None:
            continue
        net = ipaddress.IPv4Network((r.start & netmask, bin(netmask).count("1")))
        if net not in found:
            found.append(net)
    return found
