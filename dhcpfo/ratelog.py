"""Log lines a remote party can cause, at most a few per interval.

A packet, a peer or a query must not be able to write the log at its own
rate (20,000 malformed packets once made 20,000 lines).  :class:`RateLog`
lets the first ``burst`` events of a kind through in each interval and
counts the rest; the next line of that kind after the interval says how many
were left out.  It sets no timer (nothing to cancel, nothing left in a
test's Clock); the counters that matter are the caller's stats anyway.

Usage::

    self._rate = RateLog(clock, interval=60.0)
    self._rate.warn(self._log, "decline", "{client} declined {ip}", client=..., ip=...)

The logger is passed on each call, so a test may swap a class's ``_log``.
"""

from twisted.logger import LogLevel

MAX_KINDS = 1024       # distinct keys remembered; past it the table starts over


class RateLog:
    """At most ``burst`` lines per key per ``interval`` seconds of ``clock``."""

    def __init__(self, clock, interval=60.0, burst=1):
        self.clock = clock
        self.interval = interval
        self.burst = burst
        self._kinds = {}    # key -> [window start, lines, suppressed]

    def allow(self, key):
        """May a line of kind ``key`` be written now?  Returns how many were
        suppressed since the last one written (an int, 0 if none), or None
        when this one is to be suppressed as well."""
        now = self.clock.seconds()
        kind = self._kinds.get(key)
        if kind is None or now - kind[0] >= self.interval:
            if kind is None and len(self._kinds) >= MAX_KINDS:
                self._kinds.clear()
            suppressed = kind[2] if kind is not None else 0
            self._kinds[key] = [now, 1, 0]
            return suppressed
        if kind[1] < self.burst:
            kind[1] += 1
            suppressed, kind[2] = kind[2], 0
            return suppressed
        kind[2] += 1
        return None

    def suppressed(self, key):
        """How many lines of kind ``key`` are waiting to be summarised."""
        kind = self._kinds.get(key)
        return kind[2] if kind is not None else 0

    def _let_through(self, key, fmt, kw):
        """``fmt`` with the summary of lines left out, or None to drop it."""
        suppressed = self.allow(key)
        if suppressed is None:
            return None
        if suppressed:
            fmt += " ({suppressed} more like this in the last {interval:.0f}s)"
            kw["suppressed"] = suppressed
            kw["interval"] = self.interval
        return fmt

    def emit(self, logger, level, key, fmt, **kw):
        """Log ``fmt`` at ``level`` unless ``key`` is over its rate; True if logged."""
        fmt = self._let_through(key, fmt, kw)
        if fmt is None:
            return False
        logger.emit(level, fmt, **kw)
        return True

    def info(self, logger, key, fmt, **kw):
        return self.emit(logger, LogLevel.info, key, fmt, **kw)

    def warn(self, logger, key, fmt, **kw):
        return self.emit(logger, LogLevel.warn, key, fmt, **kw)

    def error(self, logger, key, fmt, **kw):
        return self.emit(logger, LogLevel.error, key, fmt, **kw)

    def failure(self, logger, key, fmt, failure=None, **kw):
        """As :meth:`twisted.logger.Logger.failure` (inside an except block)."""
        fmt = self._let_through(key, fmt, kw)
        if fmt is None:
            return False
        logger.failure(fmt, failure, **kw)
        return True
