"""Hybrid logical clock: version stamps that order lease changes across peers.

A stamp is ``milliseconds << 16 | counter``: it follows wall time when clocks
agree and never goes backwards when they do not (Kulkarni et al., 2014), so a
peer with a slow clock cannot make its newer change look older.

A stamp from elsewhere is folded in only if it is a sane value no more than
``max_ahead`` seconds ahead of our wall clock: otherwise one peer with a
clock days fast (or a forged ``2**70``) would push every later stamp of ours
into the future, saved to disk, for good.
"""

_COUNTER_BITS = 16
MAX_STAMP = (1 << 63) - 1      # a signed 64-bit integer (SQLite, the wire)
MAX_AHEAD = 86400.0            # seconds: the bound lease versions have too


class HybridLogicalClock:
    def __init__(self, clock, max_ahead=MAX_AHEAD):
        self._clock = clock
        self._last = 0
        self.max_ahead = max_ahead

    def now(self):
        wall = int(self._clock.seconds() * 1000) << _COUNTER_BITS
        stamp = wall if wall > self._last else self._last + 1
        self._last = stamp
        return stamp

    def acceptable(self, stamp):
        """Whether ``stamp`` is an integer stamp within ``max_ahead`` of our clock."""
        return (isinstance(stamp, int) and not isinstance(stamp, bool)
                and 0 <= stamp <= MAX_STAMP
                and stamp_seconds(stamp) <= self._clock.seconds() + self.max_ahead)

    def observe(self, stamp):
        """Fold in a stamp seen from elsewhere so ours stay newer; False
        (and nothing folded in) if it is not L{acceptable}."""
        if not self.acceptable(stamp):
            return False
        if stamp > self._last:
            self._last = stamp
        return True


def stamp_seconds(stamp):
    return (stamp >> _COUNTER_BITS) / 1000.0
