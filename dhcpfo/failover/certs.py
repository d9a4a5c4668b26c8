"""A lab certificate authority for the failover channel (``dhcpfo-ctl make-certs``).

Failover peers authenticate each other with mutual TLS (design rule 7): every
peer has a certificate naming it (subjectAltName dNSName = its
``--failover-name``) signed by a CA that every peer trusts.  Sites with a PKI
use their own; everyone else runs::

    dhcpfo-ctl make-certs /etc/dhcpfo/failover dhcp1 dhcp2

which writes ``ca.pem`` / ``ca.key`` (the CA; reused if the directory already
has one, so peers can be added later) and ``NAME.pem`` / ``NAME.key`` for each
peer.  Peer certificates carry both the serverAuth and clientAuth extended key
usages, since every peer both listens and connects.  Private keys are written
with mode 0600; keep ``ca.key`` off the servers if you can.

Keys are ECDSA P-256 (quick to make, universally supported by TLS 1.2/1.3).
"""

import datetime
import os
import re
import secrets
import sys

import attr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DAYS = 825        # the longest validity browsers and Apple accept for a leaf
DEFAULT_CA_DAYS = 3650
BACKDATE = datetime.timedelta(hours=1)  # tolerate a peer whose clock is a bit behind

CA_CERT = "ca.pem"
CA_KEY = "ca.key"

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class CertError(Exception):
    """Making or reading lab certificates failed; the message says how to fix it."""


@attr.s(frozen=True, slots=True)
class CertFiles:
    """What ``make_certs`` wrote (or reused): absolute paths."""

    directory = attr.ib()
    ca_cert = attr.ib()
    ca_key = attr.ib()
    ca_created = attr.ib()   # False when an existing CA was reused
    peers = attr.ib()        # {name: (cert path, key path)}, in the order given


def check_peer_name(name):
    """Return ``name`` normalised (lower case) or raise L{CertError}.

    A failover name is a DNS name: it goes into the certificate's
    subjectAltName and is what the other peers check.
    """
    if not isinstance(name, str):
        raise CertError("peer name %r is not text" % (name,))
    lowered = name.strip().lower().rstrip(".")
    labels = lowered.split(".")
    if (not lowered or len(lowered) > 253
            or not all(_LABEL.match(label) for label in labels)):
        raise CertError(
            "%r is not a valid peer name: use a DNS name (letters, digits, '-' and "
            "'.'), the same one given to that server as --failover-name" % (name,))
    if all(label.isdigit() for label in labels):
        raise CertError("%r looks like an IP address; peer names are DNS names "
                        "(the server's --failover-name)" % (name,))
    if lowered == "ca":
        raise CertError("'ca' cannot be a peer name: ca.pem and ca.key are the "
                        "certificate authority's files")
    return lowered


def _new_key():
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(days=DEFAULT_CA_DAYS, now=None):
    """A new self-signed CA: ``(cert, key)`` (``cryptography`` objects)."""
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    key = _new_key()
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dhcpfo lab"),
        x509.NameAttribute(NameOID.COMMON_NAME,
                           "dhcpfo failover CA %s" % secrets.token_hex(4)),
    ])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            key_cert_sign=True, crl_sign=True, encipher_only=False,
            decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_peer(ca_cert, ca_key, name, days=DEFAULT_DAYS, now=None):
    """A certificate and key for peer ``name``, signed by the CA.

    subjectAltName dNSName=name (and CN=name for tools that show only the
    subject), EKU serverAuth + clientAuth.  Returns ``(cert, key)``
    (``cryptography`` objects).
    """
    name = check_peer_name(name)
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    key = _new_key()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dhcpfo lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                       critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            key_cert_sign=False, crl_sign=False, encipher_only=False,
            decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public),
                       critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CertError("cannot read %s: %s" % (path, e.strerror or e)) from None


def _load_ca(cert_path, key_path):
    try:
        cert = x509.load_pem_x509_certificate(_read(cert_path))
    except ValueError:
        raise CertError("%s is not a PEM certificate; move it away to make a new "
                        "CA" % (cert_path,)) from None
    try:
        key = serialization.load_pem_private_key(_read(key_path), password=None)
    except (ValueError, TypeError) as e:
        raise CertError("%s is not an unencrypted PEM private key (%s)"
                        % (key_path, e)) from None
    if not _same_public_key(cert.public_key(), key.public_key()):
        raise CertError("%s is not the key of the CA certificate %s; restore the "
                        "matching pair, or move both away to make a new CA"
                        % (key_path, cert_path))
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.value.ca:
        raise CertError("%s is not a CA certificate (made by another tool?); move "
                        "ca.pem and ca.key away to make a new CA" % (cert_path,))
    return cert, key


def _same_public_key(a, b):
    fmt = (serialization.Encoding.DER,
           serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)


def _write(path, data, mode):
    """Write ``data`` to ``path`` with ``mode``, replacing it atomically."""
    tmp = path + ".tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        with os.fdopen(fd, "wb") as f:
            fd = None
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def make_certs(directory, names, days=DEFAULT_DAYS, *, overwrite=False,
               ca_days=DEFAULT_CA_DAYS):
    """Create (or reuse) a lab CA in ``directory`` and a certificate per peer.

    Writes ``ca.pem``, ``ca.key`` (unless both exist: then that CA signs the
    new peers), and ``NAME.pem`` + ``NAME.key`` for every name.  Keys are mode
    0600, certificates 0644.  Existing peer files are an error unless
    ``overwrite``.  Nothing is written if any check fails.  Returns
    L{CertFiles}; raises L{CertError} with a message that says what to do.
    """
    if not names:
        raise CertError("name at least one peer (its --failover-name)")
    normalised = []
    for name in names:
        name = check_peer_name(name)
        if name in normalised:
            raise CertError("peer name %r given twice" % (name,))
        normalised.append(name)
    if not isinstance(days, int) or days < 1:
        raise CertError("days must be a whole number of days, at least 1 (got %r)"
                        % (days,))
    directory = os.path.abspath(directory)
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    except OSError as e:
        raise CertError("cannot create directory %s: %s"
                        % (directory, e.strerror or e)) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CertError("cannot write in %s (run as a user who may, or pick "
                        "another directory)" % (directory,))

    ca_cert_path = os.path.join(directory, CA_CERT)
    ca_key_path = os.path.join(directory, CA_KEY)
    have_cert, have_key = os.path.exists(ca_cert_path), os.path.exists(ca_key_path)
    if have_cert != have_key:
        present, missing = ((ca_cert_path, ca_key_path) if have_cert
                            else (ca_key_path, ca_cert_path))
        raise CertError("%s exists but %s does not: restore it, or move %s away "
                        "to make a new CA" % (present, missing, present))
    peers = {}
    for name in normalised:
        paths = (os.path.join(directory, name + ".pem"),
                 os.path.join(directory, name + ".key"))
        for path in paths:
            if os.path.exists(path) and not overwrite:
                raise CertError("%s already exists; remove it (or pass --force) "
                                "to make a new certificate for %s" % (path, name))
        peers[name] = paths

    now = datetime.datetime.now(datetime.timezone.utc)
    if have_cert:
        ca_cert, ca_key = _load_ca(ca_cert_path, ca_key_path)
        if ca_cert.not_valid_after_utc <= now + datetime.timedelta(days=1):
            raise CertError("the CA in %s has expired (or expires within a day); "
                            "move ca.pem and ca.key away to make a new one"
                            % (ca_cert_path,))
    else:
        ca_cert, ca_key = make_ca(max(ca_days, days), now)
        _write(ca_key_path, _key_pem(ca_key), 0o600)
        _write(ca_cert_path, _cert_pem(ca_cert), 0o644)
    for name, (cert_path, key_path) in peers.items():
        cert, key = issue_peer(ca_cert, ca_key, name, days, now)
        _write(key_path, _key_pem(key), 0o600)
        _write(cert_path, _cert_pem(cert), 0o644)
    return CertFiles(directory, ca_cert_path, ca_key_path, not have_cert, peers)


def add_make_certs_arguments(parser):
    """Declare ``make-certs``' arguments on an argparse (sub)parser."""
    parser.add_argument("directory", help="where to write the files (created "
                        "if missing; an existing ca.pem + ca.key there is reused)")
    parser.add_argument("names", nargs="+", metavar="NAME",
                        help="a peer's --failover-name (one certificate each)")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS,
                        help="validity of the peer certificates (default "
                        "%(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="replace existing NAME.pem / NAME.key files")
    return parser


def main_make_certs(args, out=None, err=None):
    """Run ``make-certs`` for parsed ``args`` (see L{add_make_certs_arguments}).

    Prints what was written and the options each peer needs; returns the exit
    status (0, or 2 with a message on ``err``).
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        files = make_certs(args.directory, args.names, args.days,
                           overwrite=getattr(args, "force", False))
    except CertError as e:
        print("dhcpfo-ctl make-certs: %s" % (e,), file=err)
        return 2
    print("%s CA %s (key %s)" % ("created" if files.ca_created else "reused",
                                 files.ca_cert, files.ca_key), file=out)
    for name, (cert, key) in files.peers.items():
        print("peer %s: %s, key %s" % (name, cert, key), file=out)
    print("\nCopy ca.pem and the peer's own NAME.pem and NAME.key to each server "
          "and start it with:", file=out)
    for name, (cert, key) in files.peers.items():
        others = [n for n in files.peers if n != name]
        print("  %s: --failover-name %s --failover-cert %s --failover-key %s "
              "--failover-ca %s%s" % (name, name, cert, key, files.ca_cert,
                                      " --failover-peers " + ",".join(others)
                                      if others else ""), file=out)
    print("Keep %s off the servers if you can: it can make new peers."
          % (files.ca_key,), file=out)
    return 0


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog="python -m dhcpfo.failover.certs",
        description="Create a lab CA and failover peer certificates.")
    return main_make_certs(add_make_certs_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
