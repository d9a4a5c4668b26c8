"""The lease record every part of dhcpfo shares: server, stores, failover, DNS."""

import attr

ACTIVE = "active"      # bound to the client until ``expiry``
RELEASED = "released"  # the client gave it back; free for anyone
EXPIRED = "expired"    # the client stopped renewing; free for anyone
DECLINED = "declined"  # a client saw it in use; quarantined until ``expiry``
BACKUP = "backup"      # free, and reserved for ``owner`` (a failover secondary)
STATES = (ACTIVE, RELEASED, EXPIRED, DECLINED, BACKUP)


def client_key(client_id, hwaddr):
    """How a client is known: option 61 if it sent one, else its hardware address.

    The two are prefixed so that a client-id can never collide with a MAC.
    """
    return b"i" + client_id if client_id else b"h" + hwaddr


@attr.s(frozen=True, slots=True, eq=True, repr=True)
class Lease:
    """One address's binding.  Immutable: a change is a new record with a newer
    ``version`` (a hybrid logical clock stamp), which is what failover merges on.

    Times are POSIX seconds.  ``hwaddr`` is the raw chaddr (``hlen`` bytes) and
    ``client_id`` the raw option 61 value (empty when the client sent none).
    """

    ip = attr.ib()           # dotted quad
    hwaddr = attr.ib()       # bytes
    client_id = attr.ib()    # bytes, b"" if none
    hostname = attr.ib()     # str, "" if none
    state = attr.ib()
    start = attr.ib()
    expiry = attr.ib()
    owner = attr.ib()        # name of the server that granted it
    version = attr.ib()      # int, HLC stamp

    @property
    def key(self):
        return client_key(self.client_id, self.hwaddr)

    def holds(self, now):
        """Whether the address is still unavailable to other clients at ``now``."""
        return (self.state == ACTIVE or self.state == DECLINED) and self.expiry > now

    def effective_state(self, now):
        if self.state == ACTIVE and self.expiry <= now:
            return EXPIRED
        return self.state
