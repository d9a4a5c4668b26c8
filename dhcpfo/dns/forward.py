"""Forwarding to ``--server`` upstreams, with failover between them and a cache.

:class:`Forwarder` is a twisted.names resolver.  A question not in the cache
goes to the first upstream that is up, in the configured order; an upstream
that does not answer in time is marked down and the next one is tried at
once.  A down upstream is skipped until its back-off (2 s, doubling to 60 s)
has passed; then one query probes it.  When every upstream is down and none
is due for a probe, the answer is SERVFAIL at once instead of after a
timeout.  SERVFAIL, REFUSED and NOTIMP from an upstream move on to the next
one too (without marking it down).  Identical questions in flight share one
upstream query.  Each UDP query goes out from a socket of its own on a
random port; a truncated answer is asked again over TCP (twisted.names.client).
"""

import os
import secrets
import socket

from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.names import client, common, dns, error
from zope.interface import implementer

from dhcpfo.dns import names

TIMEOUT = 1.5
RETRY_MIN = 2.0
RETRY_MAX = 60.0
_MOVE_ON = (dns.ESERVER, dns.EREFUSED, dns.ENOTIMP, dns.EFORMAT)


class UpstreamsDown(error.DNSServerError):
    """No upstream can be asked now (all down): answer SERVFAIL."""


class Upstream:
    """One upstream server and what we know of its health."""

    def __init__(self, host, port):
        self.address = (host, port)
        self.up = True
        self.down_until = 0.0
        self.backoff = RETRY_MIN
        self.probing = False
        self.answered = 0
        self.failed = 0

    def describe(self):
        return "%s#%d" % self.address

    def usable(self, now):
        if self.up:
            return True
        return now >= self.down_until and not self.probing


@implementer(IReadDescriptor)
class _UDPExchange:
    """One question to one upstream over UDP, from a socket of its own.

    The socket is bound to a random port chosen by the kernel and connected
    to the upstream, so only its answers arrive and an ICMP "port
    unreachable" fails the exchange at once.  It is a bare reader on the
    reactor rather than a ``listenUDP`` port, which would log two lines per
    question.
    """

    def __init__(self, reactor, address, query, timeout):
        self.reactor = reactor
        self.query = query
        self.deferred = defer.Deferred()
        self.id = secrets.randbelow(65536)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.socket.setblocking(False)
            self.socket.connect(address)
            message = dns.Message(self.id, recDes=1)
            message.queries = [query]
            self.socket.send(message.toStr())
        except OSError:
            self.socket.close()
            raise
        reactor.addReader(self)
        self.timer = reactor.callLater(timeout, self._fail,
                                       error.DNSQueryTimeoutError(query))

    def fileno(self):
        return self.socket.fileno()

    def logPrefix(self):
        return "dns-upstream"

    def connectionLost(self, reason):
        # epoll reports an ICMP error on the connected socket as a hang-up
        try:
            code = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            code = 0
        self._fail(OSError(code, os.strerror(code)) if code else reason)

    def doRead(self):
        while self.timer is not None:
            try:
                data = self.socket.recv(65535)
            except BlockingIOError:
                return
            except OSError as e:
                self._fail(e)
                return
            message = dns.Message()
            try:
                message.fromStr(data)
            except Exception:
                continue
            if message.answer and message.id == self.id and _matches(message,
                                                                     self.query):
                self._done()
                self.deferred.callback(message)

    def _done(self):
        if self.timer is None:
            return False
        if self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.reactor.removeReader(self)
        self.socket.close()
        return True

    def _fail(self, reason):
        if self._done():
            self.deferred.errback(reason)


class _TwistedSender:
    """Sends one question to one upstream: UDP, then TCP if truncated
    (twisted.names.client for TCP)."""

    def __init__(self, reactor):
        self.reactor = reactor
        self._resolvers = {}

    def _resolver(self, address):
        resolver = self._resolvers.get(address)
        if resolver is None:
            resolver = client.Resolver(servers=[address], reactor=self.reactor)
            self._resolvers[address] = resolver
        return resolver

    def __call__(self, address, query, timeout):
        d = _UDPExchange(self.reactor, address, query, timeout).deferred

        def truncated(message):
            if message.trunc:
                return self._resolver(address).queryTCP([query], timeout=timeout * 2)
            return message
        return d.addCallback(truncated)

    def close(self):
        for resolver in self._resolvers.values():
            for proto in list(resolver.connections):
                proto.transport.loseConnection()
        self._resolvers.clear()


class Forwarder(common.ResolverBase):
    """Ask ``upstreams`` ((host, port) pairs) what our own data cannot answer.

    :param clock: an ``IReactorTime``.
    :param cache: a :class:`dhcpfo.dns.cache.DNSCache`, or None.
    :param send: ``send((host, port), dns.Query, timeout) -> Deferred[Message]``;
        defaults to twisted.names.client over the reactor ``clock``.
    """

    _log = Logger()

    def __init__(self, upstreams, clock, cache=None, send=None, timeout=TIMEOUT):
        super().__init__()
        self.upstreams = [Upstream(host, port) for host, port in upstreams]
        self.clock = clock
        self.cache = cache
        self.timeout = timeout
        self._sender = None
        if send is None:
            send = self._sender = _TwistedSender(clock)
        self.send = send
        self._pending = {}
        self.stats = {"forwarded": 0, "cache_hits": 0, "servfail_fast": 0,
                      "upstream_timeouts": 0, "upstream_errors": 0}

    def close(self):
        if self._sender is not None:
            self._sender.close()

    # -- twisted.names IResolver -------------------------------------------

    def query(self, query, timeout=None):
        return self.resolve(query).addCallback(self._sections)

    def _lookup(self, name, cls, type, timeout):
        return self.query(dns.Query(name, type, cls), timeout)

    @staticmethod
    def _sections(result):
        rcode, answers, authority, additional = result
        if rcode == dns.OK:
            return answers, authority, additional
        message = dns.Message(rCode=rcode)
        message.answers, message.authority = answers, authority
        if rcode == dns.ENAME:
            raise error.DNSNameError(message)
        raise error.DNSServerError(message)

    # -- resolution ----------------------------------------------------------

    def resolve(self, query):
        """``Deferred[(rcode, answers, authority, additional)]`` for a
        ``dns.Query``; fails with ``DNSServerError`` (SERVFAIL)."""
        name = names.from_wire_name(query.name.name)
        key = (name, query.type, query.cls)
        if self.cache is not None:
            cached = self.cache.get(*key)
            if cached is not None:
                self.stats["cache_hits"] += 1
                return defer.succeed((cached.rcode, cached.answers,
                                      cached.authority, cached.additional))
        waiting = self._pending.get(key)
        if waiting is not None:
            d = defer.Deferred()
            waiting.append(d)
            return d
        waiting = self._pending[key] = []
        d = self._forward(dns.Query(name.encode("latin-1"), query.type, query.cls),
                          key)

        def done(result):
            del self._pending[key]
            for other in waiting:
                other.callback(result)
            return result
        return d.addBoth(done)

    def _forward(self, query, key):
        now = self.clock.seconds()
        candidates = [u for u in self.upstreams if u.usable(now)]
        if not candidates:
            self.stats["servfail_fast"] += 1
            return defer.fail(UpstreamsDown("all upstream servers are down"))
        self.stats["forwarded"] += 1
        result = defer.Deferred()
        self._try(query, key, candidates, None, result)
        return result

    def _try(self, query, key, candidates, last, result):
        if not candidates:
            if last is not None:
                result.callback(last)
            else:
                result.errback(error.DNSServerError("no upstream answered"))
            return
        upstream = candidates[0]
        rest = candidates[1:]
        if not upstream.up:
            upstream.probing = True
        try:
            d = self.send(upstream.address, query, self.timeout)
        except Exception as e:
            d = defer.fail(e)
        d.addCallbacks(self._answered, self._failed,
                       callbackArgs=(upstream, query, key, rest, result),
                       errbackArgs=(upstream, query, key, rest, result))

    def _answered(self, message, upstream, query, key, rest, result):
        upstream.probing = False
        if not _matches(message, query):
            self.stats["upstream_errors"] += 1
            self._log.warn("upstream {upstream} answered another question; ignored",
                           upstream=upstream.describe())
            self._try(query, key, rest, None, result)
            return
        self._mark_up(upstream)
        upstream.answered += 1
        for rr in message.answers + message.authority + message.additional:
            rr.auth = False     # not our authority: no AA bit
        answer = (message.rCode, message.answers, message.authority,
                  [rr for rr in message.additional if rr.type != dns.OPT])
        if message.rCode in _MOVE_ON:
            self.stats["upstream_errors"] += 1
            self._try(query, key, rest, (dns.ESERVER, [], [], []), result)
            return
        if self.cache is not None:
            self.cache.put(key[0], key[1], key[2], *answer)
        result.callback(answer)

    def _failed(self, failure, upstream, query, key, rest, result):
        upstream.probing = False
        upstream.failed += 1
        self.stats["upstream_timeouts"] += 1
        self._mark_down(upstream, failure)
        self._try(query, key, rest, None, result)

    def _mark_up(self, upstream):
        if not upstream.up:
            upstream.up = True
            upstream.backoff = RETRY_MIN
            self._log.info("upstream DNS server {upstream} answers again",
                           upstream=upstream.describe())

    def _mark_down(self, upstream, failure):
        now = self.clock.seconds()
        if upstream.up:
            upstream.up = False
            upstream.backoff = RETRY_MIN
            self._log.warn("upstream DNS server {upstream} is not answering "
                           "({why}); trying the others, again in {retry:.0f}s",
                           upstream=upstream.describe(),
                           why=failure.getErrorMessage() or failure.type.__name__,
                           retry=upstream.backoff)
        else:
            upstream.backoff = min(upstream.backoff * 2, RETRY_MAX)
        upstream.down_until = now + upstream.backoff


def _matches(message, query):
    if len(message.queries) != 1:
        return False
    q = message.queries[0]
    return (q.type == query.type and q.cls == query.cls
            and q.name.name.lower() == query.name.name.lower())
