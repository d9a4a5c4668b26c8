"""Who hands out leases in a connected group (docs/failover.md, "Election";
design rule 5): the election rule, written once, pure.

Every server ranks itself and each peer by :func:`rank`: the primary first,
then secondaries by ``--failover-priority`` (the highest wins), then by name
(the larger wins), so no two servers ever tie.  A server serves DHCP exactly
when no peer it is connected to outranks it.  That gives one server per
connected group when every member is connected to every other (the
secondaries dial each other); both ends of a connection must therefore know
each other's priority, which is why it travels in ``Hello``, in its answer,
and in ``StateAnnounce``.

Two connections between one pair (both dialled at once) are one too many:
both ends keep the same one, by :func:`elect` alone — the one dialled by the
smaller name, and of two dialled the same way the newer (the older is a
connection the dialler has already given up on).
"""

import attr

PRIMARY, SECONDARY = "primary", "secondary"


def rank(role, priority, name):
    """A sort key: higher ranks first in the line of succession."""
    return (role == PRIMARY, priority, name)


@attr.s(frozen=True, slots=True)
class Member:
    """A server as its peers see it."""

    name = attr.ib()
    role = attr.ib()
    priority = attr.ib(default=0)

    def rank(self):
        return rank(self.role, self.priority, self.name)

    def outranks(self, other):
        return self.rank() > other.rank()


@attr.s(frozen=True, slots=True)
class Connection:
    """One authenticated connection as one end sees it.

    ``serial`` orders connections to the same peer by when they were made
    (larger: newer); ``handle`` is whatever the caller keeps (a link).
    """

    peer = attr.ib()              # Member: the far end, as it announced itself
    dialled_by_me = attr.ib()
    serial = attr.ib(default=0)
    handle = attr.ib(default=None, eq=False)


@attr.s(frozen=True, slots=True)
class Outcome:
    kept = attr.ib()      # {peer name: Connection}, one per connected peer
    dropped = attr.ib()   # [Connection]: duplicates to close
    higher = attr.ib()    # [Connection] kept whose peer outranks us

    @property
    def leads(self):
        """We serve DHCP: no connected peer outranks us."""
        return not self.higher


def _preferred(me, c):
    """Is ``c`` dialled in the direction both ends keep (the smaller name's)?"""
    return c.dialled_by_me == (me.name < c.peer.name)


def elect(me, connections):
    """The election as ``me`` (a :class:`Member`) sees it over
    ``connections`` (every live, authenticated :class:`Connection`).

    Both ends of a pair reach the same verdict on which of their connections
    survive, because the verdict depends only on the two names, the dial
    direction and the order of connections made in the same direction.
    """
    kept, dropped = {}, []
    for c in connections:
        other = kept.get(c.peer.name)
        if other is None:
            kept[c.peer.name] = c
            continue
        if (_preferred(me, c), c.serial) > (_preferred(me, other), other.serial):
            kept[c.peer.name], c = c, other
        dropped.append(c)
    higher = [c for c in kept.values() if c.peer.outranks(me)]
    return Outcome(kept, dropped, higher)
