"""Failover's answers to the DHCP engine (docs/failover.md rules 1 and 3,
and the election).

The coordinator is the only writer (:meth:`FailoverPolicy.update`,
:meth:`FailoverPolicy.acknowledged`); the DHCP engine only reads it through
:class:`dhcpfo.interfaces.IAllocationPolicy`.
"""

from zope.interface import implementer

from dhcpfo.interfaces import IAllocationPolicy
from dhcpfo.leases.lease import ACTIVE


@implementer(IAllocationPolicy)
class FailoverPolicy:
    """Starts passive and restricted: nothing is served until the role
    machine says so, and nothing beyond MCLT until peers acknowledge."""

    def __init__(self, name, mclt, primary):
        self.name = name
        self.mclt = mclt
        self.serving = False
        self.primary = primary      # free addresses nobody reserved are ours
        self.restricted = True      # a peer we know of is not synced
        self.adopted = frozenset()  # partner-down peers whose reserves are ours
        self.peers = None           # configured peers (None: any owner is one)
        self._acked = {}            # ip str -> expiry every known peer acked

    # -- written by the coordinator ------------------------------------------

    def update(self, serving, primary, restricted, adopted):
        self.serving = serving
        self.primary = primary
        self.restricted = restricted
        self.adopted = frozenset(adopted)

    def acknowledged(self, ip, expiry):
        """Every peer we know of holds ``expiry`` for ``ip`` durably."""
        self._acked[ip] = expiry

    def acked_expiry(self, ip):
        return self._acked.get(ip)

    # -- read by the DHCP engine ---------------------------------------------

    def may_allocate_free(self):
        return self.primary

    def may_allocate_reserve(self, owner):
        if owner == self.name or owner in self.adopted:
            return True
        # A reserve under a name that is no configured peer (a stranger, who
        # can never connect) is the primary's free pool.
        return (self.primary and self.peers is not None
                and owner not in self.peers)

    def may_reuse(self, lease, now):
        if not self.primary:
            return False
        # Restricted, a peer may have extended an ACTIVE lease unseen: it is
        # safe only once its expiry plus MCLT has passed (rule 3).
        return not (self.restricted and lease.state == ACTIVE
                    and now < lease.expiry + self.mclt)

    def cap_expiry(self, ip, expiry, now):
        if not self.restricted:
            return expiry
        acked = self._acked.get(ip, now)
        ceiling = (acked if acked > now else now) + self.mclt
        return expiry if expiry <= ceiling else ceiling
