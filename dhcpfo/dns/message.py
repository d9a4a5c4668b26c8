"""The DNS wire codec of the server: the fast path's splice, and the slow
path's decoding of queries and encoding of responses (EDNS, truncation,
FORMERR), which twisted.names' own server leaves out or gets wrong.
"""

import struct

from twisted.names import dns

#: Our EDNS UDP payload size (the 2020 DNS flag day's figure).
EDNS_SIZE = 1232
UDP_LIMIT = 512
TCP_LIMIT = 65535
BADVERS = 16
_PLAIN_QUESTION = b"\x00\x01\x00\x00\x00\x00"   # QD=1, AN=0, NS=0
_HEADER = struct.Struct("!HBBHHHH")
_OPT = (b"\x00\x00\x29" + struct.pack("!H", EDNS_SIZE) + b"\x00\x00\x00\x00\x00\x00",
        b"\x00\x00\x29" + struct.pack("!H", EDNS_SIZE) + b"\x00\x00\x80\x00\x00\x00")


def fast_answer(fast, data, limit):
    """The response to ``data`` from the ``fast`` table, or None.

    ``limit`` is the transport's size limit (512 for UDP without EDNS; the
    client's EDNS size, at most ours, raises it).  Anything unusual returns
    None and goes the slow way.
    """
    try:
        if data[4:10] != _PLAIN_QUESTION or data[2] & 0xF8:
            return None          # a response, another opcode, or odd counts
        ar = data[10:12]
        if ar == b"\x00\x00":
            question = data[12:]
            entry = fast.get(question)
            if entry is None:
                entry = fast.get(question[:-4].lower() + question[-4:])
                if entry is None:
                    return None
            headers, body = entry
            if 12 + len(question) + len(body) > limit:
                return None
            return b"".join((data[:2], headers[(data[2] & 1) | ((data[3] >> 3) & 2)],
                             question, body))
        if ar != b"\x00\x01":
            return None
        i = 12
        length = data[i]
        while length:
            if length > 63:
                return None      # a compression pointer in a question: slow path
            i += length + 1
            length = data[i]
        end = i + 5
        question = data[12:end]
        opt = data[end:]
        # root name, type OPT, extended rcode 0, version 0, well-formed rdata
        if (len(opt) < 11 or opt[:3] != b"\x00\x00\x29" or opt[5] or opt[6]
                or (opt[9] << 8 | opt[10]) != len(opt) - 11):
            return None
        entry = fast.get(question)
        if entry is None:
            entry = fast.get(question[:-4].lower() + question[-4:])
            if entry is None:
                return None
        headers, body = entry
        if limit == UDP_LIMIT:
            size = opt[3] << 8 | opt[4]
            limit = EDNS_SIZE if size > EDNS_SIZE else size if size > 512 else 512
        if 23 + len(question) + len(body) > limit:
            return None
        return b"".join((data[:2],
                         headers[4 | (data[2] & 1) | ((data[3] >> 3) & 2)],
                         question, body, _OPT[opt[7] >> 7]))
    except IndexError:
        return None


class FormatError(ValueError):
    """The query cannot be understood (FORMERR)."""


class Query:
    """A decoded query and its EDNS facts."""

    __slots__ = ("message", "edns", "udp_size", "version", "do", "limit", "proto",
                 "address")

    def __init__(self, message, edns, udp_size=512, version=0, do=False):
        self.message = message
        self.edns = edns
        self.udp_size = udp_size
        self.version = version
        self.do = do
        self.limit = UDP_LIMIT
        self.proto = None
        self.address = None


def decode_query(data):
    """A :class:`Query` from wire bytes; raises :class:`FormatError`."""
    _, _, _, qd, an, ns, ar = _HEADER.unpack_from(data)
    message = dns.Message()
    try:
        message.fromStr(data)
    except Exception as e:
        raise FormatError("undecodable: %s" % (e,)) from None
    if (len(message.queries) != qd or len(message.answers) != an
            or len(message.authority) != ns or len(message.additional) != ar):
        raise FormatError("truncated")
    if any(rr.type == dns.OPT for rr in message.answers + message.authority):
        raise FormatError("OPT outside the additional section")
    opts = [rr for rr in message.additional if rr.type == dns.OPT]
    if not opts:
        return Query(message, False)
    if len(opts) > 1:
        raise FormatError("more than one OPT record")
    opt = opts[0]
    if opt.name.name != b"":
        raise FormatError("OPT record not owned by the root")
    message.additional = [rr for rr in message.additional if rr.type != dns.OPT]
    return Query(message, True, udp_size=max(512, opt.cls),
                 version=(opt.ttl >> 16) & 0xFF, do=bool(opt.ttl & 0x8000))


def _opt_record(rcode, do):
    return dns.RRHeader(b"", dns.OPT, EDNS_SIZE, ((rcode >> 4) << 24)
                        | (0x8000 if do else 0), dns.UnknownRecord(b""))


def encode_response(query, rcode, answers=(), authority=(), additional=(),
                    aa=False, ra=False, limit=UDP_LIMIT, question=True):
    """Wire bytes of the response to ``query`` (a :class:`Query`), at most
    ``limit`` long: additional records go first, then the answer and
    authority sections with TC set (RFC 2181 9).  Returns ``(bytes, tc)``."""
    request = query.message
    if query.edns and limit == UDP_LIMIT:
        limit = min(max(query.udp_size, 512), EDNS_SIZE)
    m = dns.Message(id=request.id, answer=1, opCode=request.opCode,
                    recDes=request.recDes, recAv=ra, auth=aa, rCode=rcode & 0xF,
                    checkingDisabled=request.checkingDisabled, maxSize=0)
    if question:
        m.queries = list(request.queries)
    opt = [_opt_record(rcode, query.do)] if query.edns else []
    m.answers = list(answers)
    m.authority = list(authority)
    m.additional = list(additional) + opt
    data = m.toStr()
    if len(data) <= limit:
        return data, False
    m.additional = opt
    data = m.toStr()
    if len(data) <= limit:
        return data, False
    m.answers, m.authority, m.trunc = [], [], 1
    return m.toStr(), True


def formerr(data):
    """A FORMERR response to whatever header ``data`` starts with, or None."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    flags1 = 0x80 | (data[2] & 0x79)       # QR, opcode, RD
    return data[:2] + bytes((flags1, dns.EFORMAT)) + b"\x00" * 8
