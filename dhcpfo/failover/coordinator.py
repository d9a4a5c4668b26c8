"""The failover logic of one server, free of sockets: who serves, what is safe.

Links (authenticated peer connections, :mod:`dhcpfo.failover.peer`) report
to the coordinator; it drives the role machine and sets the DHCP server's
policy:

- ``serving``: only the ``active`` server answers DHCP (design rule 5);
- ``restricted``: some peer we know of is unreachable, so the server only
  allocates addresses it owns and caps lease times at the peers'
  acknowledged expiry + MCLT (rules 1 and 2);
- ``primary``: free addresses nobody reserved belong to the primary; a
  secondary allocates only from its reserve (``backup`` records the primary
  transferred to it by acknowledged replication).

Every lease the server commits is replicated to every connected peer, and the
write is durable only when they all acknowledged (rule 3, see
:class:`ReplicatedStore`).  Records from peers are validated, merged (newest
version wins, rule 4), written to the local store, then acknowledged.
"""

import attr
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from dhcpfo.failover.merge import merge
from dhcpfo.failover.state import ACTIVE, RoleMachine
from dhcpfo.interfaces import ILeaseStore
from dhcpfo.leases.lease import ACTIVE as BOUND, BACKUP, DECLINED, Lease

PRIMARY, SECONDARY = "primary", "secondary"


@attr.s(frozen=True)
class FailoverSettings:
    name = attr.ib()
    role = attr.ib()              # PRIMARY or SECONDARY
    priority = attr.ib(default=0)
    mclt = attr.ib(default=3600.0)
    reserve = attr.ib(default=0.1)     # share of each range's free addresses
    heartbeat = attr.ib(default=1.0)
    dead_after = attr.ib(default=3.0)
    rebalance_every = attr.ib(default=30.0)


def precedence(role, priority, name):
    """Higher sorts first in the line of succession."""
    return (role == PRIMARY, priority, name)


class Coordinator:
    _log = Logger()

    def __init__(self, settings, server, table, store, clock):
        self.settings = settings
        self.server = server
        self.table = table
        self.store = store          # the local, unreplicated store
        self.clock = clock
        self.links = {}             # peer name -> link (hello done)
        self.synced = set()         # names whose exchange is complete
        self.known = set()          # every peer seen since start or in the leases
        self.conflicts = []
        self.last_heard = {}        # name -> seconds
        self.machine = RoleMachine(self._changed)
        self._grace = None
        self._grace_over = False
        self._rebalancer = None
        self._me = precedence(settings.role, settings.priority, settings.name)
        server.mclt = settings.mclt
        server.name = settings.name  # leases and reserves carry the failover name
        self._apply()
        table.listeners.append(self._noticeOwner)

    # -- lifecycle ----------------------------------------------------------

    def start(self):
        for lease in self.table:
            self._noticeOwner(lease, None)
        self.machine.start(why="leases loaded")
        self._apply()
        self._grace = self.clock.callLater(self.settings.dead_after, self._graceOver)

    def stop(self):
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        if self._rebalancer is not None and self._rebalancer.active():
            self._rebalancer.cancel()

    def _graceOver(self):
        self._grace_over = True
        self.evaluate("start-up wait of %.0fs over" % self.settings.dead_after)

    def _noticeOwner(self, lease, old):
        owner = lease.owner
        if owner and owner != self.settings.name and owner not in self.known:
            self.known.add(owner)
            self._apply()

    # -- links ---------------------------------------------------------------

    def higher(self, link):
        return precedence(link.role, link.priority, link.name) > self._me

    def linkUp(self, link):
        self.links[link.name] = link
        self.known.add(link.name)
        self.last_heard[link.name] = self.clock.seconds()
        self._log.info("failover peer {peer} ({role}, priority {priority}) connected",
                       peer=link.name, role=link.role, priority=link.priority)
        self.evaluate("peer %s connected" % link.name)

    def linkSynced(self, link):
        if self.links.get(link.name) is not link:
            return
        self.synced.add(link.name)
        self._log.info("lease databases exchanged with {peer}", peer=link.name)
        self.evaluate("exchange with %s complete" % link.name)
        if self.settings.role == PRIMARY and link.role == SECONDARY:
            self.rebalance()

    def linkDown(self, link, why):
        if self.links.get(link.name) is not link:
            return
        del self.links[link.name]
        self.synced.discard(link.name)
        self._log.warn("failover peer {peer} lost: {why}", peer=link.name, why=why)
        self.evaluate("peer %s lost" % link.name)

    def heard(self, name):
        self.last_heard[name] = self.clock.seconds()

    # -- role ----------------------------------------------------------------

    def evaluate(self, why):
        higher = [l for l in self.links.values() if self.higher(l)]
        if higher:
            if any(l.name in self.synced for l in higher):
                self.machine.leaderSynced(why=why)
            else:
                self.machine.leaderConnected(why=why)
        else:
            pending = [n for n in self.links if n not in self.synced]
            if self._grace_over or (self.links and not pending):
                self.machine.noLeader(why=why)
        self._apply()

    def _changed(self, old, new, why):
        self._log.info("failover state {old} -> {new} ({why})", old=old, new=new,
                       why=why)

    def _apply(self):
        server = self.server
        server.serving = self.machine.state == ACTIVE
        server.primary = self.settings.role == PRIMARY
        server.restricted = bool(self.known - set(self.links))

    @property
    def state(self):
        return self.machine.state

    # -- replication ---------------------------------------------------------

    def replicate(self, leases):
        """A Deferred that fires when every connected peer has them durably."""
        links = list(self.links.values())
        complete = not (self.known - set(self.links))
        if not links:
            return defer.succeed(complete)
        d = defer.gatherResults([l.sendLeases(leases) for l in links],
                                consumeErrors=True)
        return d.addCallback(lambda _: complete)

    def received(self, leases, link):
        """Records from a peer: merge, make durable, then the caller acks."""
        now = self.clock.seconds()
        for lease in leases:
            self.server.hlc.observe(lease.version)
        accepted, conflicts = merge(self.table, leases, now)
        for conflict in conflicts:
            self.conflicts.append(conflict)
            self._log.warn(
                "binding conflict on {ip}: kept {winner} (from {wowner}), dropped "
                "{loser} (from {lowner}); the latter is NAKed at its next renewal",
                ip=conflict.ip, winner=conflict.winner.hwaddr.hex(":"),
                wowner=conflict.winner.owner, loser=conflict.loser.hwaddr.hex(":"),
                lowner=conflict.loser.owner)
        acked = self.server.acked_expiry
        for lease in leases:
            current = self.table.get(lease.ip)
            if current is not None:
                acked[lease.ip] = current.expiry
        if not accepted:
            return defer.succeed(None)
        return self.store.write(accepted)

    # -- reserves (primary) --------------------------------------------------

    def rebalance(self):
        """Give each connected secondary its reserve of free addresses."""
        if self._rebalancer is not None and self._rebalancer.active():
            self._rebalancer.cancel()
        self._rebalancer = self.clock.callLater(self.settings.rebalance_every,
                                                self.rebalance)
        secondaries = sorted(name for name, l in self.links.items()
                             if l.role == SECONDARY and name in self.synced)
        if not secondaries or self.settings.reserve <= 0:
            return defer.succeed(None)
        now = self.clock.seconds()
        version = self.server.hlc.now
        transfers = []
        for subnet in self.server.subnets:
            for rng in subnet.ranges:
                if rng.static:
                    continue
                transfers.extend(self._topUp(rng, secondaries, now, version))
        if not transfers:
            return defer.succeed(None)
        for lease in transfers:
            self.table.put(lease)
        self._log.info("reserved {count} free addresses for {peers}",
                       count=len(transfers), peers=", ".join(secondaries))
        store = ReplicatedStore(self.store, self)
        return store.write(transfers).addErrback(
            lambda f: self._log.warn("reserve transfer not acknowledged: {why}",
                                     why=f.getErrorMessage()))

    def _topUp(self, rng, secondaries, now, version):
        from dhcpfo.dhcp.pool import ip_str
        owned = {name: 0 for name in secondaries}
        free = []
        by_ip = self.table.by_ip
        for ip in range(rng.end, rng.start - 1, -1):
            lease = by_ip.get(ip_str(ip))
            if lease is None or lease.state not in (BOUND, DECLINED, BACKUP):
                if lease is None or lease.expiry + self.settings.mclt <= now or \
                        not self.server.restricted:
                    free.append(ip)
            elif lease.state == BACKUP and lease.owner in owned:
                owned[lease.owner] += 1
        target = int(self.settings.reserve * (len(free) + sum(owned.values()))
                     / len(secondaries))
        transfers = []
        for name in secondaries:
            while owned[name] < target and free:
                ip = free.pop(0)
                if self.server.offered(ip):
                    continue
                transfers.append(Lease(ip_str(ip), b"", b"", "", BACKUP, now, now,
                                       name, version()))
                owned[name] += 1
        return transfers

    # -- visibility ----------------------------------------------------------

    def status(self):
        now = self.clock.seconds()
        peers = []
        for name in sorted(self.known | set(self.links)):
            link = self.links.get(name)
            heard = self.last_heard.get(name)
            peers.append({
                "name": name,
                "connected": link is not None,
                "synced": name in self.synced,
                "role": link.role if link else None,
                "state": link.peer_state if link else None,
                "last_heard_ago": round(now - heard, 3) if heard else None,
                "replication_lag": link.pending() if link else None,
            })
        return {"role": self.settings.role, "state": self.state,
                "serving_dhcp": self.server.serving,
                "restricted": self.server.restricted, "peers": peers,
                "conflicts": [c.as_json() for c in self.conflicts[-100:]],
                "conflict_count": len(self.conflicts)}


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
        d = defer.gatherResults([self._store.write(leases),
                                 self._coordinator.replicate(leases)],
                                consumeErrors=True)
        d.addCallback(self._acknowledged, leases)
        return d

    def _acknowledged(self, results, leases):
        if results[1]:  # every peer we know of has them
            acked = self._coordinator.server.acked_expiry
            for lease in leases:
                acked[lease.ip] = lease.expiry
        return None
