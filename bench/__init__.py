"""
Benchmarks of dhcpfo against Kea and dnsmasq, run from the checkout as modules
(``.venv/bin/python -m bench.dhcp_bench``; see bench/README.md).

Not part of the installed package.  :mod:`bench.common` is the one base they
share (the lab, CPU accounting, options, cleanup), built on :mod:`tests.lab`.
"""
