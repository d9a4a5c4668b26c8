"""Hybrid logical clock: version stamps that order lease changes across peers.

A stamp is ``milliseconds << 16 | counter``: it follows wall time when clocks
agree and never goes backwards when they do not (Kulkarni et al., 2014), so a
peer with a slow clock cannot make its newer change look older.
"""

_COUNTER_BITS = 16


class HybridLogicalClock:
    def __init__(self, clock):
        self._clock = clock
        self._last = 0

    def now(self):
        wall = int(self._clock.seconds() * 1000) << _COUNTER_BITS
        stamp = wall if wall > self._last else self._last + 1
        self._last = stamp
        return stamp

    def observe(self, stamp):
        """Fold in a stamp seen from elsewhere so ours stay newer."""
        if stamp > self._last:
            self._last = stamp


def stamp_seconds(stamp):
    return (stamp >> _COUNTER_BITS) / 1000.0
