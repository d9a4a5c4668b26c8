#!/usr/bin/env python3
"""Mutation testing of the modules that carry the safety rules (mutmut 2.5).

Run from the checkout (no root needed); it never touches the checkout:

    .venv/bin/python -m bench.mutation [--commit REV] [--modules server,merge]
        [--workdir DIR] [--json FILE] [--survivors]

For each module, mutmut makes small changes to it one at a time (a ``<``
becomes ``<=``, a constant changes, a condition or a statement goes) and
runs that module's unit tests, under trial, on each mutant.  A mutant the
tests fail on is *killed*; one they pass is a *survivor*: a change to the
code that no unit test notices.  docs/testing.md records the figures and
says, for each survivor, why it is acceptable or which test kills it now.

mutmut 2.5 mutates the source files in place, so the run happens in a copy
of the tree at ``--commit`` (``git archive``; default HEAD), made in
``--workdir`` (default: a new temporary directory, removed afterwards
unless ``--keep-workdir``).  The copy is imported instead of the editable
install because trial runs with the copy as its working directory (checked
before the first mutant).  mutmut 3 would need pytest and imports the
package through its own ``mutants/`` tree; 2.5 takes any test command, so
the runner is trial, as for the rest of the suite.

A mutant that makes a test hang is cut off by mutmut after a multiple of
the clean run's time and counted as ``timeout`` (the tests noticed).
Exit status: 0 when every module ran, 1 otherwise.
"""

import argparse
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

#: module -> the unit tests that guard it (trial names).
TARGETS = {
    "server": ("dhcpfo/dhcp/server.py",
               ("tests.test_server", "tests.test_protocol",
                "tests.test_failover_coordinator")),
    "coordinator": ("dhcpfo/failover/coordinator.py",
                    ("tests.test_failover_coordinator", "tests.test_failover_peer",
                     "tests.test_failover_channel")),
    "merge": ("dhcpfo/failover/merge.py",
              ("tests.test_failover_merge", "tests.test_failover_coordinator")),
    "policy": ("dhcpfo/failover/policy.py",
               ("tests.test_server", "tests.test_failover_coordinator")),
    "sqlite": ("dhcpfo/stores/sqlite.py",
               ("tests.test_store_sqlite", "tests.test_store_conformance")),
    "memory": ("dhcpfo/stores/memory.py", ("tests.test_store_conformance",)),
}

#: mutmut's statuses, as we report them.
#: "suspicious" is mutmut's name for a mutant the tests killed, but only
#: after much longer than the clean run took (on a loaded machine, often).
STATUS = {"ok_killed": "killed", "bad_survived": "survived",
          "bad_timeout": "timeout", "ok_suspicious": "killed (slow)",
          "skipped": "skipped", "untested": "untested"}


def copy_tree(commit, workdir):
    """The committed tree at ``commit`` in ``workdir``; its full hash."""
    full = subprocess.run(["git", "rev-parse", commit], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    archive = subprocess.Popen(["git", "archive", full], cwd=ROOT,
                               stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", workdir], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise SystemExit("git archive %s failed" % commit)
    return full


def check_isolated(workdir):
    """Trial run in ``workdir`` must import the copy, not the checkout."""
    found = subprocess.run(
        [sys.executable, "-c", "import dhcpfo; print(dhcpfo.__file__)"],
        cwd=workdir, check=True, capture_output=True, text=True).stdout.strip()
    if not os.path.realpath(found).startswith(os.path.realpath(workdir)):
        raise SystemExit("the copy imports %s, not its own dhcpfo" % found)


def results(workdir, path):
    """``(counts by status, [(mutant id, line number, source line)] of the
    survivors)``; ``mutmut show ID`` in the work directory shows the change."""
    db = sqlite3.connect(os.path.join(workdir, ".mutmut-cache"))
    rows = db.execute(
        "SELECT m.id, m.status, l.line_number, l.line FROM Mutant m "
        "JOIN Line l ON m.line = l.id JOIN SourceFile f ON l.sourcefile = f.id "
        "WHERE f.filename = ? ORDER BY l.line_number, m.\"index\"", (path,)).fetchall()
    db.close()
    counts = {}
    survivors = []
    for ident, status, number, line in rows:
        name = STATUS.get(status, status)
        counts[name] = counts.get(name, 0) + 1
        if name == "survived":
            survivors.append((ident, number + 1, line.strip()))
    return counts, survivors


def run(name, workdir, verbose):
    path, tests = TARGETS[name]
    runner = " ".join([shlex.quote(sys.executable), "-m", "twisted.trial"]
                      + list(tests))
    command = ["mutmut", "run", "--paths-to-mutate", path, "--runner", runner,
               "--tests-dir", "tests", "--simple-output", "--no-progress"]
    mutmut = shutil.which("mutmut", path=os.path.dirname(sys.executable))
    if mutmut is None:
        raise SystemExit("mutmut is not installed in this venv: "
                         ".venv/bin/pip install 'mutmut==2.5.1'")
    command[0] = mutmut
    started = time.monotonic()
    done = subprocess.run(command, cwd=workdir, capture_output=not verbose,
                          text=True)
    elapsed = time.monotonic() - started
    # mutmut's exit status is a bit set of outcomes (2 survived, 4 timeout,
    # 8 suspicious); 1 is its own failure, e.g. the clean run failed.
    if done.returncode & 1:
        sys.stderr.write((done.stdout or "") + (done.stderr or ""))
        return None
    counts, survivors = results(workdir, path)
    return {"module": path, "tests": list(tests), "seconds": round(elapsed),
            "counts": counts, "survivors": survivors}


def show(name, found, survivors):
    counts = found["counts"]
    print("%-12s %-32s %4d mutants: %s%s" % (
        name, found["module"], sum(counts.values()),
        ", ".join("%s %d" % kv for kv in sorted(counts.items())),
        "  (%ds)" % found["seconds"] if found.get("seconds") is not None else ""))
    if survivors:
        for ident, number, line in found["survivors"]:
            print("    survived #%-4d line %4d: %s" % (ident, number, line))


def report_only(workdir, names, args):
    report = {"commit": None, "modules": {}}
    for name in names:
        path, tests = TARGETS[name]
        counts, survivors = results(workdir, path)
        if not counts:
            continue
        found = {"module": path, "tests": list(tests), "seconds": None,
                 "counts": counts, "survivors": survivors}
        report["modules"][name] = found
        show(name, found, args.survivors)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", default="HEAD",
                        help="the committed tree to test (default HEAD)")
    parser.add_argument("--modules", default=",".join(TARGETS),
                        help="comma-separated, of: " + ", ".join(TARGETS))
    parser.add_argument("--workdir", help="where to copy the tree (default: a "
                        "new temporary directory)")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--report-only", action="store_true",
                        help="only read the figures of an earlier run in "
                        "--workdir (e.g. one stopped before the end: its "
                        "remaining mutants count as untested)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--survivors", action="store_true",
                        help="list each surviving mutant's line")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show mutmut's own output")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.modules.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error("unknown module(s): %s" % ", ".join(unknown))
    if args.report_only:
        if not args.workdir:
            parser.error("--report-only needs --workdir")
        return report_only(args.workdir, names, args)
    workdir = args.workdir or tempfile.mkdtemp(prefix="dhcpfo-mutation-")
    os.makedirs(workdir, exist_ok=True)
    report = {"commit": None, "modules": {}}
    ok = True
    try:
        report["commit"] = copy_tree(args.commit, workdir)
        check_isolated(workdir)
        print("mutation run on %s in %s" % (report["commit"], workdir))
        for name in names:
            found = run(name, workdir, args.verbose)
            if found is None:
                ok = False
                print("%-12s mutmut failed (see above)" % name)
                continue
            report["modules"][name] = found
            show(name, found, args.survivors)
    finally:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
        if not (args.keep_workdir or args.workdir):
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
