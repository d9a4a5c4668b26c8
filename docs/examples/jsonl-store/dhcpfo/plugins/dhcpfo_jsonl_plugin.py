# Tiny on purpose: twisted.plugin imports this to build its cache.
from dhcpfo_jsonl import factory

__all__ = ["factory"]
