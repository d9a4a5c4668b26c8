"""The one parser of perfdhcp's report, for the lab tests and the benchmarks."""

import re

__all__ = ["parse_perfdhcp", "exchange"]


def parse_perfdhcp(text):
    """
    Parse perfdhcp's report.

    Returns ``{'rate': float or None, 'exchanges': {'DISCOVER-OFFER': {...},
    'REQUEST-ACK': {...}}}`` where each exchange dict has integer counters
    such as ``sent``, ``received``, ``drops``, ``orphans``, ``rejected``
    (whatever the report printed, key = first word(s) of the line, spaces as
    underscores, ``packets`` dropped) and floats for the delays in ms
    (``avg_delay``, ``min_delay``, ``max_delay``, ``std_deviation``).
    """
    result = {"rate": None, "exchanges": {}}
    current = None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"Rate:\s*([0-9.eE+-]+)", line)
        if m:
            result["rate"] = float(m.group(1))
            continue
        m = re.match(r"\*+\s*Statistics for:?\s*(\S+?)\s*\*+", line)
        if m:
            current = result["exchanges"].setdefault(m.group(1), {})
            continue
        if line.startswith("***"):
            current = None
            continue
        if current is None or ":" not in line:
            continue
        key, _, value = line.partition(":")
        key = key.strip().lower().replace(" packets", "").replace(" ", "_")
        value = value.strip()
        m = re.match(r"([0-9.eE+-]+)\s*(ms)?", value)
        if not m:
            continue
        try:
            num = float(m.group(1))
        except ValueError:
            continue
        if m.group(2) is None and num.is_integer() and "." not in m.group(1):
            num = int(num)
        current[key] = num
    return result



def exchange(report, name):
    """The counters of exchange *name* (``'DISCOVER-OFFER'``, ``'REQUEST-ACK'``), or {}."""
    return report["exchanges"].get(name, {})
