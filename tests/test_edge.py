"""The DHCP edge (issue 10 items 1, 7, 8): hostile requests are bounded,
counted and dropped; floods of offers and declines cannot empty the pool."""

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from dhcpfo.dhcp import packet as P
from dhcpfo import config as C
from dhcpfo.dhcp.edge import DECLINE_PROBATION
from dhcpfo.leases.lease import MAX_CLIENT_ID, MAX_HOSTNAME, fields_problem
from tests.test_server import BASIC, SERVER, ip, make_server, request


def mac(n):
    return bytes.fromhex("02000000") + n.to_bytes(2, "big")


class BoundsTests(SynchronousTestCase):
    """Item 1: a request past a bound is dropped and counted, never leased."""

    def setUp(self):
        self.server, self.iface, self.clock = make_server(BASIC)

    def handle(self, mtype, options=(), **fields):
        return self.server.handle(request(mtype, options=options, **fields), self.iface)

    def assertDropped(self, options=(), **fields):
        before = self.server.stats["malformed"]
        self.assertIsNone(self.handle(P.DISCOVER, options, **fields))
        self.assertIsNone(self.handle(P.REQUEST, tuple(options) + (
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, ip("192.0.2.10"))),
            **fields))
        self.assertEqual(self.server.stats["malformed"], before + 2)
        self.assertEqual(len(self.server.table), 0)
        self.assertEqual(self.server.offers.by_ip, {})

    def test_concatenated_client_id_of_400_bytes(self):
        # RFC 3396: two 200-byte option-61 instances arrive as one 400-byte id.
        self.assertDropped(((P.CLIENT_ID, b"\x01" + b"x" * 399),))

    def test_client_id_of_255_bytes_is_served(self):
        offer = self.handle(P.DISCOVER, ((P.CLIENT_ID, b"\x01" + b"x" * 254),))
        self.assertIsNotNone(offer)

    def test_hostname_longer_than_a_dns_name(self):
        self.assertDropped(((P.HOSTNAME, b"a" * 254),))

    def test_fqdn_longer_than_a_dns_name(self):
        self.assertDropped(((P.CLIENT_FQDN, b"\x01\x00\x00" + b"a" * 256),))

    def test_no_client_identity(self):
        # hlen 0 and no option 61: every such client would share one key.
        self.assertDropped(hlen=0)

    def test_bounds_within_the_lease_record_bounds(self):
        """What the edge accepts always fits what failover replicates."""
        from dhcpfo.dhcp import edge
        self.assertLessEqual(edge.MAX_CLIENT_ID, MAX_CLIENT_ID)
        self.assertLessEqual(edge.MAX_NAME, MAX_HOSTNAME)

    def test_largest_accepted_request_makes_a_replicable_lease(self):
        hostname = (b"h" * 63 + b".") * 3 + b"h" * 61   # 253 bytes
        options = ((P.CLIENT_ID, b"\x01" + b"x" * 254), (P.HOSTNAME, hostname))
        offer = P.parse(self.handle(P.DISCOVER, options).data)
        decision = self.handle(P.REQUEST, options + (
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, offer.yiaddr)))
        [lease] = decision.commit
        self.assertIsNone(fields_problem(lease))

    def test_drops_logged_once_an_interval(self):
        events = []
        self.server._log = Logger(observer=events.append)
        for _ in range(50):
            self.handle(P.DISCOVER, ((P.HOSTNAME, b"a" * 300),))
        self.assertEqual(len(events), 1)
        self.assertEqual(self.server.stats["malformed"], 50)


class DeclineLimitTests(SynchronousTestCase):
    """Item 8: DISCOVER+DECLINE cycles cannot quarantine the pool."""

    def setUp(self):
        self.server, self.iface, self.clock = make_server(
            [("dhcp-range", "192.0.2.10,192.0.2.250,1h")])

    def cycle(self, client=None):
        kw = {} if client is None else {"mac": client}
        self.clock.advance(0.1)   # under the DISCOVER rate limit
        offer = self.server.handle(request(P.DISCOVER, **kw), self.iface)
        if offer is None:
            return None
        yiaddr = P.parse(offer.data).yiaddr
        return self.server.handle(request(P.DECLINE, options=(
            (P.REQUESTED_ADDRESS, yiaddr),), **kw), self.iface)

    def quarantined(self):
        now = self.clock.seconds()
        return sum(1 for lease in self.server.table if lease.holds(now))

    def test_one_mac_cannot_empty_the_pool(self):
        for _ in range(241):
            self.cycle()
        self.assertLessEqual(self.quarantined(), 3)
        self.assertGreater(self.server.stats["decline_limited"], 200)
        # A real client still gets an address.
        self.assertIsNotNone(self.server.handle(
            request(P.DISCOVER, mac=mac(9999)), self.iface))

    def test_many_macs_cannot_empty_the_pool(self):
        for n in range(241):
            self.cycle(mac(n))
        self.assertLess(self.quarantined(), 241 // 4)
        self.assertIsNotNone(self.server.handle(
            request(P.DISCOVER, mac=mac(9999)), self.iface))

    def test_a_real_conflict_is_still_declined(self):
        decision = self.cycle()
        [declined] = decision.commit
        self.assertEqual(self.quarantined(), 1)
        self.assertEqual(self.server.stats["decline"], 1)

    def test_limits_start_over_after_the_interval(self):
        for _ in range(10):
            self.cycle()
        first = self.server.stats["decline"]
        self.clock.advance(DECLINE_PROBATION)
        self.cycle()
        self.assertEqual(self.server.stats["decline"], first + 1)

    def test_declines_logged_once_an_interval(self):
        events = []
        self.server._log = Logger(observer=events.append)
        for n in range(20):
            self.cycle(mac(n))
        def lines(text):
            return len([e for e in events if text in e["log_format"]])
        self.assertEqual((lines("another host uses it"), lines("over the decline limit")),
                         (1, 1))
        stats = self.server.stats
        self.assertEqual(stats["decline"] + stats["decline_limited"], 20)


DISCOVER_RATE, DISCOVER_BURST = 100, 200


class RateLimitOptionTests(SynchronousTestCase):
    """--dhcp-rate-limit RATE[,BURST]: configurable, on by default, 0 is off."""

    def flood(self, args, count=5000):
        server, iface, _ = make_server([("dhcp-range", "192.0.2.10,192.0.2.200,1h")]
                                       + args)
        for n in range(count):  # all in one instant: only the burst passes
            server.handle(request(P.DISCOVER, mac=mac(n)), iface)
        return server.stats["rate_limited"]

    def test_parsed(self):
        base = [("dhcp-range", "192.0.2.10,192.0.2.200,1h")]
        self.assertEqual(C.build(base).dhcp_rate_limit, (1000, 2000))
        self.assertEqual(C.build(base + [("dhcp-rate-limit", "50")]).dhcp_rate_limit,
                         (50, 100))
        self.assertEqual(C.build(base + [("dhcp-rate-limit", "50,70")]).dhcp_rate_limit,
                         (50, 70))
        self.assertIsNone(C.build(base + [("dhcp-rate-limit", "0")]).dhcp_rate_limit)
        for bad in ("fast", "-1", "10,0", "1,2,3", ""):
            with self.assertRaises(C.ConfigError, msg=bad) as caught:
                C.build(base + [("dhcp-rate-limit", bad)])
            self.assertIn("dhcp-rate-limit", str(caught.exception))

    def test_default_limits_a_flood_past_its_burst(self):
        self.assertEqual(self.flood([]), 5000 - 2000)

    def test_configured_limit(self):
        self.assertEqual(self.flood([("dhcp-rate-limit", "10,30")]), 5000 - 30)

    def test_zero_turns_it_off(self):
        self.assertEqual(self.flood([("dhcp-rate-limit", "0")]), 0)


class OfferFloodTests(SynchronousTestCase):
    """Item 7: offers cannot starve a real client; the offer table is bounded;
    a DISCOVER flood is limited per interface or relay; a full pool is not
    scanned on every DISCOVER."""

    def setUp(self):
        # A /24 range of 191 addresses, as in the report.
        self.server, self.iface, self.clock = make_server(
            [("dhcp-range", "192.0.2.10,192.0.2.200,1h"),
             ("dhcp-rate-limit", "%d,%d" % (DISCOVER_RATE, DISCOVER_BURST))])

    def discover(self, client, **fields):
        return self.server.handle(request(P.DISCOVER, mac=client, **fields), self.iface)

    def flood(self, count, every=0.01, **fields):
        for n in range(count):
            self.discover(mac(n), **fields)
            self.clock.advance(every)

    def test_a_real_client_gets_an_address_after_a_flood(self):
        self.flood(4000)
        offer = self.discover(MAC_REAL)
        self.assertIsNotNone(offer)
        yiaddr = P.parse(offer.data).yiaddr
        self.flood(50, every=0.01)  # the flood goes on while the client requests
        ack = self.server.handle(request(P.REQUEST, mac=MAC_REAL, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, yiaddr))), self.iface)
        self.assertEqual(P.parse(ack.data).message_type, P.ACK)

    def test_offer_table_is_bounded(self):
        self.flood(22920, every=0.05)
        offers = self.server.offers
        self.assertLessEqual(len(offers.of_client), 191)
        self.assertEqual(len(offers.of_client), len(offers.by_ip))

    def test_flood_limited_per_interface_or_relay(self):
        events = []
        self.server._log = Logger(observer=events.append)
        self.flood(5000, every=0)
        limited = self.server.stats["rate_limited"]
        self.assertEqual(limited, 5000 - DISCOVER_BURST)
        self.assertEqual(len([e for e in events if "limit" in e["log_format"]]), 1)
        # Another relay is not limited by this one's flood (the pool is
        # full of the burst's offers: it is told so, not rate limited).
        relayed = request(P.DISCOVER, mac=MAC_REAL, giaddr=ip("192.0.2.254"))
        self.assertIsNone(self.server.handle(relayed, self.iface))
        self.assertEqual(self.server.stats["rate_limited"], limited)
        self.assertEqual(self.server.stats["exhausted"], DISCOVER_BURST - 191 + 1)
        # Once the burst's offers are old enough, the oldest is reused.
        self.clock.advance(2)
        self.assertIsNotNone(self.server.handle(relayed, self.iface))
        self.assertEqual(self.server.stats["offer_reused"], 1)

    def test_full_pool_is_not_scanned_on_every_discover(self):
        from dhcpfo.leases.lease import ACTIVE, Lease
        from dhcpfo.addr import ip_str
        now = self.clock.seconds()
        for n in range(10, 201):
            self.server.table.put(Lease(ip_str(0xC0000200 + n), b"\x02" * 6, b"", "",
                                        ACTIVE, now, now + 3600, "srv1", 1))
        checks = []
        available = self.server._available

        def counting(*args):
            checks.append(args[0])
            return available(*args)
        self.server._available = counting
        for n in range(100):
            self.assertIsNone(self.discover(mac(n)))
            self.clock.advance(0.005)
        self.assertLess(len(checks), 2 * 191)
        # A released address is found at once.
        self.server.table.put(Lease("192.0.2.77", b"\x02" * 6, b"", "", "released",
                                    now, self.clock.seconds(), "srv1", 2))
        offer = self.discover(MAC_REAL)
        self.assertEqual(P.parse(offer.data).yiaddr, ip("192.0.2.77"))


MAC_REAL = bytes.fromhex("525400000777")
