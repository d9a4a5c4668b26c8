"""The LDAP lease store: conformance and TLS/outage behaviour against a real
slapd (tests/slapd.py), plus queue and reconnection logic driven by a Clock
and a scripted directory."""

import os

from twisted.internet import defer, reactor, task
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ldaptor.protocols import pureber, pureldap
from ldaptor.protocols.ldap.ldapclient import LDAPClient

from dhcpfo.leases.lease import Lease
from dhcpfo.stores import ldap as L
from dhcpfo.stores.ldap import ber, entry as E
from dhcpfo.stores.ldap.load import PAGED_RESULTS
from dhcpfo.stores.ldap.options import readPassword
from dhcpfo.stores import registry
from tests import slapd as S
from tests.store_conformance import (StoreConformanceMixin, lease,
                                     storeFromDescription)

SLAPD_SKIP = S.skipReason()

def fastRetry(attempt):
    return 0.05


def leaseFromEntry(entry):
    """A Lease from ldapsearch output, decoded from the documented schema
    conventions (independently of the store's own decoder)."""
    def one(name, default=None):
        values = entry.get(name.lower())
        return values[0].decode("utf-8") if values else default
    return Lease(one("dhcpfoLeaseIP"), bytes.fromhex(one("dhcpfoHWAddress", "")),
                 bytes.fromhex(one("dhcpfoClientID", "")), one("dhcpfoHostname", ""),
                 one("dhcpfoLeaseState"), float(one("dhcpfoLeaseStart")),
                 float(one("dhcpfoLeaseExpiry")), one("dhcpfoLeaseOwner", ""),
                 int(one("dhcpfoLeaseVersion")))


@defer.inlineCallbacks
def waitFor(condition, seconds=10):
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        yield task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("condition not met in %ss" % seconds)


def withTimeout(d, seconds=60):
    return d.addTimeout(seconds, reactor)


class SlapdMixin:
    """A fresh slapd per test, a fresh base below ou=dhcpfo in it."""

    sync = True

    def setUp(self):
        if SLAPD_SKIP:
            raise self.skipTest(SLAPD_SKIP)
        self.slapd = S.Slapd(self.mktemp(), sync=self.sync)
        self.addCleanup(self.slapd.stop)
        self.slapd.start()
        self.base = self.slapd.addBase("leases")

    def ldapStore(self, url=None, **kw):
        params = dict(binddn=S.BINDDN, passwordfile=self.slapd.passwordFile,
                      starttls=True, cafile=self.slapd.caFile,
                      retryPolicy=fastRetry, timeout=10)
        params.update(kw)
        if url is None:
            url = self.slapd.url
        elif url.startswith("ldaps:"):
            params["starttls"] = False
        return L.LDAPLeaseStore(reactor, url, self.base, **params)

    def entries(self):
        return [leaseFromEntry(e) for e in self.slapd.ldapsearch(
            self.base, "(objectClass=dhcpfoLease)")]


class LDAPConformance(SlapdMixin, StoreConformanceMixin, TestCase):
    """Over StartTLS, as the service account (size limit 500, so open() has to
    page), against slapd with ``dbnosync``.

    The store's contract is the directory's acknowledgement; whether slapd
    fsyncs before acknowledging is slapd's configuration, and with fsync each
    entry costs one fsync (mdb commits every add on its own).  Measured on the
    2-core CI machine: test_load_many with 100,000 leases takes ~17 s with
    dbnosync and ~50 s with fsync on a quiet disk -- and over 30 minutes
    while other jobs were writing to the same disk.  So the suite runs
    without fsync and with the full 100,000; EndToEndTests and the benchmark
    (python -m bench.store_bench) use a durable slapd.
    """

    sync = False

    def makeStore(self):
        return self.ldapStore()

    def backendLeases(self):
        return self.entries()

    def breakBackend(self, store):
        # The container goes away: every add below it is refused (noSuchObject).
        self.slapd.ldapdelete(self.base, recursive=True)


class TLSTests(SlapdMixin, TestCase):
    sync = False
    @defer.inlineCallbacks
    def roundTrip(self, store):
        loaded = yield store.open()
        self.addCleanup(store.close)
        self.assertEqual(loaded, [])
        yield store.write([lease(7)])
        self.assertTrue(store._proto.transport.getPeerCertificate() is not None)
        self.assertEqual(self.entries(), [lease(7)])

    def test_starttls_verifies_with_cafile(self):
        return self.roundTrip(self.ldapStore(starttls=True))

    def test_ldaps_ip_address(self):
        return self.roundTrip(self.ldapStore(url=self.slapd.ldapsURL))

    def test_ldaps_dns_name(self):
        return self.roundTrip(self.ldapStore(
            url="ldaps://localhost:%d" % self.slapd.tlsPort))

    @defer.inlineCallbacks
    def assertRefused(self, **kw):
        other = S.CA("some other CA")
        path = S.writeFile(os.path.abspath(self.mktemp()), other.pem(), 0o644)
        store = self.ldapStore(cafile=path, **kw)
        error = yield self.assertFailure(store.open(), L.LDAPStoreError)
        self.assertIn("TLS with", str(error))
        self.assertIn("certificate verify failed", str(error))
        self.assertFalse(store.connected)
        failed = yield self.assertFailure(store.write([lease(1)]), L.LDAPStoreError)
        self.assertIn("not open", str(failed))
        yield store.close()
        self.assertEqual(self.entries(), [])

    def test_starttls_other_ca_refused(self):
        return self.assertRefused(starttls=True)

    def test_ldaps_other_ca_refused(self):
        return self.assertRefused(url=self.slapd.ldapsURL)

    @defer.inlineCallbacks
    def test_wrong_password(self):
        path = S.writeFile(os.path.abspath(self.mktemp()), "not-the-password\n")
        store = self.ldapStore(passwordfile=path)
        error = yield self.assertFailure(store.open(), L.LDAPStoreError)
        self.assertIn("bind to %s as %s failed: invalidCredentials (49)"
                      % (self.slapd.url, S.BINDDN), str(error))
        self.assertIn("wrong bind DN or password in %s" % path, str(error))
        yield store.close()

    @defer.inlineCallbacks
    def test_missing_base(self):
        store = L.LDAPLeaseStore(reactor, self.slapd.url, "ou=nowhere," + S.LEASES,
                                 binddn=S.BINDDN, passwordfile=self.slapd.passwordFile)
        error = yield self.assertFailure(store.open(), L.LDAPStoreError)
        self.assertIn("base ou=nowhere,%s does not exist" % S.LEASES, str(error))
        yield store.close()

    @defer.inlineCallbacks
    def test_unreachable_at_open(self):
        port = S.freePort()
        store = self.ldapStore(url="ldap://127.0.0.1:%d" % port)
        error = yield self.assertFailure(store.open(), L.LDAPStoreError)
        self.assertIn("cannot connect to ldap://127.0.0.1:%d" % port, str(error))
        yield store.close()


class OutageTests(SlapdMixin, TestCase):
    sync = False
    @defer.inlineCallbacks
    def openStore(self, **kw):
        store = self.ldapStore(**kw)
        yield store.open()
        self.addCleanup(store.close)
        return store

    @defer.inlineCallbacks
    def test_stopped_directory_queues_until_restart(self):
        store = yield self.openStore()
        yield store.write([lease(0)])
        self.slapd.stop()
        fired = []
        ds = [store.write([lease(n)]).addCallback(lambda _, n=n: fired.append(n))
              for n in range(1, 51)]
        yield task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(fired, [])
        self.assertFalse(store.connected)
        self.assertEqual(store._commits.pending, 50)
        self.slapd.start()
        yield withTimeout(defer.gatherResults(ds))
        self.assertEqual(fired, list(range(1, 51)))
        self.assertEqual(sorted(self.entries(), key=lambda l: l.ip),
                         sorted([lease(n) for n in range(51)], key=lambda l: l.ip))

    @defer.inlineCallbacks
    def test_directory_stopped_mid_batch(self):
        """Stopped while a batch is on the wire: it is sent again, in order."""
        store = yield self.openStore()
        fired = []
        ds = [store.write([lease(n)]).addCallback(lambda _, n=n: fired.append(n))
              for n in range(2000)]
        yield ds[0]                                   # batch 1; 1..1999 are batch 2
        while len(store._pipeline.known) < 300:               # part of batch 2 is written
            yield task.deferLater(reactor, 0.002, lambda: None)
        self.slapd.stop()
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(fired, [0])
        self.assertFalse(store.connected)
        self.slapd.start()
        yield withTimeout(defer.gatherResults(ds))
        self.assertEqual(fired, list(range(2000)))
        self.assertEqual(len(self.entries()), 2000)

    @defer.inlineCallbacks
    def test_queue_bound_fails_at_once(self):
        store = yield self.openStore(maxqueue=10)
        self.slapd.stop()
        yield waitFor(lambda: not store.connected)
        queued = [store.write([lease(n), lease(n + 100)]) for n in range(5)]
        over = store.write([lease(99)])
        self.assertTrue(over.called)
        error = self.failureResultOf(over, L.LDAPStoreQueueFull).value
        self.assertIn("10 leases are already waiting to be written (maxqueue=10)",
                      str(error))
        self.assertIn("unreachable", str(error))
        self.assertFalse(any(d.called for d in queued))
        self.slapd.start()
        yield withTimeout(defer.gatherResults(queued))
        self.assertEqual(len(self.entries()), 10)
        yield store.write([lease(99)])   # room again

    @defer.inlineCallbacks
    def test_close_while_unreachable_fails_queued_writes(self):
        store = yield self.openStore()
        self.slapd.stop()
        d = store.write([lease(1)])
        yield store.close()
        self.failureResultOf(d, L.LDAPStoreClosed)

    @defer.inlineCallbacks
    def test_entries_changed_behind_the_store(self):
        """Deleted entries are added again, existing unknown ones replaced."""
        store = yield self.openStore()
        yield store.write([lease(1), lease(2)])
        self.slapd.ldapdelete("dhcpfoLeaseIP=%s,%s" % (lease(1).ip, self.base))
        self.slapd.ldapadd(
            "dn: dhcpfoLeaseIP=%s,%s\nobjectClass: dhcpfoLease\n"
            "dhcpfoLeaseIP: %s\ndhcpfoLeaseState: expired\ndhcpfoLeaseStart: 1.0\n"
            "dhcpfoLeaseExpiry: 2.0\ndhcpfoLeaseVersion: 1\n"
            % (lease(3).ip, self.base, lease(3).ip))
        newer = [lease(n, version=5) for n in (1, 2, 3)]
        yield store.write(newer)
        self.assertEqual(sorted(self.entries(), key=lambda l: l.ip), newer)

    @defer.inlineCallbacks
    def test_older_version_never_replaces_newer(self):
        """Modifies are guarded by the version (RFC 4528 assertion): a stale
        write, e.g. one the server still held from a dropped connection,
        cannot overwrite a newer record."""
        store = yield self.openStore()
        yield store.write([lease(1, version=5)])
        yield store.write([lease(1, version=5, hostname="same-version")])
        error = yield self.assertFailure(store.write([lease(1, version=3)]),
                                         L.LDAPWriteRejected)
        self.assertIn("assertionFailed (122)", str(error))
        self.assertIn("holds a newer version", str(error))
        self.assertEqual(self.entries(), [lease(1, version=5, hostname="same-version")])
        self.flushLoggedErrors()


# -- without slapd: a scripted directory and a Clock ------------------------------

_REQUESTS = pureldap.LDAPBERDecoderContext_TopLevel(
    inherit=pureldap.LDAPBERDecoderContext_LDAPMessage(
        fallback=pureldap.LDAPBERDecoderContext(fallback=pureber.BERDecoderContext()),
        inherit=pureldap.LDAPBERDecoderContext(fallback=pureber.BERDecoderContext())))


class ScriptedEndpoint:
    """Connects the store's client to a StringTransport; the test answers."""

    def __init__(self):
        self.refuse = False
        self.attempts = 0
        self.connections = []

    def connect(self, factory):
        self.attempts += 1
        if self.refuse:
            return defer.fail(ConnectionRefusedError("scripted"))
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.connections.append((proto, transport))
        return defer.succeed(proto)

    @property
    def proto(self):
        return self.connections[-1][0]

    def requests(self):
        transport = self.connections[-1][1]
        data = transport.value()
        transport.clear()
        messages = []
        while data:
            message, used = pureber.berDecodeObject(_REQUESTS, data)
            data = data[used:]
            messages.append(message)
        return messages

    def reply(self, message, op):
        self.proto.dataReceived(pureldap.LDAPMessage(op, id=message.id).toWire())

    def succeedAll(self, responseClass=pureldap.LDAPAddResponse):
        requests = self.requests()
        for message in requests:
            cls = (pureldap.LDAPModifyResponse
                   if isinstance(message.value, pureldap.LDAPModifyRequest)
                   else responseClass)
            self.reply(message, cls(resultCode=0))
        return requests

    def drop(self):
        self.proto.connectionLost(Failure(ConnectionLost("scripted")))


class ClockTests(SynchronousTestCase):
    """Queueing, retry timing and fallbacks, deterministic (no slapd)."""

    def setUp(self):
        self.clock = task.Clock()
        self.endpoint = ScriptedEndpoint()
        self.delays = [1.0, 2.0, 4.0]

    def makeStore(self, **kw):
        store = L.LDAPLeaseStore(
            self.clock, "ldap://192.0.2.1", "ou=leases,dc=example,dc=org",
            retryPolicy=lambda n: self.delays[min(n, len(self.delays) - 1)], **kw)
        store._endpoint = lambda: self.endpoint
        d = store.open()
        [search] = self.endpoint.requests()
        self.assertIsInstance(search.value, pureldap.LDAPSearchRequest)
        self.endpoint.reply(search, pureldap.LDAPSearchResultDone(resultCode=0))
        self.assertEqual(self.successResultOf(d), [])
        return store

    def close(self, store):
        d = store.close()
        if self.endpoint.connections and self.endpoint.proto.connected:
            self.endpoint.drop()
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def pendingDelays(self):
        return sorted(c.getTime() - self.clock.seconds()
                      for c in self.clock.getDelayedCalls())

    def test_group_commit_newest_wins(self):
        store = self.makeStore()
        first = store.write([lease(1)])
        second = store.write([lease(2)])
        third = store.write([lease(2, version=2), lease(3)])
        [add] = self.endpoint.succeedAll()             # batch 1: lease 1
        self.assertEqual(add.value.entry,
                         b"dhcpfoLeaseIP=198.18.0.2,ou=leases,dc=example,dc=org")
        self.assertIsNone(self.successResultOf(first))
        sent = self.endpoint.succeedAll()              # batch 2: 2 (v2) and 3
        self.assertEqual(len(sent), 2)
        attributes = {m.value.entry: {k.value: [v.value for v in vs]
                                      for k, vs in m.value.attributes}
                      for m in sent}
        self.assertEqual(attributes[b"dhcpfoLeaseIP=198.18.0.3,ou=leases,dc=example,"
                                    b"dc=org"][b"dhcpfoLeaseVersion"], [b"2"])
        self.assertEqual(self.successResultOf(second), None)
        self.assertEqual(self.successResultOf(third), None)
        self.assertEqual((store.batches, store.written), (2, 3))
        self.close(store)

    def test_outage_backoff_and_resend(self):
        store = self.makeStore(maxqueue=5)
        fired = []
        w1 = store.write([lease(1)]).addCallback(fired.append)
        w2 = store.write([lease(2)]).addCallback(fired.append)
        self.endpoint.requests()                       # lease 1 on the wire
        self.endpoint.refuse = True
        self.endpoint.drop()
        self.assertFalse(store.connected)
        self.assertEqual(self.pendingDelays(), [1.0])
        self.clock.advance(1.0)
        self.assertEqual(self.pendingDelays(), [2.0])
        self.clock.advance(2.0)
        self.assertEqual(self.pendingDelays(), [4.0])
        self.assertEqual(self.endpoint.attempts, 3)
        w3 = store.write([lease(3), lease(4), lease(5)])
        self.failureResultOf(store.write([lease(6)]), L.LDAPStoreQueueFull)
        self.assertEqual((fired, w3.called), ([], False))
        self.endpoint.refuse = False
        self.clock.advance(4.0)
        self.assertTrue(store.connected)
        # The batch cut short goes out again, whole, on the new connection;
        # the writes queued during the outage are the next batch.
        [again] = self.endpoint.succeedAll()            # 1 again
        self.assertEqual(again.value.entry,
                         b"dhcpfoLeaseIP=198.18.0.2,ou=leases,dc=example,dc=org")
        self.assertEqual(fired, [None])
        sent = self.endpoint.succeedAll()
        self.assertEqual(len(sent), 4)                 # 2, 3, 4, 5
        self.assertEqual(fired, [None, None])
        self.successResultOf(w3)
        self.assertTrue(w1.called and w2.called)
        # backoff starts over after a success
        self.endpoint.drop()
        self.assertEqual(self.pendingDelays(), [1.0])
        self.clock.advance(1.0)
        self.close(store)

    def test_no_answer_reconnects(self):
        store = self.makeStore(timeout=5)
        d = store.write([lease(1)])
        self.endpoint.requests()
        self.clock.advance(5)                         # the watchdog fires
        self.assertFalse(store.connected)
        self.assertTrue(self.endpoint.connections[0][1].disconnecting)
        self.endpoint.connections[0][0].connectionLost(Failure(ConnectionLost()))
        self.clock.advance(1.0)
        self.endpoint.succeedAll()
        self.successResultOf(d)
        self.close(store)

    def test_busy_is_transient(self):
        store = self.makeStore()
        d = store.write([lease(1)])
        [add] = self.endpoint.requests()
        self.endpoint.reply(add, pureldap.LDAPAddResponse(resultCode=51))
        self.assertNoResult(d)
        self.endpoint.drop()
        self.clock.advance(1.0)
        self.endpoint.succeedAll()
        self.successResultOf(d)
        self.close(store)

    def test_add_exists_then_modify(self):
        store = self.makeStore()
        d = store.write([lease(1)])
        [add] = self.endpoint.requests()
        self.endpoint.reply(add, pureldap.LDAPAddResponse(resultCode=68))
        [modify] = self.endpoint.requests()
        self.assertIsInstance(modify.value, pureldap.LDAPModifyRequest)
        self.endpoint.reply(modify, pureldap.LDAPModifyResponse(resultCode=0))
        self.successResultOf(d)
        # now known: the next write of it is a modify; empty fields are removed
        d = store.write([Lease(lease(1).ip, b"\x01", b"", "", "released",
                               1.0, 2.0, "", 3)])
        [modify] = self.endpoint.requests()
        self.assertIsInstance(modify.value, pureldap.LDAPModifyRequest)
        emptied = [m.data[1].data[0].value for m in modify.value.modification
                   if not m.data[1].data[1].data]
        self.assertEqual(sorted(emptied), [b"dhcpfoClientID", b"dhcpfoHostname",
                                          b"dhcpfoLeaseOwner"])
        self.endpoint.reply(modify, pureldap.LDAPModifyResponse(resultCode=0))
        self.successResultOf(d)
        self.close(store)

    def test_modify_guarded_unless_unsupported(self):
        store = self.makeStore()
        store._pipeline.known.add(lease(1).ip)
        d = store.write([lease(1, version=7)])
        [modify] = self.endpoint.requests()
        [(oid, critical, value)] = modify.controls
        self.assertEqual((oid, bool(critical)), (E.ASSERTION, True))
        self.assertEqual(value, pureldap.LDAPFilter_lessOrEqual(
            attributeDesc=pureldap.LDAPAttributeDescription("dhcpfoLeaseVersion"),
            assertionValue=pureldap.LDAPAssertionValue("7")).toWire())
        self.endpoint.reply(modify, pureldap.LDAPModifyResponse(resultCode=12))
        [again] = self.endpoint.requests()             # without the control
        self.assertIsNone(again.controls)
        self.endpoint.reply(again, pureldap.LDAPModifyResponse(resultCode=0))
        self.successResultOf(d)
        store.write([lease(1, version=8)])
        [later] = self.endpoint.succeedAll()
        self.assertIsNone(later.controls)
        self.close(store)

    def test_paged_load(self):
        store = L.LDAPLeaseStore(self.clock, "ldap://192.0.2.1", "ou=l,dc=example",
                                 retryPolicy=lambda n: 1.0)
        store._endpoint = lambda: self.endpoint
        d = store.open()
        cookies = []
        for page, cookie in enumerate([b"c1", b"c2", b""]):
            [search] = self.endpoint.requests()
            [(oid, _, value)] = search.controls
            self.assertEqual(oid, PAGED_RESULTS)
            seq, _ = pureber.berDecodeObject(pureber.BERDecoderContext(), value)
            cookies.append(seq.data[1].value)
            entry = pureldap.LDAPSearchResultEntry(
                "dhcpfoLeaseIP=%s,ou=l,dc=example" % lease(page).ip,
                [(name, [value]) for name, value in E.values(lease(page))
                 if value is not None])
            self.endpoint.reply(search, entry)
            self.endpoint.proto.dataReceived(pureldap.LDAPMessage(
                pureldap.LDAPSearchResultDone(resultCode=0), id=search.id,
                controls=[(PAGED_RESULTS, None, pureber.BERSequence([
                    pureber.BERInteger(0),
                    pureber.BEROctetString(cookie)]).toWire())]).toWire())
        self.assertEqual(cookies, [b"", b"c1", b"c2"])
        self.assertEqual(self.successResultOf(d), [lease(0), lease(1), lease(2)])
        self.close(store)

    def test_size_limit_is_an_error(self):
        store = L.LDAPLeaseStore(self.clock, "ldap://192.0.2.1", "ou=l,dc=example")
        store._endpoint = lambda: self.endpoint
        d = store.open()
        [search] = self.endpoint.requests()
        self.endpoint.reply(search, pureldap.LDAPSearchResultDone(resultCode=4))
        error = self.failureResultOf(d, L.LDAPStoreError).value
        self.assertIn("stopped the search after 0 leases (sizeLimitExceeded (4))",
                      str(error))
        self.assertIn("size.prtotal=unlimited", str(error))
        self.assertTrue(self.endpoint.connections[0][1].disconnecting)
        self.endpoint.drop()
        self.successResultOf(store.close())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_load_timeout(self):
        store = L.LDAPLeaseStore(self.clock, "ldap://192.0.2.1", "ou=l,dc=example",
                                 timeout=5)
        store._endpoint = lambda: self.endpoint
        d = store.open()
        self.clock.advance(5)
        error = self.failureResultOf(d, L.LDAPStoreError).value
        self.assertIn("no answer within 5s", str(error))
        self.endpoint.drop()
        self.successResultOf(store.close())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refused_write_fails_only_its_writers(self):
        store = self.makeStore()
        first = store.write([lease(0)])                # on the wire
        a = store.write([lease(1)])                    # the next batch: a, b, c
        b = store.write([lease(2), lease(3)])
        c = store.write([lease(4)])
        self.endpoint.succeedAll()
        self.successResultOf(first)
        for message in self.endpoint.requests():
            bad = message.value.entry.startswith(b"dhcpfoLeaseIP=198.18.0.4,")
            code = 65 if bad else 0
            self.endpoint.reply(message, pureldap.LDAPAddResponse(
                resultCode=code, errorMessage="objectClassViolation test"))
        self.successResultOf(a)
        error = self.failureResultOf(b, L.LDAPWriteRejected).value
        self.assertEqual(list(error.errors), ["198.18.0.4"])
        self.assertIn("objectClassViolation (65)", str(error))
        self.successResultOf(c)
        # written: entries the directory took (0, 1, 2, 4), not 3
        self.assertEqual((store.batches, store.written), (2, 4))
        self.close(store)

    def test_close_drains_then_unbinds(self):
        store = self.makeStore()
        d = store.write([lease(1)])
        closed = store.close()
        self.failureResultOf(store.write([lease(2)]), L.LDAPStoreClosed)
        self.assertNoResult(closed)
        self.endpoint.succeedAll()
        self.successResultOf(d)
        [unbind] = self.endpoint.requests()
        self.assertIsInstance(unbind.value, pureldap.LDAPUnbindRequest)
        self.endpoint.drop()
        self.successResultOf(closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_during_backoff(self):
        store = self.makeStore()
        self.endpoint.refuse = True
        d = store.write([lease(1)])
        self.endpoint.drop()
        self.successResultOf(store.close())
        self.failureResultOf(d, L.LDAPStoreClosed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unstorable_lease_fails_at_once(self):
        store = self.makeStore()
        for bad in [Lease("192.0.2.1", "not-bytes", b"", "", "active", 0.0, 1.0, "", 1),
                    Lease("192.0.2.1,ou=x", b"", b"", "", "active", 0.0, 1.0, "", 1)]:
            error = self.failureResultOf(store.write([bad]), L.LDAPStoreError).value
            self.assertIn("cannot be stored", str(error))
        self.assertEqual(self.endpoint.requests(), [])
        self.close(store)

    def test_non_canonical_address_is_not_an_rdn(self):
        store = self.makeStore()
        for text in ["192.0.2.010", "0x7f.0.0.1", "192.0.2"]:
            bad = Lease(text, b"", b"", "", "active", 0.0, 1.0, "", 1)
            error = self.failureResultOf(store.write([bad]), L.LDAPStoreError).value
            self.assertIn("cannot be stored", str(error))
        self.assertEqual(self.endpoint.requests(), [])
        self.close(store)

    # -- the connection's state machine, edge by edge --------------------------

    def unopened(self, **kw):
        store = L.LDAPLeaseStore(
            self.clock, "ldap://192.0.2.1", "ou=leases,dc=example,dc=org",
            retryPolicy=lambda n: self.delays[min(n, len(self.delays) - 1)], **kw)
        store._endpoint = lambda: self.endpoint
        return store

    def test_write_before_open_refused(self):
        store = self.unopened()
        error = self.failureResultOf(store.write([lease(1)]), L.LDAPStoreError).value
        self.assertIn("not open", str(error))
        self.successResultOf(store.close())

    def test_open_twice_refused(self):
        store = self.makeStore()
        error = self.failureResultOf(store.open(), L.LDAPStoreError).value
        self.assertIn("already open", str(error))
        self.close(store)

    def test_writes_during_a_failed_open_fail_in_order(self):
        store = self.unopened()
        opened = store.open()
        failed = []
        ds = [store.write([lease(n)]).addErrback(
            lambda f, n=n: failed.append((n, f.getErrorMessage())))
              for n in range(3)]
        [search] = self.endpoint.requests()
        self.endpoint.reply(search, pureldap.LDAPSearchResultDone(resultCode=32))
        self.failureResultOf(opened, L.LDAPStoreError)
        self.assertEqual([n for n, _ in failed], [0, 1, 2])
        self.assertIn("did not open", failed[0][1])
        self.assertTrue(all(d.called for d in ds))
        self.assertFalse(store.connected)
        # A failed open leaves the store unopened: it may be opened again.
        again = store.open()
        [search] = self.endpoint.requests()
        self.endpoint.reply(search, pureldap.LDAPSearchResultDone(resultCode=0))
        self.assertEqual(self.successResultOf(again), [])
        d = store.write([lease(5)])
        self.endpoint.succeedAll()
        self.successResultOf(d)
        self.close(store)

    def test_close_while_opening(self):
        store = self.unopened()
        opened = store.open()
        d = store.write([lease(1)])
        closed = store.close()
        self.assertTrue(self.endpoint.connections[0][1].disconnecting)
        self.endpoint.drop()          # the aborted connection ends
        self.failureResultOf(opened, L.LDAPStoreError)
        self.failureResultOf(d, L.LDAPStoreClosed)
        self.successResultOf(closed)
        self.failureResultOf(store.open(), L.LDAPStoreClosed)
        self.failureResultOf(store.write([lease(2)]), L.LDAPStoreClosed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_late_answers_on_a_dropped_connection_are_ignored(self):
        """After the store gave up on a connection (no answer in time), what
        that connection still says settles nothing: only the new connection's
        acknowledgements fire the writers, once."""
        store = self.makeStore(timeout=5)
        d = store.write([lease(1), lease(2)])
        old = self.endpoint.requests()
        self.clock.advance(5)                          # the watchdog gives up
        oldProto = self.endpoint.proto
        for message in old:                            # late answers
            oldProto.dataReceived(pureldap.LDAPMessage(
                pureldap.LDAPAddResponse(resultCode=0), id=message.id).toWire())
        self.assertNoResult(d)
        oldProto.connectionLost(Failure(ConnectionLost()))
        self.clock.advance(1.0)
        self.assertEqual(len(self.endpoint.succeedAll()), 2)
        self.successResultOf(d)
        self.assertEqual(store.batches, 1)
        self.close(store)

    def test_window_bounds_requests_in_flight(self):
        store = self.makeStore()
        d = store.write([lease(n) for n in range(600)])
        first = self.endpoint.requests()
        self.assertEqual(len(first), 512)
        for message in first[:10]:
            self.endpoint.reply(message, pureldap.LDAPAddResponse(resultCode=0))
        more = self.endpoint.requests()
        self.assertEqual(len(more), 10)                # one out, one in
        self.assertNoResult(d)
        for message in first[10:] + more:
            self.endpoint.reply(message, pureldap.LDAPAddResponse(resultCode=0))
        self.assertEqual(len(self.endpoint.succeedAll()), 600 - 512 - 10)
        self.successResultOf(d)
        self.close(store)

    def test_batch_limit_keeps_early_writers_early(self):
        """Writes queue up to batchLimit leases per batch (whole writes), so a
        burst behind the first write does not hold its ACKs back."""
        store = self.makeStore()
        w0 = store.write([lease(0)])
        w1 = store.write([lease(n) for n in range(1, 601)])
        w2 = store.write([lease(n) for n in range(601, 1201)])
        self.endpoint.succeedAll()
        self.successResultOf(w0)
        sentBeforeW1 = []
        for _ in range(10):                            # bounded: never hangs
            if w1.called:
                break
            sentBeforeW1 += self.endpoint.succeedAll()
        self.successResultOf(w1)
        self.assertEqual(len(sentBeforeW1), 600)
        self.assertNoResult(w2)
        for _ in range(10):
            if w2.called:
                break
            self.endpoint.succeedAll()
        self.successResultOf(w2)
        self.close(store)

    def test_loaded_entries_are_modified_not_added(self):
        store = L.LDAPLeaseStore(self.clock, "ldap://192.0.2.1", "ou=l,dc=example",
                                 retryPolicy=lambda n: 1.0)
        store._endpoint = lambda: self.endpoint
        d = store.open()
        [search] = self.endpoint.requests()
        self.endpoint.reply(search, pureldap.LDAPSearchResultEntry(
            "dhcpfoLeaseIP=%s,ou=l,dc=example" % lease(1).ip,
            [(name, [value]) for name, value in E.values(lease(1))
             if value is not None]))
        self.endpoint.reply(search, pureldap.LDAPSearchResultDone(resultCode=0))
        self.assertEqual(self.successResultOf(d), [lease(1)])
        w = store.write([lease(1, version=2), lease(2)])
        sent = self.endpoint.succeedAll()
        self.assertEqual(sorted(type(m.value).__name__ for m in sent),
                         ["LDAPAddRequest", "LDAPModifyRequest"])
        [modify] = [m for m in sent if isinstance(m.value, pureldap.LDAPModifyRequest)]
        self.assertEqual(modify.value.object,
                         ("dhcpfoLeaseIP=%s,ou=l,dc=example" % lease(1).ip).encode())
        self.successResultOf(w)
        self.close(store)

    def test_load_answered_after_close(self):
        """The load's answer can beat the aborted connection's end: the
        store is closed all the same and open() says so."""
        store = self.unopened()
        opened = store.open()
        [search] = self.endpoint.requests()
        closed = store.close()
        self.endpoint.reply(search, pureldap.LDAPSearchResultDone(resultCode=0))
        error = self.failureResultOf(opened, L.LDAPStoreClosed).value
        self.assertIn("closed while opening", str(error))
        self.successResultOf(closed)
        self.assertFalse(store.connected)
        self.assertTrue(self.endpoint.connections[0][1].disconnecting)
        self.failureResultOf(store.write([lease(1)]), L.LDAPStoreClosed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_while_reconnecting(self):
        store = self.makeStore()
        d = store.write([lease(1)])
        self.endpoint.drop()
        pending = []
        self.endpoint.connect = lambda factory: pending.append(
            defer.Deferred()) or pending[-1]
        self.clock.advance(1.0)                       # the attempt hangs
        self.assertEqual(len(pending), 1)
        closed = store.close()
        self.failureResultOf(d, L.LDAPStoreClosed)    # the attempt was cancelled
        self.successResultOf(closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_while_unreachable_fails_in_issue_order(self):
        store = self.makeStore()
        failed = []
        ds = [store.write([lease(n)]).addErrback(
            lambda f, n=n: failed.append((n, f.check(L.LDAPStoreClosed))))
              for n in range(4)]
        self.endpoint.requests()                      # lease 0 on the wire
        self.endpoint.refuse = True
        self.endpoint.drop()
        self.assertFalse(store.connected)
        self.successResultOf(store.close())
        self.assertEqual(failed, [(n, L.LDAPStoreClosed) for n in range(4)])
        self.assertTrue(all(d.called for d in ds))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lost_while_draining_fails_the_rest(self):
        store = self.makeStore()
        d = store.write([lease(1)])
        closed = store.close()
        self.assertNoResult(closed)
        self.endpoint.drop()
        self.failureResultOf(d, L.LDAPStoreClosed)
        self.successResultOf(closed)
        self.successResultOf(store.close())           # closing again is fine
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_reconnect_resets_backoff_and_resends(self):
        store = self.makeStore()
        d = store.write([lease(1)])
        self.endpoint.requests()
        self.endpoint.drop()
        self.assertEqual(self.pendingDelays(), [1.0])
        self.clock.advance(1.0)
        [add] = self.endpoint.requests()
        self.assertEqual(add.value.entry,
                         b"dhcpfoLeaseIP=198.18.0.2,ou=leases,dc=example,dc=org")
        self.endpoint.reply(add, pureldap.LDAPAddResponse(resultCode=0))
        self.successResultOf(d)
        self.endpoint.drop()
        self.assertEqual(self.pendingDelays(), [1.0])
        self.clock.advance(1.0)
        self.close(store)


class DecoderTests(SynchronousTestCase):
    def entry(self, n):
        return pureldap.LDAPMessage(pureldap.LDAPSearchResultEntry(
            objectName="dhcpfoLeaseIP=192.0.2.%d,ou=x" % n,
            attributes=[("dhcpfoHostname", [b"h" * n * 40]),
                        ("objectClass", [b"dhcpfoLease", b"top"]),
                        ("empty", [])]), id=n + 1)

    def test_matches_ldaptor(self):
        wire = b"".join(self.entry(n).toWire() for n in range(1, 9))
        mine, theirs = ber.Client(), ber.Client()
        got, expected = [], []
        mine.handle = got.append
        theirs.handle = expected.append
        for i in range(len(wire)):          # one byte at a time
            mine.dataReceived(wire[i:i + 1])
        LDAPClient.dataReceived(theirs, wire)
        self.assertEqual(len(got), 8)
        self.assertEqual([(m.id, m.value.objectName, m.value.attributes) for m in got],
                         [(m.id, m.value.objectName, m.value.attributes)
                          for m in expected])

    def test_other_messages_left_to_ldaptor(self):
        with_controls = pureldap.LDAPMessage(
            self.entry(1).value, id=3, controls=[(b"1.2.3", None, b"x")]).toWire()
        done = pureldap.LDAPMessage(pureldap.LDAPSearchResultDone(resultCode=0),
                                    id=4).toWire()
        for wire in (with_controls, done):
            self.assertIsNone(ber.searchEntry(wire, ber.tlv(wire, 0)[1], len(wire)))


class FactoryTests(SynchronousTestCase):
    def test_description(self):
        path = os.path.abspath(self.mktemp())
        S.writeFile(path, "pw\n")
        store = storeFromDescription(
            reactor, "ldap:url=ldap://192.0.2.1:3890,base=ou=l\\,dc=example\\,dc=org,"
            "binddn=cn=d\\,dc=example\\,dc=org,passwordfile=%s,maxqueue=7" % path)
        self.assertIsInstance(store, L.LDAPLeaseStore)
        o = store.options
        self.assertEqual((o.host, o.port, o.base, o.binddn, o.maxqueue,
                          readPassword(o.passwordfile)),
                         ("192.0.2.1", 3890, "ou=l,dc=example,dc=org",
                          "cn=d,dc=example,dc=org", 7, b"pw"))

    def test_help_lists_parameters(self):
        factory = registry.factories()["ldap"]
        self.assertEqual(set(factory.parameters), {
            "url", "base", "binddn", "passwordfile", "starttls", "cafile",
            "maxqueue", "timeout"})

    def test_config_errors(self):
        path = os.path.abspath(self.mktemp())
        S.writeFile(path, "pw")
        base = ",base=ou=l\\,dc=example"
        for text, message in [
                ("ldap:base=ou=x", "url= is required"),
                ("ldap:url=http://x" + base, "expected ldap://HOST"),
                ("ldap:url=ldap://x/ou=l" + base, "the base DN goes in base="),
                ("ldap:url=ldaps://x,starttls=yes" + base, "ldaps is TLS already"),
                ("ldap:url=ldap://x,starttls=maybe" + base, "expected yes or no"),
                ("ldap:url=ldap://x", "base= is required"),
                ("ldap:url=ldap://x,binddn=cn=a" + base, "needs passwordfile="),
                ("ldap:url=ldap://x,passwordfile=%s" % path + base, "needs binddn="),
                ("ldap:url=ldap://x,binddn=cn=a,passwordfile=/nonexistent" + base,
                 "passwordfile=/nonexistent: No such file"),
                ("ldap:url=ldap://x,cafile=%s" % path + base, "only with an ldaps"),
                ("ldap:url=ldaps://x,cafile=%s" % path + base, "holds no PEM"),
                ("ldap:url=ldap://x,maxqueue=0" + base, "must be positive")]:
            with self.assertRaises(L.LDAPStoreConfigError) as caught:
                storeFromDescription(reactor, text)
            self.assertIn(message, str(caught.exception), text)


class SchemaTests(SynchronousTestCase):
    """docs/ldap: the .ldif (cn=config) says what the .schema says, and
    OpenLDAP loads it (the .schema is loaded by every slapd above)."""

    def definitions(self, path, ldif):
        with open(path) as f:
            lines = [l.rstrip("\n") for l in f if not l.startswith("#")]
        if ldif:
            unfolded = []
            for line in lines:
                if line.startswith(" ") and unfolded:
                    unfolded[-1] += line[1:]
                else:
                    unfolded.append(line)
            kinds = {"olcObjectIdentifier": "objectidentifier",
                     "olcAttributeTypes": "attributetype",
                     "olcObjectClasses": "objectclass"}
            items = [(kinds[k], v) for k, _, v in (l.partition(": ") for l in unfolded)
                     if k in kinds]
        else:
            items, current = [], None
            for line in lines:
                if line and not line[0].isspace():
                    keyword, _, rest = line.partition(" ")
                    current = [keyword.lower(), rest]
                    items.append(current)
                elif current is not None:
                    current[1] += " " + line
            items = [tuple(i) for i in items]
        return [(k, " ".join(v.split())) for k, v in items]

    def test_same_definitions(self):
        docs = os.path.join(S.ROOT, "docs", "ldap")
        schema = self.definitions(os.path.join(docs, "dhcpfo.schema"), False)
        ldif = self.definitions(os.path.join(docs, "dhcpfo.ldif"), True)
        self.assertEqual(len([k for k, _ in schema if k == "attributetype"]), 9)
        self.assertEqual(schema, ldif)
        self.assertTrue(all("1.3.6.1.4.1.32473" in v for k, v in schema
                            if k == "objectidentifier" and "dhcpfoOID " in v))

    def test_cn_config_accepts_ldif(self):
        if SLAPD_SKIP:
            raise self.skipTest(SLAPD_SKIP)
        import subprocess
        work = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(work, "config"))
        with open(os.path.join(S.SYSTEM_SCHEMA, "core.ldif")) as f:
            core = f.read()
        with open(os.path.join(S.ROOT, "docs/ldap/dhcpfo.ldif")) as f:
            ours = f.read()
        ldif = S.writeFile(os.path.join(work, "config.ldif"),
                           "dn: cn=config\nobjectClass: olcGlobal\ncn: config\n\n"
                           "dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\n"
                           "cn: schema\n\n" + core + "\n" + ours)
        for argv in (["slapadd", "-n0", "-F", "config", "-l", ldif],
                     ["slaptest", "-F", "config", "-u"]):
            out = subprocess.run([S._tool(argv[0])] + argv[1:], cwd=work,
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(os.path.exists(os.path.join(
            work, "config", "cn=config", "cn=schema", "cn={1}dhcpfo.ldif")))


class EndToEndTests(TestCase):
    """twistd dhcpfo --lease-store ldap:... in a namespace lab, with slapd on
    the server host's loopback and ISC dhclient on a client host."""

    def setUp(self):
        import shutil
        from tests.lab import Lab
        if SLAPD_SKIP:
            raise self.skipTest(SLAPD_SKIP)
        if not shutil.which("dhclient", path="/usr/sbin:/sbin:/usr/bin"):
            raise self.skipTest("dhclient not installed (isc-dhcp-client)")
        self.lab = Lab()
        self.addCleanup(self.lab.close)
        self.lab.lan("lan")
        srv = self.lab.host("srv", "lan", "192.0.2.1/24")
        self.lab.host("cli", "lan")
        self.slapd = S.Slapd(self.lab.path("slapd"), netns=srv)
        self.addCleanup(self.slapd.stop)
        self.slapd.start()
        self.base = self.slapd.addBase("leases")

    def startServer(self):
        store = ("ldap:url=%s,starttls=yes,cafile=%s,base=%s,binddn=%s,"
                 "passwordfile=%s" % (self.slapd.url, self.slapd.caFile,
                                      self.base.replace(",", "\\,"),
                                      S.BINDDN.replace(",", "\\,"),
                                      self.slapd.passwordFile))
        return self.lab.dhcpfo("srv", [
            "--interface", "e0", "--dhcp-range", "192.0.2.10,192.0.2.200,1h",
            "--lease-store", store, "--control", "tcp:8067:interface=127.0.0.1"])

    def test_lease_in_directory_survives_restart(self):
        server = self.startServer()
        got = self.lab.dhclient("cli", timeout=15, reboot=4)
        [entry] = [leaseFromEntry(e) for e in self.slapd.ldapsearch(self.base)]
        self.assertEqual((entry.ip, entry.state, entry.hwaddr.hex(":")),
                         (got["ip"], "active", self.lab.mac("cli")))
        self.lab.stop(server)
        self.startServer()
        self.assertEqual([l["ip"] for l in self.lab.leases("srv")], [got["ip"]])
        again = self.lab.dhclient("cli", timeout=15, reboot=4)
        self.assertEqual((again["ip"], again["reason"]), (got["ip"], "REBOOT"))
