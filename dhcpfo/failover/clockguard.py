"""A peer's clock values, bounded (docs/failover.md, "Reconciliation").

Every failover command carries the sender's hybrid logical clock.  Folding in
a value far ahead of our wall clock would drag every later stamp of ours into
the future, saved to disk (a peer two days fast, or a forged ``2**70`` that
no SQLite integer holds), so the HLC refuses it; here the refusals are
counted and logged at most once per peer per interval, since a peer with a
wrong clock sends one with every heartbeat.
"""

from twisted.logger import Logger

from dhcpfo.leases.hlc import MAX_STAMP, stamp_seconds

LOG_EVERY = 60.0  # seconds between two log lines about one peer's clock


class ClockGuard:
    """Folds peers' stamps into ``hlc`` within its bound; counts the rest."""

    _log = Logger()

    def __init__(self, hlc, clock, every=LOG_EVERY):
        self.hlc = hlc
        self.clock = clock
        self.every = every
        self.refused = 0
        self._logged = {}   # peer -> when we last logged one of its values

    def observe(self, stamp, peer=None):
        if self.hlc.observe(stamp):
            return
        self.refused += 1
        now = self.clock.seconds()
        if now - self._logged.get(peer, -self.every) < self.every:
            return
        self._logged[peer] = now
        if isinstance(stamp, int) and 0 <= stamp <= MAX_STAMP:
            what = "%.0fs ahead" % (stamp_seconds(stamp) - now)
        else:
            what = "%r is not a stamp" % (stamp,)
        self._log.warn(
            "ignored a clock value from failover peer {peer}: {what} (more than "
            "{bound:.0f}s ahead of our clock, or not a stamp); check its clock. "
            "{count} refused so far; next report in {every:.0f}s at most",
            peer=peer, what=what, bound=self.hlc.max_ahead, count=self.refused,
            every=self.every)
