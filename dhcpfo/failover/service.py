"""The failover node: the coordinator plus its listening and dialling endpoints."""

from twisted.application import internet, service
from twisted.internet import endpoints
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from dhcpfo.addr import int_from_str
from dhcpfo.failover.coordinator import Coordinator, FailoverSettings, ReplicatedStore
from dhcpfo.failover.options import pool_description
from dhcpfo.failover.peer import PeerFactory
from dhcpfo.failover.policy import FailoverPolicy
from dhcpfo.failover.reserve import ServerPools


class FailoverNode(service.MultiService):
    """Owns the peer connections of one server; started empty, ``attach``ed to
    the DHCP server once its leases are loaded."""

    _log = Logger()

    def __init__(self, config, ranges, reactor, identity=None):
        super().__init__()
        self.config = config
        self.clock = reactor
        self.identity = identity
        self.settings = FailoverSettings(
            name=config.name, role=config.role, priority=config.priority,
            mclt=config.mclt, reserve=config.reserve, heartbeat=config.heartbeat,
            dead_after=config.dead_after, peers=tuple(config.peers),
            partner_down_after=config.partner_down_after,
            master=config.master[2] if config.master else None,
            pool_lines=pool_description(ranges).splitlines())
        self._ranges = [(r.start, r.end) for r in ranges]
        self.policy = FailoverPolicy(config.name, config.mclt,
                                     primary=config.role == "primary")
        self.coordinator = None
        self.server = None
        self.table = None
        self._listening = None
        if config.listen is not None:
            # Bound in privilegedStartService (the child's), before --user
            # drops privileges: the default port 647 is below 1024.
            host, port = config.listen
            endpoint = endpoints.TCP4ServerEndpoint(reactor, port, interface=host)
            if not config.insecure:
                endpoint = identity.server_endpoint(endpoint)
            self._listening = _UntilAttached()
            listener = internet.StreamServerEndpointService(endpoint, self._listening)
            listener._raiseSynchronously = True
            listener.setServiceParent(self)

    def in_ranges(self, ip):
        n = int_from_str(ip)
        return any(start <= n <= end for start, end in self._ranges)

    def attach(self, server, table, store, hlc=None):
        """Start failover for ``server`` (a DHCPServer whose policy is
        ``self.policy``); returns the store its replies wait on.  Failover
        reads the server only through :class:`ServerPools` and takes its
        hybrid logical clock (``hlc``, default ``server.hlc``)."""
        self.server = server
        self.table = table
        self.coordinator = Coordinator(
            self.settings, table, store, self.clock,
            hlc=hlc if hlc is not None else server.hlc, policy=self.policy,
            pools=ServerPools(server), in_ranges=self.in_ranges)
        self.coordinator.start()
        if self.config.insecure:
            self._log.warn("failover channel WITHOUT TLS (--failover-insecure): any "
                           "host that reaches it can rewrite the lease database")
        if self._listening is not None:
            port = self.config.listen[1]
            self._listening.peers = PeerFactory(
                self.coordinator, self.config.peers, initiator=False,
                insecure=self.config.insecure)
            self._log.info("failover: {name} ({role}) listening on port {port}",
                           name=self.settings.name, role=self.settings.role,
                           port=port)
        targets = ([self.config.master] if self.config.master else []) + \
            list(self.config.peer_addresses)
        for ip, port, name in targets:
            endpoint = endpoints.HostnameEndpoint(self.clock, ip, port, timeout=2)
            if not self.config.insecure:
                endpoint = self.identity.client_endpoint(endpoint, name)
            factory = PeerFactory(self.coordinator, [name], initiator=True,
                                  insecure=self.config.insecure)
            dialler = internet.ClientService(
                endpoint, factory,
                retryPolicy=factory.retryPolicy(internet.backoffPolicy(
                    initialDelay=0.25, maxDelay=1.0, factor=1.5, jitter=lambda: 0)),
                clock=self.clock)
            dialler.setServiceParent(self)
            self._log.info("failover: {name} dialling {peer} at {ip}:{port}",
                           name=self.settings.name, peer=name, ip=ip, port=port)
        return ReplicatedStore(store, self.coordinator)

    def stopService(self):
        if self.coordinator is not None:
            self.coordinator.stop()
        return super().stopService()

    def status(self):
        if self.coordinator is None:
            return {"role": self.settings.role, "state": "startup", "peers": []}
        status = self.coordinator.status()
        status["name"] = self.settings.name
        status["invalid_records"] = self.coordinator.invalid_records
        return status


class _Refuse(Protocol):
    def connectionMade(self):
        self.transport.loseConnection()


class _UntilAttached(Factory):
    """The listener's factory: the port is bound at start-up, but a peer is
    only served once the leases are loaded and failover is attached
    (``peers`` set); until then a connection is closed at once and the
    peer's dialler simply tries again."""

    noisy = False
    peers = None

    def buildProtocol(self, addr):
        if self.peers is None:
            return _Refuse()
        return self.peers.buildProtocol(addr)
