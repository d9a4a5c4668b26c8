"""Load every lease below the base, a page at a time (RFC 2696).

A directory limits how many entries one search returns (OpenLDAP's
``sizelimit``); the paged-results control gets all of them.  Any error --
including one entry that is not a valid lease -- fails the load: a server
never starts on a partial lease set.
"""

from ldaptor.protocols import pureber, pureldap
from twisted.internet import defer
from twisted.logger import Logger

from dhcpfo.stores.ldap import entry
from dhcpfo.stores.ldap.errors import (NO_SUCH_OBJECT, SIZE_LIMIT, SUCCESS,
                                       LDAPStoreError, describeResult)

PAGED_RESULTS = b"1.2.840.113556.1.4.319"
_log = Logger()


@defer.inlineCallbacks
def load(reactor, proto, options, pageSize):
    """A Deferred firing with the newest lease of every address."""
    leases, bad = [], []
    cookie = b""
    while True:
        control = pureber.BERSequence([pureber.BERInteger(pageSize),
                                       pureber.BEROctetString(cookie)])
        request = pureldap.LDAPSearchRequest(
            baseObject=options.base, scope=pureldap.LDAP_SCOPE_singleLevel,
            filter=pureldap.LDAPFilter_equalityMatch(
                attributeDesc=pureldap.LDAPAttributeDescription("objectClass"),
                assertionValue=pureldap.LDAPAssertionValue(entry.OBJECT_CLASS)),
            attributes=entry.ATTRIBUTES)
        done = defer.Deferred()

        def handler(msg, controls, done=done):
            if isinstance(msg, pureldap.LDAPSearchResultEntry):
                try:
                    leases.append(entry.lease(msg.attributes))
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
        done.addTimeout(options.timeout, reactor)
        try:
            result, controls = yield done
        except defer.TimeoutError:
            raise LDAPStoreError("loading leases from %s: no answer within %gs"
                                 % (options.url, options.timeout))
        except Exception as e:
            raise LDAPStoreError("loading leases from %s below %s failed: %s"
                                 % (options.url, options.base, e))
        if result.resultCode != SUCCESS:
            raise LDAPStoreError(_searchError(options, result, len(leases)))
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
    _log.info("loaded {count} leases from {url} below {base}",
              count=len(byIP), url=options.url, base=options.base)
    return list(byIP.values())


def _searchError(options, result, count):
    code = result.resultCode
    what = describeResult(code, result.errorMessage)
    if code == NO_SUCH_OBJECT:
        return ("base %s does not exist on %s (%s); create it, e.g. as an "
                "organizationalUnit" % (options.base, options.url, what))
    if code == SIZE_LIMIT:
        who = options.binddn or "anonymous"
        return ("%s stopped the search after %d leases (%s): let %s read all "
                "of them, e.g. slapd 'limits dn.exact=\"%s\" size.prtotal="
                "unlimited'" % (options.url, count, what, who, who))
    return "searching %s below %s failed: %s" % (options.url, options.base, what)
