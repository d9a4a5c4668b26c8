"""The allocation policy of a server with no failover peers: everything is ours."""

from zope.interface import implementer

from dhcpfo.interfaces import IAllocationPolicy


@implementer(IAllocationPolicy)
class Standalone:
    """Alone, a server answers always, owns every free address (also reserves
    a failover peer once held: there are no peers to honour them) and grants
    lease times as configured."""

    serving = True

    def __init__(self, name):
        self.name = name

    def may_allocate_free(self):
        return True

    def may_allocate_reserve(self, owner):
        return True

    def may_reuse(self, lease, now):
        return True

    def cap_expiry(self, ip, expiry, now):
        return expiry
