"""Connect, secure and bind: one attempt at a ready LDAP connection.

``ldap://`` (optionally upgraded with StartTLS) or ``ldaps://``.  TLS always
verifies the server certificate and its name against ``cafile`` (or the
platform's trust store without it); ldaptor's own ``startTLS()`` would not.
Each step has its own error message, so a failed start says what to fix.
"""

from ldaptor.protocols import pureldap
from twisted.internet import defer
from twisted.internet.endpoints import (HostnameEndpoint, connectProtocol,
                                        wrapClientTLS)
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure

from dhcpfo.stores.ldap.ber import Client
from dhcpfo.stores.ldap.errors import (INVALID_CREDENTIALS, SUCCESS,
                                       LDAPStoreError, describeResult)
from dhcpfo.stores.ldap.options import readPassword


def endpoint(reactor, options):
    """The client endpoint of ``options.url`` (TLS-wrapped for ldaps)."""
    plain = HostnameEndpoint(reactor, options.host, options.port,
                             timeout=options.timeout)
    if options.tls:
        return wrapClientTLS(tlsOptions(options), plain)
    return plain


def tlsOptions(options):
    return optionsForClientTLS(options.host, trustRoot=options.trust)


class Attempt:
    """Connect to ``endpoint``, then TLS, then bind, within ``timeout``.

    :meth:`start` gives a Deferred firing with the bound :class:`Client` or
    failing with :class:`LDAPStoreError`; :meth:`abort` gives up on it (the
    Deferred then fails).
    """

    def __init__(self, reactor, options, endpoint):
        self._reactor = reactor
        self._options = options
        self._endpoint = endpoint
        self._proto = Client()
        self._step = "connect"
        self._why = None          # set by abort(): "timeout" or "closed"
        self._connecting = None

    def start(self):
        proto, options = self._proto, self._options
        if options.tls:
            proto.tlsDone = defer.Deferred()
        self._connecting = connectProtocol(self._endpoint, proto)
        watchdog = self._reactor.callLater(options.timeout, self.abort, "timeout")

        def done(result):
            if watchdog.active():
                watchdog.cancel()
            if isinstance(result, Failure):
                if proto.transport is not None and proto.connected:
                    proto.transport.abortConnection()
                if not result.check(LDAPStoreError):
                    result = Failure(LDAPStoreError(self._explain(result)))
            return result
        self._connecting.addCallback(self._setUp)
        self._connecting.addBoth(done)
        return self._connecting

    def abort(self, why="closed"):
        self._why = why
        if self._proto.transport is not None:
            self._proto.transport.abortConnection()
        else:
            self._connecting.cancel()

    @defer.inlineCallbacks
    def _setUp(self, _):
        proto, options = self._proto, self._options
        if options.tls:
            self._step = "TLS"
            yield proto.tlsDone
        elif options.starttls:
            self._step = "StartTLS"
            response = yield proto.send(pureldap.LDAPStartTLSRequest())
            if response.resultCode != SUCCESS:
                raise LDAPStoreError("%s refused StartTLS: %s" % (
                    options.url, describeResult(response.resultCode,
                                                response.errorMessage)))
            proto.tlsDone = defer.Deferred()
            proto.transport.startTLS(tlsOptions(options))
            self._step = "TLS"
            yield proto.tlsDone
        if options.binddn:
            self._step = "bind"
            response = yield proto.send(pureldap.LDAPBindRequest(
                dn=options.binddn, auth=readPassword(options.passwordfile)))
            if response.resultCode != SUCCESS:
                hint = ""
                if response.resultCode == INVALID_CREDENTIALS:
                    hint = " (wrong bind DN or password in %s)" % options.passwordfile
                raise LDAPStoreError("bind to %s as %s failed: %s%s" % (
                    options.url, options.binddn, describeResult(
                        response.resultCode, response.errorMessage), hint))
        return proto

    def _explain(self, failure):
        options, step = self._options, self._step
        if self._why == "closed":
            return "%s: the store was closed while connecting" % options.url
        if self._why == "timeout":
            return "%s: no answer within %gs (%s)" % (options.url, options.timeout, step)
        reason = failure.getErrorMessage() or failure.type.__name__
        if step == "connect":
            return "cannot connect to %s: %s" % (options.url, reason)
        if step == "TLS":
            return ("TLS with %s failed (is the server certificate issued for %s by "
                    "the CA in %s?): %s" % (options.url, options.host,
                                            options.cafile or "the system trust store",
                                            reason))
        return "%s: connection lost during %s: %s" % (options.url, step, reason)
