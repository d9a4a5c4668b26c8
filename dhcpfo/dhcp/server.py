"""DHCP request handling (RFC 2131 section 4.3): pure, synchronous, clock-injected.

:meth:`DHCPServer.handle` takes a parsed request and the interface it came in
on and returns a :class:`Decision`: the reply bytes, where to send them and
the leases that must be durable before they may be sent.  It does no I/O.
The bytes themselves are written by :mod:`dhcpfo.dhcp.reply`.
"""

import struct
from collections import Counter

from twisted.logger import Logger

from dhcpfo.addr import (expiry_after, int_from_bytes, int_from_str, ip_bytes,
                         ip_str, str_from_bytes)
from dhcpfo.dhcp import edge, reply
from dhcpfo.dhcp import packet as P
from dhcpfo.dhcp.allocator import Allocator
from dhcpfo.dhcp.edge import DECLINE_PROBATION, sanitize_hostname
from dhcpfo.dhcp.edge import problem as edge_problem
from dhcpfo.dhcp.offers import Offers
from dhcpfo.dhcp.policy import Standalone
from dhcpfo.dhcp.reply import Decision
from dhcpfo.leases.hlc import HybridLogicalClock
from dhcpfo.leases.lease import (ACTIVE, BACKUP, DECLINED, RELEASED, Lease,
                                 client_key)
from dhcpfo.ratelog import RateLog

EXHAUSTED_LOG_INTERVAL = 60.0
_RELAY_CACHE_LIMIT = 4096
_U32 = struct.Struct("!I")  # a lease-time option


class DHCPServer:
    """The decision logic for every subnet this server leases on."""

    _log = Logger()

    def __init__(self, config, subnets, table, clock, hlc=None, policy=None):
        self.config = config
        self.subnets = subnets
        self.table = table
        self.clock = clock
        self.hlc = hlc or HybridLogicalClock(clock)
        # Who may answer, what may be allocated, how long a lease may run:
        # failover's business, asked through one documented interface
        # (dhcpfo.interfaces.IAllocationPolicy).
        self.policy = policy or Standalone(config.server_name)
        self.name = self.policy.name
        self.authoritative = config.authoritative
        self.stats = Counter()
        # Lines a client can cause: a few per minute, the rest summarised.
        self.rate_log = RateLog(clock, interval=60.0)
        # Bounds, DISCOVER rates and decline limits (issue 10 items 1, 7, 8).
        self.gate = edge.Gate(self.stats, self.rate_log, self,
                              getattr(config, "dhcp_rate_limit", None))
        self._discovers = self.gate.discovers
        self.offers = Offers()
        self.allocator = Allocator(table, self.offers)
        self._offered = self.offers.by_ip
        self._hosts_by_mac = {}
        self._hosts_by_id = {}
        self._reserved = {}     # ip int -> HostReservation
        for host in config.hosts:
            if host.hwaddr is not None:
                self._hosts_by_mac[host.hwaddr] = host
            if host.client_id is not None:
                self._hosts_by_id[host.client_id] = host
            if host.ip is not None:
                self._reserved[host.ip] = host
        self.replies = reply.ReplyEncoder(config)
        self._relay_subnets = {}

    # -- configuration-derived lookups -------------------------------------

    def host_for(self, pkt, client_id):
        if client_id:
            host = self._hosts_by_id.get(client_id)
            if host is not None:
                return host
        return self._hosts_by_mac.get(pkt.chaddr[:pkt.hlen])

    def subnet_for(self, pkt, iface):
        """RFC 2131 4.3.1: the relay's network, else the arrival interface's."""
        giaddr = pkt.giaddr
        if giaddr != P.ZERO_IP:
            found = self._relay_subnets.get(giaddr)
            if found is None:
                g = int_from_bytes(giaddr)
                found = next((s for s in self.subnets if g in s), False)
                if len(self._relay_subnets) < _RELAY_CACHE_LIMIT:
                    self._relay_subnets[giaddr] = found
            return found or None
        if pkt.ciaddr != P.ZERO_IP:
            c = int_from_bytes(pkt.ciaddr)
            for s in self.subnets:
                if c in s:
                    return s
        return iface.subnet

    # -- the decision ------------------------------------------------------

    def handle(self, pkt, iface):
        """Decide about one parsed request; None means stay silent."""
        stats = self.stats
        stats["received"] += 1
        if not self.policy.serving:
            stats["passive"] += 1
            return None
        if pkt.op != P.BOOTREQUEST:
            stats["ignored"] += 1
            return None
        mtype = pkt.message_type
        if mtype is None:
            stats["bootp_ignored"] += 1
            return None
        refused = edge_problem(pkt)
        if refused is not None:
            self.gate.refuse(pkt, refused)
            return None
        client_id = pkt.options.get(P.CLIENT_ID, b"")
        host = self.host_for(pkt, client_id)
        if host is not None and host.ignore:
            stats["ignored"] += 1
            return None
        subnet = self.subnet_for(pkt, iface)
        if subnet is None:
            stats["no_subnet"] += 1
            return None
        now = self.clock.seconds()
        key = client_key(client_id, pkt.chaddr[:pkt.hlen])
        if mtype == P.DISCOVER:
            if self._discovers is not None and not self._discovers.allow(
                    (iface.name, pkt.giaddr), now):
                self.gate.rate_limited(pkt, iface)
                return None
            return self._discover(pkt, iface, subnet, host, key, client_id, now)
        if mtype == P.REQUEST:
            return self._request(pkt, iface, subnet, host, key, client_id, now)
        if mtype == P.RELEASE:
            return self._release(pkt, key, now)
        if mtype == P.DECLINE:
            return self._decline(pkt, subnet, key, client_id, now)
        if mtype == P.INFORM:
            return self._inform(pkt, iface, subnet, host)
        stats["ignored"] += 1
        return None

    def _available(self, ip, key, host, now, offers=True):
        """May ``ip`` (int) be given to the client ``key``?

        A reservation goes only to its client (from any server: that can never
        bind the address to two clients); otherwise the address must be free,
        not offered to someone else (unless ``offers`` is false), and ours to
        allocate (failover policy).
        """
        reserved = self._reserved.get(ip)
        if reserved is not None and reserved is not host:
            return False
        lease = self.table.by_ip.get(ip_str(ip))
        if lease is None:
            if reserved is None and not self.policy.may_allocate_free():
                return False  # e.g. a secondary allocates only from its reserve
        elif lease.state == BACKUP:
            if reserved is None and not self.policy.may_allocate_reserve(lease.owner):
                return False  # another server's reserve
        else:
            if lease.expiry > now:
                if lease.state == DECLINED:
                    return False
                if lease.state == ACTIVE and lease.key != key:
                    return False
            if (lease.key != key and reserved is None
                    and not self.policy.may_reuse(lease, now)):
                return False  # e.g. a peer may have extended it unseen
        if not offers:
            return True
        offer = self._offered.get(ip)   # (inline: the hot path)
        return offer is None or offer[0] == key or offer[1] <= now

    def _held_by_other(self, ip, key, host, now):
        """Do we *know* that ``ip`` is someone else's (so a NAK is right)?"""
        reserved = self._reserved.get(ip)
        if reserved is not None and reserved is not host:
            return True
        lease = self.table.by_ip.get(ip_str(ip))
        if lease is not None and lease.expiry > now and (
                lease.state == DECLINED
                or (lease.state == ACTIVE and lease.key != key)):
            return True
        return self.offers.held_for_other(ip, key, now)

    def _choose(self, pkt, subnet, host, key, now):
        """The address to offer: reservation, current lease, requested, new."""
        if host is not None and host.ip is not None and host.ip in subnet:
            if self._available(host.ip, key, host, now):
                return host.ip
        offered = self.offers.of_client.get(key)
        if offered is not None and offered in subnet and self._available(
                offered, key, host, now) and subnet.range_of(offered):
            return offered
        lease = self.table.for_client(key)
        if lease is not None and lease.state != DECLINED:
            ip = int_from_str(lease.ip)
            if ip in subnet and subnet.range_of(ip) and self._available(
                    ip, key, host, now):
                return ip
        requested = pkt.options.get(P.REQUESTED_ADDRESS)
        if requested is not None:
            ip = int_from_bytes(requested)
            if ip in subnet and subnet.range_of(ip) and self._available(
                    ip, key, host, now):
                return ip
        ip = self.allocator.allocate(subnet, key, host, now, self._available)
        if ip is None:
            ip = self.allocator.reuse(subnet, key, host, now, self._available)
            if ip is not None:
                self.stats["offer_reused"] += 1
        return ip

    def _lease_time(self, pkt, subnet, rng, host):
        if host is not None and host.lease_time is not None:
            granted = host.lease_time
        elif rng is not None:
            granted = rng.lease_time
        else:
            granted = subnet.ranges[0].lease_time
        asked = pkt.options.get(P.LEASE_TIME)
        if asked is not None:
            asked = _U32.unpack(asked)[0]
            if asked < granted:
                granted = max(asked, 120)
        return granted

    def _discover(self, pkt, iface, subnet, host, key, client_id, now):
        ip = self._choose(pkt, subnet, host, key, now)
        if ip is None:
            self.stats["exhausted"] += 1
            last = subnet.last_exhausted_log
            if last is None or now - last >= EXHAUSTED_LOG_INTERVAL:
                subnet.last_exhausted_log = now
                self._log.warn("no free address in {subnet} for {client}: pool "
                               "exhausted (logged once a minute)",
                               subnet=subnet.describe(), client=key[1:].hex(":"))
            return None
        self.offers.hold(ip, key, now)
        rng = subnet.range_of(ip)
        lease_time = self._lease_time(pkt, subnet, rng, host)
        self.stats["offer"] += 1
        return Decision(self.replies.reply(pkt, P.OFFER, ip_bytes(ip), iface,
                                           subnet, rng, host, lease_time),
                        reply.destination(pkt, P.OFFER), None)

    def _request(self, pkt, iface, subnet, host, key, client_id, now):
        options = pkt.options
        server_id = options.get(P.SERVER_ID)
        requested = options.get(P.REQUESTED_ADDRESS)
        if server_id is not None:
            if server_id != iface.address_bytes:
                # SELECTING another server: our offer is not wanted.
                self.offers.drop_client(key)
                self.stats["other_server"] += 1
                return None
            if requested is None:
                requested = pkt.ciaddr
            state = "selecting"
        elif requested is not None and pkt.ciaddr == P.ZERO_IP:
            state = "init-reboot"
        elif pkt.ciaddr != P.ZERO_IP:
            requested = pkt.ciaddr
            state = "renewing"
        else:
            self.stats["malformed_request"] += 1
            return None
        ip = int_from_bytes(requested)
        if ip not in subnet:
            if state == "selecting" or self.authoritative:
                return self._nak(pkt, iface, "address not on this network")
            self.stats["not_ours"] += 1
            return None
        text = str_from_bytes(requested)
        lease = self.table.by_ip.get(text)
        mine = lease is not None and lease.key == key and lease.state != DECLINED
        offer = self._offered.get(ip)
        offered = offer is not None and offer[0] == key
        reserved_here = host is not None and host.ip is not None and host.ip in subnet
        if reserved_here and host.ip != ip:
            return self._nak(pkt, iface, "this client has a reserved address")
        if not self._available(ip, key, host, now):
            if self._held_by_other(ip, key, host, now):
                return self._nak(pkt, iface, "address in use by another client")
            # Not ours to judge: a failover peer owns it and may have bound
            # it to this very client while we could not hear about it.
            self.stats["peer_owned"] += 1
            return None
        rng = subnet.range_of(ip)
        known = mine or offered or reserved_here
        if not known:
            if state != "selecting" and not self.authoritative:
                # RFC 2131 4.3.2: no record of this client, so stay silent.
                self.stats["unknown_client"] += 1
                return None
            if rng is None:
                return self._nak(pkt, iface, "address not in a dynamic range")
        elif rng is None and not reserved_here:
            return self._nak(pkt, iface, "address no longer in a dynamic range")
        lease_time = self._lease_time(pkt, subnet, rng, host)
        hostname = self._hostname(pkt, host)
        expiry = expiry_after(now, lease_time)
        capped = self.policy.cap_expiry(text, expiry, now)
        if capped < expiry:
            expiry = capped
            lease_time = int(capped - now)
        new = Lease(text, pkt.chaddr[:pkt.hlen], client_id, hostname, ACTIVE,
                    now, expiry, self.name, self.hlc.now())
        commit = [new]
        undo = []
        table = self.table
        previous = table.for_client(key)
        if previous is not None and previous.ip != new.ip and previous.state == ACTIVE:
            released = Lease(previous.ip, previous.hwaddr, previous.client_id,
                             previous.hostname, RELEASED, previous.start, now,
                             self.name, self.hlc.now())
            table.put(released)
            undo.append((released, previous))
            commit.insert(0, released)
        table.put(new)
        undo.append((new, lease))
        self.offers.taken(ip, key)
        self.stats["ack"] += 1
        return Decision(self.replies.reply(pkt, P.ACK, requested, iface, subnet,
                                           rng, host, lease_time),
                        reply.destination(pkt, P.ACK), commit, undo, "ack")

    def not_durable(self, decision):
        """``decision``'s leases could not be written: the table goes back
        to what it held (a record put since is kept) and its reply, never
        sent, is not counted."""
        for lease, previous in reversed(decision.undo):
            self.table.revert(lease, previous)
        if decision.counted is not None:
            self.stats[decision.counted] -= 1
        self.stats["not_durable"] += 1

    def _hostname(self, pkt, host):
        if host is not None and host.hostname:
            return host.hostname
        raw = pkt.options.get(P.HOSTNAME)
        if raw:
            return sanitize_hostname(raw)
        fqdn = pkt.options.get(P.CLIENT_FQDN)
        if fqdn:
            try:
                return sanitize_hostname(P.parse_fqdn(fqdn)[1])
            except P.CodecError:
                return ""
        return ""

    def _release(self, pkt, key, now):
        lease = self.table.by_ip.get(str_from_bytes(pkt.ciaddr))
        if lease is None or lease.key != key or lease.state != ACTIVE:
            self.stats["release_unknown"] += 1
            return None
        released = Lease(lease.ip, lease.hwaddr, lease.client_id, lease.hostname,
                         RELEASED, lease.start, now, self.name, self.hlc.now())
        self.table.put(released)
        self.stats["release"] += 1
        return Decision(None, None, [released], [(released, lease)])

    def _decline(self, pkt, subnet, key, client_id, now):
        requested = pkt.options.get(P.REQUESTED_ADDRESS)
        if requested is None:
            self.stats["decline_unknown"] += 1
            return None
        ip = str_from_bytes(requested)
        lease = self.table.by_ip.get(ip)
        if not ((lease is not None and lease.key == key)
                or self.offers.held_for(int_from_bytes(requested), key)):
            self.stats["decline_unknown"] += 1
            return None
        if not self.gate.decline_allowed(key, subnet, now):
            # A client declining over and over (or many, one each) would
            # quarantine the pool: past the limits its offer is dropped, the
            # address is not.
            self.offers.drop_client(key)
            self.rate_log.warn(self._log, "decline limited",
                               "{client} declined {ip}: over the decline limit, "
                               "not quarantined", client=key[1:].hex(":"), ip=ip)
            return None
        declined = Lease(ip, pkt.chaddr[:pkt.hlen], client_id, "", DECLINED, now,
                         now + DECLINE_PROBATION, self.name, self.hlc.now())
        self.table.put(declined)
        self.offers.declined(int_from_bytes(requested), key)
        self.stats["decline"] += 1
        self.rate_log.warn(self._log, "declined",
                           "{client} declined {ip}: another host uses it; it rests "
                           "{seconds:.0f}s", client=key[1:].hex(":"), ip=ip,
                           seconds=DECLINE_PROBATION)
        return Decision(None, None, [declined], [(declined, lease)])

    def _inform(self, pkt, iface, subnet, host):
        self.stats["inform"] += 1
        ciaddr = int_from_bytes(pkt.ciaddr)
        rng = subnet.range_of(ciaddr)
        data = self.replies.reply(pkt, P.ACK, P.ZERO_IP, iface, subnet, rng, host, None)
        return Decision(data, reply.destination(pkt, P.ACK), None)

    def offered(self, ip):
        """Does a live offer hold ``ip`` (int)?"""
        return self.offers.live(ip, self.clock.seconds())

    def offers_between(self, start, end):
        """How many live offers hold addresses in ``start..end`` (ints)."""
        return self.offers.between(start, end, self.clock.seconds())

    def expire_offers(self):
        """Forget offers nobody took; called periodically."""
        return self.offers.expire(self.clock.seconds())

    # -- replies (encoded by dhcpfo.dhcp.reply) ------------------------------

    def _nak(self, pkt, iface, why):
        self.stats["nak"] += 1
        return Decision(reply.nak(pkt, iface.address_bytes, why),
                        reply.destination(pkt, P.NAK), None)
