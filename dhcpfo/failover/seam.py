"""The seam between the failover wire protocol and the failover logic.

:class:`dhcpfo.failover.peer.PeerProtocol` decodes and validates what a
peer sends and calls an :class:`IPeerHost` (the coordinator); the coordinator
talks back to each connection only through :class:`ILink`.  Neither reads
the other's attributes, so the wire format and the rules can change apart.

The coordinator itself sees the DHCP server through :class:`IPoolView` (for
reserve rebalancing) and writes only the allocation policy
(:class:`dhcpfo.interfaces.IAllocationPolicy`).
"""

from zope.interface import Attribute, Interface


class ILink(Interface):
    """One authenticated, Hello-done connection to a peer."""

    name = Attribute("The peer's proven name.")
    role = Attribute("The peer's role: 'primary' or 'secondary'.")
    priority = Attribute("The peer's priority, as it last announced it.")
    peer_state = Attribute("The peer's failover state, as it last announced it.")
    dialled_by_me = Attribute("True if this end dialled the connection.")
    serial = Attribute("Larger for a connection made later.")

    def sendLeases(leases):
        """Replicate ``leases``; a Deferred that fires once the peer stored
        them durably (fails if the link is lost first)."""

    def pending():
        """How many leases are queued or in flight (replication lag)."""

    def announce(state, priority):
        """Tell the peer our state or priority changed."""

    def drop(why):
        """Close this connection (a duplicate, or a silent peer)."""


class IPeerHost(Interface):
    """What a peer connection needs from this server's failover logic."""

    settings = Attribute("Our FailoverSettings (name, role, priority, "
                         "heartbeat, dead_after, pool_lines).")
    pool_digest = Attribute("Digest of our pool configuration (Hello).")
    clock = Attribute("An IReactorTime.")
    state = Attribute("Our failover state, e.g. 'passive'.")

    def stamp():
        """A new hybrid-logical-clock value to send."""

    def observe(stamp, peer=None):
        """A clock value from ``peer`` arrived: keep ours ahead of it, unless
        it is further ahead of our clock than the HLC's bound (refused,
        counted, logged at most once per peer per interval)."""

    def snapshot():
        """The leases to send in a database exchange."""

    def check(lease, now):
        """Raise ``commands.InvalidLease`` unless a peer's record may enter
        our database."""

    def rejected(peer, why):
        """A record from ``peer`` failed :meth:`check` and was skipped."""

    def linkUp(link):
        """Hello is done on ``link``; False means it is a duplicate and the
        caller must close it."""

    def linkSynced(link):
        """Both databases crossed ``link``."""

    def linkDown(link, why):
        """``link`` is gone (only links that were up are reported)."""

    def peerChanged(link):
        """The peer on ``link`` announced a new state or priority."""

    def heard(name):
        """Something arrived from peer ``name``."""

    def silence(name):
        """Seconds since we last heard from peer ``name``."""

    def received(leases, link):
        """Validated records from a peer: a Deferred that fires once they are
        merged and durable (then the protocol acknowledges them)."""


class IPoolView(Interface):
    """The DHCP server's address pools, as reserve rebalancing needs them."""

    def ranges():
        """The dynamic ranges: objects with ``start``, ``end`` (ints),
        ``size`` and ``index``."""

    def offered(ip):
        """Is ``ip`` (int) held by an outstanding offer?"""

    def offers_between(start, end):
        """How many outstanding offers lie in ``start..end`` (ints)."""
