from twisted.application.service import ServiceMaker

dhcpfo = ServiceMaker(
    "dhcpfo", "dhcpfo.tap", "DHCPv4 + DNS server with failover.", "dhcpfo"
)
