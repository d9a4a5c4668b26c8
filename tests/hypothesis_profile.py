"""The Hypothesis profile every dhcpfo test module uses (import it first).

Like Twisted's own suite (``twisted/trial/test/__init__.py``): no deadline
(a loaded CI machine must not turn slowness into failures), derandomized (the
same examples on every run, so a failure is reproducible from the log alone)
and the ``too_slow`` health check suppressed.  Tests choose their own
``max_examples`` with ``@settings``; keep them modest so the suite stays fast.
"""

from hypothesis import HealthCheck, settings

PROFILE = "dhcpfo"

settings.register_profile(
    PROFILE,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(PROFILE)
