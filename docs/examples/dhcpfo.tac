# A .tac file builds the same service as the command line, from Python:
#     twistd -ny docs/examples/dhcpfo.tac
# Options are dnsmasq's names, exactly as on the command line.  makeService
# checks them against this machine (the interface, the store plugin) and
# raises ConfigError with the same message `twistd dhcpfo` prints; if the
# server cannot start later (say the lease database cannot be opened), it
# logs why and stops the reactor given here.
from twisted.application import service
from twisted.internet import reactor

from dhcpfo import config
from dhcpfo.service import makeService

settings = config.build([
    ("interface", "e0"),
    ("dhcp-range", "192.0.2.10,192.0.2.200,1h"),
    ("dhcp-host", "52:54:00:aa:bb:cc,192.0.2.50,printer"),
    ("dhcp-option", "option:router,192.0.2.1"),
    ("domain", "lab.test"),
    ("lease-store", "sqlite:path=leases.db"),
    ("dhcp-authoritative", None),
])

application = service.Application("dhcpfo")
makeService(settings, reactor).setServiceParent(application)
