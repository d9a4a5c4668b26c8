"""One lease as one directory entry (docs/ldap/dhcpfo.schema), both ways.

``dhcpfoLeaseIP=192.0.2.10,<base>`` of object class ``dhcpfoLease``.
Hardware address and client identifier are lowercase hex, times are
``repr()`` of the float (exact round trip, :data:`dhcpfo.addr.NEVER`
included), the version a decimal integer; optional attributes are absent
when the field is empty.
"""

from ldaptor.protocols import pureber, pureldap

from dhcpfo import addr
from dhcpfo.leases.lease import Lease

OBJECT_CLASS = "dhcpfoLease"
RDN_ATTRIBUTE = "dhcpfoLeaseIP"
ASSERTION = b"1.3.6.1.1.12"    # RFC 4528
_REPLACE = 2


def _ip(value):
    # It is also the RDN: only the canonical dotted quad, nothing that
    # inet_aton would also accept ("0x7f.0.0.1", "192.0.2.010", ",ou=x").
    if addr.ip_str(addr.int_from_str(value)) != value:
        raise ValueError("%r is not a canonical dotted-quad IPv4 address" % (value,))
    return value.encode("ascii")


def _hex(value):
    return value.hex().encode("ascii") or None


def _unhex(data):
    return bytes.fromhex(data.decode("ascii"))


def _text(value):
    return value.encode("utf-8") or None


def _ascii(value):
    return value.encode("ascii")


def _float(value):
    return repr(float(value)).encode("ascii")


def _int(value):
    return b"%d" % value


def _fromText(data):
    return data.decode("utf-8")


def _toFloat(data):
    return float(data.decode("ascii"))


def _toInt(data):
    return int(data.decode("ascii"))


# (attribute, Lease field, encode to bytes (None: leave out), decode bytes)
FIELDS = [
    ("dhcpfoLeaseIP", "ip", _ip, _fromText),
    ("dhcpfoHWAddress", "hwaddr", _hex, _unhex),
    ("dhcpfoClientID", "client_id", _hex, _unhex),
    ("dhcpfoHostname", "hostname", _text, _fromText),
    ("dhcpfoLeaseState", "state", _ascii, _fromText),
    ("dhcpfoLeaseStart", "start", _float, _toFloat),
    ("dhcpfoLeaseExpiry", "expiry", _float, _toFloat),
    ("dhcpfoLeaseOwner", "owner", _text, _fromText),
    ("dhcpfoLeaseVersion", "version", _int, _toInt),
]
ATTRIBUTES = [name for name, _, _, _ in FIELDS]
_EMPTY = {"hwaddr": b"", "client_id": b"", "hostname": "", "owner": ""}
_BY_NAME = {name.lower().encode("ascii"): (field, decode)
            for name, field, _, decode in FIELDS}


def values(lease):
    """``(attribute, bytes or None)`` for every field; raises for a lease
    that cannot be stored."""
    return [(name, encode(getattr(lease, field))) for name, field, encode, _ in FIELDS]


def lease(attributes):
    """The Lease of a search result entry's attributes."""
    fields = dict(_EMPTY)
    for name, found in attributes:
        known = _BY_NAME.get(name.lower() if isinstance(name, bytes)
                             else name.lower().encode("ascii"))
        if known is not None and found:
            field, decode = known
            fields[field] = decode(found[0])
    return Lease(**fields)


def dn(lease, base):
    return "%s=%s,%s" % (RDN_ATTRIBUTE, lease.ip, base)


def addRequest(lease, base):
    attributes = [(pureldap.LDAPAttributeDescription("objectClass"),
                   pureber.BERSet([pureldap.LDAPAttributeValue(OBJECT_CLASS)]))]
    attributes += [(pureldap.LDAPAttributeDescription(name),
                    pureber.BERSet([pureldap.LDAPAttributeValue(value)]))
                   for name, value in values(lease) if value is not None]
    return pureldap.LDAPAddRequest(entry=dn(lease, base), attributes=attributes)


def modifyRequest(lease, base):
    """Replace every attribute; an empty field removes its attribute."""
    return pureldap.LDAPModifyRequest(object=dn(lease, base), modification=[
        pureber.BERSequence([
            pureber.BEREnumerated(_REPLACE),
            pureber.BERSequence([
                pureldap.LDAPAttributeDescription(name),
                pureber.BERSet([] if value is None
                               else [pureldap.LDAPAttributeValue(value)])])])
        for name, value in values(lease)])


def versionAssertion(lease):
    """RFC 4528 control: replace only an older (or the same) version."""
    return (ASSERTION, True, pureldap.LDAPFilter_lessOrEqual(
        attributeDesc=pureldap.LDAPAttributeDescription("dhcpfoLeaseVersion"),
        assertionValue=pureldap.LDAPAssertionValue(b"%d" % lease.version)).toWire())
