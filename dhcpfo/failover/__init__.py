"""Failover: the peer channel (AMP over mutual TLS), its commands, the lab CA."""
