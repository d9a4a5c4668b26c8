"""From one validated Config to the whole server: the only module that knows
every side (DHCP, DNS, failover, stores, control).

:func:`makeService` is the one entry point of ``twistd dhcpfo``
(:mod:`dhcpfo.tap`) and of ``.tac`` files (docs/examples/dhcpfo.tac).  It
makes every check that needs this machine or the installed plugins and
raises :class:`~dhcpfo.config.ConfigError` for all of them, before any
service starts, so both ways of running dhcpfo refuse the same
configurations with the same messages.
"""

import socket

from twisted.application import service, strports
from twisted.internet import defer, error, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhcpfo.config import ConfigError
from dhcpfo.dhcp import netif
from dhcpfo.dhcp.pool import InterfaceInfo, build_subnets
from dhcpfo.dhcp.protocol import DHCPProtocol
from dhcpfo.dhcp.server import DHCPServer
from dhcpfo.leases.hlc import HybridLogicalClock
from dhcpfo.leases.table import LeaseTable
from dhcpfo.stores import registry

OFFER_SWEEP_INTERVAL = 30.0


def resolve_interfaces(config):
    """The interfaces to serve, with their addresses; :class:`ConfigError`
    when a named one is missing or none is given and none fits a range."""
    try:
        if config.interfaces:
            found = []
            for name in config.interfaces:
                address, netmask = netif.interface_address(name)
                found.append(InterfaceInfo(name, address, netmask))
            return found
        candidates = []
        for name in netif.ipv4_interfaces():
            address, netmask = netif.interface_address(name)
            candidates.append(InterfaceInfo(name, address, netmask))
    except netif.InterfaceError as e:
        raise ConfigError(str(e)) from None
    found = [i for i in candidates
             if any(r.start & i.netmask == i.address & i.netmask
                    and r.netmask in (None, i.netmask) for r in config.ranges)]
    if not found:
        raise ConfigError("no interface has an address in a --dhcp-range; "
                          "name one with --interface")
    return found


def make_store(config, reactor):
    """The lease store of ``--lease-store``, checked against the installed
    store plugins."""
    try:
        factory, params = registry.validate(config.lease_store)
    except registry.StoreDescriptionError as e:
        raise ConfigError("--lease-store=%s: %s" % (config.lease_store, e)) from None
    try:
        return factory.makeStore(reactor, **params)
    except ValueError as e:
        # ILeaseStoreFactory.makeStore: a parameter's value is wrong.
        raise ConfigError("--lease-store=%s: %s" % (config.lease_store, e)) from None


def make_failover_node(config, reactor):
    """The failover node; certificate files are loaded and checked now."""
    from dhcpfo.failover.service import FailoverNode
    from dhcpfo.failover.identity import TLSConfigError, load_identity

    fc = config.failover
    identity = None
    if not fc.insecure:
        try:
            identity = load_identity(fc.cert, fc.key, fc.ca, name=fc.name)
        except TLSConfigError as e:
            raise ConfigError(str(e)) from None
    return FailoverNode(fc, config.ranges, reactor, identity)


class DHCPService(service.Service):
    """Opens the store, loads the leases, then listens on each interface.

    ``ready`` fires with this service once it serves, or fails with the
    reason it cannot; it never stops the reactor itself.
    """

    _log = Logger()

    def __init__(self, config, reactor, store, interfaces, subnets, port=67,
                 failover=None):
        self.config = config
        self.failover = failover
        self.reactor = reactor
        self.store = store
        self.port = port
        self.table = LeaseTable()
        self.server = None
        self.interfaces = interfaces
        self.subnets = subnets
        for iface in interfaces:
            iface.subnet = next((s for s in subnets if iface.address in s), None)
        self.state = "starting"
        self._ports = []
        self._sweeper = None
        self.ready = defer.Deferred()

    def startService(self):
        super().startService()
        policy = self.failover.policy if self.failover is not None else None
        # One clock for lease versions, shared by the DHCP engine and failover.
        self.hlc = HybridLogicalClock(self.reactor)
        self.server = DHCPServer(self.config, self.subnets, self.table, self.reactor,
                                 hlc=self.hlc, policy=policy)
        if not self.store.durable:
            self._log.warn("lease store {store} is volatile: leases will not survive "
                           "a restart", store=self.config.lease_store)
        d = self.store.open()
        d.addCallback(self._loaded)
        d.addErrback(self._failed)

    def _loaded(self, leases):
        self.table.load(leases)
        for lease in leases:
            self.hlc.observe(lease.version)
        store = self.store
        if self.failover is not None:
            store = self.failover.attach(self.server, self.table, self.store,
                                         hlc=self.hlc)
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
        self.ready.errback(failure)

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


class ServerService(service.MultiService):
    """The whole server, run by the reactor it was made with.

    A start-up failure inside ``startService`` (a store that fails at once,
    a DHCP port that cannot be bound) is raised from it, so twistd exits
    with status 1 and the traceback, as for any service.  A failure after
    ``startService`` returned (a store that fails to open later) is logged
    as critical and stops ``reactor``: the process ends instead of running
    on without DHCP.
    """

    _log = Logger()

    def __init__(self, reactor, dhcp):
        super().__init__()
        self.reactor = reactor
        self.dhcp = dhcp
        self._starting = False
        self._outcome = None        # self once serving, or the Failure
        self._observers = []
        dhcp.ready.addCallbacks(self._started, self._cannotStart)

    def whenReady(self):
        """A Deferred that fires with this service once DHCP serves, or fails
        with the reason it cannot start."""
        if isinstance(self._outcome, Failure):
            return defer.fail(self._outcome)
        if self._outcome is not None:
            return defer.succeed(self._outcome)
        d = defer.Deferred()
        self._observers.append(d)
        return d

    def startService(self):
        self._starting = True
        try:
            super().startService()
        finally:
            self._starting = False
        if isinstance(self._outcome, Failure):
            self.stopService()
            self._outcome.raiseException()

    def _settle(self, outcome):
        self._outcome = outcome
        observers, self._observers = self._observers, []
        for d in observers:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)

    def _started(self, _):
        self._settle(self)

    def _cannotStart(self, failure):
        self._settle(failure)
        if not self._starting:
            self._log.failure("dhcpfo cannot start; stopping", failure)
            self.reactor.callWhenRunning(self._stopReactor)

    def _stopReactor(self):
        try:
            self.reactor.stop()
        except error.ReactorNotRunning:
            pass


def makeService(config, reactor=None, interfaces=None):
    """The whole server as one :class:`ServerService`, after every check.

    :param config: a :class:`dhcpfo.config.Config`.
    :param reactor: the reactor that runs it (default: the global one).
    :param interfaces: ``InterfaceInfo``s to serve, instead of looking them
        up on this machine (tests).
    :raises ConfigError: for anything this machine or the installed
        plugins cannot do: a missing interface, a range without a subnet,
        an unknown lease store or parameter, unusable certificate files.
    """
    if reactor is None:
        from twisted.internet import reactor
    from twisted.web.server import Site

    from dhcpfo.control.api import ControlResource

    if interfaces is None:
        interfaces = resolve_interfaces(config)
    subnets = build_subnets(config.ranges, interfaces)
    store = make_store(config, reactor)
    node = None
    if config.failover is not None:
        node = make_failover_node(config, reactor)
    dhcp = DHCPService(config, reactor, store, interfaces, subnets, failover=node)
    top = ServerService(reactor, dhcp)
    if node is not None:
        node.setName("failover")
        node.setServiceParent(top)
    dhcp.setName("dhcp")
    dhcp.setServiceParent(top)
    dns = None
    if config.dns_port:
        from dhcpfo.dns.service import DNSService
        dns = DNSService(config, dhcp.table, reactor, interfaces=interfaces, dhcp=dhcp)
        dns.setName("dns")
        dns.setServiceParent(top)
    control = strports.service(config.control, Site(ControlResource(dhcp, dns)))
    control.setName("control")
    control.setServiceParent(top)
    return top
