"""The DNS server: a twisted.names server factory, its UDP and TCP protocols,
and the wire-level fast path in front of them.

Every query first meets :func:`dhcpfo.dns.message.fast_answer`, which looks
the raw question up in :attr:`LeaseAuthority.fast` and, on a hit, builds the
response by splicing bytes: the query's id, a ready header, the query's own
question (so its letter case is echoed), the ready answer and, for EDNS
queries, our OPT record.  Everything else (misses, odd flags, EDNS options we must look
at, oversize answers) is decoded with twisted.names and answered by
:class:`DNSServerFactory`, whose resolver chain is the authority then the
forwarder.  That slow path also does what twisted.names' own server leaves
out: an OPT record in answers to EDNS queries, BADVERS for EDNS versions
other than 0, the client's UDP size, truncation on whole-record boundaries
with the TC bit, FORMERR for malformed queries, SOA and AA on negative
answers, and REFUSED for clients outside our networks.
"""

import errno
import ipaddress

from twisted.internet import posixbase, protocol, udp
from twisted.logger import Logger, LogLevel
from twisted.names import dns, error, resolve, server
from twisted.protocols.policies import TimeoutMixin

from dhcpfo.dns.authority import NameNotFound, Refused
from dhcpfo.ratelog import RateLog
# The codec lives in dhcpfo.dns.message; its names are used here and by tests.
from dhcpfo.dns.message import (BADVERS, TCP_LIMIT, UDP_LIMIT,  # noqa: F401
                                FormatError, Query, decode_query,
                                encode_response, fast_answer, formerr)

TCP_IDLE = 10.0
TCP_MAX_CONNECTIONS = 100
#: TCP connections one host may hold at a time (so one cannot hold them all).
TCP_PER_HOST = 16
_ACL_CACHE_LIMIT = 4096
#: Largest query read over UDP (bigger ones arrive cut, and get FORMERR).
MAX_QUERY = 4096
#: Datagrams read per readiness event.
READ_BATCH = 256
_READ_DONE = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ECONNREFUSED)
_DROP_ERRNOS = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.ECONNREFUSED,
                errno.EINTR, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPERM)


class AccessList:
    """Who may ask: our networks, loopback, and ``--dns-allow`` networks."""

    def __init__(self, networks):
        self.networks = list(networks)
        #: host -> bool, for the hosts seen lately (the hot path reads it)
        self.known = {}

    def __call__(self, host):
        allowed = self.known.get(host)
        if allowed is None:
            allowed = self._check(host)
            if len(self.known) >= _ACL_CACHE_LIMIT:
                self.known.clear()
            self.known[host] = allowed
        return allowed

    def _check(self, host):
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if getattr(address, "ipv4_mapped", None) is not None:
            address = address.ipv4_mapped
        if address.is_loopback:
            return True
        return any(address.version == net.version and address in net
                   for net in self.networks)


class _Chain(resolve.ResolverChain):
    """A ResolverChain that keeps the question's class (``query`` of
    ResolverBase maps every type to an IN lookup)."""

    def query(self, query, timeout=None):
        return self._lookup(query.name.name, query.cls, query.type, timeout)


class DNSServerFactory(server.DNSServerFactory):
    """twisted.names' server factory with our policies (see the module doc).

    :param authority: a :class:`LeaseAuthority`.
    :param forwarder: a :class:`Forwarder`, or None (then REFUSED for
        names that are not ours).
    :param acl: an :class:`AccessList` (a callable ``host -> bool``).
    :param clock: the reactor (TCP idle timeouts).
    """

    _log = Logger()
    noisy = False

    def __init__(self, authority, forwarder, acl, clock, stats=None):
        super().__init__(authorities=[authority],
                         clients=[forwarder] if forwarder is not None else None)
        self.resolver = _Chain(self.resolver.resolvers)
        authority.set_recursion(self.canRecurse)
        self.authority = authority
        self.forwarder = forwarder
        self.acl = acl
        self.clock = clock
        self.fast = authority.fast
        self.stats = stats if stats is not None else {}
        #: every line a packet can cause goes through it
        self.ratelog = RateLog(clock)
        #: host -> TCP connections open from it
        self.tcp_hosts = {}
        for key in ("queries_slow", "refused", "formerr", "dropped", "badvers",
                    "notimp", "truncated", "servfail", "nxdomain", "errors",
                    "tcp_connections", "tcp_rejected"):
            self.stats.setdefault(key, 0)

    def buildProtocol(self, addr):
        # A stranger is closed at accept (returning None closes the socket):
        # REFUSED over a connection it may keep open would let it hold every
        # slot.  The bound then only counts clients we answer.
        host = getattr(addr, "host", None)
        if host is None or not self.acl(host) \
                or len(self.connections) >= TCP_MAX_CONNECTIONS \
                or self.tcp_hosts.get(host, 0) >= TCP_PER_HOST:
            self.stats["tcp_rejected"] += 1
            return None
        self.stats["tcp_connections"] += 1
        self.tcp_hosts[host] = self.tcp_hosts.get(host, 0) + 1
        p = DNSStreamProtocol(self)
        p.factory = self
        p.host = host
        return p

    def tcp_closed(self, host):
        """A TCP connection from ``host`` ended."""
        left = self.tcp_hosts.get(host, 0) - 1
        if left > 0:
            self.tcp_hosts[host] = left
        else:
            self.tcp_hosts.pop(host, None)

    # -- entry from the protocols ------------------------------------------

    def handle(self, data, proto, address, allowed, limit):
        """Answer one query that the fast path did not (or may not)."""
        self.stats["queries_slow"] += 1
        if len(data) < 12 or data[2] & 0x80:
            self.stats["dropped"] += 1       # junk, or a response: never answer
            return
        try:
            query = decode_query(data)
        except FormatError as e:
            self.stats["formerr"] += 1
            self.ratelog.emit(self._log, LogLevel.debug, "formerr",
                              "FORMERR to {address}: {why}", address=address, why=e)
            self._write(proto, formerr(data), address)
            return
        query.limit = limit
        query.proto = proto
        query.address = address
        if not allowed:
            self.stats["refused"] += 1
            self._reply(query, dns.EREFUSED)
        elif query.edns and query.version != 0:
            self.stats["badvers"] += 1
            query.version = 0
            self._reply(query, BADVERS)
        else:
            self.messageReceived(query.message, proto, address, query)

    def messageReceived(self, message, proto, address=None, query=None):
        if query is None:       # not from our protocols: no EDNS facts
            query = Query(message, False)
            query.proto, query.address = proto, address
        message.ednsQuery = query
        if message.opCode != dns.OP_QUERY:
            self.stats["notimp"] += 1
            self._reply(query, dns.ENOTIMP)
        elif len(message.queries) != 1:
            self.stats["formerr"] += 1
            self._reply(query, dns.EFORMAT)
        else:
            self.handleQuery(message, proto, address)

    def handleQuery(self, message, protocol, address):
        query = message.ednsQuery
        q = message.queries[0]
        if q.type in (dns.AXFR, dns.IXFR, dns.OPT) or q.type in range(128, 255):
            self.stats["refused" if q.type != dns.OPT else "formerr"] += 1
            return self._reply(query, dns.EREFUSED if q.type != dns.OPT
                               else dns.EFORMAT)
        return (self.resolver.query(q)
                .addCallback(self.gotResolverResponse, protocol, message, address)
                .addErrback(self.gotResolverError, protocol, message, address)
                .addErrback(self._crashed, query))

    # -- twisted.names callbacks ---------------------------------------------

    def gotResolverResponse(self, response, protocol, message, address):
        ans, auth, add = response
        aa = any(rr.isAuthoritative() for rr in ans) or \
            any(rr.isAuthoritative() for rr in auth)
        self._reply(message.ednsQuery, dns.OK, ans, auth, add, aa=aa)

    def gotResolverError(self, failure, protocol, message, address):
        query = message.ednsQuery
        if failure.check(NameNotFound):
            self.stats["nxdomain"] += 1
            self._reply(query, dns.ENAME, authority=failure.value.authority, aa=True)
        elif failure.check(error.DNSNameError):
            self.stats["nxdomain"] += 1
            upstream = failure.value.args[0] if failure.value.args else None
            authority = getattr(upstream, "authority", [])
            self._reply(query, dns.ENAME, authority=authority)
        elif failure.check(Refused):
            self.stats["refused"] += 1
            self._reply(query, dns.EREFUSED, aa=True)
        elif failure.check(error.DNSServerError, error.DNSQueryTimeoutError):
            self.stats["servfail"] += 1
            self._reply(query, dns.ESERVER)
        elif failure.check(error.DomainError):
            # nobody's name and nobody to ask
            self.stats["refused"] += 1
            self._reply(query, dns.EREFUSED)
        else:
            self.stats["servfail"] += 1
            self.ratelog.failure(self._log, "resolver", "DNS query {query} failed",
                                 failure, query=message.queries[0])
            self._reply(query, dns.ESERVER)

    def _crashed(self, failure, query):
        self.stats["errors"] += 1
        self.ratelog.failure(self._log, "crashed", "answering a DNS query failed",
                             failure)

    # -- replies -------------------------------------------------------------

    def _reply(self, query, rcode, answers=(), authority=(), additional=(), aa=False):
        data, truncated = encode_response(query, rcode, answers, authority, additional,
                                          aa=aa, ra=self.canRecurse, limit=query.limit)
        if truncated:
            self.stats["truncated"] += 1
        self._write(query.proto, data, query.address)

    def _write(self, proto, data, address):
        if data is None:
            return
        try:
            proto.writeBytes(data, address)
        except Exception:
            self.stats["errors"] += 1
            self.ratelog.failure(self._log, "send",
                                 "cannot send a DNS response to {address}",
                                 address=address)


class DNSDatagramProtocol(protocol.DatagramProtocol):
    """DNS over UDP: the fast path inline, the rest to the factory."""

    _log = Logger()
    noisy = False

    def __init__(self, factory):
        self.factory = factory
        self.fast = factory.fast
        self.acl = factory.acl
        self._allowed = getattr(factory.acl, "known", {})
        self.answered_fast = 0
        self.send_errors = 0
        self._sendto = None

    def startProtocol(self):
        # The addresses we reply to come from recvfrom, so the checks of
        # udp.Port.write (hostname? family?) can be skipped on the hot path.
        handle = getattr(self.transport, "getHandle", None)
        if handle is not None:
            self._sendto = handle().sendto
        else:
            self._sendto = lambda data, address: self.transport.write(data, address)

    def datagramReceived(self, data, addr):
        try:
            allowed = self._allowed.get(addr[0])
            if allowed is None:
                allowed = self.acl(addr[0])
            if allowed:
                response = fast_answer(self.fast, data, UDP_LIMIT)
                if response is not None:
                    self.answered_fast += 1
                    try:
                        self._sendto(response, addr)
                    except OSError as e:
                        if e.errno not in _DROP_ERRNOS:
                            raise
                        self.send_errors += 1
                    return
            self.factory.handle(data, self, addr, allowed, UDP_LIMIT)
        except Exception:
            self.factory.stats["errors"] += 1
            self.factory.ratelog.failure(self._log, "datagram",
                                         "DNS datagram from {addr} not handled",
                                         addr=addr)

    def writeBytes(self, data, address):
        try:
            self._sendto(data, address)
        except OSError as e:
            if e.errno not in _DROP_ERRNOS:
                raise
            self.send_errors += 1

    def drain(self, sock, batch=READ_BATCH, size=MAX_QUERY):
        """Read and answer up to ``batch`` queued datagrams from ``sock``:
        :meth:`datagramReceived` unrolled, for :class:`DNSPort`."""
        recvfrom = sock.recvfrom
        sendto = sock.sendto
        known = self._allowed
        fast = self.fast
        answered = 0
        try:
            for _ in range(batch):
                try:
                    data, addr = recvfrom(size)
                except OSError as e:
                    if e.errno in _READ_DONE:
                        return
                    raise
                try:
                    if known.get(addr[0]):
                        response = fast_answer(fast, data, UDP_LIMIT)
                        if response is not None:
                            answered += 1
                            try:
                                sendto(response, addr)
                            except OSError as e:
                                if e.errno not in _DROP_ERRNOS:
                                    raise
                                self.send_errors += 1
                            continue
                    self.datagramReceived(data, addr)
                except Exception:
                    self.factory.stats["errors"] += 1
                    self.factory.ratelog.failure(self._log, "datagram",
                                                 "DNS datagram from {addr} not "
                                                 "handled", addr=addr)
        except Exception:
            self.factory.ratelog.failure(self._log, "read",
                                         "reading DNS datagrams failed")
        finally:
            self.answered_fast += answered


class DNSPort(udp.Port):
    """A ``udp.Port`` whose read loop is :meth:`DNSDatagramProtocol.drain`
    (measured: about 12 % less user CPU per query than ``Port.doRead``
    calling ``datagramReceived``)."""

    def doRead(self):
        self.protocol.drain(self.socket)


def listen_udp(reactor, port, proto, interface):
    """Listen for DNS on UDP with :class:`DNSPort` (POSIX reactors) or
    ``reactor.listenUDP``."""
    if isinstance(reactor, posixbase.PosixReactorBase):
        udp_port = DNSPort(port, proto, interface, MAX_QUERY, reactor)
        udp_port.startListening()
        return udp_port
    return reactor.listenUDP(port, proto, interface=interface, maxPacketSize=MAX_QUERY)


class DNSStreamProtocol(dns.DNSProtocol, TimeoutMixin):
    """DNS over TCP (RFC 7766): length-prefixed messages, answered in any
    order, the connection closed after ``TCP_IDLE`` seconds of silence."""

    _log = Logger()
    #: the peer's address, counted in the factory's ``tcp_hosts`` until closed
    host = None

    def connectionMade(self):
        super().connectionMade()
        self.callLater = self.factory.clock.callLater
        self.setTimeout(TCP_IDLE)
        self._allowed = self.factory.acl(self.transport.getPeer().host)

    def connectionLost(self, reason):
        self.setTimeout(None)
        if self.host is not None:
            self.factory.tcp_closed(self.host)
            self.host = None
        super().connectionLost(reason)

    def timeoutConnection(self):
        self.transport.loseConnection()

    def stringReceived(self, data):
        self.resetTimeout()
        try:
            if self._allowed:
                response = fast_answer(self.factory.fast, data, TCP_LIMIT)
                if response is not None:
                    self.sendString(response)
                    return
            self.factory.handle(data, self, None, self._allowed, TCP_LIMIT)
        except Exception:
            self.factory.stats["errors"] += 1
            self.factory.ratelog.failure(self._log, "tcp",
                                         "DNS message over TCP not handled")

    def writeBytes(self, data, address=None):
        if self.transport is not None and self.connected:
            self.sendString(data)
