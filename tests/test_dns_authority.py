"""LeaseAuthority: names from leases and configuration, on a task.Clock."""

import ipaddress

from twisted.internet import task
from twisted.logger import globalLogPublisher
from twisted.names import dns, error
from twisted.trial.unittest import SynchronousTestCase

from dhcpfo.dns import names, records
from dhcpfo.dns.authority import LEASE_TTL, NEGATIVE_TTL, LeaseAuthority, NameNotFound
from dhcpfo.leases.lease import ACTIVE, DECLINED, RELEASED, Lease
from dhcpfo.leases.table import LeaseTable

NET = ipaddress.ip_network("192.0.2.0/24")
_version = iter(range(1, 1 << 30))


def lease(ip, hostname, start=0, expiry=3600, state=ACTIVE, mac=None, cid=b""):
    mac = mac or bytes([0x52, 0x54, 0, 0, 0, int(ip.split(".")[-1])])
    return Lease(ip, mac, cid, hostname, state, start, expiry, "srv1", next(_version))


def values(answer):
    return sorted(rr.payload.dottedQuad() if rr.type == dns.A
                  else rr.payload.name.name.decode() for rr in answer.answers)


class AuthorityCase(SynchronousTestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.table = LeaseTable()
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def make(self, static=None, reserved=None, domain="lab.test", networks=(NET,),
             **kw):
        self.authority = LeaseAuthority(self.clock, domain=domain, networks=networks,
                                        static=static, reserved=reserved,
                                        server_name="srv1.example", **kw)
        self.table.listeners.append(self.authority.lease_changed)
        self.authority.start()
        self.addCleanup(self.authority.stop)
        return self.authority

    def ask(self, name, qtype=dns.A, qclass=dns.IN):
        return self.authority.answer(name, qtype, qclass)

    def assertNX(self, name, qtype=dns.A):
        answer = self.ask(name, qtype)
        self.assertEqual(answer.rcode, dns.ENAME, name)
        self.assertEqual([rr.type for rr in answer.authority], [dns.SOA])
        self.assertTrue(answer.authority[0].auth)
        return answer

    def logged(self, text):
        from twisted.logger import formatEvent
        return [formatEvent(e) for e in self.events if text in formatEvent(e)]


class LeaseNameTests(AuthorityCase):

    def test_lease_publishes_a_and_ptr(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1"))
        answer = self.ask("h1.lab.test")
        self.assertEqual(answer.rcode, dns.OK)
        self.assertEqual(values(answer), ["192.0.2.10"])
        self.assertTrue(answer.answers[0].auth)
        self.assertEqual(answer.answers[0].ttl, LEASE_TTL)
        self.assertEqual(values(self.ask("10.2.0.192.in-addr.arpa", dns.PTR)),
                         ["h1.lab.test"])
        self.assertEqual(self.authority.published(), {"h1.lab.test": "192.0.2.10"})

    def test_nodata_has_soa(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1"))
        answer = self.ask("h1.lab.test", dns.AAAA)
        self.assertEqual((answer.rcode, answer.answers), (dns.OK, []))
        soa = answer.authority[0]
        self.assertEqual(soa.type, dns.SOA)
        self.assertEqual(soa.name.name, b"lab.test")
        self.assertEqual(soa.payload.mname.name, b"srv1.lab.test")
        self.assertEqual((soa.ttl, soa.payload.minimum), (NEGATIVE_TTL, NEGATIVE_TTL))

    def test_unknown_names_in_our_zones_are_nxdomain(self):
        self.make()
        self.assertNX("nobody.lab.test")
        answer = self.assertNX("77.2.0.192.in-addr.arpa", dns.PTR)
        self.assertEqual(answer.authority[0].name.name, b"2.0.192.in-addr.arpa")
        self.assertIsNone(self.ask("example.org"))
        self.assertIsNone(self.ask("77.100.51.198.in-addr.arpa", dns.PTR))

    def test_apex(self):
        self.make()
        answer = self.ask("lab.test", dns.SOA)
        self.assertEqual([rr.type for rr in answer.answers], [dns.SOA])
        answer = self.ask("lab.test", dns.NS)
        self.assertEqual(values(answer), ["srv1.lab.test"])
        answer = self.ask("lab.test", dns.A)
        self.assertEqual((answer.rcode, answer.answers), (dns.OK, []))

    def test_ttl_bounded_by_lease_and_name_expires(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1", expiry=100))
        self.assertEqual(self.ask("h1.lab.test").answers[0].ttl, 60)
        self.clock.advance(70)
        self.assertEqual(self.ask("h1.lab.test").answers[0].ttl, 30)
        self.assertEqual(self.ask("10.2.0.192.in-addr.arpa", dns.PTR).answers[0].ttl, 30)
        self.clock.advance(29.5)
        self.assertEqual(self.ask("h1.lab.test").answers[0].ttl, 0)
        self.clock.advance(0.5)
        self.assertNX("h1.lab.test")
        self.assertNX("10.2.0.192.in-addr.arpa", dns.PTR)
        self.assertEqual(self.authority.published(), {})
        self.assertEqual(self.authority.fast, self._zone_entries())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def _zone_entries(self):
        keep = {names.to_wire(z) for z in self.authority.zones}
        return {k: v for k, v in self.authority.fast.items()
                if k[:-4] in keep}

    def test_fast_entries_leave_before_the_ttl_would_outlive_the_lease(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1", expiry=1000))
        key = names.to_wire("h1.lab.test") + b"\x00\x01\x00\x01"
        self.assertIn(key, self.authority.fast)
        self.clock.advance(1000 - LEASE_TTL)
        self.assertFalse(key in self.authority.fast)
        self.assertEqual(self.ask("h1.lab.test").answers[0].ttl, LEASE_TTL)

    def test_release_and_decline_remove_the_name(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1"))
        self.table.put(lease("192.0.2.10", "h1", state=RELEASED, expiry=10))
        self.assertNX("h1.lab.test")
        self.assertNX("10.2.0.192.in-addr.arpa", dns.PTR)
        self.table.put(lease("192.0.2.11", "h2"))
        self.table.put(lease("192.0.2.11", "", state=DECLINED))
        self.assertNX("h2.lab.test")

    def test_renamed_lease(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1"))
        self.table.put(lease("192.0.2.10", "h2"))
        self.assertNX("h1.lab.test")
        self.assertEqual(values(self.ask("h2.lab.test")), ["192.0.2.10"])
        self.assertEqual(values(self.ask("10.2.0.192.in-addr.arpa", dns.PTR)),
                         ["h2.lab.test"])

    def test_client_moves_to_another_address(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1"))
        self.table.put(lease("192.0.2.20", "h1", start=5))
        self.table.put(lease("192.0.2.10", "h1", state=RELEASED, expiry=5))
        self.assertEqual(values(self.ask("h1.lab.test")), ["192.0.2.20"])
        self.assertNX("10.2.0.192.in-addr.arpa", dns.PTR)

    def test_names_without_hostname_or_invalid_are_not_published(self):
        self.make()
        self.table.put(lease("192.0.2.10", ""))
        self.table.put(lease("192.0.2.11", "-bad"))
        self.assertEqual(self.authority.published(), {})
        self.assertNX("11.2.0.192.in-addr.arpa", dns.PTR)

    def test_leases_loaded_before_start(self):
        self.table.put(lease("192.0.2.10", "h1"))
        authority = LeaseAuthority(self.clock, domain="lab.test", networks=[NET])
        authority.load(list(self.table))
        authority.start()
        self.assertEqual(values(authority.answer("h1.lab.test", dns.A)), ["192.0.2.10"])
        authority.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_infinite_lease_schedules_nothing(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1", expiry=float(1 << 62)))
        self.assertEqual(self.ask("h1.lab.test").answers[0].ttl, LEASE_TTL)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_without_domain_names_are_bare(self):
        self.make(domain="")
        self.table.put(lease("192.0.2.10", "h1"))
        self.assertEqual(values(self.ask("h1")), ["192.0.2.10"])
        self.assertEqual(values(self.ask("10.2.0.192.in-addr.arpa", dns.PTR)), ["h1"])

    def test_reservation_name_with_domain(self):
        self.make()
        self.table.put(lease("192.0.2.10", "printer.lab.test"))
        self.assertEqual(values(self.ask("printer.lab.test")), ["192.0.2.10"])

    def test_other_class_is_refused(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1"))
        self.assertEqual(self.ask("h1.lab.test", dns.TXT, dns.CH).rcode, dns.EREFUSED)
        self.assertEqual(self.ask("h1.lab.test", dns.A, dns.ANY).rcode, dns.OK)

    def test_any_query(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1"))
        self.assertEqual(values(self.ask("h1.lab.test", dns.ALL_RECORDS)),
                         ["192.0.2.10"])


class ConflictTests(AuthorityCase):

    def test_first_live_holder_keeps_the_name_and_the_other_is_logged(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1", start=0))
        self.clock.advance(10)
        self.table.put(lease("192.0.2.11", "h1", start=10, expiry=4000))
        # the newcomer does not take the name over
        self.assertEqual(values(self.ask("h1.lab.test")), ["192.0.2.10"])
        self.assertNX("11.2.0.192.in-addr.arpa", dns.PTR)
        self.assertEqual(values(self.ask("10.2.0.192.in-addr.arpa", dns.PTR)),
                         ["h1.lab.test"])
        self.assertEqual(len(self.logged("not published for 192.0.2.11")), 1)
        self.assertEqual(self.authority.stats["conflicts"], 1)
        # renewals (of either) change nothing and log nothing more
        self.table.put(lease("192.0.2.11", "h1", start=20, expiry=4000))
        self.table.put(lease("192.0.2.10", "h1", start=30, expiry=4000))
        self.assertEqual(values(self.ask("h1.lab.test")), ["192.0.2.10"])
        self.assertEqual(len(self.logged("not published for")), 1)
        # the holder leaves: the other gets the name
        self.table.put(lease("192.0.2.10", "h1", state=RELEASED, expiry=40))
        self.assertEqual(values(self.ask("h1.lab.test")), ["192.0.2.11"])
        self.assertEqual(values(self.ask("11.2.0.192.in-addr.arpa", dns.PTR)),
                         ["h1.lab.test"])

    def test_holder_expires_then_other_lease_answers(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1", start=0, expiry=200))
        self.table.put(lease("192.0.2.11", "h1", start=1, expiry=5000))
        self.assertEqual(values(self.ask("h1.lab.test")), ["192.0.2.10"])
        self.clock.advance(200)
        self.assertEqual(values(self.ask("h1.lab.test")), ["192.0.2.11"])

    def test_conflict_lines_are_rate_limited(self):
        self.make()
        for i in range(20):
            self.table.put(lease("192.0.2.%d" % (10 + i), "h1"))
        self.assertEqual(self.authority.stats["conflicts"], 19)
        self.assertEqual(len(self.logged("not published for")), 1)

    def test_reservation_wins_over_newer_lease(self):
        reserved_mac = b"\x52\x54\x00\xaa\xbb\xcc"
        self.make(reserved=lambda l: l.hwaddr == reserved_mac and l.hostname == "printer")
        self.table.put(lease("192.0.2.10", "printer", start=0, mac=reserved_mac))
        self.table.put(lease("192.0.2.11", "printer", start=50))
        self.assertEqual(values(self.ask("printer.lab.test")), ["192.0.2.10"])
        self.assertTrue(self.logged("192.0.2.10 has the reservation"))

    def test_configured_name_wins(self):
        static = records.build_static("lab.test",
                                      [records.parse_host_record("nas,192.0.2.9")])
        self.make(static=static)
        self.table.put(lease("192.0.2.10", "nas"))
        self.assertEqual(values(self.ask("nas.lab.test")), ["192.0.2.9"])
        self.assertTrue(self.logged("it is a configured name"))
        self.assertNX("10.2.0.192.in-addr.arpa", dns.PTR)

    def test_reservation_with_address_is_static_and_its_lease_agrees(self):
        static = records.build_static("lab.test",
                                      reservations=[("192.0.2.50", "printer")])
        self.make(static=static)
        self.table.put(lease("192.0.2.50", "printer"))
        self.assertEqual(values(self.ask("printer.lab.test")), ["192.0.2.50"])
        self.assertEqual(self.logged("not published"), [])
        self.assertEqual(values(self.ask("50.2.0.192.in-addr.arpa", dns.PTR)),
                         ["printer.lab.test"])


class StaticTests(AuthorityCase):

    def test_host_records_hosts_files_and_address_rules(self):
        hosts = records.HostsFile("h", (("192.0.2.30", ("files", "alias.example")),
                                        ("2001:db8::30", ("files",))))
        static = records.build_static(
            "lab.test",
            [records.parse_host_record("a.b.lab.test,192.0.2.20,600")],
            [records.parse_address("/ads.example/#"),
             records.parse_address("/blocked.example/")],
            [hosts])
        self.make(static=static)
        answer = self.ask("a.b.lab.test")
        self.assertEqual(values(answer), ["192.0.2.20"])
        self.assertEqual(answer.answers[0].ttl, 600)
        # b.lab.test exists (empty non-terminal): NODATA, not NXDOMAIN
        answer = self.ask("b.lab.test")
        self.assertEqual((answer.rcode, answer.answers), (dns.OK, []))
        self.assertEqual(values(self.ask("files")), ["192.0.2.30"])
        self.assertEqual(values(self.ask("files.lab.test")), ["192.0.2.30"])
        self.assertEqual(values(self.ask("alias.example")), ["192.0.2.30"])
        answer = self.ask("files.lab.test", dns.AAAA)
        self.assertEqual([rr.payload.address for rr in answer.answers],
                         [ipaddress.ip_address("2001:db8::30").packed])
        self.assertEqual(values(self.ask("30.2.0.192.in-addr.arpa", dns.PTR)),
                         ["files.lab.test"])
        # --address: the domain and everything below; no address: NXDOMAIN
        self.assertEqual(values(self.ask("x.y.ads.example")), ["0.0.0.0"])
        self.assertEqual(self.ask("ads.example", dns.AAAA).answers[0].type, dns.AAAA)
        self.assertEqual(self.ask("x.blocked.example").rcode, dns.ENAME)
        self.assertTrue(self.authority.owns("x.blocked.example"))
        self.assertFalse(self.authority.owns("example.org"))


class ResolverInterfaceTests(AuthorityCase):
    """The authority as a twisted.names IResolver."""

    def test_lookup(self):
        self.make()
        self.table.put(lease("192.0.2.10", "h1"))
        answers, authority, additional = self.successResultOf(
            self.authority.lookupAddress("h1.lab.test"))
        self.assertEqual(answers[0].payload.dottedQuad(), "192.0.2.10")
        failure = self.failureResultOf(self.authority.lookupAddress("x.lab.test"),
                                       NameNotFound)
        self.assertEqual(failure.value.authority[0].type, dns.SOA)
        self.failureResultOf(self.authority.lookupAddress("example.org"),
                             error.DomainError)
        result = self.successResultOf(self.authority.query(
            dns.Query(b"H1.LAB.TEST", dns.A, dns.IN)))
        self.assertEqual(len(result[0]), 1)


class ReverseZoneTests(SynchronousTestCase):

    def test_octet_boundaries(self):
        self.assertEqual(names.reverse_zones(ipaddress.ip_network("192.0.2.0/24")),
                         ["2.0.192.in-addr.arpa"])
        self.assertEqual(names.reverse_zones(ipaddress.ip_network("198.18.0.0/15")),
                         ["18.198.in-addr.arpa", "19.198.in-addr.arpa"])
        zones = names.reverse_zones(ipaddress.ip_network("203.0.113.64/26"))
        self.assertEqual(len(zones), 64)
        self.assertEqual(zones[0], "64.113.0.203.in-addr.arpa")
        self.assertEqual(len(names.reverse_zones(ipaddress.ip_network("198.0.0.0/9"))),
                         128)

    def test_authority_for_a_15(self):
        authority = LeaseAuthority(task.Clock(), domain="lab.test",
                                   networks=[ipaddress.ip_network("198.18.0.0/15")])
        self.assertEqual(authority.zone_of("1.0.19.198.in-addr.arpa"),
                         "19.198.in-addr.arpa")
        self.assertIsNone(authority.zone_of("1.0.20.198.in-addr.arpa"))


class ReservedNameTests(AuthorityCase):

    def test_wpad_and_localhost_are_never_published(self):
        self.make()
        for ip, name in (("192.0.2.10", "wpad"), ("192.0.2.11", "wpad"),
                         ("192.0.2.12", "localhost")):
            self.table.put(lease(ip, name))
        self.assertNX("wpad.lab.test")
        self.assertNX("localhost.lab.test")
        self.assertNX("10.2.0.192.in-addr.arpa", dns.PTR)
        self.assertEqual(self.authority.published(), {})
        self.assertEqual(self.authority.stats["names_denied"], 3)
        # logged, at most one line a minute
        self.assertEqual(len(self.logged("not published")), 1)

    def test_the_servers_own_name_is_reserved(self):
        self.make()
        self.table.put(lease("192.0.2.10", "srv1"))
        # srv1.lab.test is the zone's NS: a client cannot take it
        self.assertNX("srv1.lab.test")
        ns = self.ask("lab.test", dns.NS)
        self.assertEqual([rr.payload.name.name for rr in ns.answers], [b"srv1.lab.test"])
        self.assertEqual(self.authority.published(), {})
        self.assertEqual(self.authority.stats["names_denied"], 1)

    def test_deny_list_with_wildcards(self):
        self.make(deny=("printer*", "gw"), reserved_names=("peer2",))
        for ip, name in (("192.0.2.10", "printer-3"), ("192.0.2.11", "gw"),
                         ("192.0.2.12", "peer2"), ("192.0.2.13", "wpad"),
                         ("192.0.2.14", "gwx")):
            self.table.put(lease(ip, name))
        self.assertEqual(self.authority.published(),
                         {"wpad.lab.test": "192.0.2.13", "gwx.lab.test": "192.0.2.14"})
