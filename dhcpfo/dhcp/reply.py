"""Reply encoding (RFC 2131 section 4.1, RFC 2132): the bytes of an OFFER,
ACK or NAK, and where they go.

:class:`DHCPServer` decides *what* to answer; this module writes it.  The
options after the message type depend only on (subnet, range, host, the
client's parameter request list, server id, lease time), so they are
encoded once per such key and cached: a reply is one struct pack and a
join.
"""

import struct

from dhcpfo.addr import INFINITE, ip_bytes, str_from_bytes
from dhcpfo.dhcp import packet as P

_OPTION_CACHE_LIMIT = 4096
BROADCAST = ("255.255.255.255", 68)
_REPLY_HEAD = struct.Struct("!BBBBIHH4s4s4s4s16s")
_SNAME_FILE = b"\x00" * 192
#: Options every reply carries when they apply, requested or not, and which
#: are never trimmed for size.
MANDATORY = (P.SERVER_ID, P.LEASE_TIME, P.RENEWAL_TIME, P.REBINDING_TIME,
             P.SUBNET_MASK)


def destination(pkt, mtype):
    """RFC 2131 4.1: relay, then ciaddr, then broadcast.

    A client with neither an address nor the broadcast flag should get a
    unicast to yiaddr, which needs an ARP entry we cannot add through a
    UDP socket; a broadcast reaches it just as well.
    """
    if pkt.giaddr != P.ZERO_IP:
        return (str_from_bytes(pkt.giaddr), 67)
    if mtype != P.NAK and pkt.ciaddr != P.ZERO_IP:
        return (str_from_bytes(pkt.ciaddr), 68)
    return BROADCAST


def max_options_size(pkt):
    """Room for options: the client's maximum (57) less IP/UDP and header."""
    raw = pkt.options.get(P.MAX_MESSAGE_SIZE)
    size = max(576, int.from_bytes(raw, "big")) if raw is not None else 576
    return size - 28 - P.MIN_LENGTH


def trim(ordered, room):
    """Drop the options (in order, never a mandatory one) that do not fit."""
    kept = []
    used = 0
    for code, value in ordered:
        cost = len(P.encode_options(((code, value),)))
        if used + cost <= room or code in MANDATORY:
            kept.append((code, value))
            used += cost
    return P.encode_options(kept)


def head(pkt, yiaddr, mtype):
    """The fixed BOOTP header of a reply to ``pkt``, up to the magic cookie."""
    flags = pkt.flags
    ciaddr = pkt.ciaddr
    if mtype == P.NAK:
        ciaddr = P.ZERO_IP
        if pkt.giaddr != P.ZERO_IP:
            flags |= P.BROADCAST_FLAG
    return _REPLY_HEAD.pack(
        P.BOOTREPLY, pkt.htype, pkt.hlen, pkt.hops, pkt.xid, 0, flags, ciaddr,
        yiaddr, P.ZERO_IP, pkt.giaddr, pkt.chaddr) + _SNAME_FILE + P.MAGIC


def nak(pkt, server_id, why):
    """A DHCPNAK: server id, a message, the relay's agent information."""
    options = [(P.SERVER_ID, server_id), (P.MESSAGE, why.encode("ascii"))]
    relay = pkt.options.get(P.RELAY_AGENT_INFO)
    if relay is not None:
        options.append((P.RELAY_AGENT_INFO, relay))
    return b"".join((head(pkt, P.ZERO_IP, P.NAK),
                     bytes((P.MESSAGE_TYPE, 1, P.NAK)),
                     P.encode_options(options), b"\xff")).ljust(300, b"\x00")


class ReplyEncoder:
    """The configured options of every client, encoded and cached."""

    def __init__(self, config):
        self.config = config
        self._base_options = {}
        if config.domain:
            self._base_options[P.DOMAIN_NAME] = config.domain.encode("ascii")
        self._option_sets = {}
        self._option_bytes = {}

    def options_for(self, subnet, rng, host):
        """code -> value for a client: global, then tagged (range/host) settings."""
        key = (id(subnet), rng.index if rng is not None else -1, id(host))
        found = self._option_sets.get(key)
        if found is not None:
            return found
        tags = set()
        if rng is not None and rng.tag:
            tags.add(rng.tag)
        if host is not None:
            tags.update(host.tags)
        values = {P.SUBNET_MASK: subnet.netmask_bytes,
                  P.BROADCAST_ADDRESS: subnet.broadcast_bytes}
        values.update(self._base_options)
        for setting in self.config.options:
            if not setting.tags:
                values[setting.code] = setting.value
        for setting in self.config.options:
            if setting.tags and tags.issuperset(setting.tags):
                values[setting.code] = setting.value
        if host is not None and host.hostname:
            values[P.HOSTNAME] = host.hostname.encode("ascii")
        values = {code: value for code, value in values.items() if value}
        self._option_sets[key] = values
        return values

    def encoded_options(self, subnet, rng, host, prl, server_id, lease_time):
        """(bytes, [(code, value)]) of the options after the message type:
        the requested ones in the client's order, then the mandatory ones,
        then (without a request list) the rest."""
        key = (id(subnet), rng.index if rng is not None else -1, id(host), prl,
               server_id, lease_time)
        found = self._option_bytes.get(key)
        if found is not None:
            return found
        values = dict(self.options_for(subnet, rng, host))
        values[P.SERVER_ID] = server_id
        if lease_time is not None:
            values[P.LEASE_TIME] = ip_bytes(lease_time)
            if lease_time != INFINITE:
                values[P.RENEWAL_TIME] = ip_bytes(lease_time // 2)
                values[P.REBINDING_TIME] = ip_bytes(lease_time * 7 // 8)
        ordered = []
        seen = set()
        if prl:
            for code in prl:
                if code in values and code not in seen:
                    ordered.append((code, values[code]))
                    seen.add(code)
        for code in MANDATORY:
            if code in values and code not in seen:
                ordered.append((code, values[code]))
                seen.add(code)
        if not prl:
            for code, value in values.items():
                if code not in seen:
                    ordered.append((code, value))
        if len(self._option_bytes) >= _OPTION_CACHE_LIMIT:
            self._option_bytes.clear()
        found = self._option_bytes[key] = (P.encode_options(ordered), ordered)
        return found

    def reply(self, pkt, mtype, yiaddr, iface, subnet, rng, host, lease_time):
        """The bytes of an OFFER or ACK (``lease_time`` None: DHCPINFORM's)."""
        options = pkt.options
        encoded, ordered = self.encoded_options(
            subnet, rng, host, options.get(P.PARAMETER_REQUEST_LIST),
            iface.address_bytes, lease_time)
        limit = max_options_size(pkt)
        relay = options.get(P.RELAY_AGENT_INFO)
        extra = 3 + (len(relay) + 2 if relay is not None else 0)
        if len(encoded) + extra > limit:
            encoded = trim(ordered, limit - extra)
        parts = [head(pkt, yiaddr, mtype), bytes((P.MESSAGE_TYPE, 1, mtype)),
                 encoded]
        if relay is not None:
            parts.append(P.encode_options(((P.RELAY_AGENT_INFO, relay),)))
        parts.append(b"\xff")
        data = b"".join(parts)
        return data if len(data) >= 300 else data.ljust(300, b"\x00")


class Decision:
    """What to do about one request: send ``data`` to ``dest`` once ``commit``
    (leases, possibly empty) is durable."""

    __slots__ = ("data", "dest", "commit", "undo", "counted")

    def __init__(self, data, dest, commit, undo=(), counted=None):
        self.data = data
        self.dest = dest
        self.commit = commit
        # (lease, the record it replaced) per table.put, in order: what to
        # roll back if ``commit`` cannot be made durable.
        self.undo = undo
        # The stats counter that counted this reply, taken back if it is
        # never sent.
        self.counted = counted
