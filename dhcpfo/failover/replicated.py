"""Durable means acknowledged (docs/failover.md rule 2): the store the DHCP
server writes through when failover is on."""

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from dhcpfo.interfaces import ILeaseStore


@implementer(ILeaseStore)
class ReplicatedStore:
    """A store whose writes are durable locally *and* acknowledged by every
    connected peer; only then does the DHCP protocol send its ACK."""

    def __init__(self, store, coordinator):
        self._store = store
        self._coordinator = coordinator
        self.durable = store.durable

    def open(self):
        return self._store.open()

    def close(self):
        return self._store.close()

    def write(self, leases):
        done = defer.Deferred()
        pending = [2, None]  # outstanding, first failure

        def settle(result, peers):
            if isinstance(result, Failure):
                if pending[1] is None:
                    pending[1] = result
                result = None
            elif peers and result:  # every peer we know of has them
                policy = self._coordinator.policy
                for lease in leases:
                    policy.acknowledged(lease.ip, lease.expiry)
            pending[0] -= 1
            if pending[0] == 0:
                if pending[1] is None:
                    done.callback(None)
                else:
                    done.errback(pending[1])
        self._store.write(leases).addBoth(settle, False)
        self._coordinator.replicate(leases).addBoth(settle, True)
        return done
