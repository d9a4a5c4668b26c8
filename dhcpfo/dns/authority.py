"""The zone of DHCP clients' names: leases, static records, and wire-ready answers.

:class:`LeaseAuthority` is a twisted.names resolver (``_lookup``) for the
names we own: ``--domain`` and the reverse zones of our networks, plus the
configured names that lie outside them.  It is fed by the lease table's
listeners and by the lease clock (a name goes away when its lease expires),
and it keeps :attr:`LeaseAuthority.fast`: for each question it can answer
without thinking (lower-case wire name + type + class), the response
header variants and answer bytes, which the protocols send after patching
in the query's id and echoing its question.

Unlike twisted.names' ``FileAuthority`` it answers NXDOMAIN and NODATA with
the zone's SOA in the authority section and the AA bit set.
"""

import heapq
import io
import ipaddress
import struct

from twisted.internet import defer
from twisted.logger import Logger
from twisted.names import common, dns, error

from dhcpfo.dns import names
from dhcpfo.leases.lease import ACTIVE

#: The TTL of a lease's records is at most this, and never more than the
#: lease has left.
LEASE_TTL = 60
#: TTL of configured records (unless a --host-record gives one).
STATIC_TTL = 300
#: How long others may cache our "no such name" (SOA TTL and minimum).
NEGATIVE_TTL = 10
#: Our EDNS UDP payload size (the 2020 DNS flag day's figure).
EDNS_SIZE = 1232
#: Types answered from the fast path for every name that exists.
FAST_TYPES = (dns.A, dns.AAAA, dns.PTR, dns.MX, dns.TXT, 64, 65)
#: Deadlines further away than this are never scheduled (infinite leases).
_HORIZON = 10 * 365 * 86400

_RTYPE = {"A": dns.A, "AAAA": dns.AAAA, "PTR": dns.PTR}
_QKEY = struct.Struct("!HH")
_RR = struct.Struct("!HHIH")
_COUNTS = struct.Struct("!BBHHHH")


class NameNotFound(error.AuthoritativeDomainError):
    """NXDOMAIN from our own data; ``authority`` holds the SOA, if any."""

    def __init__(self, name, authority):
        super().__init__(name)
        self.authority = authority


class Refused(error.AuthoritativeDomainError):
    """A question about our names that we will not answer (another class)."""


class Answer:
    """One question's answer from local data."""

    __slots__ = ("rcode", "answers", "authority", "additional", "zone")

    def __init__(self, rcode, answers, authority, zone):
        self.rcode = rcode
        self.answers = answers
        self.authority = authority
        self.additional = []
        self.zone = zone


def _b(name):
    return name.encode("latin-1")


def _payload(rtype, rdata, ttl):
    if rtype == dns.A:
        return dns.Record_A(rdata, ttl)
    if rtype == dns.AAAA:
        return dns.Record_AAAA(rdata, ttl)
    if rtype == dns.PTR:
        return dns.Record_PTR(_b(rdata), ttl)
    raise ValueError(rtype)


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
    """

    _log = Logger()

    def __init__(self, clock, domain="", networks=(), static=None, reserved=None,
                 server_name="dhcpfo", recursion=False, lease_ttl=LEASE_TTL,
                 negative_ttl=NEGATIVE_TTL, static_ttl=STATIC_TTL):
        super().__init__()
        self.clock = clock
        self.domain = domain
        self.recursion = bool(recursion)
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
        self._static = {}       # name -> {rtype: [(rdata, ttl)]}
        self._rules = []        # [(domain, {rtype: [(rdata, ttl)]} or None)]
        if static is not None:
            for name, rrsets in static.records.items():
                self._static[name] = {_RTYPE[t]: list(v) for t, v in rrsets.items()}
            for domain_, addresses in static.rules:
                if addresses:
                    rrsets = {}
                    for a in addresses:
                        t = dns.AAAA if ":" in a else dns.A
                        rrsets.setdefault(t, []).append((a, static_ttl))
                    self._rules.append((domain_, rrsets))
                else:
                    self._rules.append((domain_, None))
        self._contenders = {}   # name -> {ip: Lease}
        self._winner = {}       # name -> Lease
        self._losers = {}       # name -> frozenset of ips, for logging once
        self._lease_ptr = {}    # reverse name -> name (for winners' addresses)
        self._exists = {}       # empty non-terminals in our zones -> refcount
        self.fast = {}          # question bytes -> (headers, answer bytes)
        self._fast_keys = {}    # name -> [question bytes]
        self._headers = {}
        self._nodata_entries = {}
        self._heap = []
        self._due = {}          # name -> deadline (the valid heap entry)
        self._call = None
        self._running = False
        self.stats = {"lease_names": 0, "conflicts": 0}
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
        for domain, rrsets in self._rules:
            if name == domain or name.endswith("." + domain):
                return domain, rrsets
        return None

    def _soa(self, zone):
        payload = dns.Record_SOA(
            mname=_b(self._mname), rname=_b("hostmaster." + (self.domain or zone)),
            serial=1, refresh=3600, retry=600, expire=86400,
            minimum=self.negative_ttl, ttl=self.negative_ttl)
        return dns.RRHeader(_b(zone), dns.SOA, dns.IN, self.negative_ttl, payload,
                            auth=True)

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
        found = {}
        static = self._static.get(name)
        if static:
            for rtype, rrset in static.items():
                found[rtype] = [dns.RRHeader(_b(name), rtype, dns.IN, ttl,
                                             _payload(rtype, rdata, ttl), auth=True)
                                for rdata, ttl in rrset]
        lease = self._winner.get(name)
        if lease is not None and dns.A not in found:
            ttl = self._lease_ttl(lease, now)
            found[dns.A] = [dns.RRHeader(_b(name), dns.A, dns.IN, ttl,
                                         dns.Record_A(lease.ip, ttl), auth=True)]
        target = self._lease_ptr.get(name)
        if target is not None and dns.PTR not in found:
            lease = self._winner[target]
            ttl = self._lease_ttl(lease, now)
            found[dns.PTR] = [dns.RRHeader(_b(name), dns.PTR, dns.IN, ttl,
                                           dns.Record_PTR(_b(target), ttl),
                                           auth=True)]
        if name in self.zones:
            found[dns.SOA] = [self._soa(name)]
            ns = _b(self._mname)
            found[dns.NS] = [dns.RRHeader(_b(name), dns.NS, dns.IN, self.static_ttl,
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
                rrsets = rule[1]
                if rrsets is None:
                    return Answer(dns.ENAME, [], self._negative(zone), zone)
                found = {t: [dns.RRHeader(_b(name), t, dns.IN, ttl,
                                          _payload(t, r, ttl), auth=True)
                             for r, ttl in rrset]
                         for t, rrset in rrsets.items()}
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
        for lease in leases:
            self.lease_changed(lease, None)

    def lease_changed(self, new, old):
        """A LeaseTable listener: ``new`` replaced ``old`` (same address)."""
        now = self.clock.seconds()
        touched = []
        if old is not None:
            name = self.lease_name(old)
            if name is not None:
                claims = self._contenders.get(name)
                if claims is not None and old.ip in claims:
                    del claims[old.ip]
                    touched.append(name)
        name = self.lease_name(new)
        if name is not None:
            claims = self._contenders.get(name)
            if claims is not None and new.ip in claims:
                del claims[new.ip]
                if name not in touched:
                    touched.append(name)
            if new.state == ACTIVE and new.expiry > now:
                self._contenders.setdefault(name, {})[new.ip] = new
                if name not in touched:
                    touched.append(name)
        for name in touched:
            self._settle(name, now)

    def _priority(self, lease):
        return (bool(self.reserved(lease)), lease.start, lease.version)

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
            if static is not None:
                fixed = {ip for ip, _ in static.get(dns.A, [])}
                losers = frozenset(ip for ip in claims if ip not in fixed)
                reason = "it is a configured name"
            else:
                winner = max(claims.values(), key=self._priority)
                losers = frozenset(ip for ip in claims if ip != winner.ip)
                reason = ("%s has the reservation for it"
                          if self._priority(winner)[0]
                          else "%s has the newer lease") % winner.ip
            old_losers = self._losers.get(name, frozenset())
            for ip in sorted(losers - old_losers):
                self.stats["conflicts"] += 1
                self._log.warn("name {name} not published for {ip} ({client}): "
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
                and previous.ip == winner.ip and name in self._fast_keys
                and winner.expiry - now > self.lease_ttl):
            # (a renewal changes nothing that is served: skip the work)
            self._rebuild(name, now)
            for r in reverse:
                self._rebuild(r, now)
        if winner is not None:
            left = winner.expiry - now
            when = winner.expiry - self.lease_ttl if left > self.lease_ttl \
                else winner.expiry
            self._schedule(name, when, now)
        elif claims:
            self._schedule(name, min(l.expiry for l in claims.values()), now)
        else:
            self._due.pop(name, None)

    # -- the fast path's table -----------------------------------------------

    def _header_set(self, rcode, aa, an, ns, ar):
        """The eight response headers (after the id) for these counts, indexed
        by ``RD | CD << 1 | EDNS << 2`` of the query."""
        key = (rcode, aa, an, ns, ar)
        found = self._headers.get(key)
        if found is None:
            variants = []
            for index in range(8):
                rd, cd, edns = index & 1, (index >> 1) & 1, index >> 2
                flags1 = 0x80 | (0x04 if aa else 0) | rd
                flags2 = (0x80 if self.recursion else 0) | (0x10 if cd else 0) | rcode
                variants.append(_COUNTS.pack(flags1, flags2, 1, an, ns, ar + edns))
            found = self._headers[key] = tuple(variants)
        return found

    def _entry(self, name, qtype, answers):
        """(headers, body) of a positive answer.  Owner names are pointers
        to the question (offset 12), which every response echoes."""
        parts = []
        for rr in answers:
            rtype = rr.type
            if rtype == dns.A or rtype == dns.AAAA:
                rdata = rr.payload.address
            elif rtype == dns.PTR:
                rdata = names.to_wire(names.from_wire_name(rr.payload.name.name))
            else:
                parts = None
                break
            parts.append(b"\xc0\x0c" + _RR.pack(rtype, rr.cls, rr.ttl, len(rdata))
                         + rdata)
        if parts is None:
            buf = io.BytesIO()
            compression = {}
            dns.Query(_b(name), qtype, dns.IN).encode(buf, compression)
            start = buf.tell()
            for rr in answers:
                rr.encode(buf, compression)
            body = buf.getvalue()[start:]
        else:
            body = b"".join(parts)
        return self._header_set(dns.OK, True, len(answers), 0, 0), body

    def _nodata(self, zone):
        """(headers, body) of NODATA in ``zone`` (or outside our zones):
        the same for every name, the SOA written out in full."""
        found = self._nodata_entries.get(zone)
        if found is None:
            authority = self._negative(zone)
            buf = io.BytesIO()
            for rr in authority:
                rr.encode(buf, None)
            found = (self._header_set(dns.OK, True, 0, len(authority), 0),
                     buf.getvalue())
            self._nodata_entries[zone] = found
        return found

    def _rebuild(self, name, now):
        """Recompute the fast-path answers of ``name``: its records, and
        NODATA (shared by every type it lacks) for the common types.

        Names whose lease has ``lease_ttl`` or less left are left to the slow
        path, whose TTLs count down to the expiry.
        """
        fast = self.fast
        for key in self._fast_keys.pop(name, ()):
            fast.pop(key, None)
        found = self.records(name, now)
        if found is None:
            return
        lease = self._winner.get(name)
        if lease is None and name in self._lease_ptr:
            lease = self._winner.get(self._lease_ptr[name])
        if lease is not None and lease.expiry - now <= self.lease_ttl:
            return
        wire = names.to_wire(name)
        nodata = None
        keys = []
        for qtype in set(found).union(FAST_TYPES):
            rrset = found.get(qtype)
            if rrset:
                entry = self._entry(name, qtype, rrset)
            else:
                if nodata is None:
                    nodata = self._nodata(self.zone_of(name))
                entry = nodata
            key = wire + _QKEY.pack(qtype, dns.IN)
            fast[key] = entry
            keys.append(key)
        self._fast_keys[name] = keys

    def set_recursion(self, available):
        """Set the RA bit of ready answers (whether we forward)."""
        if bool(available) != self.recursion:
            self.recursion = bool(available)
            self._headers.clear()
            self._nodata_entries.clear()
            now = self.clock.seconds()
            for name in list(self._fast_keys):
                self._rebuild(name, now)

    # -- the lease clock -----------------------------------------------------

    def start(self):
        self._running = True
        self._arm()

    def stop(self):
        self._running = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self, name, when, now):
        if when - now > _HORIZON:
            self._due.pop(name, None)
            return
        self._due[name] = when
        heapq.heappush(self._heap, (when, name))
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._heap = [(w, n) for n, w in self._due.items()]
            heapq.heapify(self._heap)
        self._arm()

    def _arm(self):
        if not self._running:
            return
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if not heap:
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call = None
            return
        when = heap[0][0]
        if self._call is not None and self._call.active():
            if self._call.getTime() <= when:
                return
            self._call.cancel()
        delay = max(0, when - self.clock.seconds())
        self._call = self.clock.callLater(delay, self._fire)

    def _fire(self):
        self._call = None
        now = self.clock.seconds()
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, name = heapq.heappop(heap)
            if self._due.get(name) != when:
                continue
            del self._due[name]
            try:
                self._settle(name, now)
            except Exception:
                self._log.failure("DNS names of {name} not updated", name=name)
        self._arm()

    # -- introspection -------------------------------------------------------

    def published(self):
        """``{name: ip}`` of the lease names published now."""
        return {name: lease.ip for name, lease in self._winner.items()}


def networks_of(interfaces, ranges):
    """The IPv4 networks we serve: the interfaces' and the ranges' (a range
    without a netmask takes its interface's; relayed ones need one)."""
    found = []
    for iface in interfaces:
        net = ipaddress.IPv4Network((iface.address & iface.netmask,
                                     bin(iface.netmask).count("1")))
        if net not in found:
            found.append(net)
    for r in ranges:
        netmask = r.netmask
        if netmask is None:
            for iface in interfaces:
                if r.start & iface.netmask == iface.address & iface.netmask:
                    netmask = iface.netmask
                    break
        if netmask is None:
            continue
        net = ipaddress.IPv4Network((r.start & netmask, bin(netmask).count("1")))
        if net not in found:
            found.append(net)
    return found
