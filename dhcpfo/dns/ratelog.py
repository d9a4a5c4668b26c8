"""Log lines that packets can cause, at most one per key per interval.

A flood of malformed or hostile packets must not become a flood of log
lines.  The lines held back are counted and the next line of the same key
says how many there were.  (The DNS side's own; ``dhcpfo/ratelog.py`` was
not there when this was written.)
"""

from twisted.logger import LogLevel

#: Seconds between two lines of one key.
INTERVAL = 60.0
#: Keys remembered at most (a flood of distinct keys forgets the oldest).
KEYS = 1024
_HELD = " ({held} more like this since the last such line)"


class RateLog:
    """:param logger: a ``twisted.logger.Logger``.
    :param clock: an ``IReactorTime``.
    """

    def __init__(self, logger, clock, interval=INTERVAL, keys=KEYS):
        self.logger = logger
        self.clock = clock
        self.interval = interval
        self.keys = keys
        self._seen = {}         # key -> [time of the last line, lines held back]

    def emit(self, level, key, format, /, **kw):
        """Log ``format`` at ``level`` (a ``LogLevel`` name) unless a line of
        ``key`` went out less than ``interval`` ago; True if it was logged."""
        held = self._due(key)
        if held is None:
            return False
        if held:
            format += _HELD
        self.logger.emit(LogLevel.levelWithName(level), format, held=held, **kw)
        return True

    def failure(self, key, format, failure=None, /, **kw):
        """``Logger.failure`` (the current exception when ``failure`` is
        None), rate-limited as :meth:`emit`."""
        held = self._due(key)
        if held is None:
            return False
        if held:
            format += _HELD
        self.logger.failure(format, failure, held=held, **kw)
        return True

    def _due(self, key):
        """None when a line of ``key`` is not due; else the lines held back."""
        now = self.clock.seconds()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return None
        held = seen[1] if seen is not None else 0
        if seen is None and len(self._seen) >= self.keys:
            self._forget(now)
        self._seen[key] = [now, 0]
        return held

    def _forget(self, now):
        for key in [k for k, (t, _) in self._seen.items() if now - t >= self.interval]:
            del self._seen[key]
        while len(self._seen) >= self.keys:
            del self._seen[next(iter(self._seen))]
