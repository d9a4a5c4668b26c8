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

Build the endpoints with L{Identity.client_endpoint} /
L{Identity.server_endpoint} (``wrapClientTLS`` / ``wrapServerTLS``), or use
L{Identity.client_options} / L{Identity.server_options} with
``TLSMemoryBIOFactory`` in tests.  Not AMP's ``StartTLS``: it checks the CA,
never the peer's name.
"""

import datetime
import re
import time

import attr
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from twisted.internet import endpoints, ssl
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import Logger
from zope.interface import implementer

_log = Logger()

HANDSHAKE_TIMEOUT = 10.0   # seconds a connection may take to authenticate

_KEY_BLOCK = re.compile(
    rb"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----",
    re.DOTALL)
_MAKE_CERTS_HINT = ("make a lab CA and certificates with "
                    "`dhcpfo-ctl make-certs DIR NAME [NAME...]`")


class TLSConfigError(Exception):
    """A failover certificate, key or CA file is missing, unreadable or wrong.

    The message names the option, the file and what to do about it.
    """


class PeerRefused(Exception):
    """The peer's certificate does not name a peer we may talk to."""


# --- certificate names ----------------------------------------------------

def _as_cryptography(cert):
    if isinstance(cert, x509.Certificate):
        return cert
    if isinstance(cert, ssl.Certificate):
        cert = cert.original
    if isinstance(cert, crypto.X509):
        return cert.to_cryptography()
    raise TypeError("not a certificate: %r" % (cert,))


def _normalise(name):
    return name.strip().lower().rstrip(".")


def certificate_names(cert):
    """The names a certificate asserts: its subjectAltName dNSNames or, only if
    it has none, its subject commonName(s).  Lower case, no trailing dot.

    ``cert`` is a ``cryptography`` certificate, an ``OpenSSL.crypto.X509`` (what
    ``transport.getPeerCertificate()`` returns) or a Twisted ``Certificate``.
    """
    cert = _as_cryptography(cert)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [_normalise(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [_normalise(a.value)
                 for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                 if isinstance(a.value, str)]
    return [n for n in names if n]


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


# --- this server's identity --------------------------------------------------

@attr.s(frozen=True)
class Identity:
    """This server's certificate, key, chain and the CA(s) it trusts for peers."""

    certificate = attr.ib()   # twisted.internet.ssl.PrivateCertificate (leaf + key)
    chain = attr.ib()         # [ssl.Certificate] intermediates sent after the leaf
    authorities = attr.ib()   # [ssl.Certificate] the failover CA(s)
    names = attr.ib()         # certificate_names(leaf)

    @property
    def name(self):
        return self.names[0] if self.names else None

    def _trust_root(self):
        return ssl.trustRootFromCertificates(self.authorities)

    def client_options(self, server_name):
        """Connection creator for connecting to the peer called ``server_name``:
        checks its certificate against the CA and that name (service-identity),
        and presents ours."""
        extra = {}
        if self.chain:
            extra["extraCertChain"] = [c.original for c in self.chain]
        return ssl.optionsForClientTLS(
            server_name, trustRoot=self._trust_root(),
            clientCertificate=self.certificate,
            extraCertificateOptions=extra or None)

    def server_options(self):
        """Options for accepting peers: ours presented; a client certificate
        signed by the CA required and verified.  (``PrivateCertificate.options``
        with the CA, plus the chain.)"""
        if not self.chain:
            return self.certificate.options(*self.authorities)
        return ssl.CertificateOptions(
            privateKey=self.certificate.privateKey.original,
            certificate=self.certificate.original,
            extraCertChain=[c.original for c in self.chain],
            trustRoot=self._trust_root())

    def client_endpoint(self, endpoint, server_name):
        """``endpoint`` (e.g. a HostnameEndpoint to the peer) wrapped in TLS."""
        return endpoints.wrapClientTLS(self.client_options(server_name), endpoint)

    def server_endpoint(self, endpoint):
        """``endpoint`` (e.g. a TCP4ServerEndpoint) wrapped in mutual TLS."""
        return endpoints.wrapServerTLS(self.server_options(), endpoint)


def _read(option, path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise TLSConfigError(
            "%s: %s does not exist; give the path of %s, or %s"
            % (option, path, what, _MAKE_CERTS_HINT)) from None
    except IsADirectoryError:
        raise TLSConfigError("%s: %s is a directory; give the path of %s (a file)"
                             % (option, path, what)) from None
    except PermissionError:
        raise TLSConfigError(
            "%s: cannot read %s: permission denied; make it readable by the user "
            "dhcpfo runs as%s" % (option, path,
                                  " (and by nobody else: it is a private key)"
                                  if option == "--failover-key" else "")) from None
    except OSError as e:
        raise TLSConfigError("%s: cannot read %s: %s"
                             % (option, path, e.strerror or e)) from None


def _load_certs(option, path, what):
    data = _read(option, path, what)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise TLSConfigError(
            "%s: %s holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' "
            "block); give the path of %s" % (option, path, what))
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise TLSConfigError("%s: %s has a certificate that cannot be parsed (%s); "
                             "replace the file" % (option, path, e)) from None


def _load_key(path):
    option = "--failover-key"
    data = _read(option, path, "this server's PEM private key")
    m = _KEY_BLOCK.search(data)
    if m is None:
        raise TLSConfigError(
            "%s: %s holds no PEM private key (no '-----BEGIN ... PRIVATE KEY-----' "
            "block); give the key file made with the certificate" % (option, path))
    try:
        return serialization.load_pem_private_key(m.group(0), password=None)
    except TypeError:
        raise TLSConfigError(
            "%s: %s is protected by a passphrase, which dhcpfo cannot ask for; "
            "decrypt it: openssl pkey -in %s -out NEW.key && chmod 600 NEW.key"
            % (option, path, path)) from None
    except (ValueError, crypto.Error) as e:
        raise TLSConfigError("%s: the private key in %s cannot be parsed (%s)"
                             % (option, path, e)) from None


def _public_der(key):
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _issued_by(cert, issuer):
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_validity(option, path, cert, now):
    when = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    if cert.not_valid_after_utc <= when:
        raise TLSConfigError(
            "%s: the certificate in %s expired on %s; make a new one (e.g. "
            "`dhcpfo-ctl make-certs --force DIR NAME`) or check this server's clock"
            % (option, path, cert.not_valid_after_utc.isoformat()))
    if cert.not_valid_before_utc > when:
        raise TLSConfigError(
            "%s: the certificate in %s is not valid before %s; check this "
            "server's clock" % (option, path, cert.not_valid_before_utc.isoformat()))


def load_identity(cert_path, key_path, ca_path, name=None, now=None):
    """Read ``--failover-cert``, ``--failover-key`` and ``--failover-ca``.

    ``cert_path`` holds this server's certificate, optionally followed by the
    intermediates that lead to the CA; ``key_path`` its private key
    (unencrypted PEM; may be the same file); ``ca_path`` the CA certificate(s)
    peers must be signed by.  Checks that the key matches, that the
    certificate chains to the CA, is valid at ``now`` (POSIX seconds; default
    the current time), is usable as both TLS server and client, and, given
    ``name`` (``--failover-name``), names it.  Returns an L{Identity}; raises
    L{TLSConfigError} naming the file and the fix.
    """
    now = time.time() if now is None else now
    certs = _load_certs("--failover-cert", cert_path,
                        "this server's PEM certificate")
    leaf, chain = certs[0], certs[1:]
    key = _load_key(key_path)
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise TLSConfigError(
            "--failover-key: the key in %s does not belong to the certificate in "
            "%s (--failover-cert); give the key that was made with it (make-certs "
            "writes NAME.pem and NAME.key side by side)" % (key_path, cert_path))
    authorities = _load_certs("--failover-ca", ca_path, "the failover CA certificate")
    for ca in authorities:
        try:
            basic = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            basic = None
        if basic is None or not basic.ca:
            raise TLSConfigError(
                "--failover-ca: %s holds a certificate that is not a CA (%s); give "
                "the CA certificate (make-certs' ca.pem), not a peer's"
                % (ca_path, ca.subject.rfc4514_string()))
        _check_validity("--failover-ca", ca_path, ca, now)

    # Walk leaf -> intermediates -> one of the CAs.
    current, remaining, steps = leaf, list(chain), 0
    while not any(_issued_by(current, ca) for ca in authorities):
        nxt = next((c for c in remaining if _issued_by(current, c)), None)
        if nxt is None or steps > 8:
            raise TLSConfigError(
                "--failover-cert: the certificate in %s (issued by %s) is not "
                "signed by the CA in %s (--failover-ca: %s); peers would refuse it. "
                "Use the ca.pem the certificates were made with%s"
                % (cert_path, current.issuer.rfc4514_string(), ca_path,
                   "; ".join(a.subject.rfc4514_string() for a in authorities),
                   ", or append the intermediate certificates to %s" % cert_path
                   if current is leaf else ""))
        remaining.remove(nxt)
        current, steps = nxt, steps + 1
    _check_validity("--failover-cert", cert_path, leaf, now)
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None:
        needed = (("serverAuth", ExtendedKeyUsageOID.SERVER_AUTH),
                  ("clientAuth", ExtendedKeyUsageOID.CLIENT_AUTH))
        missing = [label for label, oid in needed if oid not in usages]
        if missing:
            raise TLSConfigError(
                "--failover-cert: the certificate in %s lacks the %s extended key "
                "usage; every failover peer both listens and connects, so it needs "
                "serverAuth and clientAuth (make-certs' certificates have both)"
                % (cert_path, " and ".join(missing)))
    names = certificate_names(leaf)
    if name is not None and _normalise(name) not in names:
        raise TLSConfigError(
            "--failover-cert: the certificate in %s is for %s, not for this "
            "server's --failover-name %s; peers check that name, so use the "
            "certificate made for it" % (cert_path, ", ".join(names) or "nobody",
                                         name))
    private = ssl.PrivateCertificate.fromCertificateAndKeyPair(
        ssl.Certificate(crypto.X509.from_cryptography(leaf)),
        ssl.KeyPair(crypto.PKey.from_cryptography_key(key)))
    return Identity(
        certificate=private,
        chain=[ssl.Certificate(crypto.X509.from_cryptography(c)) for c in chain],
        authorities=[ssl.Certificate(crypto.X509.from_cryptography(c))
                     for c in authorities],
        names=names)


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
