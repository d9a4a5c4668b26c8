"""Addresses offered and not yet requested (RFC 2131 4.3.1: "the server
SHOULD NOT ... reuse the offered address" until the client has chosen)."""

OFFER_TIMEOUT = 30.0          # an offered address is held this long for its client


class Offers:
    """Each client holds at most one offer; an offer lapses after
    :data:`OFFER_TIMEOUT` seconds.  Times are the caller's ``now``."""

    def __init__(self):
        # Both bounded by the number of addresses: each address holds at
        # most one offer, each client at most one, and a client's entry goes
        # with its address's.  by_ip is in the order offers were made.
        self.by_ip = {}       # ip int -> (client key, expires)
        self.of_client = {}   # client key -> ip int
        self.drops = 0        # offers given up before they lapsed

    def hold(self, ip, key, now):
        """Offer ``ip`` to ``key``, dropping that client's earlier offer and
        any other client's offer of ``ip`` (see Allocator.reuse)."""
        previous = self.of_client.get(key)
        if previous is not None and previous != ip:
            self.by_ip.pop(previous, None)
            self.drops += 1
        other = self.by_ip.pop(ip, None)
        if other is not None and other[0] != key and self.of_client.get(other[0]) == ip:
            del self.of_client[other[0]]
        self.by_ip[ip] = (key, now + OFFER_TIMEOUT)
        self.of_client[key] = ip

    def oldest(self):
        """``(ip, (client key, offered at))``, oldest offer first."""
        return ((ip, (key, expires - OFFER_TIMEOUT))
                for ip, (key, expires) in self.by_ip.items())

    def held_for(self, ip, key):
        """Was ``ip`` offered to ``key`` (live or lapsed, not yet dropped)?"""
        offer = self.by_ip.get(ip)
        return offer is not None and offer[0] == key

    def held_for_other(self, ip, key, now):
        """Is ``ip`` held by a live offer to another client?"""
        offer = self.by_ip.get(ip)
        return offer is not None and offer[0] != key and offer[1] > now

    def drop_client(self, key):
        """Forget the offer to ``key`` (it chose another server or declined)."""
        ip = self.of_client.pop(key, None)
        if ip is not None and self.by_ip.get(ip, (None,))[0] == key:
            del self.by_ip[ip]
            self.drops += 1

    def declined(self, ip, key):
        """``key`` found ``ip`` in use: nobody is to be offered it now."""
        if self.by_ip.pop(ip, None) is not None:
            self.drops += 1
        self.of_client.pop(key, None)

    def taken(self, ip, key):
        """``key`` now has a lease on ``ip``: its offer, if any, is done."""
        offer = self.by_ip.get(ip)
        if offer is not None and offer[0] == key:
            del self.by_ip[ip]
        if self.of_client.get(key) == ip:
            del self.of_client[key]

    def live(self, ip, now):
        offer = self.by_ip.get(ip)
        return offer is not None and offer[1] > now

    def between(self, start, end, now):
        """How many live offers hold addresses in ``start..end`` (ints)."""
        return sum(1 for ip, (_, expires) in self.by_ip.items()
                   if start <= ip <= end and expires > now)

    def expire(self, now):
        """Forget lapsed offers; how many there were."""
        stale = [ip for ip, (_, expires) in self.by_ip.items() if expires <= now]
        for ip in stale:
            key = self.by_ip.pop(ip)[0]
            if self.of_client.get(key) == ip:
                del self.of_client[key]
        return len(stale)
