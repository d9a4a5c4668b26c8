"""The service tree: lease store, DHCP sockets and the control API, from one Config."""

import socket

from twisted.application import service, strports
from twisted.internet import defer, task
from twisted.logger import Logger

from dhcpfo.config import ConfigError
from dhcpfo.dhcp import netif
from dhcpfo.dhcp.pool import InterfaceInfo, build_subnets
from dhcpfo.dhcp.protocol import DHCPProtocol
from dhcpfo.dhcp.server import DHCPServer
from dhcpfo.leases.table import LeaseTable
from dhcpfo.stores import registry

OFFER_SWEEP_INTERVAL = 30.0


class DHCPService(service.Service):
    """Opens the store, loads the leases, then listens on each interface."""

    _log = Logger()

    def __init__(self, config, reactor, store=None, port=67, interfaces=None,
                 failover=None):
        self.config = config
        self.failover = failover
        self.reactor = reactor
        self.store = store or registry.make_store(reactor, config.lease_store)
        self.port = port
        self.table = LeaseTable()
        self.server = None
        self.interfaces = interfaces
        self.state = "starting"
        self._ports = []
        self._sweeper = None
        self.ready = defer.Deferred()

    def resolveInterfaces(self):
        names = self.config.interfaces
        if not names:
            candidates = []
            for name in netif.ipv4_interfaces():
                address, netmask = netif.interface_address(name)
                candidates.append(InterfaceInfo(name, address, netmask))
            ranges = self.config.ranges
            return [i for i in candidates
                    if any(r.start & i.netmask == i.address & i.netmask
                           and r.netmask in (None, i.netmask) for r in ranges)]
        found = []
        for name in names:
            address, netmask = netif.interface_address(name)
            found.append(InterfaceInfo(name, address, netmask))
        return found

    def startService(self):
        super().startService()
        if self.interfaces is None:
            self.interfaces = self.resolveInterfaces()
        interfaces = self.interfaces
        if not interfaces:
            raise ConfigError("no interface to serve: none has an address in a "
                              "--dhcp-range; name one with --interface")
        subnets = build_subnets(self.config.ranges, interfaces)
        for iface in interfaces:
            iface.subnet = next((s for s in subnets if iface.address in s), None)
        policy = self.failover.policy if self.failover is not None else None
        self.server = DHCPServer(self.config, subnets, self.table, self.reactor,
                                 policy=policy)
        if not self.store.durable:
            self._log.warn("lease store {store} is volatile: leases will not survive "
                           "a restart", store=self.config.lease_store)
        d = self.store.open()
        d.addCallback(self._loaded)
        d.addErrback(self._failed)

    def _loaded(self, leases):
        self.table.load(leases)
        for lease in leases:
            self.server.hlc.observe(lease.version)
        store = self.store
        if self.failover is not None:
            store = self.failover.attach(self.server, self.table, self.store)
        for iface in self.interfaces:
            sock = netif.dhcp_socket(iface.name, self.port)
            try:
                proto = DHCPProtocol(self.server, store, iface)
                self._ports.append(self.reactor.adoptDatagramPort(
                    sock.fileno(), socket.AF_INET, proto))
            finally:
                sock.close()
            self._log.info("serving DHCP on {iface} ({address}) for {subnet}",
                           iface=iface.name, address=iface.address_str,
                           subnet=iface.subnet.describe() if iface.subnet
                           else "relayed networks only")
        self._sweeper = task.LoopingCall(self.server.expire_offers)
        self._sweeper.clock = self.reactor
        self._sweeper.start(OFFER_SWEEP_INTERVAL, now=False)
        self.state = "serving"
        self._log.info("loaded {count} leases from {store}; serving",
                       count=len(leases), store=self.config.lease_store)
        self.ready.callback(self)

    def _failed(self, failure):
        self.state = "failed"
        self._log.failure("dhcpfo cannot start", failure)
        self.ready.errback(failure)
        if self.reactor.running:
            self.reactor.stop()

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        for port in self._ports:
            yield port.stopListening()
        self._ports = []
        yield self.store.close()
        self.state = "stopped"


def make_failover_node(config, reactor):
    """The failover node; raises TLSConfigError for unusable certificate files."""
    from dhcpfo.failover.service import FailoverNode
    from dhcpfo.failover.tls import load_identity

    fc = config.failover
    identity = None
    if not fc.insecure:
        identity = load_identity(fc.cert, fc.key, fc.ca, name=fc.name)
    return FailoverNode(fc, config.ranges, reactor, identity)


def makeService(config, reactor=None, interfaces=None):
    """The whole server as one MultiService."""
    if reactor is None:
        from twisted.internet import reactor
    from dhcpfo.control.api import ControlResource
    from twisted.web.server import Site

    top = service.MultiService()
    node = None
    if config.failover is not None:
        node = make_failover_node(config, reactor)
        node.setName("failover")
        node.setServiceParent(top)
    dhcp = DHCPService(config, reactor, interfaces=interfaces, failover=node)
    dhcp.setName("dhcp")
    dhcp.setServiceParent(top)
    dns = None
    if config.dns_port:
        # After "dhcp": it starts first, so its interfaces are known.
        from dhcpfo.dns.service import DNSService
        dns = DNSService(config, dhcp.table, reactor, interfaces=interfaces, dhcp=dhcp)
        dns.setName("dns")
        dns.setServiceParent(top)
    control = strports.service(config.control, Site(ControlResource(dhcp, dns)))
    control.setName("control")
    control.setServiceParent(top)
    return top
