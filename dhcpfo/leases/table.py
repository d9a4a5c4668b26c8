"""The in-memory lease database: what the server decides from, by address and by client."""

from dhcpfo.leases.lease import BACKUP, DECLINED


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
