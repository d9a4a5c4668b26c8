"""The thin UDP protocol: parse, ask the server, send once the lease is durable."""

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from dhcpfo.dhcp.packet import CodecError, parse


class DHCPProtocol(DatagramProtocol):
    _log = Logger()
    noisy = False

    def __init__(self, server, store, iface):
        self.server = server
        self.store = store
        self.iface = iface

    def datagramReceived(self, data, addr):
        try:
            pkt = parse(data)
        except CodecError as e:
            self.server.stats["malformed"] += 1
            self.server.rate_log.info(
                self._log, "malformed",
                "dropped malformed packet from {addr} on {iface}: {why}",
                addr=addr[0], iface=self.iface.name, why=str(e))
            return
        try:
            decision = self.server.handle(pkt, self.iface)
        except Exception:
            self.server.stats["errors"] += 1
            self.server.rate_log.failure(
                self._log, "handler error",
                "error handling {packet} from {addr}; dropped",
                packet=pkt, addr=addr[0])
            return
        if decision is None:
            return
        if decision.commit:
            d = self.store.write(decision.commit)
            if decision.data is not None:
                d.addCallback(self._durable, decision)
            d.addErrback(self._notDurable, decision)
        else:
            self._send(decision)

    def _durable(self, _, decision):
        self._send(decision)

    def _notDurable(self, failure, decision):
        # Nothing was sent; the table must not keep what the store lacks.
        self.server.not_durable(decision)
        self.server.rate_log.error(
            self._log, "not durable",
            "lease for {ip} is not durable ({why}): no reply sent, the lease "
            "table rolled back", ip=decision.commit[-1].ip,
            why=failure.getErrorMessage())

    def startProtocol(self):
        # The reply path is hot: our destinations are always dotted quads, so
        # skip the address checks of twisted's Port.write and send directly.
        self._sendto = self.transport.getHandle().sendto

    def _send(self, decision):
        if self.transport is None:  # stopped while the write was in flight
            return
        try:
            self._sendto(decision.data, decision.dest)
        except OSError as e:
            stats = self.server.stats
            stats["send_errors"] += 1
            if decision.counted is not None:
                stats[decision.counted] -= 1    # counted only when sent
            self.server.rate_log.warn(
                self._log, "send error",
                "cannot send reply to {dest} on {iface}: {why} ({count} send "
                "errors so far)", dest=decision.dest, iface=self.iface.name,
                why=e, count=stats["send_errors"])
