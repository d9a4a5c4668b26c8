"""Forwarding to ``--server`` upstreams, with failover between them and a cache.

:class:`Forwarder` is a twisted.names resolver.  A question not in the cache
goes to the first upstream that is up, in the configured order; when one
does not answer in time the next one is tried at once.  An upstream is
judged by its answers, not by one name: an ICMP error marks it down; a
timeout does only when it answered nothing else since the question was sent
and then fails a health check (one name that never resolves is that name's
problem, not the server's).  A down upstream is skipped until its back-off
(2 s, doubling to 60 s) has passed; then one query probes it.  When every
upstream is down and none is due for a probe, the answer is SERVFAIL at
once instead of after a timeout.  SERVFAIL, REFUSED and NOTIMP from an
upstream move on to the next one too (without marking it down).  Identical
questions in flight share one upstream query.  At most ``FORWARD_MAX``
questions are in flight (dnsmasq's ``dns-forward-max``); beyond it a
question is REFUSED at once.  The transport is
:class:`dhcpfo.dns.upstream.Sender` (a small pool of sockets per upstream).
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.names import common, dns, error

from dhcpfo.dns import names
from dhcpfo.ratelog import RateLog
from dhcpfo.dns.upstream import Sender, matches as _matches

TIMEOUT = 1.5
RETRY_MIN = 2.0
RETRY_MAX = 60.0
#: The health check of a suspect upstream: any recursive server answers it.
HEALTH_CHECK = dns.Query(b"", dns.NS, dns.IN)
#: Questions in flight to upstreams at most (dnsmasq's dns-forward-max).
FORWARD_MAX = 150
_MOVE_ON = (dns.ESERVER, dns.EREFUSED, dns.ENOTIMP, dns.EFORMAT)


class UpstreamsDown(error.DNSServerError):
    """No upstream can be asked now (all down): answer SERVFAIL."""


class Overloaded(error.DNSQueryRefusedError):
    """``FORWARD_MAX`` questions are in flight already: answer REFUSED."""


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
        #: when it last answered (any answer: it is alive)
        self.last_answer = float("-inf")
        #: a question timed out and nothing else was answered since it was
        #: sent: asked last until the health check answers (or fails)
        self.suspect = False

    def describe(self):
        return "%s#%d" % self.address

    def usable(self, now):
        if self.up:
            return True
        return now >= self.down_until and not self.probing


class Forwarder(common.ResolverBase):
    """Ask ``upstreams`` ((host, port) pairs) what our own data cannot answer.

    :param clock: an ``IReactorTime``.
    :param cache: a :class:`dhcpfo.dns.cache.DNSCache`, or None.
    :param send: ``send((host, port), dns.Query, timeout) -> Deferred[Message]``;
        defaults to a :class:`dhcpfo.dns.upstream.Sender` on the reactor ``clock``.
    :param forward_max: questions in flight at most (``dns-forward-max``).
    """

    _log = Logger()

    def __init__(self, upstreams, clock, cache=None, send=None, timeout=TIMEOUT,
                 forward_max=FORWARD_MAX):
        super().__init__()
        self.upstreams = [Upstream(host, port) for host, port in upstreams]
        self.clock = clock
        self.cache = cache
        self.timeout = timeout
        self.forward_max = forward_max
        self._sender = None
        if send is None:
            send = self._sender = Sender(clock)
        self.send = send
        self._pending = {}
        self._ratelog = RateLog(clock)
        self.stats = {"forwarded": 0, "cache_hits": 0, "servfail_fast": 0,
                      "upstream_timeouts": 0, "upstream_errors": 0,
                      "upstream_slow": 0, "forward_max": 0}

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
        if len(self._pending) >= self.forward_max:
            self.stats["forward_max"] += 1
            self._ratelog.warn(self._log, "forward_max",
                               "{limit} DNS questions in flight to upstream "
                               "servers: refusing more", limit=self.forward_max)
            return defer.fail(Overloaded(name))
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
        candidates.sort(key=lambda u: u.suspect)      # stable: order kept
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
        sent = self.clock.seconds()
        try:
            d = self.send(upstream.address, query, self.timeout)
        except Exception as e:
            d = defer.fail(e)
        d.addCallbacks(self._answered, self._failed,
                       callbackArgs=(upstream, query, key, rest, result),
                       errbackArgs=(upstream, query, key, rest, result, sent))

    def _answered(self, message, upstream, query, key, rest, result):
        upstream.probing = False
        if not _matches(message, query):
            self.stats["upstream_errors"] += 1
            self._ratelog.warn(self._log, ("other", upstream.address),
                               "upstream {upstream} answered another question; "
                               "ignored", upstream=upstream.describe())
            self._try(query, key, rest, None, result)
            return
        self._mark_up(upstream)
        upstream.answered += 1
        upstream.last_answer = self.clock.seconds()
        upstream.suspect = False
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

    def _failed(self, failure, upstream, query, key, rest, result, sent):
        upstream.probing = False
        upstream.failed += 1
        self.stats["upstream_timeouts"] += 1
        if failure.check(error.DNSQueryTimeoutError) and upstream.up:
            if upstream.last_answer >= sent:
                # it answered others meanwhile: the name is slow, not the server
                self.stats["upstream_slow"] += 1
            else:
                self._check(upstream)
        else:
            self._mark_down(upstream, failure)
        self._try(query, key, rest, None, result)

    def _check(self, upstream):
        """A question timed out and nothing else was answered meanwhile: the
        server or the name?  The upstream is asked last while one health
        check (``. NS``) asks it; an answer clears it, silence marks it down."""
        if upstream.suspect:
            return
        upstream.suspect = True
        sent = self.clock.seconds()
        try:
            d = self.send(upstream.address, HEALTH_CHECK, self.timeout)
        except Exception as e:
            d = defer.fail(e)

        def alive(message):
            upstream.suspect = False
            upstream.last_answer = max(upstream.last_answer, sent)
            self.stats["upstream_slow"] += 1

        def silent(failure):
            if upstream.suspect:
                upstream.suspect = False
                self._mark_down(upstream, failure)
        d.addCallbacks(alive, silent)

    def _mark_up(self, upstream):
        if not upstream.up:
            upstream.up = True
            upstream.backoff = RETRY_MIN
            self._log.info("upstream DNS server {upstream} answers again",
                           upstream=upstream.describe())

    def _mark_down(self, upstream, failure):
        now = self.clock.seconds()
        upstream.suspect = False
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

