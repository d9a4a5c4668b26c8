"""The lease record every part of dhcpfo shares: server, stores, failover, DNS."""

import attr

ACTIVE = "active"      # bound to the client until ``expiry``
RELEASED = "released"  # the client gave it back; free for anyone
EXPIRED = "expired"    # the client stopped renewing; free for anyone
DECLINED = "declined"  # a client saw it in use; quarantined until ``expiry``
BACKUP = "backup"      # free, and reserved for ``owner`` (a failover secondary)
STATES = (ACTIVE, RELEASED, EXPIRED, DECLINED, BACKUP)

# The largest field a lease may carry: what the failover wire encodes
# (dhcpfo.failover.commands) and what a peer's record is validated against,
# one definition so the two never disagree.  A lease past them is refused
# before it is ever acknowledged (see fields_problem); the DHCP edge should
# not accept a client past them in the first place.
MAX_HWADDR = 16          # chaddr is 16 bytes
MAX_CLIENT_ID = 1024     # option 61, RFC 3396 concatenation included
MAX_HOSTNAME = 255       # option 12 / 81 payload, UTF-8 bytes
MAX_OWNER = 253          # a DNS name (--failover-name)
_LIMITS = (("hwaddr", bytes, MAX_HWADDR), ("client_id", bytes, MAX_CLIENT_ID),
           ("hostname", str, MAX_HOSTNAME), ("owner", str, MAX_OWNER))


def fields_problem(lease):
    """A sentence saying which field of ``lease`` is of the wrong type or
    longer than its bound, or None when every field fits."""
    for field, kind, limit in _LIMITS:
        value = getattr(lease, field)
        if not isinstance(value, kind):
            return "%s is %s, not %s" % (field, type(value).__name__, kind.__name__)
        try:
            size = len(value.encode("utf-8")) if kind is str else len(value)
        except UnicodeError:
            return "%s is not valid text" % (field,)
        if size > limit:
            return "%s is %d bytes long, more than %d" % (field, size, limit)
    return None


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
