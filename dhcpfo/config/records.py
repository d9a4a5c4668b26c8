"""The validated configuration as frozen records.

Every side of dhcpfo reads these and none of them writes one: a ``Config``
is built once by :func:`dhcpfo.config.build` and then only passed around.
Addresses are ints (see :mod:`dhcpfo.addr`), sequences are tuples.
"""

import socket

import attr

DEFAULT_LEASE_TIME = 3600
MIN_LEASE_TIME = 120
DEFAULT_CONTROL = "tcp:8067:interface=127.0.0.1"
DEFAULT_STORE = "sqlite:path=dhcpfo-leases.db"
DEFAULT_DNS_PORT = 53
DEFAULT_CONTROL_SOCKET = "@dhcpfo-control"  # abstract: one per network namespace
DEFAULT_FAILOVER_PORT = 647  # the port IANA assigned to DHCP failover


@attr.s(frozen=True, slots=True)
class DhcpRange:
    start = attr.ib()         # int
    end = attr.ib()           # int
    netmask = attr.ib()       # int or None: from the interface then
    lease_time = attr.ib()    # seconds
    tag = attr.ib()           # str or None (set:TAG)
    static = attr.ib(default=False)  # only reservations, no dynamic pool


@attr.s(frozen=True, slots=True)
class HostReservation:
    hwaddr = attr.ib()        # bytes or None
    client_id = attr.ib()     # bytes or None
    ip = attr.ib()            # int or None
    hostname = attr.ib()      # str
    lease_time = attr.ib()    # int or None
    tags = attr.ib()          # tuple of str (set:TAG)
    ignore = attr.ib()        # bool: never answer this client


@attr.s(frozen=True, slots=True)
class OptionSetting:
    code = attr.ib()
    value = attr.ib()         # bytes
    tags = attr.ib()          # tuple: all must match (tag:TAG)


@attr.s(frozen=True, slots=True)
class Upstream:
    """``--server IP[#PORT]``: a DNS server we forward to."""
    host = attr.ib()          # str, an IPv4 or IPv6 address
    port = attr.ib(default=DEFAULT_DNS_PORT)

    def describe(self):
        return "%s#%d" % (self.host, self.port)


@attr.s(frozen=True, slots=True)
class HostRecord:
    """``--host-record NAME[,NAME...],ADDRESS[,ADDRESS][,TTL]``."""
    names = attr.ib()         # tuple of names, the first one gets the PTR
    addresses = attr.ib()     # tuple of address strs (IPv4 and/or IPv6)
    ttl = attr.ib(default=None)


@attr.s(frozen=True, slots=True)
class AddressRule:
    """``--address /DOMAIN[/DOMAIN...]/[ADDRESS]``: a domain and everything
    below it answer ADDRESS; with no address they are local only (NXDOMAIN
    for what we do not know)."""
    domains = attr.ib()       # tuple of names
    addresses = attr.ib()     # tuple of address strs; empty: local only


@attr.s(frozen=True, slots=True)
class HostsFile:
    """``--addn-hosts FILE``: /etc/hosts-format lines, read at start-up."""
    path = attr.ib()
    entries = attr.ib()       # tuple of (address str, tuple of names)


@attr.s(frozen=True, slots=True)
class FailoverConfig:
    """The ``--failover-*`` options, complete and checked (docs/failover.md)."""
    name = attr.ib(default=None)
    peers = attr.ib(default=())
    listen = attr.ib(default=None)          # (host, port)
    master = attr.ib(default=None)          # (ip, port, name)
    peer_addresses = attr.ib(default=())    # ((ip, port, name), ...)
    priority = attr.ib(default=0)
    cert = attr.ib(default=None)
    key = attr.ib(default=None)
    ca = attr.ib(default=None)
    insecure = attr.ib(default=False)
    heartbeat = attr.ib(default=1.0)
    dead_after = attr.ib(default=3.0)
    mclt = attr.ib(default=3600.0)
    reserve = attr.ib(default=0.1)
    partner_down_after = attr.ib(default=None)

    @property
    def role(self):
        return "secondary" if self.master is not None else "primary"


@attr.s(frozen=True, slots=True)
class Config:
    interfaces = attr.ib(default=())
    ranges = attr.ib(default=())
    hosts = attr.ib(default=())
    options = attr.ib(default=())
    domain = attr.ib(default="")
    authoritative = attr.ib(default=False)
    # DISCOVERs a second per interface or relay and the burst; None: no limit
    dhcp_rate_limit = attr.ib(default=(1000, 2000))
    lease_store = attr.ib(default=DEFAULT_STORE)  # the text; checked by makeService
    control = attr.ib(default=DEFAULT_CONTROL)
    server_name = attr.ib(factory=socket.gethostname)
    failover = attr.ib(default=None)        # FailoverConfig when --failover-* given
    # DNS (dhcpfo.dns): a dns_port of 0 disables it
    dns_port = attr.ib(default=DEFAULT_DNS_PORT)
    servers = attr.ib(default=())           # Upstream
    host_records = attr.ib(default=())      # HostRecord
    address_rules = attr.ib(default=())     # AddressRule
    addn_hosts = attr.ib(default=())        # HostsFile
    dns_allow = attr.ib(default=())         # ipaddress networks
    dns_forward_max = attr.ib(default=150)  # questions upstream at once
    # The process (docs/security.md): whom to run as after binding, and who
    # may change state through the control socket besides root.
    user = attr.ib(default=None)            # a user name, or None: do not switch
    group = attr.ib(default=None)           # a group name, or None: the user's
    control_socket = attr.ib(default=DEFAULT_CONTROL_SOCKET)
    control_group = attr.ib(default=None)   # a group name
