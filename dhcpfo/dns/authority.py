"""The zone of DHCP clients' names: leases, static records, and wire-ready answers.

:class:`LeaseAuthority` is a twisted.names resolver (``_lookup``) for the
names we own: ``--domain`` and the reverse zones of our networks, plus the
configured names that lie outside them.  It is fed by the lease table's
listeners and by the lease clock (a name goes away when its lease expires),
and it keeps :attr:`LeaseAuthority.fast` (the table of a
:class:`dhcpfo.dns.wire.FastTable`): for each question it can answer without
thinking, the response bytes, which the protocols send after patching in
the query's id.

Unlike twisted.names' ``FileAuthority`` it answers NXDOMAIN and NODATA with
the zone's SOA in the authority section and the AA bit set.
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.names import common, dns, error

from dhcpfo.dns import names
from dhcpfo.dns.deadlines import Deadlines
from dhcpfo.dns.names import networks_of  # noqa: F401 (dns.service imports it here)
from dhcpfo.ratelog import RateLog
from dhcpfo.dns.wire import FastTable
# NameNotFound and Refused are imported from here by dhcpfo.dns.server.
from dhcpfo.dns.zone import (DENY_NAMES, Answer, NameNotFound, Refused,  # noqa: F401
                             b, contest, denied, rrsets, soa, static_tables)
from dhcpfo.leases.lease import ACTIVE

#: The TTL of a lease's records is at most this, and never more than the
#: lease has left.
LEASE_TTL = 60
#: TTL of configured records (unless a --host-record gives one).
STATIC_TTL = 300
#: How long others may cache our "no such name" (SOA TTL and minimum).
NEGATIVE_TTL = 10
#: Deadlines further away than this are never scheduled (infinite leases).
_HORIZON = 10 * 365 * 86400


class LeaseAuthority(common.ResolverBase):
    """Authoritative data for our zones and our configured names.

    :param clock: an ``IReactorTime`` (lease times are its ``seconds()``).
    :param domain: the ``--domain`` (our form), or ``""``.
    :param networks: ``IPv4Network``s whose reverse zones we own.
    :param static: a :class:`dhcpfo.dns.records.StaticData`.
    :param reserved: ``lease -> bool``: whether the lease's client has a
        reservation for its name (such a lease beats the others for it).
    :param server_name: this server; its first label under ``domain`` is
        the zones' SOA MNAME and NS.
    :param recursion: the RA bit of fast-path answers (we forward).
    :param deny: labels (or ``prefix*``) that no lease publishes.
    :param reserved_names: more names of ours no lease may take (labels
        under ``domain``, or full names), besides this server's own.
    """

    _log = Logger()

    def __init__(self, clock, domain="", networks=(), static=None, reserved=None,
                 server_name="dhcpfo", recursion=False, lease_ttl=LEASE_TTL,
                 negative_ttl=NEGATIVE_TTL, static_ttl=STATIC_TTL, deny=DENY_NAMES,
                 reserved_names=()):
        super().__init__()
        self.clock = clock
        self.domain = domain
        self.lease_ttl = lease_ttl
        self.negative_ttl = negative_ttl
        self.static_ttl = static_ttl
        self.reserved = reserved or (lambda lease: False)
        zones = [domain] if domain else []
        for network in networks:
            for zone in names.reverse_zones(network):
                if zone not in zones:
                    zones.append(zone)
        self.zones = sorted(zones, key=len, reverse=True)
        label = "".join(c if c.isascii() and c.isalnum() or c == "-" else "-"
                        for c in (server_name or "").split(".")[0].lower()).strip("-")
        label = label or "dhcpfo"
        #: the SOA's MNAME and the zones' NS: this server, under our domain
        self._mname = label + "." + domain if domain else label
        self._deny = tuple(p.strip().lower() for p in deny if p.strip())
        self._own = {self._mname}
        for n in reserved_names:
            n = n.strip().rstrip(".").lower()
            self._own.add(n if "." in n or not domain else n + "." + domain)
        self._ratelog = RateLog(clock)
        # name -> {rtype: [(rdata, ttl)]}; [(domain, that or None)]
        self._static, self._rules = static_tables(static, static_ttl)
        self._contenders = {}   # name -> {ip: Lease}
        self._winner = {}       # name -> Lease
        self._losers = {}       # name -> frozenset of ips, for logging once
        self._lease_ptr = {}    # reverse name -> name (for winners' addresses)
        self._exists = {}       # empty non-terminals in our zones -> refcount
        self._wire = FastTable(recursion)
        self.fast = self._wire.fast     # question bytes -> (headers, body)
        self._deadlines = Deadlines(clock, self._deadline, _HORIZON)
        self.stats = {"lease_names": 0, "conflicts": 0, "names_denied": 0}
        for zone in self.zones:
            self._rebuild(zone, 0)
        for name in self._static:
            self._mark(name, 1)
            self._rebuild(name, 0)

    # -- zones and records ---------------------------------------------------

    def zone_of(self, name):
        """The zone of ours that holds ``name``, or None."""
        for zone in self.zones:
            if name == zone or name.endswith("." + zone):
                return zone
        return None

    def owns(self, name):
        """Whether a question for ``name`` is ours to answer (never forwarded)."""
        if self.zone_of(name) is not None or name in self._static:
            return True
        return self._rule(name) is not None

    def _rule(self, name):
        for domain, table in self._rules:
            if name == domain or name.endswith("." + domain):
                return domain, table
        return None

    def _soa(self, zone):
        return soa(zone, self._mname, "hostmaster." + (self.domain or zone),
                   self.negative_ttl)

    def _mark(self, name, delta):
        """Count ``name`` in (or out of) the ancestors that therefore exist."""
        zone = self.zone_of(name)
        if zone is None or name == zone:
            return
        for parent in names.ancestors(name, zone):
            count = self._exists.get(parent, 0) + delta
            if count > 0:
                self._exists[parent] = count
            else:
                self._exists.pop(parent, None)

    def _lease_ttl(self, lease, now):
        return max(0, int(min(self.lease_ttl, lease.expiry - now)))

    def records(self, name, now):
        """``{rtype: [RRHeader]}`` for ``name`` at ``now``, or None if it has none."""
        static = self._static.get(name)
        found = rrsets(name, static) if static else {}
        lease = self._winner.get(name)
        if lease is not None and dns.A not in found:
            ttl = self._lease_ttl(lease, now)
            found[dns.A] = [dns.RRHeader(b(name), dns.A, dns.IN, ttl,
                                         dns.Record_A(lease.ip, ttl), auth=True)]
        target = self._lease_ptr.get(name)
        if target is not None and dns.PTR not in found:
            lease = self._winner[target]
            ttl = self._lease_ttl(lease, now)
            found[dns.PTR] = [dns.RRHeader(b(name), dns.PTR, dns.IN, ttl,
                                           dns.Record_PTR(b(target), ttl),
                                           auth=True)]
        if name in self.zones:
            found[dns.SOA] = [self._soa(name)]
            ns = b(self._mname)
            found[dns.NS] = [dns.RRHeader(b(name), dns.NS, dns.IN, self.static_ttl,
                                          dns.Record_NS(ns, self.static_ttl),
                                          auth=True)]
        return found or None

    def answer(self, name, qtype, qclass=dns.IN, now=None):
        """The :class:`Answer` to a question about ``name`` (our form), or
        None when the name is not ours (forward it)."""
        if now is None:
            now = self.clock.seconds()
        zone = self.zone_of(name)
        found = self.records(name, now)
        rule = None
        if found is None:
            rule = self._rule(name)
            if rule is None and zone is None:
                return None
        if qclass != dns.IN and qclass != dns.ANY:
            return Answer(dns.EREFUSED, [], [], zone)
        if found is None:
            if rule is not None:
                if rule[1] is None:
                    return Answer(dns.ENAME, [], self._negative(zone), zone)
                found = rrsets(name, rule[1])
            elif name in self._exists:
                found = {}
            else:
                return Answer(dns.ENAME, [], self._negative(zone), zone)
        if qtype == dns.ALL_RECORDS:
            answers = [rr for rrset in found.values() for rr in rrset]
        else:
            answers = found.get(qtype, [])
        if answers:
            return Answer(dns.OK, answers, [], zone)
        return Answer(dns.OK, [], self._negative(zone), zone)

    def _negative(self, zone):
        return [self._soa(zone)] if zone is not None else []

    # -- twisted.names IResolver -------------------------------------------

    def query(self, query, timeout=None):
        return defer.maybeDeferred(self._lookup, query.name.name, query.cls,
                                   query.type, timeout)

    def _lookup(self, name, cls, type, timeout):
        if isinstance(name, bytes):
            name = names.from_wire_name(name)
        found = self.answer(name, type, cls)
        if found is None:
            return defer.fail(error.DomainError(name))
        if found.rcode == dns.ENAME:
            return defer.fail(NameNotFound(name, found.authority))
        if found.rcode != dns.OK:
            return defer.fail(Refused(name))
        return defer.succeed((found.answers, found.authority, found.additional))

    # -- leases --------------------------------------------------------------

    def lease_name(self, lease):
        """The name a lease publishes, or None."""
        # one label (a reservation's name may be written with a domain)
        label = lease.hostname.split(".", 1)[0]
        if not label or not names.HOST_LABEL.match(label):
            return None
        return label + "." + self.domain if self.domain else label

    def load(self, leases):
        # the earliest start first: from the records alone, who held a name first
        for lease in sorted(leases, key=lambda l: (l.start, l.version)):
            self.lease_changed(lease, None)

    def lease_changed(self, new, old):
        """A LeaseTable listener: ``new`` replaced ``old`` (same address)."""
        now = self.clock.seconds()
        touched = []
        live = new.state == ACTIVE and new.expiry > now
        name = self.lease_name(new)
        if name is not None and not self._may_publish(name, new, live):
            name = None
        if old is not None:
            was = self.lease_name(old)
            if was is not None and not (was == name and live):
                claims = self._contenders.get(was)
                if claims is not None and old.ip in claims:
                    del claims[old.ip]
                    touched.append(was)
        if name is not None:
            claims = self._contenders.get(name)
            if live:
                # in place when it is there: a renewal keeps its place in line
                self._contenders.setdefault(name, {})[new.ip] = new
                if name not in touched:
                    touched.append(name)
            elif claims is not None and new.ip in claims:
                del claims[new.ip]
                if name not in touched:
                    touched.append(name)
        for name in touched:
            self._settle(name, now)

    def _may_publish(self, name, lease, live):
        """Whether a lease may publish ``name``: not a denied label, not one
        of the server's own names.  A refusal is counted and logged."""
        if not (name in self._own or denied(name.split(".", 1)[0], self._deny)):
            return True
        if live:
            self.stats["names_denied"] += 1
            self._ratelog.warn(self._log, "denied",
                               "name {name} not published for {ip} ({client}): "
                               "it is reserved or denied", name=name, ip=lease.ip,
                               client=lease.key[1:].hex(":"))
        return False

    def _settle(self, name, now):
        """Decide which lease (if any) publishes ``name`` now; update answers."""
        claims = self._contenders.get(name, {})
        for ip in [ip for ip, lease in claims.items() if lease.expiry <= now]:
            del claims[ip]
        if not claims:
            self._contenders.pop(name, None)
        winner = None
        static = self._static.get(name)
        if claims:
            holder = self._winner.get(name)
            winner, losers, reason = contest(claims, static, self.reserved,
                                             holder.ip if holder is not None else None)
            old_losers = self._losers.get(name, frozenset())
            for ip in sorted(losers - old_losers):
                self.stats["conflicts"] += 1
                self._ratelog.warn(self._log, "conflict",
                                   "name {name} not published for {ip} ({client}): "
                                   "{reason}", name=name, ip=ip,
                                   client=claims[ip].key[1:].hex(":"), reason=reason)
            if losers:
                self._losers[name] = losers
            else:
                self._losers.pop(name, None)
        else:
            self._losers.pop(name, None)
        previous = self._winner.get(name)
        if winner is not None:
            self._winner[name] = winner
            if previous is None:
                self._mark(name, 1)
                self.stats["lease_names"] += 1
        elif previous is not None:
            del self._winner[name]
            self._mark(name, -1)
            self.stats["lease_names"] -= 1
        reverse = []
        if previous is not None and (winner is None or previous.ip != winner.ip):
            r = names.reverse_name(previous.ip)
            if self._lease_ptr.get(r) == name:
                del self._lease_ptr[r]
                self._mark(r, -1)
            reverse.append(r)
        if winner is not None:
            r = names.reverse_name(winner.ip)
            current = self._lease_ptr.get(r)
            if current != name:
                if current is not None:
                    # another name held this address; its lease moved on
                    self._mark(r, -1)
                self._lease_ptr[r] = name
                self._mark(r, 1)
            reverse.append(r)
        if not (previous is not None and winner is not None
                and previous.ip == winner.ip and name in self._wire
                and winner.expiry - now > self.lease_ttl):
            # (a renewal changes nothing that is served: skip the work)
            self._rebuild(name, now)
            for r in reverse:
                self._rebuild(r, now)
        if winner is not None:
            left = winner.expiry - now
            when = winner.expiry - self.lease_ttl if left > self.lease_ttl \
                else winner.expiry
            self._deadlines.schedule(name, when, now)
        elif claims:
            self._deadlines.schedule(name, min(l.expiry for l in claims.values()),
                                     now)
        else:
            self._deadlines.cancel(name)

    # -- the fast path's table -----------------------------------------------

    def _rebuild(self, name, now):
        """Recompute the fast-path answers of ``name``: its records, and
        NODATA (shared by every type it lacks) for the common types.

        Names whose lease has ``lease_ttl`` or less left are left to the slow
        path, whose TTLs count down to the expiry.
        """
        found = self.records(name, now)
        if found is None:
            self._wire.drop(name)
            return
        lease = self._winner.get(name)
        if lease is None and name in self._lease_ptr:
            lease = self._winner.get(self._lease_ptr[name])
        if lease is not None and lease.expiry - now <= self.lease_ttl:
            self._wire.drop(name)
            return
        zone = self.zone_of(name)
        self._wire.put(name, found, zone, self._negative(zone))

    @property
    def recursion(self):
        """The RA bit of ready answers."""
        return self._wire.recursion

    def set_recursion(self, available):
        """Set the RA bit of ready answers (whether we forward)."""
        if self._wire.set_recursion(available):
            now = self.clock.seconds()
            for name in self._wire.names():
                self._rebuild(name, now)

    # -- the lease clock -----------------------------------------------------

    def start(self):
        self._deadlines.start()

    def stop(self):
        self._deadlines.stop()

    def _deadline(self, name, now):
        try:
            self._settle(name, now)
        except Exception:
            self._ratelog.failure(self._log, "deadline",
                                  "DNS names of {name} not updated", name=name)

    # -- introspection -------------------------------------------------------

    def published(self):
        """``{name: ip}`` of the lease names published now."""
        return {name: lease.ip for name, lease in self._winner.items()}

