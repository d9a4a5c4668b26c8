"""What a request may carry, and how often, before the server acts on it
(issue 10 items 1, 7 and 8).

The codec (:mod:`dhcpfo.dhcp.packet`) accepts anything it can decode; these
bounds say what a *client request* may hold before it can become a lease,
be replicated to a failover peer or be published in DNS.  They sit inside
the lease record's own bounds (:mod:`dhcpfo.leases.lease`), so whatever is
accepted here can always be stored and replicated.  docs/configuration.md,
"What the server accepts", states them for operators.
"""

from dhcpfo.addr import str_from_bytes
from dhcpfo.dhcp import packet as P
from dhcpfo.dhcp.limits import SubnetLimit, TokenBucket, WindowLimit

#: Option 61 (RFC 2132 9.14: at least 2 bytes).  RFC 3396 concatenation
#: could make it longer; no real client sends over 255 bytes.
MAX_CLIENT_ID = 255
#: A DNS name in text form (RFC 1035: 255 wire bytes, 253 characters).
MAX_NAME = 253
#: Option 81 (RFC 4702): three bytes of flags and rcodes, then the name,
#: at most 255 bytes in wire form.
MAX_FQDN = 3 + 255
#: Options a relay or a client sends as one instance (RFC 3046 2.0,
#: RFC 2132 9.8): never concatenated past one option's 255 bytes.
MAX_ONE_OPTION = 255

_BOUNDS = (
    (P.CLIENT_ID, MAX_CLIENT_ID, "client identifier (61)"),
    (P.HOSTNAME, MAX_NAME, "host name (12)"),
    (P.CLIENT_FQDN, MAX_FQDN, "client FQDN (81)"),
    (P.RELAY_AGENT_INFO, MAX_ONE_OPTION, "relay agent information (82)"),
    (P.PARAMETER_REQUEST_LIST, MAX_ONE_OPTION, "parameter request list (55)"),
)


def problem(pkt):
    """Why the request ``pkt`` is refused at the edge, or None if it is fine.

    Cheap on the hot path: one option instance holds at most 255 bytes, so
    unless the codec joined instances (RFC 3396) only the host name (253)
    can be past its bound.
    """
    options = pkt.options
    if pkt.hlen == 0 and P.CLIENT_ID not in options:
        return "no hardware address (hlen 0) and no client identifier"
    if not pkt.joined:
        hostname = options.get(P.HOSTNAME)
        if hostname is None or len(hostname) <= MAX_NAME:
            return None
    for code, limit, name in _BOUNDS:
        value = options.get(code)
        if value is not None and len(value) > limit:
            return "%s of %d bytes, more than %d" % (name, len(value), limit)
    return None


DECLINE_PROBATION = 600.0     # a declined address rests this long (as dnsmasq)
# Declines taken per probation period (item 8): per client, and per subnet
# the larger of DECLINES_PER_SUBNET and 1/16 of its dynamic addresses.
DECLINES_PER_CLIENT = 2
DECLINES_PER_SUBNET = 16


def sanitize_hostname(raw):
    """A client's hostname reduced to one valid DNS label, or ''."""
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    label = text.strip().split(".")[0].lower()
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-"
                      for c in label)
    return cleaned.strip("-")[:63]


class Gate:
    """What a :class:`DHCPServer` checks before it decides: the bounds
    (:func:`problem`), the DISCOVER rate per interface or relay
    (``discovers``), the decline limits.  Each refusal
    is counted in ``stats`` and logged through ``rate_log`` to
    ``owner._log``, looked up only when there is a line to write (a class's
    Logger is a descriptor that builds a new Logger at each access)."""

    def __init__(self, stats, rate_log, owner, discover_limit=None):
        self.stats = stats
        self.rate_log = rate_log
        self.owner = owner
        # DISCOVERs answered per second from one interface or relay (giaddr)
        # and the burst above it (--dhcp-rate-limit); the rest are dropped,
        # counted (rate_limited) and summarised in one line a minute.
        self.discovers = (TokenBucket(*discover_limit)
                          if discover_limit is not None else None)
        self.declines_per_client = WindowLimit(DECLINES_PER_CLIENT,
                                               DECLINE_PROBATION)
        self.declines_per_subnet = SubnetLimit(DECLINE_PROBATION)

    def refuse(self, pkt, why):
        """``pkt`` is past a bound (:func:`problem` said ``why``)."""
        self.stats["malformed"] += 1
        self.rate_log.info(self.owner._log, "malformed",
                           "dropped a request from {client}: {why}",
                           client=pkt.chaddr[:pkt.hlen].hex(":"), why=why)

    def rate_limited(self, pkt, iface):
        """A DISCOVER ``discovers`` refused."""
        self.stats["rate_limited"] += 1
        self.rate_log.warn(
            self.owner._log, ("rate", iface.name, pkt.giaddr),
            "DISCOVERs on {iface} via {relay} over the rate limit ({rate:.0f}/s): "
            "dropped", iface=iface.name, relay=str_from_bytes(pkt.giaddr),
            rate=self.discovers.rate)

    def decline_allowed(self, key, subnet, now):
        """May ``key`` quarantine one more address of ``subnet``?"""
        if (self.declines_per_client.allow(key, now)
                and self.declines_per_subnet.allow(
                    subnet.network, now,
                    max(DECLINES_PER_SUBNET, subnet.size // 16))):
            return True
        self.stats["decline_limited"] += 1
        return False
