"""From one validated Config to the whole server: the only module that knows
every side (DHCP, DNS, failover, stores, control).

:func:`makeService` is the one entry point of ``twistd dhcpfo``
(:mod:`dhcpfo.tap`) and of ``.tac`` files (docs/examples/dhcpfo.tac).  It
makes every check that needs this machine or the installed plugins and
raises :class:`~dhcpfo.config.ConfigError` for all of them, before any
service starts, so both ways of running dhcpfo refuse the same
configurations with the same messages.
"""

import grp
import os
import socket

from twisted.application import internet, service, strports
from twisted.internet import defer, error, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhcpfo.config import ConfigError
from dhcpfo.config.process import RunAs, create_private
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


def store_files(config):
    """The database files of the built-in SQLite store, which dhcpfo creates
    0600 and hands to ``--user``; other stores keep their own files."""
    prefix, _, _ = config.lease_store.partition(":")
    if prefix != "sqlite":
        return []
    _, params = registry.validate(config.lease_store)
    path = params.get("path")
    return [path] if path and path != ":memory:" else []


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
        self._sockets = {}      # interface name -> socket bound before the drop
        self._sweeper = None
        self.ready = defer.Deferred()

    def privilegedStartService(self):
        """Bind port 67 on every interface while we may (twistd -u and
        ``--user`` drop privileges after this); the reactor adopts the
        sockets once the leases are loaded, and the kernel queues what
        arrives meanwhile."""
        super().privilegedStartService()
        try:
            for iface in self.interfaces:
                self._sockets[iface.name] = netif.dhcp_socket(iface.name, self.port)
        except BaseException:
            self._closeSockets()
            raise

    def _closeSockets(self):
        sockets, self._sockets = self._sockets, {}
        for sock in sockets.values():
            sock.close()

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
            sock = self._sockets.pop(iface.name, None)
            if sock is None:
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
        self._closeSockets()
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

    def __init__(self, reactor, dhcp, run_as=None, files=(), control_socket=None,
                 control_group=None):
        super().__init__()
        self.reactor = reactor
        self.dhcp = dhcp
        self.run_as = run_as if run_as is not None else RunAs()
        self.files = list(files)
        self.control_socket = control_socket
        self.control_group = control_group
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

    def privilegedStartService(self):
        """Bind every privileged socket (the children's), make the store's
        files 0600 and ours-to-be, then drop to ``--user``/``--group``."""
        super().privilegedStartService()
        path = self.control_socket
        if (path and not path.startswith("\0") and self.control_group
                and os.geteuid() == 0):
            os.chown(path, -1, grp.getgrnam(self.control_group).gr_gid)
        if self.run_as.uid != -1 or self.run_as.gid != -1:
            for name in self.files:
                create_private(name, self.run_as.uid, self.run_as.gid)
        self.run_as.drop()
        for name in self.files if self.run_as.uid != -1 else ():
            directory = os.path.dirname(os.path.abspath(name))
            if os.path.isdir(directory) and not os.access(directory, os.W_OK | os.X_OK):
                raise ConfigError(
                    "the lease store's directory %s is not writable by %s: SQLite "
                    "keeps its WAL files next to the database" % (
                        directory, self.run_as.describe()))
        if os.geteuid() == 0:
            self._log.info("running as root: --user (or twistd --uid) drops "
                           "privileges after binding")
        else:
            self._log.info("serving as {who}", who=self.run_as.describe())

    def startService(self):
        # As whoever we now are (--user, twistd --uid, or the starting user).
        for name in self.files:
            create_private(name)
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

    from dhcpfo.control.auth import Guard, remove_stale_socket, unix_address

    if interfaces is None:
        interfaces = resolve_interfaces(config)
    subnets = build_subnets(config.ranges, interfaces)
    store = make_store(config, reactor)
    try:
        run_as = RunAs(config.user, config.group)
    except KeyError as e:
        raise ConfigError("--user/--group: %s" % e) from None
    node = None
    if config.failover is not None:
        node = make_failover_node(config, reactor)
    dhcp = DHCPService(config, reactor, store, interfaces, subnets, failover=node)
    socket_path = unix_address(config.control_socket) if config.control_socket \
        else None
    top = ServerService(reactor, dhcp, run_as=run_as, files=store_files(config),
                        control_socket=socket_path,
                        control_group=config.control_group)
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
    site = Site(ControlResource(dhcp, dns, Guard(config.control_group)))
    # One "control" service: loopback TCP (read-only) and the UNIX socket.
    control = service.MultiService()
    control.setName("control")
    control.setServiceParent(top)
    strports.service(config.control, site).setServiceParent(control)
    if socket_path:
        from twisted.internet.endpoints import UNIXServerEndpoint
        remove_stale_socket(socket_path)
        unix = internet.StreamServerEndpointService(
            UNIXServerEndpoint(reactor, socket_path, mode=0o660, wantPID=False),
            site)
        unix._raiseSynchronously = True
        unix.setServiceParent(control)
    return top
