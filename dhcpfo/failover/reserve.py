"""Secondaries' reserves (docs/failover.md rule 1): which free addresses the
primary hands to each connected secondary, and which it takes back.

Pure planning: :func:`plan` reads the lease table and an
:class:`~dhcpfo.failover.seam.IPoolView` and returns the records to
replicate; the coordinator sends them.
"""

from zope.interface import implementer

from dhcpfo.addr import int_from_str, ip_str
from dhcpfo.failover.seam import IPoolView
from dhcpfo.leases.lease import ACTIVE as BOUND, BACKUP, DECLINED, RELEASED, Lease


@implementer(IPoolView)
class ServerPools:
    """The one place failover reads the DHCP server's pools and offers."""

    def __init__(self, server):
        self._server = server

    def ranges(self):
        return [r for subnet in self._server.subnets for r in subnet.ranges
                if not r.static]

    def offered(self, ip):
        return self._server.offered(ip)

    def offers_between(self, start, end):
        return self._server.offers_between(start, end)


def held_by_range(table, ranges, restricted, mclt, now):
    """Per range index: ``(taken, owned)`` — the addresses that are not free
    (ints) and each secondary's reserve.  One pass over the leases, not over
    the (possibly huge) ranges."""
    result = {r.index: (set(), {}) for r in ranges}
    for lease in table:
        ip = int_from_str(lease.ip)
        for rng in ranges:
            if rng.start <= ip <= rng.end:
                break
        else:
            continue
        taken, owned = result[rng.index]
        state = lease.state
        if state == BACKUP:
            owned.setdefault(lease.owner, []).append(ip)
            taken.add(ip)
        elif state == BOUND or state == DECLINED or (
                restricted and lease.expiry + mclt > now):
            taken.add(ip)
    return result


def plan(table, pools, secondaries, *, share, me, restricted, mclt, now, version):
    """``(give, take)``: BACKUP records that top each secondary's reserve up to
    ``share`` of its range's free addresses, and RELEASED records (owned by
    ``me``) for half of each reserve when the primary's free pool is empty.
    ``version()`` stamps each record."""
    give, take = [], []
    ranges = pools.ranges()
    held = held_by_range(table, ranges, restricted, mclt, now)
    for rng in ranges:
        taken, reserves = held[rng.index]
        owned = {name: reserves.get(name, []) for name in secondaries}
        free_count = rng.size - len(taken) - pools.offers_between(rng.start, rng.end)
        total = free_count + sum(len(v) for v in owned.values())
        target = int(share * total / len(secondaries))
        need = sum(max(target - len(v), 0) for v in owned.values())
        free = []
        ip = rng.end
        while len(free) < need and ip >= rng.start:  # from the top down
            if ip not in taken and not pools.offered(ip):
                free.append(ip)
            ip -= 1
        for name in secondaries:
            mine = owned[name]
            while len(mine) < target and free:
                ip = free.pop(0)
                give.append(Lease(ip_str(ip), b"", b"", "", BACKUP, now, now,
                                  name, version()))
                mine.append(ip)
            if free_count <= 0 and len(mine) > 1:
                for ip in mine[:len(mine) // 2]:
                    take.append(Lease(ip_str(ip), b"", b"", "", RELEASED, now, now,
                                      me, version()))
    return give, take
