"""Forwarder (failover, fast SERVFAIL, back-off) and DNSCache, on task.Clock;
the UDP exchange against a responder on loopback."""

import errno
import os
import socket

from twisted.internet import defer, protocol, reactor, task
from twisted.names import dns, error
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dhcpfo.dns import forward, upstream
from dhcpfo.dns.cache import DNSCache
from dhcpfo.dns.forward import Forwarder, UpstreamsDown

UP1 = ("203.0.113.2", 53)
UP2 = ("203.0.113.3", 53)


def soa(ttl=300, minimum=60):
    return dns.RRHeader(b"example", dns.SOA, dns.IN, ttl,
                        dns.Record_SOA(b"ns.example", b"h.example", minimum=minimum))


def reply(q, rcode=dns.OK, answers=(), authority=(), name=None):
    m = dns.Message(id=9, answer=1, rCode=rcode)
    m.queries = [dns.Query(name or q.name.name, q.type, q.cls)]
    m.answers = list(answers)
    m.authority = list(authority)
    return m


def a_record(name, ip="203.0.113.7", ttl=100):
    return dns.RRHeader(name, dns.A, dns.IN, ttl, dns.Record_A(ip, ttl))


class FakeUpstreams:
    """``send`` for the Forwarder: records calls, answers as told."""

    def __init__(self, clock):
        self.clock = clock
        self.calls = []
        self.behaviour = {}     # address -> callable(query) -> Deferred

    def __call__(self, address, query, timeout):
        self.calls.append((address, query.name.name))
        how = self.behaviour.get(address, "answer")
        if how == "answer":
            return defer.succeed(reply(query, answers=[a_record(query.name.name,
                                                                "203.0.113.%d" %
                                                                (7 if address == UP1
                                                                 else 8))]))
        if how == "silent":
            d = defer.Deferred()
            self.clock.callLater(timeout, d.errback,
                                 error.DNSQueryTimeoutError(query))
            return d
        return defer.succeed(how(query))


class ForwarderTests(SynchronousTestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.up = FakeUpstreams(self.clock)
        self.cache = DNSCache(self.clock)
        self.forwarder = Forwarder([UP1, UP2], self.clock, cache=self.cache,
                                   send=self.up)

    def resolve(self, name, qtype=dns.A):
        return self.forwarder.resolve(dns.Query(name, qtype, dns.IN))

    def test_first_upstream_answers(self):
        rcode, answers, _, _ = self.successResultOf(self.resolve(b"a.example"))
        self.assertEqual(rcode, dns.OK)
        self.assertEqual(answers[0].payload.dottedQuad(), "203.0.113.7")
        self.assertFalse(answers[0].auth)
        self.assertEqual(self.up.calls, [(UP1, b"a.example")])

    def test_failover_on_timeout_then_skip_then_probe(self):
        self.up.behaviour[UP1] = "silent"
        d = self.resolve(b"a.example")
        self.assertNoResult(d)
        self.clock.advance(forward.TIMEOUT)
        rcode, answers, _, _ = self.successResultOf(d)
        self.assertEqual(answers[0].payload.dottedQuad(), "203.0.113.8")
        # the name or the server?  A health check asks it; meanwhile it is
        # asked last
        self.assertTrue(self.forwarder.upstreams[0].suspect)
        self.assertIn((UP1, b""), self.up.calls)
        self.successResultOf(self.resolve(b"b.example"))
        self.assertEqual(self.up.calls[-1], (UP2, b"b.example"))
        # the health check is not answered either: down
        self.clock.advance(forward.TIMEOUT)
        self.assertFalse(self.forwarder.upstreams[0].up)
        # while it is down, the first upstream is not asked
        self.successResultOf(self.resolve(b"c.example"))
        self.assertEqual([c[0] for c in self.up.calls], [UP1, UP1, UP2, UP2, UP2])
        # after the back-off, one question probes it; it is back
        self.clock.advance(forward.RETRY_MIN)
        self.up.behaviour[UP1] = "answer"
        self.successResultOf(self.resolve(b"d.example"))
        self.assertEqual(self.up.calls[-1], (UP1, b"d.example"))
        self.assertTrue(self.forwarder.upstreams[0].up)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_all_down_fails_fast_and_backs_off(self):
        self.up.behaviour[UP1] = self.up.behaviour[UP2] = "silent"
        d = self.resolve(b"a.example")
        for _ in range(3):      # UP1, UP2 (and UP1's check), UP2's check
            self.clock.advance(forward.TIMEOUT)
        self.failureResultOf(d, error.DNSServerError)
        self.assertEqual([u.up for u in self.forwarder.upstreams], [False, False])
        calls = len(self.up.calls)
        # both known down: SERVFAIL at once, nobody asked
        self.failureResultOf(self.resolve(b"b.example"), UpstreamsDown)
        self.assertEqual(len(self.up.calls), calls)
        self.assertEqual(self.forwarder.stats["servfail_fast"], 1)
        # a probe after the back-off; it fails again: the back-off doubles
        self.clock.advance(forward.RETRY_MIN)
        d = self.resolve(b"c.example")
        self.clock.advance(forward.TIMEOUT)
        self.clock.advance(forward.TIMEOUT)
        self.failureResultOf(d, error.DNSServerError)
        self.assertEqual(self.forwarder.upstreams[0].backoff, 2 * forward.RETRY_MIN)

    def test_one_probe_at_a_time(self):
        self.forwarder = Forwarder([UP1], self.clock, send=self.up)
        self.up.behaviour[UP1] = "silent"
        d = self.resolve(b"a.example")
        self.clock.advance(forward.TIMEOUT)
        self.failureResultOf(d)
        self.clock.advance(forward.TIMEOUT)      # the health check
        self.assertFalse(self.forwarder.upstreams[0].up)
        self.clock.advance(forward.RETRY_MIN)
        probe = self.resolve(b"b.example")
        self.failureResultOf(self.resolve(b"c.example"), UpstreamsDown)
        self.clock.advance(forward.TIMEOUT)
        self.failureResultOf(probe)

    def test_one_slow_name_never_marks_down(self):
        # a name that never resolves, asked again and again, in a quiet time
        self.forwarder = Forwarder([UP1], self.clock, send=self.up)
        held = lambda q: reply(q) if q.name.name != b"slow.example" else None  # noqa: E731

        def send(address, query, timeout):
            answer = held(query)
            if answer is not None:
                return defer.succeed(answer)
            d = defer.Deferred()
            self.clock.callLater(timeout, d.errback, error.DNSQueryTimeoutError(query))
            return d
        self.forwarder.send = send
        self.successResultOf(self.resolve(b"fine.example"))
        for _ in range(5):
            d = self.resolve(b"slow.example")
            self.clock.advance(forward.TIMEOUT)
            self.failureResultOf(d, error.DNSServerError)
            self.assertTrue(self.forwarder.upstreams[0].up)
        self.assertEqual(self.forwarder.stats["upstream_slow"], 5)
        # the server itself falls silent: its health check fails, down
        held = lambda q: None    # noqa: E731
        d = self.resolve(b"slow2.example")
        self.clock.advance(forward.TIMEOUT)
        self.failureResultOf(d, error.DNSServerError)
        self.clock.advance(forward.TIMEOUT)      # its health check too
        self.failureResultOf(self.resolve(b"other.example"), UpstreamsDown)

    def test_servfail_moves_on_without_marking_down(self):
        self.up.behaviour[UP1] = lambda q: reply(q, dns.ESERVER)
        rcode, answers, _, _ = self.successResultOf(self.resolve(b"a.example"))
        self.assertEqual(answers[0].payload.dottedQuad(), "203.0.113.8")
        self.assertTrue(self.forwarder.upstreams[0].up)
        self.up.behaviour[UP2] = lambda q: reply(q, dns.EREFUSED)
        rcode, _, _, _ = self.successResultOf(self.resolve(b"b.example"))
        self.assertEqual(rcode, dns.ESERVER)
        self.failureResultOf(self.forwarder.lookupAddress(b"b.example"),
                             error.DNSServerError)

    def test_answer_to_another_question_is_ignored(self):
        self.up.behaviour[UP1] = lambda q: reply(q, name=b"evil.example",
                                                 answers=[a_record(b"evil.example")])
        rcode, answers, _, _ = self.successResultOf(self.resolve(b"a.example"))
        self.assertEqual(answers[0].payload.dottedQuad(), "203.0.113.8")

    def test_identical_questions_share_one_upstream_query(self):
        held = defer.Deferred()
        self.up.behaviour[UP1] = "held"
        self.forwarder.send = lambda address, q, t: (self.up.calls.append(q), held)[1]
        d1 = self.resolve(b"a.example")
        d2 = self.resolve(b"A.EXAMPLE")
        self.assertEqual(len(self.up.calls), 1)
        held.callback(reply(dns.Query(b"a.example"), answers=[a_record(b"a.example")]))
        self.assertEqual(self.successResultOf(d1)[1][0].payload.dottedQuad(),
                         "203.0.113.7")
        self.assertEqual(self.successResultOf(d2)[1][0].payload.dottedQuad(),
                         "203.0.113.7")

    def test_cache_positive_and_negative(self):
        self.up.behaviour[UP1] = lambda q: (
            reply(q, dns.ENAME, authority=[soa(300, 60)]) if q.name.name == b"nx.example"
            else reply(q, answers=[a_record(q.name.name, ttl=100)]))
        self.successResultOf(self.resolve(b"a.example"))
        self.clock.advance(30)
        _, answers, _, _ = self.successResultOf(self.resolve(b"a.example"))
        self.assertEqual(answers[0].ttl, 70)
        self.assertEqual(len(self.up.calls), 1)
        self.clock.advance(70)
        self.successResultOf(self.resolve(b"a.example"))
        self.assertEqual(len(self.up.calls), 2)
        # NXDOMAIN with SOA: cached for min(SOA TTL, MINIMUM) = 60
        failure = self.failureResultOf(self.forwarder.lookupAddress(b"nx.example"),
                                       error.DNSNameError)
        self.assertEqual(failure.value.args[0].authority[0].type, dns.SOA)
        self.clock.advance(59)
        rcode, _, authority, _ = self.successResultOf(self.resolve(b"nx.example"))
        self.assertEqual((rcode, authority[0].ttl), (dns.ENAME, 241))
        self.assertEqual(len(self.up.calls), 3)
        self.clock.advance(1)
        self.successResultOf(self.resolve(b"nx.example"))
        self.assertEqual(len(self.up.calls), 4)


class CacheTests(SynchronousTestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.cache = DNSCache(self.clock, max_entries=3)

    def test_negative_without_soa_not_cached(self):
        self.assertEqual(self.cache.put("a", 1, 1, dns.ENAME, [], [], []), 0)
        self.assertIsNone(self.cache.get("a", 1, 1))

    def test_nodata_with_soa_cached(self):
        self.assertEqual(self.cache.put("a", 28, 1, dns.OK, [], [soa(30, 60)], []), 30)
        self.assertEqual(self.cache.get("a", 28, 1).rcode, dns.OK)

    def test_servfail_and_zero_ttl_not_cached(self):
        self.assertEqual(self.cache.put("a", 1, 1, dns.ESERVER, [], [soa()], []), 0)
        self.assertEqual(self.cache.put("b", 1, 1, dns.OK, [a_record(b"b", ttl=0)],
                                        [], []), 0)
        self.assertEqual(len(self.cache), 0)

    def test_ttl_is_the_smallest_and_capped(self):
        self.assertEqual(self.cache.put("a", 1, 1, dns.OK,
                                        [a_record(b"a", ttl=50), a_record(b"a", ttl=10)],
                                        [], []), 10)
        self.assertEqual(self.cache.put("b", 1, 1, dns.OK,
                                        [a_record(b"b", ttl=1 << 31)], [], []), 86400)

    def test_least_recently_used_goes(self):
        for name in "abc":
            self.cache.put(name, 1, 1, dns.OK, [a_record(name.encode())], [], [])
        self.cache.get("a", 1, 1)
        self.cache.put("d", 1, 1, dns.OK, [a_record(b"d")], [], [])
        self.assertIsNone(self.cache.get("b", 1, 1))
        self.assertIsNotNone(self.cache.get("a", 1, 1))
        self.assertEqual(len(self.cache), 3)


class Responder(protocol.DatagramProtocol):
    """Answers every query three times: first with the wrong id, then with
    the right id but another question (each with an address nobody asked
    for), then as asked, unless ``honest`` is False."""

    def __init__(self, honest=True):
        self.honest = honest

    def datagramReceived(self, data, addr):
        q = dns.Message()
        q.fromStr(data)
        question = q.queries[0]
        forged = [(q.id ^ 1, question), (q.id, dns.Query(b"other.example"))]
        for id_, asked in forged:
            m = reply(asked, answers=[a_record(asked.name.name, FORGED)])
            m.id = id_
            self.transport.write(m.toStr(), addr)
        if self.honest:
            m = reply(question, answers=[a_record(question.name.name)])
            m.id = q.id
            self.transport.write(m.toStr(), addr)


FORGED = "203.0.113.66"


class UDPExchangeTests(TestCase):
    """The real UDP transport of the forwarder, on 127.0.0.1 (ephemeral ports)."""

    def setUp(self):
        self.sender = upstream.Sender(reactor)
        self.addCleanup(self.sender.close)

    def exchange(self, responder, timeout=30):
        port = reactor.listenUDP(0, responder, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return self.sender.exchange(("127.0.0.1", port.getHost().port),
                                    dns.Query(b"a.example"), timeout)

    @defer.inlineCallbacks
    def test_answer_only_with_our_id_and_question(self):
        message = yield self.exchange(Responder()).deferred
        self.assertEqual(message.answers[0].payload.dottedQuad(), "203.0.113.7")

    @defer.inlineCallbacks
    def test_forged_answers_alone_time_out(self):
        exchange = self.exchange(Responder(honest=False), timeout=0.5)
        with self.assertRaises(error.DNSQueryTimeoutError):
            yield exchange.deferred

    @defer.inlineCallbacks
    def test_port_unreachable_fails_before_the_timeout(self):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
        probe.close()
        exchange = self.sender.exchange(("127.0.0.1", closed),
                                        dns.Query(b"a.example"), 30)
        # the ICMP error fails it (ECONNREFUSED), not the 30 s timer
        with self.assertRaises(OSError) as caught:
            yield exchange.deferred
        self.assertEqual(caught.exception.errno, errno.ECONNREFUSED)
        self.assertIsNone(exchange.timer)


class Upstream(protocol.DatagramProtocol):
    """An upstream server on loopback: answers at once, except the names in
    ``slow`` (never) or everything when ``silent``."""

    def __init__(self, silent=False, slow=()):
        self.silent = silent
        self.slow = set(slow)
        self.asked = []         # the names asked, health checks left out

    def datagramReceived(self, data, addr):
        q = dns.Message()
        q.fromStr(data)
        question = q.queries[0]
        if question.name.name:
            self.asked.append(question.name.name)
        if self.silent or question.name.name in self.slow:
            return
        m = reply(question, answers=[a_record(question.name.name)])
        m.id = q.id
        self.transport.write(m.toStr(), addr)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


class ForwarderLoopbackTests(TestCase):
    """The Forwarder with its real transport against upstream servers that
    the test runs on 127.0.0.1 (issue 10 item 6)."""

    def upstream(self, **kw):
        server = Upstream(**kw)
        port = reactor.listenUDP(0, server, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return server, ("127.0.0.1", port.getHost().port)

    def forwarder(self, upstreams, **kw):
        forwarder = Forwarder(upstreams, reactor, **kw)
        self.addCleanup(forwarder.close)
        return forwarder

    @defer.inlineCallbacks
    def test_silent_upstream_few_sockets_bounded_queries(self):
        server, address = self.upstream(silent=True)
        forwarder = self.forwarder([address], timeout=0.3)
        before = open_fds()
        outcomes = []
        ds = []
        for i in range(400):
            d = forwarder.resolve(dns.Query(b"n%d.example" % i))
            d.addBoth(lambda r: outcomes.append(r) or None)
            ds.append(d)
        # a few sockets, not one per question
        self.assertLessEqual(open_fds() - before, 8)
        # beyond dns-forward-max (150) refused at once
        self.assertEqual(len(outcomes), 400 - forward.FORWARD_MAX)
        for failure in outcomes:
            self.assertTrue(failure.check(forward.Overloaded))
        self.assertEqual(forwarder.stats["forward_max"], 400 - forward.FORWARD_MAX)
        yield defer.gatherResults(ds)
        self.assertEqual(len(server.asked), forward.FORWARD_MAX)
        # once they are done (timed out), a question is forwarded again
        forwarder.upstreams[0].down_until = 0
        d = forwarder.resolve(dns.Query(b"again.example"))
        d.addErrback(lambda f: f.trap(error.DNSQueryTimeoutError,
                                      error.DNSServerError))
        yield d
        self.assertEqual(server.asked[-1], b"again.example")
        self.assertEqual(len(server.asked), forward.FORWARD_MAX + 1)
        self.assertLessEqual(forwarder._sender.sockets(), upstream.POOL_SIZE)
        forwarder.close()
        self.assertEqual(forwarder._sender.sockets(), 0)

    @defer.inlineCallbacks
    def test_one_slow_name_marks_no_upstream_down(self):
        slow = b"slow.example"
        first, address1 = self.upstream(slow=[slow])
        second, address2 = self.upstream(slow=[slow])
        forwarder = self.forwarder([address1, address2], timeout=0.3)
        answers, failures, ds = [], [], []
        for i in range(40):
            if i % 6 == 0:
                ds.append(forwarder.resolve(dns.Query(slow)).addErrback(
                    lambda f: None))
            d = forwarder.resolve(dns.Query(b"n%d.example" % i))
            d.addCallbacks(answers.append, failures.append)
            ds.append(d)
            yield task.deferLater(reactor, 0.05, lambda: None)
        yield defer.gatherResults(ds)
        self.assertEqual(failures, [])
        self.assertEqual([rcode for rcode, _, _, _ in answers], [dns.OK] * 40)
        self.assertEqual([u.up for u in forwarder.upstreams], [True, True])
        self.assertGreater(forwarder.stats["upstream_slow"], 0)


class SocketPoolTests(TestCase):
    """Questions share a few sockets, each replaced after some questions
    (a new random port), each question with its own id."""

    @defer.inlineCallbacks
    def test_sockets_are_shared_and_replaced(self):
        seen = []

        class Recording(Responder):
            def datagramReceived(self, data, addr):
                seen.append((addr[1], data[:2]))
                super().datagramReceived(data, addr)
        port = reactor.listenUDP(0, Recording(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        sender = upstream.Sender(reactor, size=2, uses=3)
        self.addCleanup(sender.close)
        address = ("127.0.0.1", port.getHost().port)
        for _ in range(4):
            # six at once: they share the two sockets
            batch = [sender(address, dns.Query(b"a.example"), 5) for _ in range(6)]
            self.assertLessEqual(sender.sockets(), 2 + 2)
            yield defer.gatherResults(batch)
            self.assertLessEqual(sender.sockets(), 2)
        ports = {p for p, _ in seen}
        self.assertGreater(len(ports), 2)          # replaced: new ports
        self.assertLessEqual(len(ports), 24 // 3 + 2)
        # ids of the questions in flight together on one port differ
        for i in range(0, 24, 6):
            batch = seen[i:i + 6]
            self.assertEqual(len(set(batch)), len(batch))
