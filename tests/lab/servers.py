"""Server and relay runners of the lab: dhcpfo (with dhcpfo-ctl), dnsmasq, dhcrelay, perfdhcp."""

import json
import os
import time

from tests.lab.errors import LabError, tail
from tests.lab.perfdhcp import parse_perfdhcp

__all__ = ["ServerRunners"]


class ServerRunners:
    """Mixin for :class:`tests.lab.Lab`: start servers in a host and talk to them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._controls = {}          # host -> control URL of its dhcpfo

    def dhcpfo(self, host, args, name="dhcpfo", timeout=20):
        """
        Start ``twistd -n dhcpfo ARGS`` in *host* (log in ``<dir>/NAME.log``,
        on ``proc.log_path``) and wait until ``dhcpfo-ctl status`` answers
        there.  Raises LabError with the log's tail if it exits or does not
        answer within *timeout* seconds.
        """
        args = [str(a) for a in args]
        logfile = self.path("%s.log" % name)
        argv = [os.path.join(self.bindir, "twistd"), "-n", "--pidfile=",
                "--logfile=" + logfile, "dhcpfo"] + args
        self._controls[host] = _control_url(args)
        proc = self.spawn(host, argv, self.path("%s.stdout" % name))
        proc.twistd_log = logfile
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                self.stop(proc)
                raise LabError("dhcpfo in %s exited with %s:\n%s\n%s" % (
                    host, proc.returncode, tail(proc.log_path), tail(logfile)))
            try:
                r = self.ctl(host, "status", timeout=5)
                if r.returncode == 0:
                    return proc
            except LabError:
                r = None
            if time.monotonic() > deadline:
                self.stop(proc)
                raise LabError("dhcpfo in %s did not answer dhcpfo-ctl status within "
                               "%ss (last: %s)\nstdout:\n%s\nlog:\n%s" % (
                                   host, timeout,
                                   r and (r.stdout + r.stderr).strip(),
                                   tail(proc.log_path), tail(logfile)))
            time.sleep(0.2)

    def ctl(self, host, *args, timeout=10):
        """Run ``dhcpfo-ctl [--control URL] ARGS`` in *host*; CompletedProcess."""
        argv = [os.path.join(self.bindir, "dhcpfo-ctl")]
        url = self._controls.get(host)
        if url:
            argv += ["--control", url]
        return self.run(host, argv + list(args), timeout=timeout)

    def leases(self, host, timeout=10):
        """``dhcpfo-ctl leases --json`` in *host*, parsed: a list of dicts."""
        r = self.ctl(host, "leases", "--json", timeout=timeout)
        if r.returncode != 0:
            raise LabError("dhcpfo-ctl leases --json in %s: exit %d\n%s%s" % (
                host, r.returncode, r.stdout, r.stderr))
        data = json.loads(r.stdout)
        if isinstance(data, dict) and "leases" in data:
            data = data["leases"]
        return data

    def dnsmasq(self, host, args=(), leasefile=None, name="dnsmasq", timeout=10):
        """
        Start dnsmasq (DHCP only: ``--port=0``) in the foreground in *host*
        and wait until it listens on UDP 67.  *args* are extra options such
        as ``--interface=e0``, ``--dhcp-range=...``.  ``proc.leasefile`` says
        where its leases are.
        """
        leasefile = leasefile or self.path("%s.leases" % name)
        argv = ["dnsmasq", "-d", "-C", "/dev/null", "--port=0", "--user=root",
                "--no-resolv", "--no-hosts", "--log-facility=-", "--log-dhcp",
                "--pid-file=" + self.path("%s.pid" % name),
                "--dhcp-leasefile=" + leasefile] + [str(a) for a in args]
        proc = self.spawn(host, argv, self.path("%s.log" % name))
        proc.leasefile = leasefile
        self.wait_udp(host, 67, timeout, proc)
        return proc

    def dhcrelay(self, host, server, upper="e0", lower=("e1",), timeout=10):
        """Start ``dhcrelay -d -4 -iu UPPER -id LOWER... SERVER`` in *host*."""
        argv = ["dhcrelay", "-d", "-4", "-iu", upper]
        for iface in [lower] if isinstance(lower, str) else lower:
            argv += ["-id", iface]
        argv.append(server)
        proc = self.spawn(host, argv, self.path("%s-dhcrelay.log" % host))
        self.wait_udp(host, 67, timeout, proc)
        return proc

    def perfdhcp(self, host, args, timeout=60):
        """
        Run ``perfdhcp ARGS`` in *host*; returns :func:`parse_perfdhcp` of its
        output plus ``'output'`` (the text) and ``'returncode'``.
        perfdhcp exits 3 when packets were dropped; that is not an error here.
        """
        r = self.run(host, ["perfdhcp"] + [str(a) for a in args], timeout=timeout)
        result = parse_perfdhcp(r.stdout)
        result["output"] = r.stdout + r.stderr
        result["returncode"] = r.returncode
        if r.returncode not in (0, 3) or not result["exchanges"]:
            raise LabError("perfdhcp in %s: exit %d\n%s%s" % (
                host, r.returncode, r.stdout, r.stderr))
        return result


def _control_url(args):
    """The dhcpfo-ctl URL for a ``--control tcp:PORT[:interface=ADDR]`` option."""
    spec = None
    for i, a in enumerate(args):
        if a == "--control" and i + 1 < len(args):
            spec = args[i + 1]
        elif a.startswith("--control="):
            spec = a.split("=", 1)[1]
    if not spec:
        return None
    if spec.startswith(("http://", "https://")):
        return spec
    parts = spec.split(":")
    if parts[0] != "tcp" or len(parts) < 2:
        return None
    host = "127.0.0.1"
    for p in parts[2:]:
        if p.startswith("interface="):
            host = p.split("=", 1)[1] or host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = "[%s]" % host
    return "http://%s:%s" % (host, parts[1])
