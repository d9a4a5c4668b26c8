"""The failover logic of one server, free of sockets: who serves, what is safe.

"Rule N" below is the numbered list in docs/failover.md ("Why no address is
ever bound to two clients").  Peer connections reach the coordinator only
through :class:`~dhcpfo.failover.seam.IPeerHost`; it drives the role machine
(:mod:`~dhcpfo.failover.election` decides who leads) and is the only writer of
the DHCP server's :class:`~dhcpfo.failover.policy.FailoverPolicy`:

- ``serving``: only the ``active`` server answers DHCP (the election);
- ``restricted``: some peer we know of is not synced, so the server only
  allocates addresses it owns and caps lease times at the peers'
  acknowledged expiry + MCLT (rules 1 and 3);
- ``primary``: free addresses nobody reserved belong to the primary; a
  secondary allocates only from its reserve (``backup`` records the primary
  transferred to it by acknowledged replication, :mod:`~dhcpfo.failover.reserve`).

Every lease the server commits is replicated to every connected peer, and the
write is durable only when they all acknowledged (rule 2,
:class:`~dhcpfo.failover.replicated.ReplicatedStore`).  Records from peers
are validated, merged (newest version wins, "Reconciliation"), written to the
local store, then acknowledged.
"""

import attr
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from dhcpfo.failover import commands, reserve
from dhcpfo.failover.clockguard import ClockGuard
from dhcpfo.failover.election import PRIMARY, SECONDARY, Connection, Member, elect
from dhcpfo.failover.merge import merge
from dhcpfo.failover.partnerdown import PartnerDown
from dhcpfo.failover.replicated import ReplicatedStore
from dhcpfo.failover.seam import IPeerHost
from dhcpfo.failover.state import ACTIVE, RoleMachine

__all__ = ["PRIMARY", "SECONDARY", "FailoverSettings", "Coordinator",
           "ReplicatedStore"]


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
    peers = attr.ib(default=())          # every other server of the group
    partner_down_after = attr.ib(default=None)  # seconds, opt-in
    master = attr.ib(default=None)       # the primary's name, for a secondary
    pool_lines = attr.ib(default=(), converter=tuple)  # must agree between peers


@implementer(IPeerHost)
class Coordinator:
    """``hlc`` is the server's hybrid logical clock, ``policy`` the
    FailoverPolicy the DHCP server reads, ``pools`` an IPoolView (needed by
    a primary, for reserves), ``in_ranges(ip_str)`` says whether a peer's
    record lies in our ranges."""

    _log = Logger()

    def __init__(self, settings, table, store, clock, *, hlc, policy, pools=None,
                 in_ranges=lambda ip: True):
        self.settings = settings
        self.table = table
        self.store = store          # the local, unreplicated store
        self.clock = clock
        self.hlc = hlc
        self.policy = policy        # ours (FailoverPolicy); the server reads it
        self.pools = pools
        self._in_ranges = in_ranges
        self.pool_digest = commands.pool_digest(settings.pool_lines)
        self.me = Member(settings.name, settings.role, settings.priority)
        self.links = {}             # peer name -> link (hello done, kept)
        self.synced = set()         # names whose exchange is complete
        self.known = set(settings.peers)  # configured (or connected) peers
        self.strangers = set()      # lease owners that are neither
        self._down = PartnerDown(clock, settings.mclt, settings.partner_down_after,
                                 connected=lambda name: name in self.links,
                                 changed=self._apply)
        self._roles = {}            # name -> role, as last seen
        if settings.master:
            self._roles[settings.master] = PRIMARY
        self.conflicts = []
        self.invalid_records = 0
        self._clockguard = ClockGuard(hlc, clock)
        self.last_heard = {}        # name -> seconds
        self.machine = RoleMachine(self._changed)
        self._grace = None
        self._grace_over = False
        self._rebalancer = None
        self._apply()
        table.listeners.append(self._noticeOwner)

    # -- lifecycle ----------------------------------------------------------

    def start(self):
        for lease in self.table:
            self._noticeOwner(lease, None)
        self.machine.start(why="leases loaded")
        if self.settings.role == PRIMARY:
            # Nobody outranks the primary, and until it has exchanged
            # databases it is restricted (own addresses, MCLT), so it may
            # serve at once: no gap when it restarts.
            self._grace_over = True
            self.evaluate("the primary serves from the start, restricted until synced")
        self._apply()
        for name in self.known:
            self._down.schedule(name)
        self._grace = self.clock.callLater(self.settings.dead_after, self._graceOver)

    def stop(self):
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        if self._rebalancer is not None and self._rebalancer.active():
            self._rebalancer.cancel()
        self._down.stop()

    def _graceOver(self):
        self._grace_over = True
        self.evaluate("start-up wait of %.0fs over" % self.settings.dead_after)

    def _noticeOwner(self, lease, old):
        """A lease owned by a name that is neither us nor a configured peer
        (e.g. written under this server's old name before failover) makes no
        peer: only configured peers can connect, so such a "peer" would never
        sync and would restrict us for good.  It is a plain binding, and a
        reserve under that name is the primary's free pool (docs/failover.md,
        "Leases owned by an unknown name").  Logged once per name."""
        owner = lease.owner
        if (owner and owner != self.settings.name and owner not in self.known
                and owner not in self.strangers):
            self.strangers.add(owner)
            self._log.warn(
                "leases owned by {owner}, which is not a configured failover peer "
                "(peers: {peers}): kept as plain bindings; its reserved addresses "
                "belong to the primary", owner=owner,
                peers=", ".join(sorted(self.settings.peers)) or "none")

    # -- what a peer connection asks (IPeerHost) ------------------------------

    @property
    def state(self):
        return self.machine.state

    def stamp(self):
        return self.hlc.now()

    def observe(self, stamp, peer=None):
        self._clockguard.observe(stamp, peer)

    @property
    def refused_stamps(self):
        """Peers' clock values past the HLC's bound (:mod:`.clockguard`)."""
        return self._clockguard.refused

    def snapshot(self):
        return list(self.table)

    def check(self, lease, now):
        commands.validate_lease(lease, self._in_ranges, now)

    def rejected(self, peer, why):
        self.invalid_records += 1
        self._log.warn("ignored a record from {peer}: {why}", peer=peer, why=why)

    def silence(self, name):
        return self.clock.seconds() - self.last_heard.get(name, 0)

    def heard(self, name):
        self.last_heard[name] = self.clock.seconds()

    # -- links ---------------------------------------------------------------

    def _connection(self, link):
        return Connection(Member(link.name, link.role, link.priority),
                          link.dialled_by_me, link.serial, link)

    def _election(self, extra=()):
        return elect(self.me, [self._connection(l) for l in self.links.values()]
                     + [self._connection(l) for l in extra])

    def linkUp(self, link):
        """Hello is done on ``link``: keep it (True) unless it duplicates a
        connection the election keeps (False: the caller closes it)."""
        outcome = self._election([link])
        kept = outcome.kept.get(link.name)
        if kept is None or kept.handle is not link:
            return False
        for dup in outcome.dropped:
            # Replaced, not lost: no evaluation in between, so no flap.
            old = dup.handle
            if self.links.get(old.name) is old:
                del self.links[old.name]
                self.synced.discard(old.name)
            old.drop("replaced by a newer connection")
        self.links[link.name] = link
        self._roles[link.name] = link.role
        self.known.add(link.name)
        self._down.back(link.name)
        self.last_heard[link.name] = self.clock.seconds()
        self._log.info("failover peer {peer} ({role}, priority {priority}) connected",
                       peer=link.name, role=link.role, priority=link.priority)
        self.evaluate("peer %s connected" % link.name)
        return True

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
        self._down.schedule(link.name)

    def peerChanged(self, link):
        if self.links.get(link.name) is link:
            self.evaluate("peer %s now %s, priority %d"
                          % (link.name, link.peer_state, link.priority))

    def setPriority(self, priority):
        """Our priority changed: re-elect here and tell every peer."""
        self.settings = attr.evolve(self.settings, priority=priority)
        self.me = Member(self.settings.name, self.settings.role, priority)
        self.evaluate("our priority is now %d" % priority)
        self._announce()

    # -- role ----------------------------------------------------------------

    def evaluate(self, why):
        higher = self._election().higher
        if higher:
            if any(c.peer.name in self.synced for c in higher):
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
        self._announce(new)

    def _announce(self, state=None):
        for link in list(self.links.values()):
            link.announce(state or self.state, self.settings.priority)

    def _apply(self):
        self.policy.peers = frozenset(self.known)
        self.policy.update(
            serving=self.machine.state == ACTIVE,
            primary=self.settings.role == PRIMARY or any(
                self._roles.get(name) == PRIMARY for name in self.taken_over),
            adopted=self.taken_over,
            # Until the databases are exchanged we do not know what a peer
            # did while we could not hear it: connected is not enough.
            restricted=bool(self.known - self.synced))

    # -- replication ---------------------------------------------------------

    def replicate(self, leases):
        """A Deferred that fires when every connected peer has them durably."""
        links = list(self.links.values())
        complete = not (self.known - set(self.links))
        if not links:
            return defer.succeed(complete)
        if len(links) == 1:  # the common pair: no DeferredList per ACK
            d = links[0].sendLeases(leases)
        else:
            d = defer.gatherResults([l.sendLeases(leases) for l in links],
                                    consumeErrors=True)
        return d.addCallback(lambda _: complete)

    def received(self, leases, link):
        """Records from a peer: merge, make durable, then the caller acks."""
        now = self.clock.seconds()
        for lease in leases:
            self.hlc.observe(lease.version)
        accepted, conflicts = merge(self.table, leases, now)
        for conflict in conflicts:
            self.conflicts.append(conflict)
            self._log.warn(
                "binding conflict on {ip}: kept {winner} (from {wowner}), dropped "
                "{loser} (from {lowner}); the latter is NAKed at its next renewal",
                ip=conflict.ip, winner=conflict.winner.hwaddr.hex(":"),
                wowner=conflict.winner.owner, loser=conflict.loser.hwaddr.hex(":"),
                lowner=conflict.loser.owner)
        for lease in leases:
            current = self.table.get(lease.ip)
            if current is not None:
                self.policy.acknowledged(lease.ip, current.expiry)
        if not accepted:
            return defer.succeed(None)
        return self.store.write(accepted)

    # -- reserves (primary) --------------------------------------------------

    def rebalance(self):
        """Keep each connected secondary's reserve at its share of the free
        addresses (:mod:`dhcpfo.failover.reserve`).  Runs after each
        exchange and periodically."""
        if self._rebalancer is not None and self._rebalancer.active():
            self._rebalancer.cancel()
        self._rebalancer = self.clock.callLater(self.settings.rebalance_every,
                                                self.rebalance)
        secondaries = sorted(name for name, l in self.links.items()
                             if l.role == SECONDARY and name in self.synced)
        if not secondaries or self.settings.reserve <= 0 or self.pools is None:
            return defer.succeed(None)
        give, take = reserve.plan(
            self.table, self.pools, secondaries, share=self.settings.reserve,
            me=self.settings.name, restricted=self.policy.restricted,
            mclt=self.settings.mclt, now=self.clock.seconds(),
            version=self.hlc.now)
        ds = []
        if give:
            # Ours first (we stop allocating them), then theirs: if the
            # transfer is not acknowledged, nobody allocates them until the
            # next exchange settles whose they are.
            for lease in give:
                self.table.put(lease)
            self._log.info("reserved {count} free addresses for {peers}",
                           count=len(give), peers=", ".join(secondaries))
            ds.append(ReplicatedStore(self.store, self).write(give))
        if take:
            # Theirs first: only once every secondary has acknowledged that
            # they are ours again do we allocate them.
            d = self.replicate(take)
            d.addCallback(lambda _: [self.table.put(l) for l in take])
            d.addCallback(lambda _: self.store.write(take))
            d.addCallback(lambda _: self._log.info(
                "took back {count} reserved addresses: our free pool ran dry",
                count=len(take)))
            ds.append(d)
        d = defer.gatherResults(ds, consumeErrors=True)
        return d.addErrback(lambda f: self._log.warn(
            "reserve rebalancing not acknowledged: {why}", why=f.getErrorMessage()))

    # -- partner-down ----------------------------------------------------------

    def declarePartnerDown(self, name, why):
        """``name`` is gone for good: once MCLT has passed, its reserve and
        (if it was the primary) the free pool become ours (rule 4).  Refused
        while it is connected."""
        if name in self.links:
            raise ValueError("%s is connected; it is not down" % name)
        if name not in self.known:
            raise ValueError("%s is not a peer of this server (peers: %s)"
                             % (name, ", ".join(sorted(self.known)) or "none"))
        return self._down.declare(name, why)

    @property
    def partner_down(self):
        """Declared peers -> when their addresses become ours."""
        return self._down.pending

    @property
    def taken_over(self):
        return self._down.taken_over

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
                "priority": link.priority if link else None,
                "state": link.peer_state if link else None,
                "last_heard_ago": round(now - heard, 3) if heard else None,
                "replication_lag": link.pending() if link else None,
            })
        return {"role": self.settings.role, "priority": self.settings.priority,
                "state": self.state,
                "partner_down": self._down.status(),
                "serving_dhcp": self.policy.serving,
                "restricted": self.policy.restricted, "peers": peers,
                "conflicts": [c.as_json() for c in self.conflicts[-100:]],
                "conflict_count": len(self.conflicts),
                "refused_clock_values": self.refused_stamps}
