"""This server's failover identity (design rule 7): its certificate, key and
chain, the CA it trusts for peers, and the names a certificate asserts.

:func:`load_identity` checks the ``--failover-cert/-key/-ca`` files once, at
start-up, and says what is wrong and how to fix it (:class:`TLSConfigError`);
:class:`Identity` builds the TLS options and endpoints.  Admission of each
connection is :mod:`dhcpfo.failover.tls`.
"""

import datetime
import re
import time

import attr
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto
from twisted.internet import endpoints, ssl

_KEY_BLOCK = re.compile(
    rb"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----",
    re.DOTALL)
_MAKE_CERTS_HINT = ("make a lab CA and certificates with "
                    "`dhcpfo-ctl make-certs DIR NAME [NAME...]`")


class TLSConfigError(Exception):
    """A failover certificate, key or CA file is missing, unreadable or wrong.

    The message names the option, the file and what to do about it.
    """


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
