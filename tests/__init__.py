"""dhcpfo tests (trial)."""
