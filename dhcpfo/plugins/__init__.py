"""Lease-store plugins; third-party packages may add modules here."""
from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list = []
