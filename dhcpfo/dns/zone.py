"""The pieces of a zone that need no state: answers and errors, records from
configuration, the SOA, and who publishes a name that several leases claim.

:class:`dhcpfo.dns.authority.LeaseAuthority` holds the state and uses these.
"""

from twisted.names import dns, error

_RTYPE = {"A": dns.A, "AAAA": dns.AAAA, "PTR": dns.PTR}

#: Names a DHCP client may never publish (dnsmasq's ``dhcp-name-match`` /
#: ``dhcp-ignore-names`` idea): ``wpad`` would let any client offer itself as
#: every browser's web proxy (WPAD), ``localhost`` is nobody's.  A pattern is
#: one label, or a prefix followed by ``*``.
DENY_NAMES = ("wpad", "localhost")


def denied(label, patterns):
    """Whether ``label`` (lower case) matches one of ``patterns``."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if label.startswith(pattern[:-1]):
                return True
        elif label == pattern:
            return True
    return False


class NameNotFound(error.AuthoritativeDomainError):
    """NXDOMAIN from our own data; ``authority`` holds the SOA, if any."""

    def __init__(self, name, authority):
        super().__init__(name)
        self.authority = authority


class Refused(error.AuthoritativeDomainError):
    """A question about our names that we will not answer (another class)."""


class Answer:
    """One question's answer from local data."""

    __slots__ = ("rcode", "answers", "authority", "additional", "zone")

    def __init__(self, rcode, answers, authority, zone):
        self.rcode = rcode
        self.answers = answers
        self.authority = authority
        self.additional = []
        self.zone = zone


def b(name):
    """A name (our form: text) as twisted.names wants it."""
    return name.encode("latin-1")


def payload(rtype, rdata, ttl):
    if rtype == dns.A:
        return dns.Record_A(rdata, ttl)
    if rtype == dns.AAAA:
        return dns.Record_AAAA(rdata, ttl)
    if rtype == dns.PTR:
        return dns.Record_PTR(b(rdata), ttl)
    raise ValueError(rtype)


def rrsets(name, table):
    """``{rtype: [RRHeader]}`` from ``{rtype: [(rdata, ttl)]}``."""
    return {t: [dns.RRHeader(b(name), t, dns.IN, ttl, payload(t, r, ttl), auth=True)
                for r, ttl in rrset]
            for t, rrset in table.items()}


def static_tables(static, ttl):
    """``(records, rules)`` from a :class:`dhcpfo.dns.records.StaticData`:
    ``{name: {rtype: [(rdata, ttl)]}}`` and ``[(domain, {rtype: [(rdata,
    ttl)]} or None)]`` (None: the domain has no names, NXDOMAIN)."""
    records = {}
    rules = []
    if static is None:
        return records, rules
    for name, sets in static.records.items():
        records[name] = {_RTYPE[t]: list(v) for t, v in sets.items()}
    for domain, addresses in static.rules:
        if addresses:
            found = {}
            for a in addresses:
                found.setdefault(dns.AAAA if ":" in a else dns.A, []).append((a, ttl))
            rules.append((domain, found))
        else:
            rules.append((domain, None))
    return records, rules


def soa(zone, mname, rname, ttl):
    """The zone's SOA record; ``ttl`` is also its MINIMUM (negative TTL)."""
    record = dns.Record_SOA(mname=b(mname), rname=b(rname), serial=1,
                            refresh=3600, retry=600, expire=86400, minimum=ttl,
                            ttl=ttl)
    return dns.RRHeader(b(zone), dns.SOA, dns.IN, ttl, record, auth=True)


def contest(claims, static, reserved, holder):
    """Who publishes a name claimed by the leases ``claims`` (``{ip: Lease}``,
    not empty, in the order the claims were first made): ``(winner or None,
    frozenset of losing ips, why)``.

    A configured name (``static``, its ``{rtype: [(rdata, ttl)]}``) beats
    every lease but those for its own addresses.  Otherwise a lease whose
    client has a reservation for the name (``reserved(lease)``) wins; then
    the address that holds the name now (``holder``) keeps it; else the
    first claim still live.  A newcomer never takes a live holder's name.
    """
    if static is not None:
        fixed = {ip for ip, _ in static.get(dns.A, [])}
        return (None, frozenset(ip for ip in claims if ip not in fixed),
                "it is a configured name")
    candidates = [ip for ip, lease in claims.items() if reserved(lease)]
    why = "%s has the reservation for it"
    if not candidates:
        candidates = list(claims)
        why = "%s holds it"
    ip = holder if holder in candidates else candidates[0]
    winner = claims[ip]
    return winner, frozenset(other for other in claims if other != ip), why % ip
