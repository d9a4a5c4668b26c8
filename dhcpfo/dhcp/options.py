"""Moved to :mod:`dhcpfo.config.dhcp_options` (configuration-time encoding).

Kept only for tests/test_packet.py, which encodes option values with it;
new code imports :mod:`dhcpfo.config.dhcp_options`.
"""

from dhcpfo.config.dhcp_options import encode_value

__all__ = ["encode_value"]
