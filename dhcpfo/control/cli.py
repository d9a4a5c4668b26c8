"""dhcpfo-ctl: ask a running dhcpfo for its status and leases (over
loopback TCP, ``--control``), and change its state (over the UNIX control
socket, ``--control-socket``, as root or a member of ``--control-group``)."""

import argparse
import http.client
import json
import socket
import sys
import urllib.error
import urllib.request

from dhcpfo.config import DEFAULT_CONTROL_SOCKET
from dhcpfo.control.auth import unix_address

DEFAULT_URL = "http://127.0.0.1:8067"


class _UNIXConnection(http.client.HTTPConnection):
    """HTTP over the control socket; the kernel tells the server who we are."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = unix_address(path)

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def change(socket_path, path, body, timeout=5.0):
    """POST ``body`` as JSON to ``path`` over the control socket:
    ``(status, answer)``."""
    conn = _UNIXConnection(socket_path, timeout)
    try:
        conn.request("POST", path, json.dumps(body).encode(),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def fetch(base, path, timeout=5.0, data=None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(base.rstrip("/") + path, data=data,
                         timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        return json.load(e)


def table(rows, columns):
    widths = [max([len(c)] + [len(str(r.get(c) or "")) for r in rows]) for c in columns]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    for r in rows:
        lines.append("  ".join(str(r.get(c) or "-").ljust(w)
                               for c, w in zip(columns, widths)))
    return "\n".join(line.rstrip() for line in lines)


def main(argv=None, out=sys.stdout):
    parser = argparse.ArgumentParser(prog="dhcpfo-ctl", description=__doc__)
    parser.add_argument("--control", default=DEFAULT_URL,
                        help="URL of the control API (default %(default)s)")
    parser.add_argument("--control-socket", default=DEFAULT_CONTROL_SOCKET,
                        help="the server's --control-socket, for changes "
                             "(default %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("status", "server state and counters"),
                       ("leases", "every lease the server knows")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
    from dhcpfo.failover import certs
    certs.add_make_certs_arguments(sub.add_parser(
        "make-certs", help="create a lab CA and failover peer certificates"))
    down = sub.add_parser("partner-down", help="declare a failover peer gone for "
                          "good: its addresses become ours after MCLT")
    down.add_argument("name", help="the peer's --failover-name")
    args = parser.parse_args(argv)
    if args.command == "make-certs":
        return certs.main_make_certs(args, out=out)
    try:
        if args.command == "partner-down":
            try:
                _, data = change(args.control_socket, "/v1/failover/partner-down",
                                 {"name": args.name})
            except OSError as e:
                print("dhcpfo-ctl: cannot reach dhcpfo's control socket %s: %s "
                      "(root or --control-group only; is --control-socket the "
                      "server's?)" % (args.control_socket, e), file=sys.stderr)
                return 2
            if "error" in data:
                print("dhcpfo-ctl partner-down: %s" % data["error"], file=sys.stderr)
                return 1
            out.write("%s declared down; its addresses become ours at %s\n"
                      % (data["partner"], data["takeover_at"]))
            return 0
        data = fetch(args.control, "/v1/" + args.command)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        print("dhcpfo-ctl: cannot reach dhcpfo at %s: %s (is it running, and is "
              "--control the address given to the server?)" % (args.control, reason),
              file=sys.stderr)
        return 2
    if args.json:
        json.dump(data, out, indent=1)
        out.write("\n")
    elif args.command == "leases":
        out.write(table(data, ["ip", "mac", "hostname", "state", "expires",
                               "client_id"]) + "\n")
    else:
        out.write("server %(server)s: %(state)s (%(role)s), %(leases)d leases, "
                  "store %(lease_store)s\n" % data)
        for i in data["interfaces"]:
            out.write("  interface %s %s serving %s\n"
                      % (i["name"], i["address"], i["subnet"] or "relayed only"))
        out.write(table(data["ranges"], ["subnet", "range", "size", "leased",
                                         "reserved", "free"])
                  + "\n")
        failover = data.get("failover")
        if failover:
            out.write("failover %s: %s%s%s, %d conflicts\n" % (
                failover.get("name"), failover["role"], " " + failover["state"],
                " (restricted: a peer is unreachable)" if failover.get("restricted")
                else "", failover.get("conflict_count", 0)))
            out.write(table(failover["peers"], ["name", "connected", "synced", "role",
                                                "state", "last_heard_ago",
                                                "replication_lag"]) + "\n")
        if data.get("dns"):
            out.write("dns: %s\n" % ", ".join("%s=%s" % kv
                                               for kv in sorted(data["dns"].items())))
        counters = ", ".join("%s=%s" % kv for kv in sorted(data["counters"].items()))
        out.write("counters: %s\n" % (counters or "none yet"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
