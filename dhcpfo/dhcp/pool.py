"""Subnets and their address ranges, resolved once against the interfaces."""

import ipaddress

# ip_int and ip_str are re-exported for older importers; use dhcpfo.addr.
from dhcpfo.addr import ip_bytes, ip_int, ip_str  # noqa: F401
from dhcpfo.config import ConfigError


class Range:
    """One --dhcp-range: a dynamic pool (unless static) with its lease time and tag."""

    __slots__ = ("start", "end", "lease_time", "tag", "static", "cursor", "index")

    def __init__(self, spec, index):
        self.start = spec.start
        self.end = spec.end
        self.lease_time = spec.lease_time
        self.tag = spec.tag
        self.static = spec.static
        self.cursor = spec.start
        self.index = index

    def __contains__(self, ip):
        return self.start <= ip <= self.end and not self.static

    @property
    def size(self):
        return 0 if self.static else self.end - self.start + 1

    def describe(self):
        return "%s-%s" % (ip_str(self.start), ip_str(self.end))


class Subnet:
    """A network we lease on: its mask, ranges and the per-subnet options."""

    def __init__(self, network, netmask):
        self.network = network
        self.netmask = netmask
        self.ranges = []
        self.netmask_bytes = ip_bytes(netmask)
        self.broadcast_bytes = ip_bytes(network | (~netmask & 0xFFFFFFFF))
        self.last_exhausted_log = None

    def __contains__(self, ip):
        return ip & self.netmask == self.network

    @property
    def size(self):
        """How many dynamic addresses its ranges hold."""
        return sum(r.size for r in self.ranges)

    def range_of(self, ip):
        for r in self.ranges:
            if r.start <= ip <= r.end and not r.static:
                return r
        return None

    def describe(self):
        return str(ipaddress.IPv4Network((self.network, bin(self.netmask).count("1"))))


def build_subnets(ranges, interfaces):
    """Group ranges into subnets; a range without a netmask takes its interface's.

    ``interfaces`` is a list of :class:`InterfaceInfo`.
    """
    subnets = {}
    for index, spec in enumerate(ranges):
        netmask = spec.netmask
        if netmask is None:
            for iface in interfaces:
                if spec.start & iface.netmask == iface.address & iface.netmask:
                    netmask = iface.netmask
                    break
            else:
                raise ConfigError(
                    "--dhcp-range %s-%s: no interface has an address in its subnet, "
                    "so its netmask is unknown; add the netmask "
                    "(START,END,255.255.255.0,LEASETIME) for a relayed network"
                    % (ip_str(spec.start), ip_str(spec.end)))
        if spec.end & netmask != spec.start & netmask:
            raise ConfigError("--dhcp-range %s-%s spans more than one subnet of mask %s"
                              % (ip_str(spec.start), ip_str(spec.end), ip_str(netmask)))
        network = spec.start & netmask
        subnet = subnets.get((network, netmask))
        if subnet is None:
            subnet = subnets[(network, netmask)] = Subnet(network, netmask)
        subnet.ranges.append(Range(spec, index))
    return list(subnets.values())


class InterfaceInfo:
    """An interface we listen on: its name, primary address and the subnet it serves."""

    __slots__ = ("name", "address", "netmask", "address_bytes", "address_str", "subnet")

    def __init__(self, name, address, netmask):
        self.name = name
        self.address = address
        self.netmask = netmask
        self.address_bytes = ip_bytes(address)
        self.address_str = ip_str(address)
        self.subnet = None
