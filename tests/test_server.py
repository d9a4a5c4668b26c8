"""Request handling (dhcpfo.dhcp.server) driven with task.Clock, no sockets."""

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from dhcpfo import config as C
from dhcpfo.addr import (INFINITE, NEVER, bytes_from_str, int_from_bytes,
                         int_from_str, str_from_bytes)
from dhcpfo.dhcp import packet as P
from dhcpfo.dhcp.offers import OFFER_TIMEOUT
from dhcpfo.dhcp.policy import Standalone
from dhcpfo.dhcp.pool import InterfaceInfo, build_subnets
from dhcpfo.dhcp.server import DECLINE_PROBATION, DHCPServer, sanitize_hostname
from dhcpfo.failover.policy import FailoverPolicy
from dhcpfo.interfaces import IAllocationPolicy
from dhcpfo.leases.lease import ACTIVE, BACKUP, DECLINED, RELEASED, Lease
from dhcpfo.leases.table import LeaseTable

SERVER = "192.0.2.1"
OTHER_SERVER = "192.0.2.2"
MAC1 = bytes.fromhex("525400000001")
MAC2 = bytes.fromhex("525400000002")


def ip(text):
    return bytes_from_str(text)


def request(mtype, mac=MAC1, xid=1, options=(), **fields):
    opts = {P.MESSAGE_TYPE: bytes((mtype,))}
    opts.update(dict(options))
    return P.parse(P.Packet(xid=xid, chaddr=mac, options=opts, **fields).encode())


def make_server(args, clock=None, authoritative=False, policy=None):
    pairs = [(n, v, "test") for n, v in args]
    if authoritative:
        pairs.append(("dhcp-authoritative", None, "test"))
    pairs.append(("server-name", "srv1", "test"))
    config = C.build(pairs)
    iface = InterfaceInfo("e0", int_from_str(SERVER),
                          0xFFFFFF00)
    subnets = build_subnets(config.ranges, [iface])
    iface.subnet = next(s for s in subnets if iface.address in s)
    clock = clock or Clock()
    clock.advance(1_800_000_000)
    server = DHCPServer(config, subnets, LeaseTable(), clock, policy=policy)
    return server, iface, clock


BASIC = [("dhcp-range", "192.0.2.10,192.0.2.12,1h"),
         ("dhcp-option", "option:router,192.0.2.1"),
         ("domain", "lab.test")]


class Reply:
    """A decision's reply, parsed back."""

    def __init__(self, decision):
        self.decision = decision
        self.packet = P.parse(decision.data)
        self.type = self.packet.message_type
        self.yiaddr = str_from_bytes(self.packet.yiaddr)
        self.options = self.packet.options


class DORATests(SynchronousTestCase):
    def setUp(self):
        self.server, self.iface, self.clock = make_server(BASIC)

    def handle(self, pkt):
        decision = self.server.handle(pkt, self.iface)
        return None if decision is None or decision.data is None else Reply(decision)

    def dora(self, mac=MAC1, options=(), xid=7):
        offer = self.handle(request(P.DISCOVER, mac, xid, options))
        ack = self.handle(request(P.REQUEST, mac, xid, tuple(options) + (
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.packet.yiaddr))))
        return offer, ack

    def test_discover_offers_first_free_address(self):
        offer = self.handle(request(P.DISCOVER))
        self.assertEqual(offer.type, P.OFFER)
        self.assertEqual(offer.yiaddr, "192.0.2.10")
        self.assertEqual(offer.packet.op, P.BOOTREPLY)
        self.assertEqual(offer.packet.xid, 1)
        self.assertEqual(offer.options[P.SERVER_ID], ip(SERVER))
        self.assertEqual(offer.options[P.LEASE_TIME], (3600).to_bytes(4, "big"))
        self.assertEqual(offer.options[P.RENEWAL_TIME], (1800).to_bytes(4, "big"))
        self.assertEqual(offer.options[P.REBINDING_TIME], (3150).to_bytes(4, "big"))
        self.assertEqual(offer.options[P.SUBNET_MASK], ip("255.255.255.0"))
        self.assertEqual(offer.decision.dest, ("255.255.255.255", 68))
        self.assertIsNone(offer.decision.commit)
        self.assertEqual(len(self.server.table), 0, "an offer is not a lease")

    def test_offer_is_held_for_its_client(self):
        first = self.handle(request(P.DISCOVER, MAC1))
        again = self.handle(request(P.DISCOVER, MAC1))
        other = self.handle(request(P.DISCOVER, MAC2))
        self.assertEqual(first.yiaddr, again.yiaddr)
        self.assertNotEqual(first.yiaddr, other.yiaddr)

    def test_full_exchange_commits_durable_lease(self):
        offer, ack = self.dora(options=((P.HOSTNAME, b"Laptop.example"),))
        self.assertEqual(ack.type, P.ACK)
        self.assertEqual(ack.yiaddr, offer.yiaddr)
        [lease] = ack.decision.commit
        self.assertEqual((lease.ip, lease.hwaddr, lease.hostname, lease.state,
                          lease.owner), (offer.yiaddr, MAC1, "laptop", ACTIVE, "srv1"))
        self.assertEqual(lease.expiry - lease.start, 3600)
        self.assertIs(self.server.table.get(offer.yiaddr), lease)

    def test_same_client_keeps_its_address(self):
        _, ack = self.dora()
        offer = self.handle(request(P.DISCOVER, MAC1))
        self.assertEqual(offer.yiaddr, ack.yiaddr)

    def test_requested_address_honoured_if_free(self):
        offer = self.handle(request(P.DISCOVER, options=(
            (P.REQUESTED_ADDRESS, ip("192.0.2.12")),)))
        self.assertEqual(offer.yiaddr, "192.0.2.12")
        outside = self.handle(request(P.DISCOVER, MAC2, options=(
            (P.REQUESTED_ADDRESS, ip("192.0.2.99")),)))
        self.assertEqual(outside.yiaddr, "192.0.2.10")

    def test_requested_address_of_another_client_not_offered(self):
        _, ack = self.dora(MAC1)
        offer = self.handle(request(P.DISCOVER, MAC2, options=(
            (P.REQUESTED_ADDRESS, ack.packet.yiaddr),)))
        self.assertNotEqual(offer.yiaddr, ack.yiaddr)

    def test_pool_exhausted_no_offer(self):
        for n in range(3):
            self.dora(bytes([0x52, 0, 0, 0, 1, n]))
        self.assertIsNone(self.handle(request(P.DISCOVER, MAC2)))
        self.assertEqual(self.server.stats["exhausted"], 1)

    def test_expired_lease_reused(self):
        for n in range(3):
            self.dora(bytes([0x52, 0, 0, 0, 1, n]))
        self.clock.advance(3601)
        offer = self.handle(request(P.DISCOVER, MAC2))
        self.assertEqual(offer.type, P.OFFER)

    def test_offer_expires(self):
        for n in range(3):
            self.handle(request(P.DISCOVER, bytes([0x52, 0, 0, 0, 1, n])))
        self.assertIsNone(self.handle(request(P.DISCOVER, MAC2)))
        self.clock.advance(31)
        self.assertEqual(self.server.expire_offers(), 3)
        self.assertEqual(self.handle(request(P.DISCOVER, MAC2)).type, P.OFFER)

    def test_request_for_other_server_drops_offer(self):
        offer = self.handle(request(P.DISCOVER, MAC1))
        self.assertIsNone(self.handle(request(P.REQUEST, MAC1, options=(
            (P.SERVER_ID, ip(OTHER_SERVER)),
            (P.REQUESTED_ADDRESS, offer.packet.yiaddr)))))
        # The address is free for the next client at once.
        self.assertEqual(self.handle(request(P.DISCOVER, MAC2, options=(
            (P.REQUESTED_ADDRESS, offer.packet.yiaddr),))).yiaddr, offer.yiaddr)

    def test_selecting_address_of_another_client_naks(self):
        _, ack = self.dora(MAC1)
        nak = self.handle(request(P.REQUEST, MAC2, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, ack.packet.yiaddr))))
        self.assertEqual(nak.type, P.NAK)

    def test_nak_format(self):
        nak = self.handle(request(P.REQUEST, MAC2, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, ip("198.51.100.5")))))
        self.assertEqual(nak.type, P.NAK)
        self.assertEqual(nak.packet.yiaddr, P.ZERO_IP)
        self.assertEqual(nak.packet.siaddr, P.ZERO_IP)
        self.assertEqual(nak.packet.ciaddr, P.ZERO_IP)
        for code in (P.LEASE_TIME, P.RENEWAL_TIME, P.REBINDING_TIME, P.SUBNET_MASK,
                     P.ROUTER):
            self.assertNotIn(code, nak.options)
        self.assertEqual(nak.decision.dest, ("255.255.255.255", 68))

    def test_init_reboot_right_address_acks(self):
        _, ack = self.dora()
        again = self.handle(request(P.REQUEST, options=(
            (P.REQUESTED_ADDRESS, ack.packet.yiaddr),)))
        self.assertEqual(again.type, P.ACK)
        self.assertEqual(again.yiaddr, ack.yiaddr)

    def test_init_reboot_wrong_subnet(self):
        wrong = ((P.REQUESTED_ADDRESS, ip("198.51.100.7")),)
        self.assertIsNone(self.handle(request(P.REQUEST, options=wrong)))
        server, iface, _ = make_server(BASIC, authoritative=True)
        nak = Reply(server.handle(request(P.REQUEST, options=wrong), iface))
        self.assertEqual(nak.type, P.NAK)

    def test_init_reboot_other_clients_address_naks(self):
        _, ack = self.dora(MAC1)
        nak = self.handle(request(P.REQUEST, MAC2, options=(
            (P.REQUESTED_ADDRESS, ack.packet.yiaddr),)))
        self.assertEqual(nak.type, P.NAK)

    def test_init_reboot_unknown_client(self):
        """Silent unless authoritative; authoritative ACKs a free address."""
        asked = ((P.REQUESTED_ADDRESS, ip("192.0.2.11")),)
        self.assertIsNone(self.handle(request(P.REQUEST, options=asked)))
        server, iface, _ = make_server(BASIC, authoritative=True)
        ack = Reply(server.handle(request(P.REQUEST, options=asked), iface))
        self.assertEqual((ack.type, ack.yiaddr), (P.ACK, "192.0.2.11"))

    def test_renewing_unicast(self):
        _, ack = self.dora()
        self.clock.advance(1800)
        renew = self.handle(request(P.REQUEST, ciaddr=ack.packet.yiaddr))
        self.assertEqual(renew.type, P.ACK)
        self.assertEqual(renew.decision.dest, (ack.yiaddr, 68))
        [lease] = renew.decision.commit
        self.assertEqual(lease.expiry, self.clock.seconds() + 3600)
        self.assertGreater(lease.version, ack.decision.commit[0].version)

    def test_release(self):
        _, ack = self.dora()
        decision = self.server.handle(
            request(P.RELEASE, ciaddr=ack.packet.yiaddr), self.iface)
        self.assertIsNone(decision.data)
        [lease] = decision.commit
        self.assertEqual(lease.state, RELEASED)
        self.assertEqual(self.server.table.get(ack.yiaddr).state, RELEASED)
        # A release from another client changes nothing.
        self.assertIsNone(self.server.handle(
            request(P.RELEASE, MAC2, ciaddr=ack.packet.yiaddr), self.iface))

    def test_decline_quarantines(self):
        offer, ack = self.dora()
        decision = self.server.handle(request(P.DECLINE, options=(
            (P.REQUESTED_ADDRESS, ack.packet.yiaddr),)), self.iface)
        self.assertEqual(decision.commit[0].state, DECLINED)
        again = self.handle(request(P.DISCOVER))
        self.assertNotEqual(again.yiaddr, ack.yiaddr)
        self.clock.advance(601)
        self.assertTrue(self.server._available(
            int_from_bytes(ack.packet.yiaddr), b"x", None,
            self.clock.seconds()))

    def test_inform(self):
        reply = self.handle(request(P.INFORM, ciaddr=ip("192.0.2.77")))
        self.assertEqual(reply.type, P.ACK)
        self.assertEqual(reply.packet.yiaddr, P.ZERO_IP)
        self.assertNotIn(P.LEASE_TIME, reply.options)
        self.assertEqual(reply.options[P.ROUTER], ip("192.0.2.1"))
        self.assertEqual(reply.decision.dest, ("192.0.2.77", 68))
        self.assertIsNone(reply.decision.commit)

    def test_client_id_identifies_client(self):
        cid = ((P.CLIENT_ID, b"\x01" + MAC1),)
        _, ack = self.dora(MAC1, options=cid)
        # Same client-id from another hardware address is the same client.
        offer = self.handle(request(P.DISCOVER, MAC2, options=cid))
        self.assertEqual(offer.yiaddr, ack.yiaddr)

    def test_parameter_request_list_order(self):
        prl = bytes([P.DOMAIN_NAME, P.ROUTER, P.SUBNET_MASK])
        raw = self.server.handle(request(P.DISCOVER, options=(
            (P.PARAMETER_REQUEST_LIST, prl),)), self.iface).data
        codes = []
        i = 240
        while raw[i] != 255:
            codes.append(raw[i])
            i += 2 + raw[i + 1]
        self.assertEqual(codes[:4], [P.MESSAGE_TYPE, P.DOMAIN_NAME, P.ROUTER,
                                     P.SUBNET_MASK])
        self.assertIn(P.SERVER_ID, codes)
        self.assertNotIn(P.BROADCAST_ADDRESS, codes, "not requested, not sent")

    def test_max_message_size_respected(self):
        server, iface, _ = make_server(BASIC + [
            ("dhcp-option", "option:domain-search," + ",".join(
                "d%02d.%s.example" % (n, "x" * 40) for n in range(12)))])
        prl = bytes([P.SUBNET_MASK, 119, P.ROUTER])
        reply = server.handle(request(P.DISCOVER, options=(
            (P.PARAMETER_REQUEST_LIST, prl),
            (P.MAX_MESSAGE_SIZE, (576).to_bytes(2, "big")))), iface)
        self.assertLessEqual(len(reply.data), 576 - 28)
        self.assertIn(P.SERVER_ID, P.parse(reply.data).options)
        big = server.handle(request(P.DISCOVER, MAC2, options=(
            (P.PARAMETER_REQUEST_LIST, prl),
            (P.MAX_MESSAGE_SIZE, (1500).to_bytes(2, "big")))), iface)
        self.assertIn(119, P.parse(big.data).options)

    def test_broadcast_flag_and_bootp(self):
        reply = self.handle(request(P.DISCOVER, flags=P.BROADCAST_FLAG))
        self.assertEqual(reply.packet.flags, P.BROADCAST_FLAG)
        self.assertEqual(reply.decision.dest, ("255.255.255.255", 68))
        bootp = P.parse(P.Packet(chaddr=MAC1).encode())
        self.assertIsNone(self.server.handle(bootp, self.iface))
        self.assertEqual(self.server.stats["bootp_ignored"], 1)

    def test_replies_ignore_bootreply(self):
        pkt = request(P.DISCOVER)
        pkt.op = P.BOOTREPLY
        self.assertIsNone(self.server.handle(pkt, self.iface))


class RelayTests(SynchronousTestCase):
    def setUp(self):
        self.server, self.iface, _ = make_server(BASIC + [
            ("dhcp-range", "198.51.100.10,198.51.100.20,255.255.255.0,2h")])

    def test_relayed_discover(self):
        agent = b"\x01\x04port\x02\x03abc"
        decision = self.server.handle(request(
            P.DISCOVER, giaddr=ip("198.51.100.1"), hops=1,
            options=((P.RELAY_AGENT_INFO, agent),)), self.iface)
        reply = P.parse(decision.data)
        self.assertEqual(decision.dest, ("198.51.100.1", 67))
        self.assertEqual(str_from_bytes(reply.yiaddr), "198.51.100.10")
        self.assertEqual(reply.giaddr, ip("198.51.100.1"))
        self.assertEqual(reply.hops, 1)
        self.assertEqual(reply.options[P.RELAY_AGENT_INFO], agent)
        self.assertEqual(reply.options[P.LEASE_TIME], (7200).to_bytes(4, "big"))
        self.assertEqual(list(reply.options)[-1], P.RELAY_AGENT_INFO)

    def test_relayed_nak_sets_broadcast(self):
        decision = self.server.handle(request(
            P.REQUEST, giaddr=ip("198.51.100.1"),
            options=((P.SERVER_ID, ip(SERVER)),
                     (P.REQUESTED_ADDRESS, ip("192.0.2.10")))), self.iface)
        reply = P.parse(decision.data)
        self.assertEqual(reply.message_type, P.NAK)
        self.assertEqual(decision.dest, ("198.51.100.1", 67))
        self.assertTrue(reply.flags & P.BROADCAST_FLAG)

    def test_unknown_relay_ignored(self):
        self.assertIsNone(self.server.handle(
            request(P.DISCOVER, giaddr=ip("203.0.113.1")), self.iface))
        self.assertEqual(self.server.stats["no_subnet"], 1)


class ReservationTests(SynchronousTestCase):
    def setUp(self):
        self.server, self.iface, _ = make_server(BASIC + [
            ("dhcp-host", "52:54:00:00:00:01,192.0.2.50,printer,set:print"),
            ("dhcp-host", "52:54:00:00:00:09,ignore"),
            ("dhcp-option", "tag:print,option:ntp-server,192.0.2.123")])

    def test_reserved_address_hostname_and_tagged_option(self):
        offer = P.parse(self.server.handle(request(P.DISCOVER, options=(
            (P.PARAMETER_REQUEST_LIST, bytes([1, 3, 12, 42])),)), self.iface).data)
        self.assertEqual(str_from_bytes(offer.yiaddr), "192.0.2.50")
        self.assertEqual(offer.options[P.HOSTNAME], b"printer")
        self.assertEqual(offer.options[42], ip("192.0.2.123"))
        ack = self.server.handle(request(P.REQUEST, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, ip("192.0.2.50")))),
            self.iface)
        self.assertEqual(ack.commit[0].hostname, "printer")
        other = P.parse(self.server.handle(request(P.DISCOVER, MAC2, options=(
            (P.PARAMETER_REQUEST_LIST, bytes([42])),)), self.iface).data)
        self.assertNotIn(42, other.options)

    def test_reserved_address_refused_to_others(self):
        nak = self.server.handle(request(P.REQUEST, MAC2, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, ip("192.0.2.50")))),
            self.iface)
        self.assertEqual(P.parse(nak.data).message_type, P.NAK)

    def test_reserved_client_moved_off_dynamic_address(self):
        nak = self.server.handle(request(P.REQUEST, options=(
            (P.REQUESTED_ADDRESS, ip("192.0.2.10")),)), self.iface)
        self.assertEqual(P.parse(nak.data).message_type, P.NAK)

    def test_ignored_host(self):
        self.assertIsNone(self.server.handle(
            request(P.DISCOVER, bytes.fromhex("525400000009")), self.iface))


class HostnameTests(SynchronousTestCase):
    def test_sanitize(self):
        self.assertEqual(sanitize_hostname(b"My_Laptop.corp"), "my-laptop")
        self.assertEqual(sanitize_hostname(b"-x-"), "x")
        self.assertEqual(sanitize_hostname(b"\xff\xfe"), "")
        self.assertEqual(len(sanitize_hostname(b"a" * 100)), 63)

    def test_fqdn_option(self):
        server, iface, _ = make_server(BASIC)
        fqdn = b"\x04\x00\x00\x04host\x03lab\x04test\x00"
        offer = P.parse(server.handle(request(P.DISCOVER), iface).data)
        ack = server.handle(request(P.REQUEST, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr),
            (P.CLIENT_FQDN, fqdn))), iface)
        self.assertEqual(ack.commit[0].hostname, "host")


class LeaseTimeTests(SynchronousTestCase):
    """Option 51 in a request may shorten a lease, never lengthen it."""

    def setUp(self):
        self.server, self.iface, self.clock = make_server(BASIC)

    def granted(self, asked):
        options = ((P.LEASE_TIME, asked.to_bytes(4, "big")),)
        offer = P.parse(self.server.handle(
            request(P.DISCOVER, options=options), self.iface).data)
        ack = self.server.handle(request(P.REQUEST, options=options + (
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr))),
            self.iface)
        [lease] = ack.commit
        ack_time = int.from_bytes(P.parse(ack.data).options[P.LEASE_TIME], "big")
        offer_time = int.from_bytes(offer.options[P.LEASE_TIME], "big")
        self.assertEqual(offer_time, ack_time)
        self.assertEqual(lease.expiry - self.clock.seconds(), ack_time)
        return ack_time

    def test_longer_than_configured_is_refused(self):
        self.assertEqual(self.granted(7200), 3600)

    def test_infinite_asked_gets_configured(self):
        self.assertEqual(self.granted(INFINITE), 3600)

    def test_shorter_is_granted(self):
        self.assertEqual(self.granted(1800), 1800)

    def test_very_short_is_raised_to_two_minutes(self):
        self.assertEqual(self.granted(30), 120)


class DeclinedAddressTests(SynchronousTestCase):
    """A declined address is given to nobody, its decliner included, until
    its probation ends (DECLINE_PROBATION)."""

    def setUp(self):
        self.server, self.iface, self.clock = make_server([
            ("dhcp-range", "192.0.2.10,192.0.2.10,1h")])
        offer = self.server.handle(request(P.DISCOVER, MAC1), self.iface)
        self.server.handle(request(P.REQUEST, MAC1, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, ip("192.0.2.10")))),
            self.iface)
        self.assertIsNotNone(offer)
        decision = self.server.handle(request(P.DECLINE, MAC1, options=(
            (P.REQUESTED_ADDRESS, ip("192.0.2.10")),)), self.iface)
        [declined] = decision.commit
        self.assertEqual(declined.state, DECLINED)
        # ten minutes, as dnsmasq
        self.assertEqual(declined.expiry - self.clock.seconds(), 600)

    def test_not_offered_during_probation(self):
        self.clock.advance(DECLINE_PROBATION - 1)
        self.assertIsNone(self.server.handle(request(P.DISCOVER, MAC2), self.iface))
        self.assertIsNone(self.server.handle(request(P.DISCOVER, MAC1), self.iface))
        self.assertEqual(self.server.stats["exhausted"], 2)

    def test_request_during_probation_naks(self):
        for mac in (MAC1, MAC2):
            nak = self.server.handle(request(P.REQUEST, mac, options=(
                (P.SERVER_ID, ip(SERVER)),
                (P.REQUESTED_ADDRESS, ip("192.0.2.10")))), self.iface)
            self.assertEqual(P.parse(nak.data).message_type, P.NAK)

    def test_offered_again_after_probation(self):
        self.clock.advance(DECLINE_PROBATION + 1)
        offer = P.parse(self.server.handle(
            request(P.DISCOVER, MAC2), self.iface).data)
        self.assertEqual(offer.yiaddr, ip("192.0.2.10"))


class FailoverPolicyTests(SynchronousTestCase):
    """The real FailoverPolicy read by the real DHCPServer (rules 1 and 2 of
    docs/failover.md as the engine applies them)."""

    MCLT = 600

    def setUp(self):
        self.policy = FailoverPolicy("srv1", self.MCLT, primary=True)
        self.server, self.iface, self.clock = make_server(
            [("dhcp-range", "192.0.2.10,192.0.2.10,1h")], policy=self.policy)

    def set(self, primary=True, restricted=False, adopted=()):
        self.policy.update(serving=True, primary=primary, restricted=restricted,
                           adopted=adopted)

    def lease(self, state, expiry, mac=MAC1, owner="srv2"):
        lease = Lease("192.0.2.10", mac, b"", "", state, self.clock.seconds(),
                      expiry, owner, 1)
        self.server.table.put(lease)
        return lease

    def discover(self, mac=MAC2):
        decision = self.server.handle(request(P.DISCOVER, mac), self.iface)
        return None if decision is None else P.parse(decision.data)

    def test_both_policies_provide_the_interface(self):
        verifyObject(IAllocationPolicy, self.policy)
        verifyObject(IAllocationPolicy, Standalone("srv1"))

    def test_a_new_policy_is_passive_and_restricted(self):
        fresh = FailoverPolicy("srv1", self.MCLT, primary=True)
        self.assertEqual((fresh.serving, fresh.restricted, fresh.adopted),
                         (False, True, frozenset()))
        self.assertIs(fresh.may_allocate_free(), True)
        self.assertFalse(fresh.may_allocate_reserve("srv2"))

    def test_passive_server_is_silent(self):
        self.assertIsNone(self.discover())
        self.assertIsNone(self.discover())
        self.assertEqual(self.server.stats["passive"], 2)

    def test_restricted_waits_mclt_past_expiry_of_anothers_lease(self):
        self.set(restricted=True)
        self.lease(ACTIVE, self.clock.seconds() - 1)
        self.assertIsNone(self.discover())
        self.clock.advance(self.MCLT - 2)
        self.assertIsNone(self.discover())
        self.clock.advance(1)   # now exactly its expiry + MCLT
        self.assertEqual(self.discover().yiaddr, ip("192.0.2.10"))

    def test_request_for_what_a_peer_may_hold_is_not_answered(self):
        # (the asking client has a reservation of a name only, and the lease
        # ends at this very instant: neither makes it ours to refuse)
        self.server, self.iface, self.clock = make_server(
            [("dhcp-range", "192.0.2.10,192.0.2.10,1h"),
             ("dhcp-host", "52:54:00:00:00:02,laptop")], policy=self.policy)
        self.set(restricted=True)
        self.lease(ACTIVE, self.clock.seconds())
        for _ in range(2):
            self.assertIsNone(self.server.handle(request(P.REQUEST, MAC2, options=(
                (P.SERVER_ID, ip(SERVER)),
                (P.REQUESTED_ADDRESS, ip("192.0.2.10")))), self.iface))
        self.assertEqual(self.server.stats["peer_owned"], 2)

    def test_unrestricted_reuses_expired_lease_at_once(self):
        self.set(restricted=False)
        self.lease(ACTIVE, self.clock.seconds() - 1)
        self.assertEqual(self.discover().yiaddr, ip("192.0.2.10"))

    def test_restricted_caps_lease_time_at_mclt(self):
        self.set(restricted=True)
        offer = self.discover(MAC1)
        ack = self.server.handle(request(P.REQUEST, MAC1, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr))),
            self.iface)
        [lease] = ack.commit
        self.assertEqual(lease.expiry, self.clock.seconds() + self.MCLT)
        self.assertEqual(P.parse(ack.data).options[P.LEASE_TIME],
                         self.MCLT.to_bytes(4, "big"))

    def test_acknowledged_expiry_raises_the_cap(self):
        self.set(restricted=True)
        self.policy.acknowledged("192.0.2.10", self.clock.seconds() + 1000)
        offer = self.discover(MAC1)
        ack = self.server.handle(request(P.REQUEST, MAC1, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr))),
            self.iface)
        self.assertEqual(ack.commit[0].expiry,
                         self.clock.seconds() + 1000 + self.MCLT)

    def test_secondary_allocates_only_its_reserve(self):
        self.set(primary=False)
        self.assertIsNone(self.discover(), "a free address nobody reserved")
        self.lease(ACTIVE, self.clock.seconds() - 1)
        self.assertIsNone(self.discover(), "another client's lease, expired")
        self.lease(BACKUP, 0, mac=b"", owner="srv2")
        self.assertIsNone(self.discover(), "another server's reserve")
        self.lease(BACKUP, 0, mac=b"", owner="srv1")
        self.assertEqual(self.discover().yiaddr, ip("192.0.2.10"))

    def test_adopted_reserve_is_ours(self):
        self.set(primary=False, adopted=("srv2",))
        self.lease(BACKUP, 0, mac=b"", owner="srv2")
        self.assertEqual(self.discover().yiaddr, ip("192.0.2.10"))


class RoutedClientTests(SynchronousTestCase):
    """A client on a relayed network that talks to us directly (renewing
    by unicast, or DHCPINFORM) is served from its own subnet, found by its
    ciaddr (RFC 2131 4.3.1)."""

    def setUp(self):
        self.server, self.iface, self.clock = make_server(BASIC + [
            ("dhcp-range", "198.51.100.10,198.51.100.20,255.255.255.0,2h")])

    def test_unicast_renewal_from_relayed_network(self):
        relay = ip("198.51.100.1")
        offer = P.parse(self.server.handle(
            request(P.DISCOVER, giaddr=relay), self.iface).data)
        self.server.handle(request(P.REQUEST, giaddr=relay, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr))),
            self.iface)
        self.clock.advance(3600)
        renew = self.server.handle(request(P.REQUEST, ciaddr=offer.yiaddr),
                                   self.iface)
        reply = P.parse(renew.data)
        self.assertEqual((reply.message_type, reply.yiaddr),
                         (P.ACK, ip("198.51.100.10")))
        self.assertEqual(renew.dest, ("198.51.100.10", 68))
        self.assertEqual(reply.options[P.LEASE_TIME], (7200).to_bytes(4, "big"))

    def test_inform_from_relayed_network(self):
        reply = P.parse(self.server.handle(
            request(P.INFORM, ciaddr=ip("198.51.100.77")), self.iface).data)
        self.assertEqual(reply.options[P.BROADCAST_ADDRESS], ip("198.51.100.255"))


class ClientIdReservationTests(SynchronousTestCase):
    def test_reservation_by_client_id(self):
        server, iface, _ = make_server(BASIC + [
            ("dhcp-host", "id:01:52:54:00:00:00:07,192.0.2.60,box")])
        cid = ((P.CLIENT_ID, bytes.fromhex("01525400000007")),)
        offer = P.parse(server.handle(request(P.DISCOVER, MAC2, options=cid),
                                      iface).data)
        self.assertEqual(offer.yiaddr, ip("192.0.2.60"))
        self.assertEqual(offer.options[P.HOSTNAME], b"box")
        other = P.parse(server.handle(request(P.DISCOVER, MAC1), iface).data)
        self.assertEqual(other.yiaddr, ip("192.0.2.10"))


class ObservabilityTests(SynchronousTestCase):
    """What the control interface reports (design rule 8): a counter per
    outcome, and a pool-exhausted warning at most once a minute."""

    def test_every_outcome_is_counted(self):
        server, iface, clock = make_server(BASIC + [
            ("dhcp-host", "52:54:00:00:00:09,ignore")])

        def handle(mtype, mac=MAC1, **kw):
            return server.handle(request(mtype, mac, **kw), iface)
        offer = P.parse(handle(P.DISCOVER).data)
        handle(P.DISCOVER)
        chosen = ((P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr))
        reply = request(P.DISCOVER)
        reply.op = P.BOOTREPLY
        bootp = P.parse(P.Packet(chaddr=MAC1).encode())
        offer_from_client = request(P.OFFER)
        for _ in range(2):
            handle(P.REQUEST, options=chosen)                           # ack
            handle(P.REQUEST, MAC2, options=chosen)                     # nak
            handle(P.REQUEST, MAC2, options=(
                (P.SERVER_ID, ip(OTHER_SERVER)),
                (P.REQUESTED_ADDRESS, offer.yiaddr)))                   # other_server
            handle(P.REQUEST, MAC2)                                     # malformed
            handle(P.REQUEST, MAC2, options=(
                (P.REQUESTED_ADDRESS, ip("198.51.100.9")),))            # not_ours
            handle(P.REQUEST, MAC2, options=(
                (P.REQUESTED_ADDRESS, ip("192.0.2.12")),))              # unknown
            handle(P.RELEASE, MAC2, ciaddr=offer.yiaddr)                # unknown
            handle(P.DECLINE, MAC2, options=(
                (P.REQUESTED_ADDRESS, offer.yiaddr),))                  # unknown
            handle(P.DECLINE, MAC2)                                     # unknown
            handle(P.INFORM, ciaddr=ip("192.0.2.77"))
            handle(P.DISCOVER, bytes.fromhex("525400000009"))           # ignored
            handle(P.DISCOVER, giaddr=ip("203.0.113.1"))                # no_subnet
            for pkt in (bootp, reply, offer_from_client):               # bootp, ignored
                self.assertIsNone(server.handle(pkt, iface))
            handle(P.RELEASE, ciaddr=offer.yiaddr)                      # release
        self.assertEqual(dict(server.stats), {
            "received": 2 + 2 * 16, "offer": 2, "ack": 2, "nak": 2,
            "other_server": 2, "malformed_request": 2, "not_ours": 2,
            "unknown_client": 2, "release_unknown": 2, "decline_unknown": 4,
            "inform": 2, "ignored": 6, "no_subnet": 2, "bootp_ignored": 2,
            "release": 2})

    def test_decline_and_exhaustion_counted(self):
        server, iface, clock = make_server([("dhcp-range", "192.0.2.10,192.0.2.11,1h")])
        for address in ("192.0.2.10", "192.0.2.11"):
            offer = P.parse(server.handle(request(P.DISCOVER), iface).data)
            self.assertEqual(offer.yiaddr, ip(address))
            server.handle(request(P.DECLINE, options=(
                (P.REQUESTED_ADDRESS, ip(address)),)), iface)
        server.handle(request(P.DISCOVER, MAC2), iface)
        server.handle(request(P.DISCOVER, MAC2), iface)
        self.assertEqual(dict(server.stats), {
            "received": 6, "offer": 2, "decline": 2, "exhausted": 2})

    def test_exhaustion_warned_once_a_minute(self):
        events = []
        server, iface, clock = make_server([("dhcp-range", "192.0.2.10,192.0.2.10,1h")])
        server._log = Logger(observer=events.append)
        server.handle(request(P.DISCOVER), iface)
        server.handle(request(P.REQUEST, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, ip("192.0.2.10")))),
            iface)

        def warnings():
            return [e for e in events if "exhausted" in e["log_format"]]
        server.handle(request(P.DISCOVER, MAC2), iface)
        self.assertEqual(len(warnings()), 1)
        self.assertEqual(warnings()[0]["log_level"], LogLevel.warn)
        self.assertEqual((warnings()[0]["subnet"], warnings()[0]["client"]),
                         ("192.0.2.0/24", "52:54:00:00:00:02"))
        clock.advance(59)
        server.handle(request(P.DISCOVER, MAC2), iface)
        self.assertEqual(len(warnings()), 1)
        clock.advance(1)
        server.handle(request(P.DISCOVER, MAC2), iface)
        self.assertEqual(len(warnings()), 2)
        self.assertEqual(server.stats["exhausted"], 3)


class AllocationEdgeTests(SynchronousTestCase):
    """Where allocation's rules meet: reservations inside a dynamic range,
    static ranges, several ranges in one subnet, a lease the configuration
    no longer covers, and the exact instant a lease or an offer ends."""

    def handle(self, server, iface, mtype, mac=MAC1, **kw):
        decision = server.handle(request(mtype, mac, **kw), iface)
        return None if decision is None else P.parse(decision.data)

    def test_reserved_address_inside_range_kept_for_its_host(self):
        server, iface, _ = make_server(BASIC + [
            ("dhcp-host", "52:54:00:00:00:01,192.0.2.10")])
        other = self.handle(server, iface, P.DISCOVER, MAC2)
        self.assertEqual(other.yiaddr, ip("192.0.2.11"))
        nak = self.handle(server, iface, P.REQUEST, MAC2, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, ip("192.0.2.10"))))
        self.assertEqual(nak.message_type, P.NAK)
        self.assertEqual(nak.options[P.MESSAGE], b"address in use by another client")
        mine = self.handle(server, iface, P.DISCOVER, MAC1)
        self.assertEqual(mine.yiaddr, ip("192.0.2.10"))

    def test_static_range_skipped_by_allocation(self):
        server, iface, _ = make_server([("dhcp-range", "192.0.2.50,static"),
                                        ("dhcp-range", "192.0.2.10,192.0.2.12,1h")])
        self.assertEqual(self.handle(server, iface, P.DISCOVER).yiaddr,
                         ip("192.0.2.10"))

    def test_each_range_has_its_lease_time(self):
        server, iface, _ = make_server([("dhcp-range", "192.0.2.10,192.0.2.10,1h"),
                                        ("dhcp-range", "192.0.2.20,192.0.2.29,2h")])
        first = self.handle(server, iface, P.DISCOVER, MAC1)
        second = self.handle(server, iface, P.DISCOVER, MAC2)
        self.assertEqual((first.yiaddr, first.options[P.LEASE_TIME]),
                         (ip("192.0.2.10"), (3600).to_bytes(4, "big")))
        self.assertEqual((second.yiaddr, second.options[P.LEASE_TIME]),
                         (ip("192.0.2.20"), (7200).to_bytes(4, "big")))

    def test_host_lease_time(self):
        server, iface, _ = make_server(BASIC + [
            ("dhcp-host", "52:54:00:00:00:01,192.0.2.50,10m")])
        offer = self.handle(server, iface, P.DISCOVER)
        self.assertEqual(offer.options[P.LEASE_TIME], (600).to_bytes(4, "big"))

    def test_lease_outside_the_ranges_not_offered_again(self):
        server, iface, clock = make_server(BASIC)
        server.table.put(Lease("192.0.2.50", MAC1, b"", "", ACTIVE, clock.seconds(),
                               clock.seconds() + 3600, "srv1", 1))
        self.assertEqual(self.handle(server, iface, P.DISCOVER).yiaddr,
                         ip("192.0.2.10"))

    def test_lease_reserved_for_another_host_not_offered_again(self):
        server, iface, clock = make_server(BASIC + [
            ("dhcp-host", "52:54:00:00:00:02,192.0.2.10")])
        server.table.put(Lease("192.0.2.10", MAC1, b"", "", ACTIVE, clock.seconds(),
                               clock.seconds() + 3600, "srv1", 1))
        self.assertEqual(self.handle(server, iface, P.DISCOVER).yiaddr,
                         ip("192.0.2.11"))

    def test_lease_free_at_the_instant_it_ends(self):
        server, iface, clock = make_server([("dhcp-range", "192.0.2.10,192.0.2.10,1h")])
        offer = self.handle(server, iface, P.DISCOVER, MAC1)
        self.handle(server, iface, P.REQUEST, MAC1, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr)))
        clock.advance(3600 - 1)
        nak = self.handle(server, iface, P.REQUEST, MAC2, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr)))
        self.assertEqual(nak.message_type, P.NAK)
        clock.advance(1)
        ack = self.handle(server, iface, P.REQUEST, MAC2, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr)))
        self.assertEqual(ack.message_type, P.ACK)

    def test_offer_lapses_at_the_instant_it_ends(self):
        server, iface, clock = make_server([("dhcp-range", "192.0.2.10,192.0.2.10,1h")])
        self.handle(server, iface, P.DISCOVER, MAC1)
        clock.advance(OFFER_TIMEOUT - 1)
        self.assertIsNone(self.handle(server, iface, P.DISCOVER, MAC2))
        clock.advance(1)
        self.assertEqual(self.handle(server, iface, P.DISCOVER, MAC2).yiaddr,
                         ip("192.0.2.10"))

    def test_address_offered_to_another_client_naks(self):
        server, iface, _ = make_server(BASIC)
        offer = self.handle(server, iface, P.DISCOVER, MAC1)
        nak = self.handle(server, iface, P.REQUEST, MAC2, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr)))
        self.assertEqual(nak.options[P.MESSAGE], b"address in use by another client")

    def test_selecting_without_option_50_uses_ciaddr(self):
        server, iface, _ = make_server(BASIC)
        offer = self.handle(server, iface, P.DISCOVER)
        ack = self.handle(server, iface, P.REQUEST, options=(
            (P.SERVER_ID, ip(SERVER)),), ciaddr=offer.yiaddr)
        self.assertEqual((ack.message_type, ack.yiaddr), (P.ACK, offer.yiaddr))

    def test_nak_says_why(self):
        server, iface, _ = make_server(BASIC + [
            ("dhcp-host", "52:54:00:00:00:01,192.0.2.50")], authoritative=True)
        selecting = ((P.SERVER_ID, ip(SERVER)),)
        cases = [
            (MAC2, selecting + ((P.REQUESTED_ADDRESS, ip("198.51.100.5")),),
             b"address not on this network"),
            (MAC1, ((P.REQUESTED_ADDRESS, ip("192.0.2.11")),),
             b"this client has a reserved address"),
            (MAC2, selecting + ((P.REQUESTED_ADDRESS, ip("192.0.2.50")),),
             b"address in use by another client"),
            (MAC2, selecting + ((P.REQUESTED_ADDRESS, ip("192.0.2.99")),),
             b"address not in a dynamic range"),
        ]
        for mac, options, why in cases:
            nak = self.handle(server, iface, P.REQUEST, mac, options=options)
            self.assertEqual((nak.message_type, nak.options[P.MESSAGE]), (P.NAK, why))

    def test_nak_when_the_range_is_gone(self):
        server, iface, clock = make_server(BASIC)
        server.table.put(Lease("192.0.2.50", MAC1, b"", "", ACTIVE, clock.seconds(),
                               clock.seconds() + 3600, "srv1", 1))
        nak = self.handle(server, iface, P.REQUEST, ciaddr=ip("192.0.2.50"))
        self.assertEqual(nak.options[P.MESSAGE],
                         b"address no longer in a dynamic range")


class MoreRequestTests(SynchronousTestCase):
    """Requests the DORA tests above do not make."""

    def handle(self, server, iface, mtype, mac=MAC1, **kw):
        return server.handle(request(mtype, mac, **kw), iface)

    def test_infinite_lease(self):
        server, iface, clock = make_server([
            ("dhcp-range", "192.0.2.10,192.0.2.12,infinite")])
        offer = P.parse(self.handle(server, iface, P.DISCOVER).data)
        ack = self.handle(server, iface, P.REQUEST, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr)))
        options = P.parse(ack.data).options
        self.assertEqual(options[P.LEASE_TIME], INFINITE.to_bytes(4, "big"))
        self.assertNotIn(P.RENEWAL_TIME, options)
        self.assertNotIn(P.REBINDING_TIME, options)
        self.assertEqual(ack.commit[0].expiry, NEVER)

    def test_init_reboot_after_an_offer_acks(self):
        server, iface, _ = make_server(BASIC)
        offer = P.parse(self.handle(server, iface, P.DISCOVER).data)
        ack = self.handle(server, iface, P.REQUEST, options=(
            (P.REQUESTED_ADDRESS, offer.yiaddr),))
        self.assertEqual(P.parse(ack.data).message_type, P.ACK)

    def test_moving_to_another_address_releases_the_old_one(self):
        server, iface, clock = make_server(BASIC, authoritative=True)
        offer = P.parse(self.handle(server, iface, P.DISCOVER).data)
        [bound] = self.handle(server, iface, P.REQUEST, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr))).commit
        clock.advance(10)
        moved = self.handle(server, iface, P.REQUEST, options=(
            (P.REQUESTED_ADDRESS, ip("192.0.2.12")),))
        released, new = moved.commit
        self.assertEqual((released.ip, released.state, released.expiry),
                         ("192.0.2.10", RELEASED, clock.seconds()))
        self.assertEqual((new.ip, new.state), ("192.0.2.12", ACTIVE))
        self.assertGreater(released.version, bound.version)
        self.assertIs(server.table.get("192.0.2.10"), released)

    def test_no_hostname_or_a_bad_fqdn_gives_no_name(self):
        server, iface, _ = make_server(BASIC)
        for mac, extra in ((MAC1, ()), (MAC2, ((P.CLIENT_FQDN, b"\x04\x00\x00\x09x"),))):
            offer = P.parse(self.handle(server, iface, P.DISCOVER, mac).data)
            ack = self.handle(server, iface, P.REQUEST, mac, options=(
                (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr))
                + extra)
            self.assertEqual(ack.commit[0].hostname, "")

    def test_release_of_an_address_without_lease(self):
        server, iface, _ = make_server(BASIC)
        self.assertIsNone(self.handle(server, iface, P.RELEASE,
                                      ciaddr=ip("192.0.2.11")))
        self.assertEqual(server.stats["release_unknown"], 1)

    def test_inform_gets_its_range_options(self):
        server, iface, _ = make_server([
            ("dhcp-range", "set:lab,192.0.2.10,192.0.2.12,1h"),
            ("dhcp-option", "tag:lab,option:ntp-server,192.0.2.123")])
        inside = P.parse(self.handle(server, iface, P.INFORM,
                                     ciaddr=ip("192.0.2.11")).data)
        outside = P.parse(self.handle(server, iface, P.INFORM,
                                      ciaddr=ip("192.0.2.77")).data)
        self.assertEqual(inside.options[42], ip("192.0.2.123"))
        self.assertNotIn(42, outside.options)

    def test_decline_logged_with_client_and_address(self):
        events = []
        server, iface, _ = make_server(BASIC)
        server._log = Logger(observer=events.append)
        offer = P.parse(self.handle(server, iface, P.DISCOVER).data)
        decision = self.handle(server, iface, P.DECLINE, options=(
            (P.REQUESTED_ADDRESS, offer.yiaddr),))
        self.assertEqual(decision.commit[0].hostname, "")
        [event] = events
        self.assertEqual((event["log_level"], event["client"], event["ip"],
                          event["seconds"]),
                         (LogLevel.warn, "52:54:00:00:00:01", "192.0.2.10", 600))
        self.assertIn("declined", event["log_format"])
