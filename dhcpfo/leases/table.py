"""The in-memory lease database: what the server decides from, by address and by client."""

import attr

from dhcpfo.leases.lease import BACKUP, DECLINED, RELEASED


class LeaseTable:
    """Every lease this server knows, newest record per address.

    Observers (``listeners``) see each record as it is put; DNS and failover
    replication hang off this.
    """

    def __init__(self):
        self.by_ip = {}
        self._by_client = {}
        self.listeners = []

    def __len__(self):
        return len(self.by_ip)

    def __iter__(self):
        return iter(self.by_ip.values())

    def load(self, leases):
        for lease in sorted(leases, key=lambda l: l.version):
            self.put(lease)

    def get(self, ip):
        return self.by_ip.get(ip)

    def for_client(self, key):
        return self._by_client.get(key)

    def put(self, lease):
        old = self.by_ip.get(lease.ip)
        if old is not None:
            old_key = old.key
            if self._by_client.get(old_key) is old:
                del self._by_client[old_key]
        self.by_ip[lease.ip] = lease
        if lease.state != DECLINED and lease.state != BACKUP:
            self._by_client[lease.key] = lease
        for listener in self.listeners:
            listener(lease, old)

    def revert(self, lease, previous):
        """Undo :meth:`put` of ``lease`` (never made durable): ``previous``
        (or nothing) holds its address again.  A record put since is left
        alone.  Listeners see ``previous``, or, when there was none, a
        RELEASED copy of ``lease`` that ends where it started (a notice
        only, not kept).  Returns whether anything changed."""
        if self.by_ip.get(lease.ip) is not lease:
            return False
        if previous is not None:
            self.put(previous)
            return True
        del self.by_ip[lease.ip]
        if self._by_client.get(lease.key) is lease:
            del self._by_client[lease.key]
        gone = attr.evolve(lease, state=RELEASED, expiry=lease.start)
        for listener in self.listeners:
            listener(gone, lease)
        return True
