"""Mutual TLS for the failover channel (design rule 7).

Every peer proves its name with a certificate signed by the failover CA, and
checks the other's:

- the **client** (the peer that connects) checks the server's certificate
  against the CA and the server's configured name with service-identity
  (``optionsForClientTLS``), during the handshake;
- the **server** requires a client certificate signed by the CA (OpenSSL
  refuses the handshake otherwise) and, once the handshake is done, checks that
  the certificate names one of the configured peers (L{check_peer}).

Nothing a peer sends is processed before it passed: L{PeerGate} decides, and
L{PeerAuthenticationMixin} puts the gate in front of an AMP protocol (it drops
every byte that arrives before the peer is admitted, and aborts the connection
on refusal, logging the reason).

A certificate's *names* are its subjectAltName dNSName entries or, only when
it has none, its subject commonName (L{certificate_names}).  Peer names match
exactly (case-insensitively); wildcard certificates are not honoured, so one
stolen key cannot stand in for every peer.

This server's certificate and the checks of its files live in
L{dhcpfo.failover.identity} (re-exported here).  Build the endpoints with
L{Identity.client_endpoint} /
L{Identity.server_endpoint} (``wrapClientTLS`` / ``wrapServerTLS``), or use
L{Identity.client_options} / L{Identity.server_options} with
``TLSMemoryBIOFactory`` in tests.  Not AMP's ``StartTLS``: it checks the CA,
never the peer's name.
"""

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import Logger
from zope.interface import implementer

from dhcpfo.failover.identity import (
    Identity, TLSConfigError, _normalise, certificate_names, load_identity)

__all__ = ["Identity", "TLSConfigError", "load_identity", "certificate_names",
           "PeerRefused", "peer_name", "check_peer", "describe_failure",
           "PeerGate", "PeerAuthenticationMixin", "HANDSHAKE_TIMEOUT"]

_log = Logger()

HANDSHAKE_TIMEOUT = 10.0   # seconds a connection may take to authenticate


class PeerRefused(Exception):
    """The peer's certificate does not name a peer we may talk to."""


def peer_name(transport):
    """The name the TLS peer on ``transport`` proved (its certificate's first
    name, see L{certificate_names}), or None: no TLS, no handshake yet, or no
    certificate."""
    get = getattr(transport, "getPeerCertificate", None)
    cert = get() if get is not None else None
    if cert is None:
        return None
    names = certificate_names(cert)
    return names[0] if names else None


def check_peer(transport, allowed_names):
    """Return which of ``allowed_names`` the TLS peer on ``transport`` proved.

    Call after the handshake (the CA signature was checked by OpenSSL during
    it).  Raises L{PeerRefused} with the reason: no certificate, or a
    certificate that names none of the allowed peers.
    """
    allowed = {_normalise(n) for n in allowed_names}
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        raise PeerRefused("the connection is not TLS")
    cert = get()
    if cert is None:
        raise PeerRefused("the peer sent no certificate")
    names = certificate_names(cert)
    for name in names:
        if name in allowed:
            return name
    if not names:
        raise PeerRefused("the peer's certificate names nobody (no subjectAltName "
                          "dNSName, no commonName)")
    raise PeerRefused("the peer's certificate is for %s, which is not a configured "
                      "peer (%s)" % (", ".join(names),
                                     ", ".join(sorted(allowed)) or "none configured"))


# --- admission of one connection --------------------------------------------

def _describe(transport):
    try:
        peer = transport.getPeer()
    except Exception:
        return "unknown peer"
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    return "%s:%s" % (host, port) if host is not None else str(peer)


def describe_failure(reason, expected=()):
    """A TLS failure (or any connection loss) in one line for the log.

    ``expected``: the peer names we would have accepted (for the message when
    the peer's certificate named someone else).
    """
    if reason is None:
        return "connection closed"
    value = reason.value
    if isinstance(value, VerificationError):
        return ("TLS: the peer's certificate is not for %s"
                % (" or ".join(expected) or "the expected name"))
    if isinstance(value, SSL.Error) and value.args and isinstance(value.args[0], list):
        parts = [e[-1] for e in value.args[0] if isinstance(e, tuple) and e[-1]]
        if parts:
            return "TLS: " + "; ".join(parts)
    return reason.getErrorMessage() or type(value).__name__


class PeerGate:
    """Decides whether the peer on one connection may talk to us.

    ``allowed_names``: the peer names it may prove (on the listening side the
    configured peers; on the connecting side the one peer we dialled).
    ``insecure``: plain TCP (``--failover-insecure``): admitted at once,
    unauthenticated, loudly logged.  With a ``clock``, a connection that has not
    been admitted ``timeout`` seconds after it was made is dropped.

    ``admitted`` / ``name`` say who was let in; ``refused`` holds the reason a
    peer was turned away.
    """

    log = _log

    def __init__(self, allowed_names, *, insecure=False, clock=None,
                 timeout=HANDSHAKE_TIMEOUT):
        self.allowed_names = [_normalise(n) for n in allowed_names]
        self.insecure = insecure
        self.clock = clock
        self.timeout = timeout
        self.admitted = False
        self.name = None
        self.refused = None
        self._timer = None
        self._transport = None

    def connection_made(self, transport):
        self._transport = transport
        if self.insecure:
            self.log.warn(
                "failover peer {peer} accepted WITHOUT authentication "
                "(--failover-insecure): anyone who can reach this port can rewrite "
                "the lease database", peer=_describe(transport))
            self.admitted = True
            return
        if self.clock is not None and self.timeout:
            self._timer = self.clock.callLater(self.timeout, self._timed_out)

    def _timed_out(self):
        self._timer = None
        if not self.admitted and self.refused is None:
            self.refuse(self._transport, "it did not complete the TLS handshake "
                        "within %g s" % (self.timeout,))

    def _cancel_timer(self):
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def handshake_completed(self, transport):
        """Check the peer's certificate; True if admitted.  On refusal the
        reason is logged and the connection aborted."""
        if self.admitted or self.refused is not None:
            return self.admitted
        try:
            self.name = check_peer(transport, self.allowed_names)
        except PeerRefused as e:
            self.refuse(transport, str(e))
            return False
        self._cancel_timer()
        self.admitted = True
        self.log.info("failover peer {name} ({peer}) authenticated",
                      name=self.name, peer=_describe(transport))
        return True

    def refuse(self, transport, reason):
        self._cancel_timer()
        self.refused = reason
        self.log.warn("refused failover peer {peer}: {reason}",
                      peer=_describe(transport), reason=reason)
        if transport is not None:
            transport.abortConnection()

    def connection_lost(self, reason=None):
        self._cancel_timer()
        if not self.admitted and self.refused is None:
            self.refused = describe_failure(reason, self.allowed_names)
            if reason is not None and reason.check(SSL.Error) and \
                    " alert " in self.refused:
                # The other side's TLS stack turned us down and told us why.
                self.log.warn("failover peer {peer} refused us: {reason} (does it "
                              "trust our CA, and is our certificate for the name "
                              "it expects?)", peer=_describe(self._transport),
                              reason=self.refused)
            elif reason is not None and reason.check(SSL.Error, VerificationError):
                self.log.warn("refused failover peer {peer}: {reason}",
                              peer=_describe(self._transport), reason=self.refused)
            else:
                self.log.warn("failover peer {peer} lost before it was "
                              "authenticated: {reason}",
                              peer=_describe(self._transport), reason=self.refused)


@implementer(IHandshakeListener)
class PeerAuthenticationMixin:
    """Put a L{PeerGate} in front of a protocol (mix in before ``amp.AMP``)::

        class PeerProtocol(PeerAuthenticationMixin, amp.AMP):
            def peerAuthenticated(self, name): ...

    Set ``self.gate`` before the connection is made (in ``__init__`` or the
    factory's ``buildProtocol``).  Bytes received before the peer is admitted
    are dropped unread; ``peerAuthenticated(name)`` is called once it is, and
    is where the connecting side should send its first command (``Hello``):
    then nothing at all is written to a peer that failed our checks.
    """

    gate = None

    def connectionMade(self):
        if self.gate is None:
            raise RuntimeError("%s.gate must be a PeerGate before the connection "
                               "is made" % (type(self).__name__,))
        self.gate.connection_made(self.transport)
        super().connectionMade()
        if self.gate.insecure:
            self.peerAuthenticated(None)

    def handshakeCompleted(self):
        if self.gate.handshake_completed(self.transport):
            self.peerAuthenticated(self.gate.name)

    def dataReceived(self, data):
        if not self.gate.admitted:
            return  # never parse a byte from an unauthenticated peer
        super().dataReceived(data)

    def connectionLost(self, reason):
        self.gate.connection_lost(reason)
        super().connectionLost(reason)

    def peerAuthenticated(self, name):
        """The peer proved ``name`` (None with ``--failover-insecure``)."""
