"""The public interfaces of dhcpfo; third parties implement these."""

from zope.interface import Attribute, Interface


class ILeaseStore(Interface):
    """Durable storage of :class:`dhcpfo.leases.lease.Lease` records.

    The server keeps every lease in memory; a store only has to persist them
    and give them back at start-up.  All methods are called from the reactor
    thread; an implementation may do its I/O on a thread of its own.
    """

    durable = Attribute("True if leases survive a restart of the process.")

    def open():
        """Open the store; a Deferred firing with every stored lease."""

    def write(leases):
        """Persist a sequence of leases (newer replaces older for one ip).

        Returns a Deferred that fires with None only once every lease in it is
        durable (fsynced or acknowledged by the backend), or fails if any
        could not be written.  Writes issued while another is in flight are
        batched (group commit); Deferreds fire in the order the writes were
        issued.
        """

    def close():
        """Finish pending writes and release resources; a Deferred."""


class ILeaseStoreFactory(Interface):
    """A store plugin, found by twisted.plugin in :mod:`dhcpfo.plugins`."""

    prefix = Attribute("The name before ':' in --lease-store, e.g. 'sqlite'.")
    description = Attribute("One line for --lease-store help.")
    parameters = Attribute("Mapping of parameter name to its help text.")

    def makeStore(reactor, **parameters):
        """Return an :class:`ILeaseStore` built from the given parameters."""


class IAllocationPolicy(Interface):
    """What the DHCP engine asks before it answers or hands out an address.

    This is the one seam between DHCP and failover (as Kea's HA hook is
    between its engine and its partner): the engine only reads and calls a
    policy; it never learns why.  :class:`dhcpfo.dhcp.policy.Standalone` is
    the policy of a server alone; :class:`dhcpfo.failover.policy.FailoverPolicy`
    is failover's, kept current by the coordinator.  The design rules named
    here are those of docs/failover.md.
    """

    name = Attribute("The server name written as owner into every lease granted.")
    serving = Attribute("True while this server answers DHCP at all (rule 5).")

    def may_allocate_free():
        """May a free address that has no lease record be allocated (rule 1)?"""

    def may_allocate_reserve(owner):
        """May a free address reserved for server ``owner`` be allocated?"""

    def may_reuse(lease, now):
        """May the address of ``lease`` (expired or released, another
        client's) go to a new client at ``now`` (rules 1 and 2)?"""

    def cap_expiry(ip, expiry, now):
        """The expiry actually granted for address ``ip`` (dotted string)
        when ``expiry`` was asked at ``now``: capped by MCLT beyond what the
        peers acknowledged (rule 2)."""
