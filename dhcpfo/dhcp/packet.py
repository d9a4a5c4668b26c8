"""DHCPv4 wire codec (RFC 2131, 2132, 3046, 3396, 4702): pure, no I/O.

Addresses stay as the 4-byte strings the wire carries; the server converts
only what it needs.  Every malformation raises :class:`CodecError`, so the
protocol has one thing to catch, count and drop.
"""

import struct

__all__ = ["CodecError", "Packet", "parse", "encode_options"]


class CodecError(ValueError):
    """The bytes are not a DHCP message we can safely act on."""


BOOTREQUEST = 1
BOOTREPLY = 2

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MESSAGE_NAMES = {
    DISCOVER: "DHCPDISCOVER", OFFER: "DHCPOFFER", REQUEST: "DHCPREQUEST",
    DECLINE: "DHCPDECLINE", ACK: "DHCPACK", NAK: "DHCPNAK",
    RELEASE: "DHCPRELEASE", INFORM: "DHCPINFORM",
}

PAD = 0
SUBNET_MASK = 1
ROUTER = 3
DNS_SERVERS = 6
HOSTNAME = 12
DOMAIN_NAME = 15
BROADCAST_ADDRESS = 28
REQUESTED_ADDRESS = 50
LEASE_TIME = 51
OVERLOAD = 52
MESSAGE_TYPE = 53
SERVER_ID = 54
PARAMETER_REQUEST_LIST = 55
MESSAGE = 56
MAX_MESSAGE_SIZE = 57
RENEWAL_TIME = 58
REBINDING_TIME = 59
CLIENT_ID = 61
CLIENT_FQDN = 81
RELAY_AGENT_INFO = 82
END = 255

MAGIC = b"\x63\x82\x53\x63"
ZERO_IP = b"\x00\x00\x00\x00"
BROADCAST_FLAG = 0x8000
# op htype hlen hops xid secs flags ciaddr yiaddr siaddr giaddr chaddr sname file
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
MIN_LENGTH = HEADER.size + len(MAGIC)  # 240
# Options whose length RFC 2132 fixes; anything else here is malformed.
_FIXED_LENGTH = {
    MESSAGE_TYPE: 1, REQUESTED_ADDRESS: 4, SERVER_ID: 4, LEASE_TIME: 4,
    MAX_MESSAGE_SIZE: 2, OVERLOAD: 1,
}


class Packet:
    """One BOOTP/DHCP message; ``options`` maps code to value in wire order."""

    __slots__ = ("op", "htype", "hlen", "hops", "xid", "secs", "flags",
                 "ciaddr", "yiaddr", "siaddr", "giaddr", "chaddr", "sname",
                 "file", "options", "joined")

    def __init__(self, op=BOOTREQUEST, htype=1, hlen=6, hops=0, xid=0, secs=0,
                 flags=0, ciaddr=ZERO_IP, yiaddr=ZERO_IP, siaddr=ZERO_IP,
                 giaddr=ZERO_IP, chaddr=b"\x00" * 16, sname=b"\x00" * 64,
                 file=b"\x00" * 128, options=None):
        self.op = op
        self.htype = htype
        self.hlen = hlen
        self.hops = hops
        self.xid = xid
        self.secs = secs
        self.flags = flags
        self.ciaddr = ciaddr
        self.yiaddr = yiaddr
        self.siaddr = siaddr
        self.giaddr = giaddr
        self.chaddr = chaddr.ljust(16, b"\x00")
        self.sname = sname
        self.file = file
        self.options = {} if options is None else options
        # Were option instances joined (RFC 3396)?  Only then can a value be
        # over 255 bytes; a packet built here is not known not to be.
        self.joined = True

    @property
    def message_type(self):
        value = self.options.get(MESSAGE_TYPE)
        return value[0] if value else None

    @property
    def hwaddr(self):
        return self.chaddr[:self.hlen]

    def __repr__(self):
        return ("<Packet %s xid=%#x chaddr=%s options=%r>"
                % (MESSAGE_NAMES.get(self.message_type, "BOOTP"), self.xid,
                   self.hwaddr.hex(":"), sorted(self.options)))

    def encode(self, minimum=300):
        """Serialise; ``options`` are written in their dict order."""
        head = HEADER.pack(
            self.op, self.htype, self.hlen, self.hops, self.xid, self.secs,
            self.flags, self.ciaddr, self.yiaddr, self.siaddr, self.giaddr,
            self.chaddr, self.sname, self.file)
        data = b"".join((head, MAGIC, encode_options(self.options.items()),
                         b"\xff"))
        return data.ljust(minimum, b"\x00")


def encode_options(items):
    """Encode (code, value) pairs; values over 255 bytes are split (RFC 3396)."""
    out = []
    for code, value in items:
        if len(value) <= 255:
            out.append(bytes((code, len(value))))
            out.append(value)
        else:
            for i in range(0, len(value), 255):
                chunk = value[i:i + 255]
                out.append(bytes((code, len(chunk))))
                out.append(chunk)
    return b"".join(out)


def _parse_options(data, start, end, options):
    """Add the options in ``data[start:end]`` to ``options`` (RFC 3396 joins);
    whether any instances were joined."""
    i = start
    joined = False
    while i < end:
        code = data[i]
        if code == PAD:
            i += 1
            continue
        if code == END:
            return joined
        if i + 1 >= end:
            raise CodecError("option %d at offset %d has no length byte" % (code, i))
        length = data[i + 1]
        stop = i + 2 + length
        if stop > end:
            raise CodecError("option %d at offset %d runs past the end of its field"
                             % (code, i))
        value = data[i + 2:stop]
        previous = options.get(code)
        if previous is None:
            options[code] = value
        else:
            options[code] = previous + value
            joined = True
        i = stop
    return joined


def parse(data):
    """Decode one datagram into a :class:`Packet` or raise :class:`CodecError`."""
    if len(data) < MIN_LENGTH:
        raise CodecError("datagram of %d bytes is shorter than the %d-byte DHCP minimum"
                         % (len(data), MIN_LENGTH))
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr,
     chaddr, sname, file) = HEADER.unpack_from(data)
    if op != BOOTREQUEST and op != BOOTREPLY:
        raise CodecError("op %d is neither BOOTREQUEST nor BOOTREPLY" % op)
    if hlen > 16:
        raise CodecError("hardware address length %d exceeds 16" % hlen)
    options = {}
    joined = False
    if data[236:240] == MAGIC:
        joined = _parse_options(data, 240, len(data), options)
        overload = options.get(OVERLOAD)
        if overload is not None:
            if len(overload) != 1 or overload[0] not in (1, 2, 3):
                raise CodecError("option overload (52) value %r is not 1, 2 or 3"
                                 % overload)
            if overload[0] & 1:
                joined |= _parse_options(file, 0, len(file), options)
            if overload[0] & 2:
                joined |= _parse_options(sname, 0, len(sname), options)
        for code, length in _FIXED_LENGTH.items():
            value = options.get(code)
            if value is not None and len(value) != length:
                raise CodecError("option %d has length %d, RFC 2132 requires %d"
                                 % (code, len(value), length))
        mtype = options.get(MESSAGE_TYPE)
        if mtype is not None and not 1 <= mtype[0] <= 8:
            raise CodecError("unknown DHCP message type %d" % mtype[0])
        cid = options.get(CLIENT_ID)
        if cid is not None and len(cid) < 2:
            raise CodecError("client identifier (61) shorter than 2 bytes")
    packet = Packet.__new__(Packet)
    packet.op = op
    packet.htype = htype
    packet.hlen = hlen
    packet.hops = hops
    packet.xid = xid
    packet.secs = secs
    packet.flags = flags
    packet.ciaddr = ciaddr
    packet.yiaddr = yiaddr
    packet.siaddr = siaddr
    packet.giaddr = giaddr
    packet.chaddr = chaddr
    packet.sname = sname
    packet.file = file
    packet.options = options
    packet.joined = joined
    return packet


def parse_fqdn(value):
    """Decode a client FQDN option (81, RFC 4702) into ``(flags, name)``."""
    if len(value) < 3:
        raise CodecError("client FQDN (81) shorter than 3 bytes")
    flags = value[0]
    raw = value[3:]
    if flags & 0x04:  # E: canonical wire format
        labels = []
        i = 0
        while i < len(raw):
            length = raw[i]
            if length == 0:
                break
            if length > 63 or i + 1 + length > len(raw):
                raise CodecError("client FQDN (81) has a malformed label")
            labels.append(raw[i + 1:i + 1 + length].decode("ascii", "replace"))
            i += 1 + length
        name = ".".join(labels)
    else:
        name = raw.decode("ascii", "replace").rstrip(".")
    return flags, name
