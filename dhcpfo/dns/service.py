"""``DNSService``: DNS for the leases of one :class:`LeaseTable`, from the config."""

import ipaddress
import socket

from twisted.application import service
from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.logger import Logger

from dhcpfo.addr import ip_str
from dhcpfo.config import DEFAULT_DNS_PORT
from dhcpfo.dns import records
from dhcpfo.dns.authority import LeaseAuthority
from dhcpfo.dns.cache import DNSCache
from dhcpfo.dns.forward import Forwarder
from dhcpfo.dns.names import networks_of
from dhcpfo.dns.server import (AccessList, DNSDatagramProtocol, DNSServerFactory,
                               listen_udp)

RECEIVE_BUFFER = 4 << 20


class DNSStartError(Exception):
    """DNS cannot start (a port in use, ...); the message says what to fix."""


def _reservations(config):
    """A predicate ``lease -> bool``: the lease's client has a reservation
    for the name it uses; and the ``(ip, hostname)`` pairs of reservations
    that fix both."""
    by_id, by_hw, fixed = {}, {}, []
    for host in getattr(config, "hosts", ()):
        if not host.hostname or host.ignore:
            continue
        label = host.hostname.split(".")[0]
        if host.client_id is not None:
            by_id[host.client_id] = label
        if host.hwaddr is not None:
            by_hw[host.hwaddr] = label
        if host.ip is not None:
            fixed.append((ip_str(host.ip), host.hostname))

    def reserved(lease):
        label = lease.hostname.split(".", 1)[0]
        return (by_id.get(lease.client_id) == label
                or by_hw.get(lease.hwaddr) == label)
    return reserved, fixed


class DNSService(service.Service):
    """Answers DNS on our addresses from the lease table, the static records
    of ``config`` and the ``--server`` upstreams.

    :param config: a :class:`dhcpfo.config.Config`.
    :param table: the :class:`LeaseTable` whose listeners feed the names.
    :param reactor: the reactor (also the clock of leases and caches).
    :param interfaces: ``InterfaceInfo``s (address, netmask) of the networks
        we serve; None: take ``dhcp.interfaces`` when starting.
    :param dhcp: the DHCP service, whose interfaces are resolved when it
        starts (it must start first).
    :param listen: addresses to listen on; default: the interfaces' and
        127.0.0.1.
    :param port: default ``config.dns_port``.
    :param send: the forwarder's transport, for tests.
    """

    _log = Logger()

    def __init__(self, config, table, reactor, interfaces=None, dhcp=None,
                 listen=None, port=None, send=None):
        self.config = config
        self.table = table
        self.reactor = reactor
        self.interfaces = interfaces
        self.dhcp = dhcp
        self.listen = listen
        self.port = getattr(config, "dns_port", DEFAULT_DNS_PORT) \
            if port is None else port
        self.send = send
        self.stats = {}
        self.authority = None
        self.cache = None
        self.forwarder = None
        self.factory = None
        self.protocols = []
        self.ports = []
        self.address = None      # (host, port) of the first UDP port, for tests

    def build(self):
        """Create the authority, cache, forwarder and factory (no I/O)."""
        config = self.config
        interfaces = self.interfaces
        if interfaces is None and self.dhcp is not None:
            interfaces = self.dhcp.interfaces
        interfaces = list(interfaces or ())
        networks = networks_of(interfaces, getattr(config, "ranges", ()))
        domain = getattr(config, "domain", "") or ""
        reserved, fixed = _reservations(config)
        hosts_files = getattr(config, "addn_hosts", ())
        static = records.build_static(
            domain, getattr(config, "host_records", ()),
            getattr(config, "address_rules", ()), hosts_files, fixed)
        upstreams = [(u.host, u.port) for u in getattr(config, "servers", ())]
        self.authority = LeaseAuthority(
            self.reactor, domain=domain, networks=networks, static=static,
            reserved=reserved, server_name=getattr(config, "server_name", ""),
            recursion=bool(upstreams), reserved_names=_server_names(config))
        if upstreams:
            self.cache = DNSCache(self.reactor)
            self.forwarder = Forwarder(upstreams, self.reactor, cache=self.cache,
                                       send=self.send,
                                       forward_max=config.dns_forward_max)
        allowed = list(networks) + list(getattr(config, "dns_allow", ()))
        for iface in interfaces:
            allowed.append(ipaddress.ip_network(iface.address))
        self.acl = AccessList(allowed)
        self.factory = DNSServerFactory(self.authority, self.forwarder, self.acl,
                                        self.reactor, self.stats)
        if self.listen is None:
            self.listen = [iface.address_str for iface in interfaces
                           if hasattr(iface, "address_str")] + ["127.0.0.1"]
        return self.factory

    def privilegedStartService(self):
        """Bind port 53 (UDP and TCP) while we may: twistd -u and ``--user``
        drop privileges after this.  Nothing is read before the reactor runs,
        and by then :meth:`startService` has loaded the names."""
        super().privilegedStartService()
        self.build()
        self._listenOrExplain()

    def _listenOrExplain(self):
        try:
            self._listen()
        except ierror.CannotListenError as e:
            self._stop_ports()
            raise DNSStartError("cannot listen for DNS on %s port %s: %s%s" % (
                e.interface or "*", e.port, e.socketError,
                " (is another DNS server running? --dns-port 0 disables DNS)"))

    def startService(self):
        super().startService()
        if self.factory is None:
            self.build()
        self.authority.load(list(self.table))
        self.table.listeners.append(self._lease_changed)
        self.authority.start()
        if not self.ports:
            self._listenOrExplain()
        self._log.info(
            "DNS on {addresses} port {port}: domain {domain}, {names} static "
            "names, {zones} zones, upstreams {upstreams}",
            addresses=",".join(self.listen), port=self.address[1] if self.address
            else self.port, domain=self.authority.domain or "(none)",
            names=len(self.authority._static), zones=len(self.authority.zones),
            upstreams=",".join(u.describe() for u in getattr(self.config, "servers",
                                                              ())) or "none")

    def _lease_changed(self, new, old):
        # Called inside DHCP request handling: never let DNS break it.
        try:
            self.authority.lease_changed(new, old)
        except Exception:
            self._log.failure("DNS names not updated for lease {ip}", ip=new.ip)

    def _listen(self):
        port = self.port
        for address in self.listen:
            proto = DNSDatagramProtocol(self.factory)
            udp = listen_udp(self.reactor, port, proto, address)
            try:
                udp.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                                           RECEIVE_BUFFER)
            except (AttributeError, OSError):
                pass
            self.ports.append(udp)
            self.protocols.append(proto)
            if port == 0:
                port = udp.getHost().port
            if self.address is None:
                self.address = (address, port)
            self.ports.append(self.reactor.listenTCP(port, self.factory,
                                                     interface=address))

    def _stop_ports(self):
        ports, self.ports = self.ports, []
        return [p.stopListening() for p in ports]

    def stopService(self):
        super().stopService()
        if self.authority is not None:
            try:
                self.table.listeners.remove(self._lease_changed)
            except ValueError:
                pass
            self.authority.stop()
        if self.forwarder is not None:
            self.forwarder.close()
        for proto in list(self.factory.connections if self.factory else ()):
            proto.transport.loseConnection()
        return defer.gatherResults([d for d in self._stop_ports() if d is not None])

    def counters(self):
        """All counters: server, fast path, forwarder, cache, authority."""
        out = dict(self.stats)
        out["answered_fast"] = sum(p.answered_fast for p in self.protocols)
        out["send_errors"] = sum(p.send_errors for p in self.protocols)
        if self.forwarder is not None:
            out.update(self.forwarder.stats)
        if self.cache is not None:
            out["cache_entries"] = len(self.cache)
        if self.authority is not None:
            out.update(self.authority.stats)
        return out


def _server_names(config):
    """The failover group's server names: no client may publish a name that
    DNS on any of them answers as its own."""
    failover = getattr(config, "failover", None)
    if failover is None:
        return ()
    return tuple(n for n in (failover.name,) + tuple(failover.peers) if n)
