"""
Network namespaces, bridges and the processes started in them.

The base of :class:`tests.lab.Lab`: a small synchronous library (blocking
subprocesses, no reactor).  It needs root and iproute2.  The rules it keeps:

- namespaces are named ``<prefix>-<name>`` with a per-run prefix
  (``dfo<pid>`` by default) and are all deleted by :meth:`Namespaces.close`,
  which is idempotent and also runs at interpreter exit;
- processes are stopped only by the pid recorded when this lab started them
  (SIGTERM, then SIGKILL after a timeout), never by name;
- every host namespace gets its own ``/etc/netns/<ns>/resolv.conf``, so
  nothing touches the host's /etc;
- only documentation and benchmarking addresses are used
  (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 198.18.0.0/15):
  :meth:`Namespaces.addr` refuses anything else.
"""

import atexit
import ipaddress
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from tests.lab.errors import ALLOWED_NETWORKS, LabError, _decode, tail

__all__ = ["Namespaces"]

_counter = itertools.count()


def _check_name(name):
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", name or ""):
        raise ValueError("lab names are short [a-z0-9_] words, not %r" % (name,))


def _b36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out


class Namespaces:
    """
    A set of network namespaces and the processes running in them.

    Use as a context manager, or call :meth:`close` (idempotent; it also
    runs at interpreter exit).  Names given to :meth:`lan` and :meth:`host`
    are short words; the namespaces are ``<prefix>-<name>``.

    :ivar prefix: namespace prefix (``dfo<pid>`` for the first lab of a
        process, ``dfo<pid><n>`` for later ones).
    :ivar dir: a private temporary directory for logs, lease files, scripts;
        removed at close unless the environment has ``DHCPFO_LAB_KEEP=1``
        (its path is then printed to stderr).
    """

    def __init__(self, prefix=None, keep_dir=None):
        if prefix is None:
            n = next(_counter)
            prefix = "dfo%d%s" % (os.getpid(), "" if n == 0 else _b36(n))
        if not re.fullmatch(r"[a-z][a-z0-9]{0,10}", prefix):
            raise ValueError("prefix must be [a-z][a-z0-9]{0,10}, not %r" % (prefix,))
        self.prefix = prefix
        if keep_dir is None:
            keep_dir = os.environ.get("DHCPFO_LAB_KEEP", "") not in ("", "0")
        self.keep_dir = keep_dir
        self.dir = tempfile.mkdtemp(prefix="%s-" % prefix)
        self.bindir = os.path.dirname(sys.executable)
        self._namespaces = []        # full names, creation order
        self._lans = {}              # name -> ns
        self._hosts = {}             # name -> {'ns':..., 'ifaces': {iface: lan}}
        self._procs = []             # Popen objects we started and still own
        self._seq = itertools.count(1)
        self._closed = False
        atexit.register(self.close)

    # -- context manager / cleanup ---------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Stop every recorded process, delete every namespace and file."""
        if self._closed:
            return
        self._closed = True
        errors = []
        for proc in reversed(list(self._procs)):
            try:
                self.stop(proc)
            except Exception as e:  # pragma: no cover - best effort
                errors.append("stop %s: %s" % (proc.args, e))
        for ns in reversed(self._namespaces):
            r = subprocess.run(["ip", "netns", "delete", ns],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
            if r.returncode != 0 and os.path.exists("/run/netns/" + ns):
                errors.append("ip netns delete %s: %s" % (ns, r.stderr.strip()))
            shutil.rmtree("/etc/netns/" + ns, ignore_errors=True)
        self._namespaces = []
        try:
            os.rmdir("/etc/netns")      # only if we left it empty
        except OSError:
            pass
        if self.keep_dir:
            sys.stderr.write("lab %s: files kept in %s\n" % (self.prefix, self.dir))
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        try:
            atexit.unregister(self.close)
        except Exception:  # pragma: no cover
            pass
        if errors:
            raise LabError("lab %s cleanup: %s" % (self.prefix, "; ".join(errors)))

    # -- topology ----------------------------------------------------------

    def ns(self, name):
        """The full namespace name of lan or host *name*."""
        if name in self._hosts:
            return self._hosts[name]["ns"]
        if name in self._lans:
            return self._lans[name]
        raise KeyError("no lan or host %r in lab %s" % (name, self.prefix))

    def _add_ns(self, name):
        _check_name(name)
        if name in self._hosts or name in self._lans:
            raise ValueError("%r already exists in lab %s" % (name, self.prefix))
        ns = "%s-%s" % (self.prefix, name)
        self._cmd(["ip", "netns", "add", ns])
        self._namespaces.append(ns)
        return ns

    def lan(self, name):
        """Create a bridge namespace (bridge ``br0``, STP off) called *name*."""
        ns = self._add_ns(name)
        self._lans[name] = ns
        self._cmd(["ip", "-n", ns, "link", "add", "br0", "type", "bridge",
                   "stp_state", "0", "forward_delay", "0"])
        self._cmd(["ip", "-n", ns, "link", "set", "br0", "up"])
        return ns

    def host(self, name, lan, address=None):
        """
        Create host namespace *name* with ``lo`` up and its ``e0`` attached
        to *lan*; *address* (``'192.0.2.1/24'`` or a list) goes on ``e0``.
        """
        if lan not in self._lans:
            raise KeyError("no lan %r" % (lan,))
        if len(name) > 12:
            raise ValueError("host names are at most 12 characters: %r" % (name,))
        ns = self._add_ns(name)
        self._hosts[name] = {"ns": ns, "ifaces": {}}
        etc = "/etc/netns/" + ns
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write("# dhcpfo lab %s: private resolv.conf\n" % ns)
        # IPv6 off: no router solicitations or DAD noise on the lab wires.
        self._cmd(["ip", "netns", "exec", ns, "sh", "-c",
                   "for f in all default; do echo 1 > "
                   "/proc/sys/net/ipv6/conf/$f/disable_ipv6; done 2>/dev/null; true"])
        self._cmd(["ip", "-n", ns, "link", "set", "lo", "up"])
        self.attach(name, lan, address)
        return ns

    def attach(self, host, lan, address=None):
        """Attach *host* to one more *lan*; returns the new interface (``e1``, ...)."""
        h = self._hosts[host]
        iface = "e%d" % len(h["ifaces"])
        peer = "%s-%s" % (host, iface)
        lns = self._lans[lan]
        self._cmd(["ip", "link", "add", iface, "netns", h["ns"], "type", "veth",
                   "peer", "name", peer, "netns", lns])
        self._cmd(["ip", "-n", lns, "link", "set", peer, "master", "br0"])
        self._cmd(["ip", "-n", lns, "link", "set", peer, "up"])
        self._cmd(["ip", "-n", h["ns"], "link", "set", iface, "up"])
        h["ifaces"][iface] = lan
        if address:
            for a in [address] if isinstance(address, str) else address:
                self.addr(host, a, iface)
        return iface

    def addr(self, host, address, iface="e0"):
        """Add *address* (CIDR, documentation/benchmark ranges only) to *iface*."""
        net = ipaddress.ip_interface(address).network
        if not any(net.subnet_of(a) for a in ALLOWED_NETWORKS if a.version == net.version):
            raise ValueError("%s is outside the lab's documentation/benchmark ranges"
                             % address)
        self.ip(host, "addr", "add", address, "dev", iface)

    def link(self, host, up=False, iface="e0"):
        """Cut (``up=False``) or heal (``up=True``) *host*'s bridge port."""
        lan = self._hosts[host]["ifaces"][iface]
        self._cmd(["ip", "-n", self._lans[lan], "link", "set",
                   "%s-%s" % (host, iface), "up" if up else "down"])

    def ip(self, host, *args):
        """``ip -n NS ARGS...``; raises LabError on failure; returns stdout."""
        return self._cmd(["ip", "-n", self.ns(host)] + [str(a) for a in args]).stdout

    def mac(self, host, iface="e0"):
        """The MAC address of *host*'s *iface* (lower case)."""
        out = self.ip(host, "-j", "link", "show", "dev", iface)
        return json.loads(out)[0]["address"].lower()

    def addresses(self, host, iface="e0"):
        """IPv4 addresses (CIDR strings) on *host*'s *iface*."""
        out = self.ip(host, "-j", "-4", "addr", "show", "dev", iface)
        return ["%s/%s" % (a["local"], a["prefixlen"])
                for link in json.loads(out) for a in link.get("addr_info", [])]

    def sysctl(self, host, key, value):
        """Set a (per-namespace) sysctl, e.g. ``net.ipv4.ip_forward``."""
        path = "/proc/sys/" + key.replace(".", "/")
        self._cmd(["ip", "netns", "exec", self.ns(host), "tee", path],
                  input=str(value) + "\n")

    def forwarding(self, host, on=True):
        self.sysctl(host, "net.ipv4.ip_forward", 1 if on else 0)

    # -- commands and processes -------------------------------------------

    def _cmd(self, argv, timeout=30, input=None, check=True):
        try:
            r = subprocess.run(argv, input=input, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise LabError("timed out after %ss: %s" % (timeout, shlex.join(argv))) from e
        if check and r.returncode != 0:
            raise LabError("exit %d: %s\n%s%s" % (r.returncode, shlex.join(argv),
                                                   r.stdout, r.stderr))
        return r

    def run(self, host, argv, timeout=30, check=False, input=None, env=None):
        """
        Run *argv* inside *host* (``ip netns exec``) and wait at most
        *timeout* seconds (the process is killed then, and LabError raised).
        Returns a CompletedProcess with text stdout/stderr.
        """
        full = ["ip", "netns", "exec", self.ns(host)] + [str(a) for a in argv]
        try:
            r = subprocess.run(full, input=input, capture_output=True, text=True,
                               timeout=timeout, env=env)
        except subprocess.TimeoutExpired as e:
            raise LabError("timed out after %ss in %s: %s\n%s%s" % (
                timeout, host, shlex.join(map(str, argv)),
                _decode(e.stdout), _decode(e.stderr))) from e
        if check and r.returncode != 0:
            raise LabError("exit %d in %s: %s\n%s%s" % (
                r.returncode, host, shlex.join(map(str, argv)), r.stdout, r.stderr))
        return r

    def path(self, name):
        """A path in the lab's private directory."""
        return os.path.join(self.dir, name)

    def spawn(self, host, argv, stdout_path=None, env=None):
        """
        Start *argv* inside *host* in the background, stdout and stderr to
        *stdout_path* (default: a new ``.log`` in the lab directory, name on
        ``proc.log_path``).  The Popen is recorded and stopped at close.
        """
        if self._closed:
            raise LabError("lab %s is closed" % self.prefix)
        if stdout_path is None:
            stdout_path = self.path("%s-%s-%d.log" % (
                host, os.path.basename(str(argv[0])), next(self._seq)))
        full = ["ip", "netns", "exec", self.ns(host)] + [str(a) for a in argv]
        with open(stdout_path, "ab") as out:
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        proc.log_path = stdout_path
        proc.host = host
        self._procs.append(proc)
        return proc

    def stop(self, proc, timeout=5, sig=signal.SIGTERM):
        """
        Stop a process this lab spawned: *sig* (SIGTERM) to its recorded pid,
        then SIGKILL if it has not exited within *timeout* seconds.
        Returns its exit status.
        """
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def wait_udp(self, host, port, timeout=10, proc=None):
        """Wait until something listens on UDP *port* in *host*."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.run(host, ["ss", "-Hlun", "sport = :%d" % port],
                           timeout=5).stdout
            if out.strip():
                return
            if proc is not None and proc.poll() is not None:
                raise LabError("%s exited with %s before listening on UDP %d:\n%s" % (
                    proc.args[3:], proc.returncode, port, tail(proc.log_path)))
            if time.monotonic() > deadline:
                raise LabError("nothing listens on UDP %d in %s after %ss%s" % (
                    port, host, timeout,
                    ":\n" + tail(proc.log_path) if proc is not None else ""))
            time.sleep(0.1)
