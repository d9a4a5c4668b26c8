"""Network-namespace labs for the tests, the benchmarks and the demo.

Not part of the installed package: it runs ``ip netns``, real clients and
servers on the host, which no product code should ever do.
"""

from tests.lab.netns import *  # noqa: F401,F403
from tests.lab.netns import Lab, LabError, tail  # noqa: F401
