"""Plugin factories for the built-in stores; implementations import lazily."""

from zope.interface import implementer
from twisted.plugin import IPlugin

from dhcpfo.interfaces import ILeaseStoreFactory


@implementer(IPlugin, ILeaseStoreFactory)
class SQLiteStoreFactory:
    prefix = "sqlite"
    description = "SQLite file, WAL, fsync per batch (the default)"
    parameters = {"path": "database file (default dhcpfo-leases.db)"}

    def makeStore(self, reactor, path="dhcpfo-leases.db"):
        from dhcpfo.stores.sqlite import SQLiteLeaseStore
        return SQLiteLeaseStore(reactor, path)


@implementer(IPlugin, ILeaseStoreFactory)
class MemoryStoreFactory:
    prefix = "memory"
    description = "in memory only: leases are lost when the server stops (labs)"
    parameters = {}

    def makeStore(self, reactor, **parameters):
        from dhcpfo.stores.memory import MemoryLeaseStore
        return MemoryLeaseStore()


@implementer(IPlugin, ILeaseStoreFactory)
class LDAPStoreFactory:
    prefix = "ldap"
    description = "LDAP directory (ldaptor); queues writes while it is down"
    parameters = {
        "url": "ldap://HOST[:PORT] or ldaps://HOST[:PORT] (required)",
        "base": "DN the lease entries go below; must exist (required)",
        "binddn": "DN to bind as (default: anonymous)",
        "passwordfile": "file holding the bind password (one trailing newline "
                        "ignored); never put the password on the command line",
        "starttls": "yes: upgrade ldap:// with StartTLS (default no)",
        "cafile": "PEM CA certificate(s) the server certificate must chain to "
                  "(default: the system trust store); TLS always verifies",
        "maxqueue": "most leases waiting for the directory; beyond it writes "
                    "fail at once (default 100000)",
        "timeout": "seconds to wait for a connection or an answer before "
                   "reconnecting (default 30)",
    }

    def makeStore(self, reactor, url=None, base=None, binddn=None,
                  passwordfile=None, starttls="no", cafile=None,
                  maxqueue="100000", timeout="30"):
        from dhcpfo.stores.ldap import LDAPLeaseStore, LDAPStoreConfigError
        if not url:
            raise LDAPStoreConfigError(
                "ldap: url= is required, e.g. ldap:url=ldaps://ldap.example:636,"
                "base=ou=leases\\,dc=example\\,dc=org")
        return LDAPLeaseStore(reactor, url, base, binddn=binddn,
                              passwordfile=passwordfile, starttls=starttls,
                              cafile=cafile, maxqueue=maxqueue, timeout=timeout)


sqlite = SQLiteStoreFactory()
memory = MemoryStoreFactory()
ldap = LDAPStoreFactory()
