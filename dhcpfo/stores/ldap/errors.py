"""What the LDAP store reports: its exceptions and the result codes it reads."""

from ldaptor.protocols.ldap import ldaperrors

SUCCESS = 0
SIZE_LIMIT = 4
UNAVAILABLE_CRITICAL_EXTENSION = 12
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49
ALREADY_EXISTS = 68
ASSERTION_FAILED = 122
# Result codes after which the same request may succeed on a new connection.
TRANSIENT = {51: "busy", 52: "unavailable"}


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
                         % (ip, describeResult(code, message), more))


class Transient(Exception):
    """Internal: the batch has to be sent again on a new connection."""


def describeResult(code, message):
    """``name (code): message`` for an LDAP result, as a person reads it."""
    name = ldaperrors.get(code, None)
    text = (name.name.decode("ascii") if getattr(name, "name", None)
            else {ASSERTION_FAILED: "assertionFailed"}.get(code, "error"))
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return "%s (%d)%s" % (text, code, ": " + message if message else "")
