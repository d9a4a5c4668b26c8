"""A lease store in an LDAP directory (OpenLDAP, ...), spoken with ldaptor.

This is the only dhcpfo module that imports ldaptor.

**Layout.**  One entry per address directly below the configured base DN,
``dhcpfoLeaseIP=192.0.2.10,<base>``, of object class ``dhcpfoLease``
(``docs/ldap/dhcpfo.schema``).  Hardware address and client identifier are
lowercase hex, times are ``repr()`` of the float (exact round trip), the
version a decimal integer; optional attributes are absent when the field is
empty.  The base entry must exist.

**Connection.**  ``ldap://`` (optionally upgraded with StartTLS) or
``ldaps://``.  TLS always verifies the server certificate and its name
against ``cafile`` (or the platform's trust store without it).  The bind
password is read from ``passwordfile`` at every connection attempt (one
trailing newline is ignored), so it can be rotated without a restart.

**Writes (group commit).**  While one batch is on the wire, new writes queue;
the next batch takes them (whole writes, up to ``batchLimit`` leases), keeps
the newest record per address, and pipelines one add -- or modify/replace
when the entry is known to exist -- per address, ``window`` requests in
flight at a time.  Entries deleted or created behind the store's back are
handled (modify -> noSuchObject -> add; add -> entryAlreadyExists -> modify).
A modify carries an RFC 4528 assertion ``(dhcpfoLeaseVersion<=new)``, so an
older record never replaces a newer one, even a stale request the server
still held from a connection the store gave up on (dropped, with a warning,
when the server does not support the control).  A write's Deferred fires
when the directory has acknowledged every one of its leases (for OpenLDAP's
mdb backend: after its commit, fsynced unless ``dbnosync``), in the order
the writes were issued.
An error result for an address (no parent entry, schema violation,
insufficient access, newer version present, ...) fails the writes that
contained that address with :class:`LDAPWriteRejected`.

**Outages.**  When the directory cannot be reached, the connection drops, an
operation gets no answer for ``timeout`` seconds, or the server says busy or
unavailable, the batch goes back to the head of the queue and the store
reconnects with exponential backoff (0.5 s doubling up to 30 s, plus up to
1 s of jitter).  Queued writes stay pending -- their Deferreds fire only once
written -- and the queue is bounded: a write that would take it beyond
``maxqueue`` leases fails at once with :class:`LDAPStoreQueueFull` (the server
then sends no ACK and the client retries later).  ``open()`` itself does not
retry: it fails with :class:`LDAPStoreError` when the first connection, TLS
verification, bind or search fails, so a server never starts on a partial
lease set.  ``close()`` waits for queued writes while connected; when the
directory is unreachable it fails them with :class:`LDAPStoreClosed` instead
of waiting for it.

All time comes from the reactor given to the constructor.
"""

import os
from urllib.parse import urlsplit

from ldaptor.protocols import pureber, pureldap
from ldaptor.protocols.ldap import distinguishedname, ldaperrors
from ldaptor.protocols.ldap.ldapclient import LDAPClient
from twisted.application.internet import backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import (HostnameEndpoint, connectProtocol,
                                        wrapClientTLS)
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.ssl import (Certificate, optionsForClientTLS,
                                  platformTrust, trustRootFromCertificates)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dhcpfo.interfaces import ILeaseStore
from dhcpfo.leases.lease import Lease

OBJECT_CLASS = "dhcpfoLease"
RDN_ATTRIBUTE = "dhcpfoLeaseIP"
PAGED_RESULTS = b"1.2.840.113556.1.4.319"
ASSERTION = b"1.3.6.1.1.12"    # RFC 4528

_SUCCESS = 0
_SIZE_LIMIT = 4
_NO_SUCH_OBJECT = 32
_UNAVAILABLE_CRITICAL_EXTENSION = 12
_INVALID_CREDENTIALS = 49
_ALREADY_EXISTS = 68
_ASSERTION_FAILED = 122
# Result codes after which the same request may succeed on a new connection.
_TRANSIENT = {51: "busy", 52: "unavailable"}
_REPLACE = 2

def _ip(value):
    # It is also the RDN: only four dot-separated groups of ASCII digits.
    parts = value.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError("%r is not a dotted-quad IPv4 address" % (value,))
    return value.encode("ascii")


def _hex(value):
    return value.hex().encode("ascii") or None


def _unhex(data):
    return bytes.fromhex(data.decode("ascii"))


def _text(value):
    return value.encode("utf-8") or None


def _ascii(value):
    return value.encode("ascii")


def _float(value):
    return repr(float(value)).encode("ascii")


def _int(value):
    return b"%d" % value


def _fromText(data):
    return data.decode("utf-8")


def _toFloat(data):
    return float(data.decode("ascii"))


def _toInt(data):
    return int(data.decode("ascii"))


# (attribute, Lease field, encode to bytes (None: leave out), decode bytes)
_FIELDS = [
    ("dhcpfoLeaseIP", "ip", _ip, _fromText),
    ("dhcpfoHWAddress", "hwaddr", _hex, _unhex),
    ("dhcpfoClientID", "client_id", _hex, _unhex),
    ("dhcpfoHostname", "hostname", _text, _fromText),
    ("dhcpfoLeaseState", "state", _ascii, _fromText),
    ("dhcpfoLeaseStart", "start", _float, _toFloat),
    ("dhcpfoLeaseExpiry", "expiry", _float, _toFloat),
    ("dhcpfoLeaseOwner", "owner", _text, _fromText),
    ("dhcpfoLeaseVersion", "version", _int, _toInt),
]
_EMPTY = {"hwaddr": b"", "client_id": b"", "hostname": "", "owner": ""}
_BY_NAME = {name.lower().encode("ascii"): (field, decode)
            for name, field, _, decode in _FIELDS}


class LDAPStoreError(Exception):
    """The LDAP lease store could not do what was asked."""


class LDAPStoreConfigError(LDAPStoreError, ValueError):
    """A parameter of ``--lease-store ldap:...`` is wrong."""


class LDAPStoreQueueFull(LDAPStoreError):
    """The write would make the queue of unwritten leases exceed ``maxqueue``."""


class LDAPStoreClosed(LDAPStoreError):
    """The store was closed before the write reached the directory."""


class LDAPWriteRejected(LDAPStoreError):
    """The directory refused to store some addresses: ``errors`` maps each to
    ``(result code, message)``."""

    def __init__(self, errors):
        self.errors = errors
        ip, (code, message) = next(iter(sorted(errors.items())))
        more = " (and %d more addresses)" % (len(errors) - 1) if len(errors) > 1 else ""
        super().__init__("the directory refused lease %s: %s%s"
                         % (ip, _describeResult(code, message), more))


def _describeResult(code, message):
    name = ldaperrors.get(code, None)
    text = (name.name.decode("ascii") if getattr(name, "name", None)
            else {_ASSERTION_FAILED: "assertionFailed"}.get(code, "error"))
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return "%s (%d)%s" % (text, code, ": " + message if message else "")


class _Transient(Exception):
    """Internal: the batch has to be sent again on a new connection."""


def _flag(value, name):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true", "on", "1"):
        return True
    if text in ("no", "false", "off", "0", ""):
        return False
    raise LDAPStoreConfigError("%s=%s: expected yes or no" % (name, value))


def _readCAFile(path):
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


def _tlv(buf, pos):
    """(tag, start of value, end of value) of the BER element at ``pos``;
    IndexError when its header is incomplete."""
    tag = buf[pos]
    first = buf[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    if pos + 2 + count > len(buf):
        raise IndexError(pos)
    start = pos + 2 + count
    return tag, start, start + int.from_bytes(buf[pos + 2:start], "big")


def _searchEntry(buf, start, end):
    """The LDAPMessage holding a SearchResultEntry (RFC 4511 4.5.2) without
    controls, decoded directly; None for any other message."""
    try:
        tag, a, b = _tlv(buf, start)                  # messageID INTEGER
        if tag != 0x02:
            return None
        msgid = int.from_bytes(buf[a:b], "big", signed=True)
        tag, a, opEnd = _tlv(buf, b)                  # [APPLICATION 4]
        if tag != 0x64 or opEnd != end:
            return None
        tag, a, b = _tlv(buf, a)                      # objectName
        name = buf[a:b]
        tag, p, listEnd = _tlv(buf, b)                # attributes
        attributes = []
        while p < listEnd:
            tag, q, p = _tlv(buf, p)                  # PartialAttribute
            tag, a, b = _tlv(buf, q)                  # type
            tag, v, valuesEnd = _tlv(buf, b)          # SET OF value
            values = []
            while v < valuesEnd:
                tag, a2, v = _tlv(buf, v)
                values.append(buf[a2:v])
            attributes.append((buf[a:b], values))
        if p != listEnd or listEnd != opEnd:
            return None
    except IndexError:
        return None
    return pureldap.LDAPMessage(
        pureldap.LDAPSearchResultEntry(objectName=name, attributes=attributes),
        id=msgid)


@implementer(IHandshakeListener)
class _Client(LDAPClient):
    """ldaptor's client, plus: TLS handshake notification, a hook for the
    loss of the connection, linear-time framing of incoming messages."""

    _log = Logger()

    def __init__(self):
        super().__init__()
        self.tlsDone = None
        self.onLost = None

    def handshakeCompleted(self):
        if self.tlsDone is not None and not self.tlsDone.called:
            self.tlsDone.callback(None)

    def dataReceived(self, data):
        # LDAPClient.dataReceived re-slices its whole buffer after each
        # message (quadratic in a large search result): cut whole messages
        # out first.  Search result entries, the bulk of open(), are decoded
        # here (ldaptor's generic BER decoder takes ~150 us per lease entry,
        # 15 s for 100,000); every other message goes to ldaptor's decoder.
        buf = self.buffer + data if self.buffer else data
        pos, size = 0, len(buf)
        while True:
            try:
                _, start, end = _tlv(buf, pos)
            except IndexError:
                break
            if end > size:
                break
            message = _searchEntry(buf, start, end)
            if message is None:
                message, _ = pureber.berDecodeObject(self.berdecoder, buf[pos:end])
            pos = end
            if message is not None:
                self.handle(message)
        self.buffer = buf[pos:]

    def unsolicitedNotification(self, msg):
        self._log.warn("LDAP server notice: {msg!r}", msg=msg)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if self.tlsDone is not None and not self.tlsDone.called:
            self.tlsDone.errback(reason)
        if self.onLost is not None:
            self.onLost(self, reason)


class _Batch:
    def __init__(self, writes, now):
        self.writes = writes
        latest = {}
        for leases, _ in writes:
            for lease in leases:
                latest[lease.ip] = lease
        self.size = len(latest)
        self.count = sum(len(leases) for leases, _ in writes)
        self.todo = iter(list(latest.values()))
        self.outstanding = 0
        self.errors = {}
        self.aborted = False
        self.progress = now


@implementer(ILeaseStore)
class LDAPLeaseStore:
    """Leases as entries below ``base`` in the directory at ``url``."""

    durable = True
    window = 512       # requests in flight on the connection
    batchLimit = 1000  # leases per batch (a single larger write is one batch)
    pageSize = 1000    # entries per page when loading
    _log = Logger()

    def __init__(self, reactor, url, base, binddn=None, passwordfile=None,
                 starttls=False, cafile=None, maxqueue=100_000, timeout=30.0,
                 retryPolicy=None):
        self._reactor = reactor
        self.url = url
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
        self._tls = parts.scheme == "ldaps"
        self._host = parts.hostname
        self._port = port or (636 if self._tls else 389)
        self._starttls = _flag(starttls, "starttls")
        if self._tls and self._starttls:
            raise LDAPStoreConfigError(
                "starttls=yes with an ldaps:// url: ldaps is TLS already; use one")
        if not base:
            raise LDAPStoreConfigError("base= is required (the DN above the leases)")
        try:
            self.base = distinguishedname.DistinguishedName(base).getText()
        except Exception as e:
            raise LDAPStoreConfigError("base=%s is not a DN: %s" % (base, e))
        if passwordfile and not binddn:
            raise LDAPStoreConfigError("passwordfile= needs binddn=")
        if binddn and not passwordfile:
            raise LDAPStoreConfigError(
                "binddn= needs passwordfile= (a file holding the password; it is "
                "never given on the command line)")
        self.binddn = binddn or None
        self.passwordfile = passwordfile or None
        if self.passwordfile:
            self._readPassword(config=True)
        if cafile and not (self._tls or self._starttls):
            raise LDAPStoreConfigError(
                "cafile= is used only with an ldaps:// url or starttls=yes")
        self.cafile = cafile or None
        self._trust = None
        if self._tls or self._starttls:
            self._trust = _readCAFile(cafile) if cafile else platformTrust()
        try:
            self.maxqueue = int(maxqueue)
            self.timeout = float(timeout)
        except ValueError as e:
            raise LDAPStoreConfigError("maxqueue/timeout: %s" % e)
        if self.maxqueue < 1 or self.timeout <= 0:
            raise LDAPStoreConfigError("maxqueue and timeout must be positive")
        self._retryPolicy = retryPolicy or backoffPolicy(
            initialDelay=0.5, maxDelay=30.0, factor=2.0)

        self._opened = False
        self._proto = None          # a bound connection, ready for writes
        self._connecting = False    # a connection is being set up
        self._abortAttempt = None   # gives up on it
        self._retry = None          # the delayed reconnection
        self._failures = 0
        self._pending = []          # [(leases, Deferred)] not yet on the wire
        self._batch = None
        self._firing = False
        self._queued = 0            # leases written but not yet acknowledged
        self._known = set()         # addresses that have an entry
        self._assert = True         # guard modifies with the assertion control
        self._watchdog = None
        self._closing = False
        self._closed = False
        self._closeWaiters = []
        self.connected = False
        self.batches = 0
        self.written = 0

    def __repr__(self):
        return "<LDAPLeaseStore %s %s>" % (self.url, self.base)

    # -- connecting ---------------------------------------------------------------
    def _readPassword(self, config=False):
        try:
            with open(self.passwordfile, "rb") as f:
                data = f.read()
        except OSError as e:
            error = LDAPStoreConfigError if config else LDAPStoreError
            raise error("passwordfile=%s: %s" % (self.passwordfile, e.strerror))
        if config and os.stat(self.passwordfile).st_mode & 0o004:
            self._log.warn("passwordfile {path} is readable by everyone",
                           path=self.passwordfile)
        if data.endswith(b"\r\n"):
            return data[:-2]
        return data[:-1] if data.endswith(b"\n") else data

    def _endpoint(self):
        endpoint = HostnameEndpoint(self._reactor, self._host, self._port,
                                    timeout=self.timeout)
        if self._tls:
            endpoint = wrapClientTLS(self._tlsOptions(), endpoint)
        return endpoint

    def _tlsOptions(self):
        return optionsForClientTLS(self._host, trustRoot=self._trust)

    def _connect(self):
        """A Deferred firing with a connected, secured and bound _Client."""
        proto = _Client()
        if self._tls:
            proto.tlsDone = defer.Deferred()
        state = {"step": "connect", "timedOut": False}
        connecting = connectProtocol(self._endpoint(), proto)

        def abort():
            state["timedOut"] = True
            if proto.transport is not None:
                proto.transport.abortConnection()
            else:
                connecting.cancel()
        watchdog = self._reactor.callLater(self.timeout, abort)
        self._abortAttempt = abort

        @defer.inlineCallbacks
        def setUp(_):
            if self._tls:
                state["step"] = "TLS"
                yield proto.tlsDone
            elif self._starttls:
                state["step"] = "StartTLS"
                response = yield proto.send(pureldap.LDAPStartTLSRequest())
                if response.resultCode != _SUCCESS:
                    raise LDAPStoreError(
                        "%s refused StartTLS: %s" % (self.url, _describeResult(
                            response.resultCode, response.errorMessage)))
                proto.tlsDone = defer.Deferred()
                proto.transport.startTLS(self._tlsOptions())
                state["step"] = "TLS"
                yield proto.tlsDone
            if self.binddn:
                state["step"] = "bind"
                response = yield proto.send(pureldap.LDAPBindRequest(
                    dn=self.binddn, auth=self._readPassword()))
                if response.resultCode != _SUCCESS:
                    hint = ""
                    if response.resultCode == _INVALID_CREDENTIALS:
                        hint = " (wrong bind DN or password in %s)" % self.passwordfile
                    raise LDAPStoreError("bind to %s as %s failed: %s%s" % (
                        self.url, self.binddn, _describeResult(
                            response.resultCode, response.errorMessage), hint))
            return proto

        def done(result):
            self._abortAttempt = None
            if watchdog.active():
                watchdog.cancel()
            if isinstance(result, Failure):
                if proto.transport is not None and proto.connected:
                    proto.transport.abortConnection()
                if not result.check(LDAPStoreError):
                    result = Failure(LDAPStoreError(self._explain(
                        state, result)))
            return result

        connecting.addCallback(setUp)
        connecting.addBoth(done)
        return connecting

    def _explain(self, state, failure):
        step = state["step"]
        if self._closing:
            return "%s: the store was closed while connecting" % self.url
        if state["timedOut"]:
            return "%s: no answer within %gs (%s)" % (self.url, self.timeout, step)
        reason = failure.getErrorMessage() or failure.type.__name__
        if step == "connect":
            return "cannot connect to %s: %s" % (self.url, reason)
        if step == "TLS":
            return ("TLS with %s failed (is the server certificate issued for %s by "
                    "the CA in %s?): %s" % (self.url, self._host,
                                            self.cafile or "the system trust store",
                                            reason))
        return "%s: connection lost during %s: %s" % (self.url, step, reason)

    def _ready(self, proto):
        self._proto = proto
        self.connected = True
        self._failures = 0
        proto.onLost = self._lost

    def _lost(self, proto, reason):
        self._drop(proto, reason.getErrorMessage())

    def _drop(self, proto, why):
        """Stop using ``proto``; requeue its batch; reconnect unless closing."""
        if proto is None or proto is not self._proto:
            return
        self._proto = None
        self.connected = False
        if self._batch is not None:
            self._requeue(self._batch)
        if proto.connected:
            proto.transport.abortConnection()
        if self._closing:
            self._finishClose()
            return
        self._log.warn("lost the connection to {url}: {why}; {count} leases "
                       "queued", url=self.url, why=why, count=self._queued)
        self._scheduleReconnect()

    def _scheduleReconnect(self):
        delay = self._retryPolicy(self._failures)
        self._failures += 1
        self._retry = self._reactor.callLater(delay, self._reconnect)

    def _reconnect(self):
        self._retry = None
        self._connecting = True
        d = self._connect()

        def connected(proto):
            self._connecting = False
            self._ready(proto)
            self._log.info("connected to {url}; writing {count} queued leases",
                           url=self.url, count=self._queued)
            self._flush()

        def failed(failure):
            self._connecting = False
            if self._closing:
                self._finishClose()
                return
            self._log.error("{error}; retrying", error=failure.getErrorMessage())
            self._scheduleReconnect()
        d.addCallbacks(connected, failed)

    # -- open: load every lease ------------------------------------------------------
    def open(self):
        if self._closing:
            return defer.fail(LDAPStoreClosed("%r is closed" % self))
        if self._opened:
            return defer.fail(LDAPStoreError("%r is already open" % self))
        self._opened = True
        return self._open()

    @defer.inlineCallbacks
    def _open(self):
        self._connecting = True
        try:
            proto = yield self._connect()
            self._abortAttempt = proto.transport.abortConnection
            try:
                leases = yield self._load(proto)
                if self._closing:
                    raise LDAPStoreClosed("%r was closed while opening" % self)
            except Exception:
                if proto.connected:
                    proto.transport.abortConnection()
                raise
            self._ready(proto)
            self._flush()
            return leases
        except Exception as e:
            # A store that failed to open takes no writes (and fails any
            # issued while it was opening).
            self._opened = False
            pending, self._pending, self._queued = self._pending, [], 0
            for _, d in pending:
                d.errback(LDAPStoreError("%r did not open: %s" % (self, e)))
            raise
        finally:
            self._connecting = False
            self._abortAttempt = None
            if self._closing:
                self._finishClose()

    @defer.inlineCallbacks
    def _load(self, proto):
        leases, bad = [], []
        cookie = b""
        while True:
            control = pureber.BERSequence([pureber.BERInteger(self.pageSize),
                                           pureber.BEROctetString(cookie)])
            request = pureldap.LDAPSearchRequest(
                baseObject=self.base, scope=pureldap.LDAP_SCOPE_singleLevel,
                filter=pureldap.LDAPFilter_equalityMatch(
                    attributeDesc=pureldap.LDAPAttributeDescription("objectClass"),
                    assertionValue=pureldap.LDAPAssertionValue(OBJECT_CLASS)),
                attributes=[name for name, _, _, _ in _FIELDS])
            done = defer.Deferred()

            def handler(msg, controls, done=done):
                if isinstance(msg, pureldap.LDAPSearchResultEntry):
                    try:
                        leases.append(self._lease(msg.attributes))
                    except Exception as e:
                        bad.append((msg.objectName, e))
                    return False
                if isinstance(msg, pureldap.LDAPSearchResultDone):
                    done.callback((msg, controls))
                    return True
                return False  # a referral: not followed
            sent = proto.send_multiResponse_ex(
                request, [(PAGED_RESULTS, None, control.toWire())], handler)
            sent.addErrback(   # the connection was lost
                lambda f, done=done: None if done.called else done.errback(f))
            done.addTimeout(self.timeout, self._reactor)
            try:
                result, controls = yield done
            except defer.TimeoutError:
                raise LDAPStoreError("loading leases from %s: no answer within %gs"
                                     % (self.url, self.timeout))
            except Exception as e:
                raise LDAPStoreError("loading leases from %s below %s failed: %s"
                                     % (self.url, self.base, e))
            if result.resultCode != _SUCCESS:
                raise LDAPStoreError(self._searchError(result, len(leases)))
            if bad:
                dn, error = bad[0]
                raise LDAPStoreError(
                    "entry %s is not a valid dhcpfo lease (%s); %d such entries"
                    % (dn.decode("utf-8", "replace"), error, len(bad)))
            cookie = b""
            for oid, _, value in controls or ():
                if oid == PAGED_RESULTS and value:
                    seq, _ = pureber.berDecodeObject(pureber.BERDecoderContext(), value)
                    cookie = seq.data[1].value
            if not cookie:
                break
        # An entry modified between two pages may come twice: keep the newest.
        byIP = {}
        for lease in leases:
            if lease.ip not in byIP or lease.version >= byIP[lease.ip].version:
                byIP[lease.ip] = lease
        self._known = set(byIP)
        self._log.info("loaded {count} leases from {url} below {base}",
                       count=len(byIP), url=self.url, base=self.base)
        return list(byIP.values())

    def _searchError(self, result, count):
        code = result.resultCode
        what = _describeResult(code, result.errorMessage)
        if code == _NO_SUCH_OBJECT:
            return ("base %s does not exist on %s (%s); create it, e.g. as an "
                    "organizationalUnit" % (self.base, self.url, what))
        if code == _SIZE_LIMIT:
            return ("%s stopped the search after %d leases (%s): let %s read all "
                    "of them, e.g. slapd 'limits dn.exact=\"%s\" size.prtotal="
                    "unlimited'" % (self.url, count, what, self.binddn or "anonymous",
                                    self.binddn or "anonymous"))
        return "searching %s below %s failed: %s" % (self.url, self.base, what)

    @staticmethod
    def _lease(attributes):
        fields = dict(_EMPTY)
        for name, values in attributes:
            known = _BY_NAME.get(name.lower() if isinstance(name, bytes)
                                 else name.lower().encode("ascii"))
            if known is not None and values:
                field, decode = known
                fields[field] = decode(values[0])
        return Lease(**fields)

    # -- writing -------------------------------------------------------------------
    def _dn(self, lease):
        return "%s=%s,%s" % (RDN_ATTRIBUTE, lease.ip, self.base)

    @staticmethod
    def _values(lease):
        for name, field, encode, _ in _FIELDS:
            yield name, encode(getattr(lease, field))

    def _addRequest(self, lease):
        attributes = [(pureldap.LDAPAttributeDescription("objectClass"),
                       pureber.BERSet([pureldap.LDAPAttributeValue(OBJECT_CLASS)]))]
        attributes += [(pureldap.LDAPAttributeDescription(name),
                        pureber.BERSet([pureldap.LDAPAttributeValue(value)]))
                       for name, value in self._values(lease) if value is not None]
        return pureldap.LDAPAddRequest(entry=self._dn(lease), attributes=attributes)

    def _modifyRequest(self, lease):
        return pureldap.LDAPModifyRequest(object=self._dn(lease), modification=[
            pureber.BERSequence([
                pureber.BEREnumerated(_REPLACE),
                pureber.BERSequence([
                    pureldap.LDAPAttributeDescription(name),
                    pureber.BERSet([] if value is None
                                   else [pureldap.LDAPAttributeValue(value)])])])
            for name, value in self._values(lease)])

    def write(self, leases):
        if self._closing:
            return defer.fail(LDAPStoreClosed("%r is closed" % self))
        if not self._opened:
            return defer.fail(LDAPStoreError("%r is not open" % self))
        leases = list(leases)
        for lease in leases:
            try:
                list(self._values(lease))
            except Exception as e:
                return defer.fail(LDAPStoreError(
                    "lease %r cannot be stored: %s" % (lease, e)))
        if self._queued + len(leases) > self.maxqueue:
            return defer.fail(LDAPStoreQueueFull(
                "%s: %d leases are already waiting to be written (maxqueue=%d); "
                "%s" % (self.url, self._queued, self.maxqueue,
                        "the directory is unreachable" if self._proto is None
                        else "the directory is not keeping up")))
        d = defer.Deferred()
        self._pending.append((leases, d))
        self._queued += len(leases)
        self._flush()
        return d

    def _flush(self):
        if (self._batch is not None or self._firing or self._proto is None
                or not self._pending):
            return
        # Take whole writes, up to batchLimit leases (at least one write): a
        # batch's Deferreds fire together when its last entry is acknowledged,
        # so an unbounded batch under overload would hold early ACKs back.
        taken, count = 0, 0
        for leases, _ in self._pending:
            if taken and count + len(leases) > self.batchLimit:
                break
            taken += 1
            count += len(leases)
        writes, self._pending = self._pending[:taken], self._pending[taken:]
        batch = self._batch = _Batch(writes, self._reactor.seconds())
        self._startWatchdog()
        self._fill(batch)
        if batch.outstanding == 0 and not batch.aborted:
            self._finish(batch)

    def _fill(self, batch):
        proto = self._proto
        while batch.outstanding < self.window and not batch.aborted:
            lease = next(batch.todo, None)
            if lease is None:
                break
            batch.outstanding += 1
            self._send(proto, batch, lease, lease.ip in self._known, True)

    def _send(self, proto, batch, lease, modify, fallback):
        controls = None
        if modify:
            request = self._modifyRequest(lease)
            if self._assert:
                # Replace only an older (or the same) version: a stale modify
                # still in the server from a connection we gave up on cannot
                # overwrite a newer record written after reconnecting.
                controls = [(ASSERTION, True, pureldap.LDAPFilter_lessOrEqual(
                    attributeDesc=pureldap.LDAPAttributeDescription(
                        "dhcpfoLeaseVersion"),
                    assertionValue=pureldap.LDAPAssertionValue(
                        b"%d" % lease.version)).toWire())]
        else:
            request = self._addRequest(lease)
        try:
            d = proto.send(request, controls)
        except Exception:
            d = defer.fail()
        d.addCallbacks(self._answered, self._broken,
                       callbackArgs=(proto, batch, lease, modify, fallback,
                                     controls is not None),
                       errbackArgs=(batch,))

    def _answered(self, response, proto, batch, lease, modify, fallback, asserted):
        if batch.aborted:
            return
        batch.progress = self._reactor.seconds()
        code = response.resultCode
        if code == _SUCCESS:
            self._known.add(lease.ip)
        elif asserted and code == _UNAVAILABLE_CRITICAL_EXTENSION:
            if self._assert:
                self._assert = False
                self._log.warn("{url} does not support the assertion control; "
                               "modifies are no longer guarded by version",
                               url=self.url)
            return self._send(proto, batch, lease, modify, fallback)
        elif code == _ASSERTION_FAILED:
            batch.errors[lease.ip] = (code, "the directory holds a newer version "
                                      "of this lease (another writer?)")
        elif fallback and modify and code == _NO_SUCH_OBJECT:
            self._known.discard(lease.ip)   # deleted behind our back: add it
            return self._send(proto, batch, lease, False, False)
        elif fallback and not modify and code == _ALREADY_EXISTS:
            return self._send(proto, batch, lease, True, False)
        elif code in _TRANSIENT:
            return self._broken(Failure(_Transient(
                _describeResult(code, response.errorMessage))), batch)
        else:
            batch.errors[lease.ip] = (code, response.errorMessage)
        batch.outstanding -= 1
        self._fill(batch)
        if batch.outstanding == 0 and not batch.aborted:
            self._finish(batch)

    def _broken(self, failure, batch):
        """The connection failed under this batch: send it again later."""
        if batch.aborted:
            return
        self._log.warn("writing {count} leases to {url} interrupted: {why}",
                       count=batch.size, url=self.url,
                       why=failure.getErrorMessage())
        self._drop(self._proto, failure.getErrorMessage())

    def _requeue(self, batch):
        batch.aborted = True
        self._batch = None
        self._stopWatchdog()
        self._pending[:0] = batch.writes

    def _startWatchdog(self):
        self._stopWatchdog()
        self._watchdog = self._reactor.callLater(self.timeout, self._checkProgress)

    def _stopWatchdog(self):
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    def _checkProgress(self):
        self._watchdog = None
        batch = self._batch
        if batch is None:
            return
        idle = self._reactor.seconds() - batch.progress
        if idle >= self.timeout:
            self._broken(Failure(_Transient("no answer for %gs" % idle)), batch)
        else:
            self._watchdog = self._reactor.callLater(self.timeout - idle,
                                                     self._checkProgress)

    def _finish(self, batch):
        self._stopWatchdog()
        self._batch = None
        self.batches += 1
        self.written += batch.size - len(batch.errors)
        self._queued -= batch.count
        if batch.errors:
            error = LDAPWriteRejected(batch.errors)
            self._log.error("{error}", error=error)
        self._firing = True
        try:
            for leases, d in batch.writes:
                refused = {l.ip: batch.errors[l.ip] for l in leases
                           if l.ip in batch.errors}
                if refused:
                    d.errback(LDAPWriteRejected(refused))
                else:
                    d.callback(None)
        finally:
            self._firing = False
        if self._pending:
            self._flush()
        elif self._closing:
            self._finishClose()

    # -- closing -------------------------------------------------------------------
    def close(self):
        if self._closed:
            return defer.succeed(None)
        d = defer.Deferred()
        self._closeWaiters.append(d)
        if not self._closing:
            self._closing = True
            if self._retry is not None and self._retry.active():
                self._retry.cancel()
            self._retry = None
            if self._abortAttempt is not None:
                self._abortAttempt()   # its failure handler finishes the close
            else:
                self._finishClose()
        return d

    def _finishClose(self):
        """Close once nothing is left to write (or nothing can be written)."""
        if self._closed or self._connecting:
            return
        if self._proto is not None and (self._batch is not None or self._pending):
            return  # _finish comes back here when the queue is empty
        pending, self._pending = self._pending, []
        self._queued -= sum(len(leases) for leases, _ in pending)
        for leases, d in pending:
            d.errback(LDAPStoreClosed(
                "%r closed while %s was unreachable; %d leases not written"
                % (self, self.url, len(leases))))
        self._stopWatchdog()
        self._closed = True
        proto, self._proto = self._proto, None
        self.connected = False
        if proto is not None and proto.connected:
            proto.onLost = lambda proto, reason: self._closedNow()
            try:
                proto.send_noResponse(pureldap.LDAPUnbindRequest())
            except Exception:
                pass
            proto.transport.loseConnection()
        else:
            self._closedNow()

    def _closedNow(self):
        waiters, self._closeWaiters = self._closeWaiters, []
        for d in waiters:
            d.callback(None)
