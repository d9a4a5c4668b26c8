"""The LDAP client protocol, with a fast path for search result entries.

ldaptor's generic BER decoder takes ~150 us per lease entry (15 s to load
100,000 leases) and its ``LDAPClient.dataReceived`` re-slices the whole
buffer after each message (quadratic in a large search result).  Here whole
messages are cut out first, and entries without controls -- the bulk of a
load -- are decoded directly; every other message goes to ldaptor.
"""

from ldaptor.protocols import pureber, pureldap
from ldaptor.protocols.ldap.ldapclient import LDAPClient
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import Logger
from zope.interface import implementer


def tlv(buf, pos):
    """(tag, start of value, end of value) of the BER element at ``pos``;
    IndexError when its header is incomplete."""
    tag = buf[pos]
    first = buf[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    if pos + 2 + count > len(buf):
        raise IndexError(pos)
    start = pos + 2 + count
    return tag, start, start + int.from_bytes(buf[pos + 2:start], "big")


def searchEntry(buf, start, end):
    """The LDAPMessage holding a SearchResultEntry (RFC 4511 4.5.2) without
    controls, decoded directly; None for any other message."""
    try:
        tag, a, b = tlv(buf, start)                   # messageID INTEGER
        if tag != 0x02:
            return None
        msgid = int.from_bytes(buf[a:b], "big", signed=True)
        tag, a, opEnd = tlv(buf, b)                   # [APPLICATION 4]
        if tag != 0x64 or opEnd != end:
            return None
        tag, a, b = tlv(buf, a)                       # objectName
        name = buf[a:b]
        tag, p, listEnd = tlv(buf, b)                 # attributes
        attributes = []
        while p < listEnd:
            tag, q, p = tlv(buf, p)                   # PartialAttribute
            tag, a, b = tlv(buf, q)                   # type
            tag, v, valuesEnd = tlv(buf, b)           # SET OF value
            values = []
            while v < valuesEnd:
                tag, a2, v = tlv(buf, v)
                values.append(buf[a2:v])
            attributes.append((buf[a:b], values))
        if p != listEnd or listEnd != opEnd:
            return None
    except IndexError:
        return None
    return pureldap.LDAPMessage(
        pureldap.LDAPSearchResultEntry(objectName=name, attributes=attributes),
        id=msgid)


@implementer(IHandshakeListener)
class Client(LDAPClient):
    """ldaptor's client, plus: TLS handshake notification, a hook for the
    loss of the connection, linear-time framing of incoming messages."""

    _log = Logger()

    def __init__(self):
        super().__init__()
        self.tlsDone = None
        self.onLost = None

    def handshakeCompleted(self):
        if self.tlsDone is not None and not self.tlsDone.called:
            self.tlsDone.callback(None)

    def dataReceived(self, data):
        buf = self.buffer + data if self.buffer else data
        pos, size = 0, len(buf)
        while True:
            try:
                _, start, end = tlv(buf, pos)
            except IndexError:
                break
            if end > size:
                break
            message = searchEntry(buf, start, end)
            if message is None:
                message, _ = pureber.berDecodeObject(self.berdecoder, buf[pos:end])
            pos = end
            if message is not None:
                self.handle(message)
        self.buffer = buf[pos:]

    def unsolicitedNotification(self, msg):
        self._log.warn("LDAP server notice: {msg!r}", msg=msg)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if self.tlsDone is not None and not self.tlsDone.called:
            self.tlsDone.errback(reason)
        if self.onLost is not None:
            self.onLost(self, reason)
