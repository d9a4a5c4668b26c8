"""The parameters of ``--lease-store ldap:...``, checked once into a record.

Every mistake a user can make in the description is reported here, when the
server starts, with a message naming the parameter; nothing below this module
re-checks them.
"""

import os
from urllib.parse import urlsplit

import attr
from ldaptor.protocols.ldap import distinguishedname
from twisted.internet.ssl import (Certificate, platformTrust,
                                  trustRootFromCertificates)
from twisted.logger import Logger

from dhcpfo.stores.ldap.errors import LDAPStoreConfigError, LDAPStoreError

_log = Logger()


@attr.s(frozen=True)
class LDAPOptions:
    url = attr.ib()
    host = attr.ib()
    port = attr.ib()
    tls = attr.ib()            # ldaps://: TLS from the first byte
    starttls = attr.ib()       # ldap:// upgraded with StartTLS
    base = attr.ib()           # normalised DN text
    binddn = attr.ib()
    passwordfile = attr.ib()
    cafile = attr.ib()
    trust = attr.ib()          # the trust root TLS verifies against, or None
    maxqueue = attr.ib()
    timeout = attr.ib()


def parse(url, base, binddn=None, passwordfile=None, starttls=False,
          cafile=None, maxqueue=100_000, timeout=30.0):
    """Check the store's parameters; an :class:`LDAPOptions` or
    :class:`LDAPStoreConfigError` saying what to change."""
    parts = urlsplit(url)
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise LDAPStoreConfigError(
            "url=%s: expected ldap://HOST[:PORT] or ldaps://HOST[:PORT]" % url)
    if parts.path not in ("", "/") or parts.query:
        raise LDAPStoreConfigError(
            "url=%s: give only the scheme, host and port; the base DN goes "
            "in base=" % url)
    try:
        port = parts.port
    except ValueError:
        raise LDAPStoreConfigError("url=%s: the port is not a number" % url)
    tls = parts.scheme == "ldaps"
    starttls = flag(starttls, "starttls")
    if tls and starttls:
        raise LDAPStoreConfigError(
            "starttls=yes with an ldaps:// url: ldaps is TLS already; use one")
    if not base:
        raise LDAPStoreConfigError("base= is required (the DN above the leases)")
    try:
        base = distinguishedname.DistinguishedName(base).getText()
    except Exception as e:
        raise LDAPStoreConfigError("base=%s is not a DN: %s" % (base, e))
    if passwordfile and not binddn:
        raise LDAPStoreConfigError("passwordfile= needs binddn=")
    if binddn and not passwordfile:
        raise LDAPStoreConfigError(
            "binddn= needs passwordfile= (a file holding the password; it is "
            "never given on the command line)")
    if passwordfile:
        readPassword(passwordfile, config=True)
    if cafile and not (tls or starttls):
        raise LDAPStoreConfigError(
            "cafile= is used only with an ldaps:// url or starttls=yes")
    trust = None
    if tls or starttls:
        trust = readCAFile(cafile) if cafile else platformTrust()
    try:
        maxqueue = int(maxqueue)
        timeout = float(timeout)
    except ValueError as e:
        raise LDAPStoreConfigError("maxqueue/timeout: %s" % e)
    if maxqueue < 1 or timeout <= 0:
        raise LDAPStoreConfigError("maxqueue and timeout must be positive")
    return LDAPOptions(url=url, host=parts.hostname, port=port or (636 if tls else 389),
                       tls=tls, starttls=starttls, base=base, binddn=binddn or None,
                       passwordfile=passwordfile or None, cafile=cafile or None,
                       trust=trust, maxqueue=maxqueue, timeout=timeout)


def flag(value, name):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true", "on", "1"):
        return True
    if text in ("no", "false", "off", "0", ""):
        return False
    raise LDAPStoreConfigError("%s=%s: expected yes or no" % (name, value))


def readPassword(path, config=False):
    """The bind password in ``path`` (one trailing newline ignored).

    Read at every connection attempt, so it can be rotated without a restart;
    a failure is a config error at start-up and a store error later.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        error = LDAPStoreConfigError if config else LDAPStoreError
        raise error("passwordfile=%s: %s" % (path, e.strerror))
    if config and os.stat(path).st_mode & 0o004:
        _log.warn("passwordfile {path} is readable by everyone", path=path)
    if data.endswith(b"\r\n"):
        return data[:-2]
    return data[:-1] if data.endswith(b"\n") else data


def readCAFile(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise LDAPStoreConfigError("cafile=%s: %s" % (path, e.strerror))
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in data.split(marker) if b"-----BEGIN" in block]
    try:
        certificates = [Certificate.loadPEM(block) for block in blocks]
    except Exception as e:
        raise LDAPStoreConfigError("cafile=%s: not PEM certificates (%s)" % (path, e))
    if not certificates:
        raise LDAPStoreConfigError("cafile=%s holds no PEM certificate" % path)
    return trustRootFromCertificates(certificates)
