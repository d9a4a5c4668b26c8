"""The forwarder's transport: questions to upstream servers over UDP, from a
small pool of sockets per upstream, and over TCP when an answer is truncated.

A socket per question let a flood of questions to a silent upstream use up
the process's file descriptors (EMFILE for DHCP, the peer channel, ...).
Each upstream now has at most :data:`POOL_SIZE` sockets; each is bound to a
random port chosen by the kernel and connected to its upstream (so only the
upstream's datagrams arrive, and an ICMP "port unreachable" is reported at
once), and is replaced by a new one (a new random port) after
:data:`SOCKET_USES` questions.  Every question has a random id, unique
among the questions in flight on its socket; an answer must carry it and
echo the question.  The number of questions in flight is bounded by the
forwarder (``dns-forward-max``), which bounds the retired sockets still
waiting for answers too.
"""

import os
import random
import secrets
import socket

from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor
from twisted.names import client, dns, error
from zope.interface import implementer

#: Sockets per upstream in use at a time.
POOL_SIZE = 4
#: Questions sent from one socket before it is replaced (a new random port).
SOCKET_USES = 64

_random = random.SystemRandom()


def matches(message, query):
    """Whether ``message`` answers ``query`` (one question, same name in any
    letter case, type and class)."""
    if len(message.queries) != 1:
        return False
    q = message.queries[0]
    return (q.type == query.type and q.cls == query.cls
            and q.name.name.lower() == query.name.name.lower())


@implementer(IReadDescriptor)
class _PooledSocket:
    """One UDP socket connected to one upstream, shared by the questions in
    flight to it (``pending``: id -> :class:`_UDPExchange`).  It is a bare
    reader on the reactor rather than a ``listenUDP`` port, which would log
    two lines per socket."""

    def __init__(self, reactor, address, on_closed):
        self.reactor = reactor
        self.on_closed = on_closed
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.socket.setblocking(False)
            self.socket.connect(address)
        except OSError:
            self.socket.close()
            raise
        self.pending = {}
        self.uses = 0
        self.retired = False
        self.closed = False
        reactor.addReader(self)

    def fileno(self):
        return self.socket.fileno() if not self.closed else -1

    def logPrefix(self):
        return "dns-upstream"

    def new_id(self):
        while True:
            id_ = secrets.randbelow(65536)
            if id_ not in self.pending:
                return id_

    def release(self, id_):
        self.pending.pop(id_, None)
        if self.retired and not self.pending:
            self.close()

    def doRead(self):
        while not self.closed:
            try:
                data = self.socket.recv(65535)
            except BlockingIOError:
                return
            except OSError as e:
                # an ICMP error: every question here went to this upstream
                self.fail_all(e)
                return
            if len(data) < 12:
                continue
            exchange = self.pending.get(int.from_bytes(data[:2], "big"))
            if exchange is not None:
                exchange.received(data)

    def connectionLost(self, reason):
        # epoll reports an ICMP error on the connected socket as a hang-up
        try:
            code = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            code = 0
        self.fail_all(OSError(code, os.strerror(code)) if code else reason)

    def fail_all(self, reason):
        self.close()
        for exchange in list(self.pending.values()):
            exchange.fail(reason)

    def close(self):
        if self.closed:
            return
        self.reactor.removeReader(self)
        self.closed = True
        self.socket.close()
        self.on_closed(self)


class _Pool:
    """The sockets of one upstream."""

    def __init__(self, reactor, address, size=POOL_SIZE, uses=SOCKET_USES):
        self.reactor = reactor
        self.address = address
        self.size = size
        self.uses = uses
        self.sockets = []       # in use for new questions
        self.retired = set()    # replaced, still waiting for answers

    def checkout(self, exchange):
        """``(socket, id)`` for a new question; raises ``OSError`` when no
        socket can be had."""
        if len(self.sockets) < self.size:
            try:
                self.sockets.append(_PooledSocket(self.reactor, self.address,
                                                  self._closed))
            except OSError:
                if not self.sockets:
                    raise
        sock = _random.choice(self.sockets)
        sock.uses += 1
        if sock.uses >= self.uses:
            self.sockets.remove(sock)
            sock.retired = True
            self.retired.add(sock)
        id_ = sock.new_id()
        sock.pending[id_] = exchange
        return sock, id_

    def _closed(self, sock):
        if sock in self.sockets:
            self.sockets.remove(sock)
        self.retired.discard(sock)

    def count(self):
        return len(self.sockets) + len(self.retired)

    def close(self, reason):
        for sock in list(self.sockets) + list(self.retired):
            sock.fail_all(reason)


class _UDPExchange:
    """One question to one upstream over UDP, from a socket of ``pool``."""

    def __init__(self, reactor, pool, query, timeout):
        self.query = query
        self.deferred = defer.Deferred()
        self.timer = None
        self.sock, self.id = pool.checkout(self)
        message = dns.Message(self.id, recDes=1)
        message.queries = [query]
        try:
            self.sock.socket.send(message.toStr())
        except OSError:
            self.sock.release(self.id)
            raise
        self.timer = reactor.callLater(timeout, self.fail,
                                       error.DNSQueryTimeoutError(query))

    def received(self, data):
        message = dns.Message()
        try:
            message.fromStr(data)
        except Exception:
            return
        if message.answer and message.id == self.id and matches(message,
                                                                self.query):
            if self._done():
                self.deferred.callback(message)

    def _done(self):
        if self.timer is None:
            return False
        if self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.sock.release(self.id)
        return True

    def fail(self, reason):
        if self._done():
            self.deferred.errback(reason)


class Sender:
    """Sends one question to one upstream: UDP from the upstream's pool, then
    TCP (twisted.names.client) if the answer is truncated.  The forwarder's
    default ``send``."""

    def __init__(self, reactor, size=POOL_SIZE, uses=SOCKET_USES):
        self.reactor = reactor
        self.size = size
        self.uses = uses
        self._pools = {}
        self._resolvers = {}
        self.closed = False

    def pool(self, address):
        pool = self._pools.get(address)
        if pool is None:
            pool = self._pools[address] = _Pool(self.reactor, address, self.size,
                                                self.uses)
        return pool

    def exchange(self, address, query, timeout):
        """The :class:`_UDPExchange` of one question (tests look at it)."""
        if self.closed:
            raise error.DNSServerError("the forwarder stopped")
        return _UDPExchange(self.reactor, self.pool(address), query, timeout)

    def sockets(self):
        """How many sockets are open."""
        return sum(p.count() for p in self._pools.values())

    def _resolver(self, address):
        resolver = self._resolvers.get(address)
        if resolver is None:
            resolver = client.Resolver(servers=[address], reactor=self.reactor)
            self._resolvers[address] = resolver
        return resolver

    def __call__(self, address, query, timeout):
        d = self.exchange(address, query, timeout).deferred

        def truncated(message):
            if message.trunc:
                return self._resolver(address).queryTCP([query], timeout=timeout * 2)
            return message
        return d.addCallback(truncated)

    def close(self):
        self.closed = True
        for pool in list(self._pools.values()):
            pool.close(error.DNSServerError("the forwarder stopped"))
        self._pools.clear()
        for resolver in self._resolvers.values():
            for proto in list(resolver.connections):
                proto.transport.loseConnection()
        self._resolvers.clear()
