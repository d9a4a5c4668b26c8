"""Partner-down (docs/failover.md rule 4; draft-ietf-dhc-failover-12's
PARTNER-DOWN): a peer known to be gone for good gives up its free
addresses, once MCLT has passed, to the servers that survive it."""

from twisted.logger import Logger


class PartnerDown:
    """The partner-down timers of one server.

    ``connected(name)`` says whether a peer is connected now; ``changed()``
    is called when a takeover completes (the coordinator re-applies its
    policy).  ``pending`` maps each declared peer to when its addresses
    become ours; ``taken_over`` holds the peers whose addresses are ours.
    """

    _log = Logger()

    def __init__(self, clock, mclt, after, connected, changed):
        self.clock = clock
        self.mclt = mclt
        self.after = after          # seconds before an automatic declaration
        self._connected = connected
        self._changed = changed
        self.pending = {}
        self.taken_over = set()
        self._takeovers = {}
        self._autodown = {}

    def declare(self, name, why):
        """``name`` is gone for good; returns when its addresses become ours."""
        if name in self.pending:
            return self.pending[name]
        when = self.clock.seconds() + self.mclt
        self.pending[name] = when
        self._takeovers[name] = self.clock.callLater(self.mclt, self._takeOver, name)
        self._log.warn("partner {peer} declared down ({why}); its addresses become "
                       "ours in {mclt:.0f}s (MCLT), when no lease it may have "
                       "granted can still run", peer=name, why=why, mclt=self.mclt)
        return when

    def _takeOver(self, name):
        self._takeovers.pop(name, None)
        self.taken_over.add(name)
        self._log.warn("partner-down: took over the free addresses of {peer}",
                       peer=name)
        self._changed()

    def back(self, name):
        """``name`` connected: no automatic declaration, partner-down over."""
        auto = self._autodown.pop(name, None)
        if auto is not None and auto.active():
            auto.cancel()
        call = self._takeovers.pop(name, None)
        if call is not None and call.active():
            call.cancel()
        if self.pending.pop(name, None) is not None:
            self.taken_over.discard(name)
            self._log.info("partner {peer} is back: partner-down over", peer=name)

    def schedule(self, name):
        """``name`` is unreachable: declare it down after ``after`` seconds
        (opt-in: nothing without ``after``)."""
        if self.after is None or name in self._autodown or self._connected(name):
            return
        self._autodown[name] = self.clock.callLater(self.after, self._autoDown, name)

    def _autoDown(self, name):
        self._autodown.pop(name, None)
        if not self._connected(name):
            self.declare(name, "unreachable for %.0fs "
                               "(--failover-partner-down-after)" % self.after)

    def stop(self):
        for call in list(self._takeovers.values()) + list(self._autodown.values()):
            if call.active():
                call.cancel()

    def status(self):
        return {n: {"takeover_at": t, "done": n in self.taken_over}
                for n, t in self.pending.items()}
