"""A volatile lease store: leases live only as long as the process."""

from twisted.internet.defer import succeed
from zope.interface import implementer

from dhcpfo.interfaces import ILeaseStore


@implementer(ILeaseStore)
class MemoryLeaseStore:
    """Leases live only in this process: for labs and tests."""

    durable = False

    def __init__(self):
        self.leases = {}

    def open(self):
        return succeed(list(self.leases.values()))

    def write(self, leases):
        for lease in leases:
            self.leases[lease.ip] = lease
        return succeed(None)

    def close(self):
        return succeed(None)
