"""Rates a client or a relay may not exceed (issue 10 items 7 and 8).

Both limiters take the caller's ``now`` (the server's injected clock) and
keep a bounded number of keys: a flood of random MACs cannot grow them past
``max_keys``.  When the table is full, expired entries go first; if none
has expired the table starts over, which at worst forgives a few clients
for one interval (the global limits still hold).
"""


class WindowLimit:
    """At most ``limit`` events per key in each ``interval`` seconds."""

    def __init__(self, limit, interval, max_keys=4096):
        self.limit = limit
        self.interval = interval
        self.max_keys = max_keys
        self._windows = {}   # key -> [window start, events]

    def allow(self, key, now):
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.interval:
            if window is None and len(self._windows) >= self.max_keys:
                self._prune(now)
            self._windows[key] = [now, 1]
            return True
        if window[1] < self.limit:
            window[1] += 1
            return True
        return False

    def _prune(self, now):
        stale = [k for k, (start, _) in self._windows.items()
                 if now - start >= self.interval]
        for k in stale:
            del self._windows[k]
        if len(self._windows) >= self.max_keys:
            self._windows.clear()

    def __len__(self):
        return len(self._windows)


class TokenBucket:
    """``rate`` events a second per key, bursts up to ``burst``."""

    def __init__(self, rate, burst, max_keys=4096):
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets = {}   # key -> [tokens, last refill]

    def allow(self, key, now):
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()
            self._buckets[key] = [self.burst - 1.0, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        return False

    def __len__(self):
        return len(self._buckets)


class SubnetLimit:
    """Like :class:`WindowLimit` with the limit given per call (it depends
    on the subnet's size); one window per subnet, so no bound is needed."""

    def __init__(self, interval):
        self.interval = interval
        self._windows = {}

    def allow(self, key, now, limit):
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.interval:
            self._windows[key] = [now, 1]
            return True
        if window[1] < limit:
            window[1] += 1
            return True
        return False
