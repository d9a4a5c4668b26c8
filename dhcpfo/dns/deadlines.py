"""One timer for many names: the lease clock of the DNS zone.

Each name has at most one deadline; when it passes, ``callback(name, now)``
runs.  A heap of ``(when, name)`` holds them, with stale entries skipped
(and compacted when they outnumber the live ones), and a single
``callLater`` is armed for the earliest.
"""

import heapq

from twisted.logger import Logger


class Deadlines:
    """:param clock: an ``IReactorTime``.
    :param callback: ``callback(name, now)``, run for each name whose
        deadline has passed; an exception is logged, not raised.
    :param horizon: deadlines further away than this many seconds are not
        kept (an infinite lease has none).
    """

    _log = Logger()

    def __init__(self, clock, callback, horizon):
        self.clock = clock
        self.callback = callback
        self.horizon = horizon
        self._heap = []
        self._due = {}          # name -> deadline (the valid heap entry)
        self._call = None
        self._running = False

    def start(self):
        self._running = True
        self._arm()

    def stop(self):
        self._running = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def schedule(self, name, when, now):
        """``name``'s deadline is now ``when`` (replacing any earlier one)."""
        if when - now > self.horizon:
            self._due.pop(name, None)
            return
        self._due[name] = when
        heapq.heappush(self._heap, (when, name))
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._heap = [(w, n) for n, w in self._due.items()]
            heapq.heapify(self._heap)
        self._arm()

    def cancel(self, name):
        self._due.pop(name, None)

    def _arm(self):
        if not self._running:
            return
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if not heap:
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call = None
            return
        when = heap[0][0]
        if self._call is not None and self._call.active():
            if self._call.getTime() <= when:
                return
            self._call.cancel()
        delay = max(0, when - self.clock.seconds())
        self._call = self.clock.callLater(delay, self._fire)

    def _fire(self):
        self._call = None
        now = self.clock.seconds()
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, name = heapq.heappop(heap)
            if self._due.get(name) != when:
                continue
            del self._due[name]
            try:
                self.callback(name, now)
            except Exception:
                self._log.failure("deadline of {name} not handled", name=name)
        self._arm()
