"""dhcpfo: a DHCPv4 + DNS server whose headline is failover."""
