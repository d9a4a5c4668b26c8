"""Finding a free address without walking a full pool on every DISCOVER
(issue 10 item 7).

A scan of a range that found nothing is remembered: until a lease record
that may free an address is put in the table (a listener), an offer is
given up, or :data:`EXHAUSTED_RECHECK` seconds pass (leases expire and the
failover policy changes with time), the range is known full and skipped.
So a flood against a full 65k-address pool costs one scan a second, not
one per packet.

When nothing is free and at least :data:`REUSE_MIN_OFFERS` offers are out,
the oldest unanswered offer (older than :data:`REUSE_AFTER`) goes to the
new client: a flood of DISCOVERs holds
addresses only as long as it keeps sending, and a real client still gets
an offer it has time to request.
"""

from dhcpfo.leases.lease import ACTIVE

EXHAUSTED_RECHECK = 1.0   # a range found full is scanned again after this
REUSE_AFTER = 1.0         # an offer younger than this is never given away
REUSE_LOOKUP = 64         # oldest offers looked at for one reuse
REUSE_MIN_OFFERS = 4      # below this many offers out, each keeps its hold


class Allocator:
    """New addresses for a :class:`DHCPServer`: a scan per range, skipped
    while the range is known full, and reuse of the oldest offer."""

    def __init__(self, table, offers):
        self.offers = offers
        self.frees = 0        # table puts that may have freed an address
        self._full = {}       # range index -> (frees, offer drops, until)
        table.listeners.append(self._put)

    def _put(self, new, old):
        # An ACTIVE record occupies its address whatever it replaced; any
        # other (released, expired, declined, backup) may free one.
        if new.state != ACTIVE:
            self.frees += 1

    def allocate(self, subnet, key, host, now, available):
        """A free address of ``subnet`` for ``key`` (int), or None."""
        for rng in subnet.ranges:
            if rng.static:
                continue
            full = self._full.get(rng.index)
            if (full is not None and full[0] == self.frees
                    and full[1] == self.offers.drops and now < full[2]):
                continue
            size = rng.end - rng.start + 1
            ip = rng.cursor
            for _ in range(size):
                if available(ip, key, host, now):
                    rng.cursor = ip + 1 if ip < rng.end else rng.start
                    return ip
                ip = ip + 1 if ip < rng.end else rng.start
            self._full[rng.index] = (self.frees, self.offers.drops,
                                     now + EXHAUSTED_RECHECK)
        return None

    def reuse(self, subnet, key, host, now, available):
        """The oldest offer in ``subnet``'s dynamic ranges, at least
        :data:`REUSE_AFTER` old, whose address ``available`` (offers aside)
        says could be ``key``'s; or None."""
        if len(self.offers.by_ip) < REUSE_MIN_OFFERS:
            return None   # no flood: RFC 2131's hold for the offer's life
        newest = now - REUSE_AFTER
        for n, (ip, (holder, since)) in enumerate(self.offers.oldest()):
            if since > newest or n >= REUSE_LOOKUP:
                return None
            if (holder != key and ip in subnet and subnet.range_of(ip) is not None
                    and available(ip, key, host, now, False)):
                return ip
        return None
