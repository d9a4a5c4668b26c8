"""A cache of upstream answers that honours TTLs, negative answers included.

Positive answers live as long as the smallest TTL of their answer section;
NXDOMAIN and NODATA as long as RFC 2308 says (the authority section's SOA:
the lesser of its TTL and its MINIMUM), and not at all without an SOA.
Other response codes are never cached.  Served records carry the TTL they
have left.  Time comes from the injected clock; expired entries go when
they are next looked at or pushed out (least recently used) by new ones, so
the cache schedules nothing.
"""

from collections import OrderedDict

from twisted.names import dns

MAX_ENTRIES = 10000
MAX_TTL = 86400
MAX_NEGATIVE_TTL = 3600


class Cached:
    """A cached response: ``rcode`` and the three sections, TTLs as served."""

    __slots__ = ("rcode", "answers", "authority", "additional")

    def __init__(self, rcode, answers, authority, additional):
        self.rcode = rcode
        self.answers = answers
        self.authority = authority
        self.additional = additional


def _aged(records, elapsed):
    out = []
    for rr in records:
        ttl = rr.ttl - elapsed
        out.append(dns.RRHeader(rr.name.name, rr.type, rr.cls,
                                ttl if ttl > 0 else 0, rr.payload))
    return out


def cache_ttl(rcode, answers, authority):
    """How long a response may be cached (0: not at all)."""
    if rcode == dns.OK and answers:
        return min(min(rr.ttl for rr in answers), MAX_TTL)
    if rcode in (dns.OK, dns.ENAME):
        for rr in authority:
            if rr.type == dns.SOA:
                return min(rr.ttl, rr.payload.minimum, MAX_NEGATIVE_TTL)
    return 0


class DNSCache:
    """Upstream responses by (name, type, class); see the module docstring."""

    def __init__(self, clock, max_entries=MAX_ENTRIES):
        self.clock = clock
        self.max_entries = max_entries
        self._entries = OrderedDict()  # key -> (stored, expires, rcode, sections)
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._entries)

    def get(self, name, qtype, qclass):
        """A :class:`Cached` with aged TTLs, or None."""
        key = (name, qtype, qclass)
        entry = self._entries.get(key)
        now = self.clock.seconds()
        if entry is None or entry[1] <= now:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        stored, _, rcode, answers, authority, additional = entry
        elapsed = int(now - stored)
        return Cached(rcode, _aged(answers, elapsed), _aged(authority, elapsed),
                      _aged(additional, elapsed))

    def put(self, name, qtype, qclass, rcode, answers, authority, additional):
        """Store a response if it may be cached; returns its TTL (0: not stored)."""
        ttl = cache_ttl(rcode, answers, authority)
        if ttl <= 0:
            return 0
        now = self.clock.seconds()
        key = (name, qtype, qclass)
        self._entries[key] = (now, now + ttl, rcode, list(answers), list(authority),
                              [rr for rr in additional if rr.type != dns.OPT])
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return ttl

    def clear(self):
        self._entries.clear()
