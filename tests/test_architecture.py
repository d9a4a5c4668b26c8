"""The layout of docs/architecture.md, checked: the one-way dependency rule
between dhcpfo's packages, no import cycle, configuration that imports no
side, and no lab code in the installed package.

Imports are read from the source with :mod:`ast`, at module level and
inside functions alike: a function-level import is a dependency too, only
a later one.
"""

import ast
import configparser
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PACKAGE = os.path.join(ROOT, "dhcpfo")

BASE = ("dhcpfo", "dhcpfo.addr", "dhcpfo.interfaces", "dhcpfo.ratelog")

#: The rule of docs/architecture.md: a module of the layer on the left may
#: import modules of its own layer and of the layers listed, nothing else.
#: ``dhcpfo.plugins`` (the package itself) is the namespace in which the
#: store registry looks plugins up; its plugin modules import the stores.
RULE = {
    "base": (),
    "dhcpfo.config": ("base",),
    "dhcpfo.leases": ("base", "dhcpfo.config"),
    "dhcpfo.dhcp": ("base", "dhcpfo.config", "dhcpfo.leases"),
    "dhcpfo.dns": ("base", "dhcpfo.config", "dhcpfo.leases"),
    "dhcpfo.failover": ("base", "dhcpfo.config", "dhcpfo.leases"),
    "dhcpfo.stores": ("base", "dhcpfo.config", "dhcpfo.leases", "plugin namespace"),
    "plugin namespace": ("base",),
    "dhcpfo.plugins": ("base", "dhcpfo.stores"),
    "dhcpfo.control": ("base", "dhcpfo.config", "dhcpfo.leases", "dhcpfo.dhcp",
                       "dhcpfo.dns", "dhcpfo.failover"),
    "dhcpfo.service": ("base", "dhcpfo.config", "dhcpfo.leases", "dhcpfo.dhcp",
                       "dhcpfo.dns", "dhcpfo.failover", "dhcpfo.stores",
                       "plugin namespace", "dhcpfo.control"),
    "dhcpfo.tap": ("base", "dhcpfo.config", "dhcpfo.stores", "dhcpfo.service"),
}


def layer(module):
    """The layer of RULE a dhcpfo module belongs to."""
    if module in BASE:
        return "base"
    if module == "dhcpfo.plugins":
        return "plugin namespace"
    for name in RULE:
        if module == name or module.startswith(name + "."):
            return name
    raise KeyError("%s belongs to no layer of the dependency rule: add it to "
                   "docs/architecture.md and RULE" % module)


def modules(root=PACKAGE, package="dhcpfo"):
    """``{module name: source path}`` of every module under ``root``."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(folder, f)
            parts = os.path.relpath(path[:-3], root).split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package] + parts)] = path
    return found


def imports(path, module, is_package):
    """``(line, imported name)`` for every import in the file, at any depth;
    ``from X import y`` gives ``X.y`` (which may be a module or not)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    here = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                yield node.lineno, base + "." + alias.name if alias.name != "*" \
                    else base


def graph(found=None):
    """``{module: {imported dhcpfo module: line}}``: the edges between dhcpfo's
    own modules.  An import names the longest module it reaches
    (``from dhcpfo.config import ConfigError`` is an edge to the package
    ``dhcpfo.config``, ``from dhcpfo.config import records`` one to
    ``dhcpfo.config.records``)."""
    found = modules() if found is None else found
    edges = {}
    for module, path in found.items():
        out = edges.setdefault(module, {})
        for line, name in imports(path, module, path.endswith("__init__.py")):
            if name != "dhcpfo" and not name.startswith("dhcpfo."):
                continue
            target = name
            while target not in found:
                target = target.rpartition(".")[0]
            if target and target != module:
                out.setdefault(target, line)
    return edges


def cycles(edges):
    """Every import cycle (each as a list of modules, first == last), by
    Tarjan's strongly connected components."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(_cycle_in(sorted(component), edges))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return result


def _cycle_in(component, edges):
    """One concrete cycle through the first module of a component."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}

    def walk(v):
        for w in sorted(edges.get(v, ())):
            if w == start:
                return path + [start]
            if w in members and w not in seen:
                seen.add(w)
                path.append(w)
                found = walk(w)
                if found:
                    return found
                path.pop()
        return None
    return walk(start)


def describe(cycle, edges):
    return " -> ".join("%s (line %d)" % (a, edges[a][b])
                       for a, b in zip(cycle, cycle[1:])) + " -> " + cycle[-1]


def violations(edges):
    """The imports that break RULE, each described with its line."""
    broken = []
    for module, targets in sorted(edges.items()):
        mine = layer(module)
        for target, line in sorted(targets.items()):
            theirs = layer(target)
            if theirs != mine and theirs not in RULE[mine]:
                broken.append("%s line %d imports %s (%s may import only %s)" % (
                    module, line, target, mine,
                    ", ".join(RULE[mine]) or "nothing of dhcpfo"))
    return broken


class ImportGraphTests(SynchronousTestCase):

    def test_no_cycle(self):
        edges = graph()
        found = cycles(edges)
        self.assertEqual(found, [], "import cycles in dhcpfo/:\n" + "\n".join(
            describe(c, edges) for c in found))

    def test_one_way_rule(self):
        broken = violations(graph())
        self.assertEqual(broken, [], "\n".join(broken))

    def test_every_module_has_a_layer(self):
        for module in modules():
            layer(module)

    def test_config_imports_no_side(self):
        """``import dhcpfo.config`` in a fresh interpreter loads no dhcp,
        dns, failover or stores module."""
        code = ("import json, sys, dhcpfo.config; "
                "print(json.dumps(sorted(m for m in sys.modules "
                "if m.startswith('dhcpfo'))))")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        loaded = json.loads(out)
        self.assertIn("dhcpfo.config", loaded)
        sides = [m for m in loaded if m.split(".")[1:2] in
                 (["dhcp"], ["dns"], ["failover"], ["stores"])]
        self.assertEqual(sides, [])


class CheckerTests(SynchronousTestCase):
    """The checker finds what it is for (a checker that finds nothing would
    pass every tree)."""

    def write(self, files):
        root = self.mktemp()
        for name, text in files.items():
            path = os.path.join(root, *name.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        return graph(modules(root))

    def test_finds_a_function_level_cycle(self):
        edges = self.write({
            "__init__.py": "",
            "dhcp/__init__.py": "",
            "dhcp/pool.py": "from dhcpfo.config import ConfigError\n",
            "config/__init__.py": "def f():\n    from dhcpfo.dhcp import pool\n",
        })
        self.assertEqual(edges["dhcpfo.dhcp.pool"], {"dhcpfo.config": 1})
        self.assertEqual(edges["dhcpfo.config"], {"dhcpfo.dhcp.pool": 2})
        [cycle] = cycles(edges)
        self.assertEqual(cycle, ["dhcpfo.config", "dhcpfo.dhcp.pool", "dhcpfo.config"])
        self.assertEqual(describe(cycle, edges),
                         "dhcpfo.config (line 2) -> dhcpfo.dhcp.pool (line 1) -> "
                         "dhcpfo.config")

    def test_relative_imports_and_no_cycle(self):
        edges = self.write({
            "__init__.py": "",
            "a/__init__.py": "from . import b\n",
            "a/b.py": "from ..c import x\nimport os\n",
            "c.py": "x = 1\n",
        })
        self.assertEqual(edges["dhcpfo.a"], {"dhcpfo.a.b": 1})
        self.assertEqual(edges["dhcpfo.a.b"], {"dhcpfo.c": 1})
        self.assertEqual(cycles(edges), [])

    def test_finds_a_broken_rule(self):
        """What the failover coordinator once did: a function-level import of
        the DHCP pool module."""
        edges = self.write({
            "__init__.py": "",
            "addr.py": "",
            "dhcp/__init__.py": "",
            "dhcp/pool.py": "from dhcpfo.addr import ip_str\n",
            "failover/__init__.py": "",
            "failover/coordinator.py": "import attr\n\n\ndef f():\n"
                                       "    from dhcpfo.dhcp.pool import ip_int\n",
        })
        self.assertEqual(violations(edges), [
            "dhcpfo.failover.coordinator line 5 imports dhcpfo.dhcp.pool "
            "(dhcpfo.failover may import only base, dhcpfo.config, dhcpfo.leases)"])

    def test_rule(self):
        self.assertEqual(layer("dhcpfo.config.records"), "dhcpfo.config")
        self.assertEqual(layer("dhcpfo.plugins"), "plugin namespace")
        self.assertEqual(layer("dhcpfo.plugins.builtin_stores"), "dhcpfo.plugins")
        self.assertNotIn("dhcpfo.dhcp", RULE["dhcpfo.config"])
        self.assertNotIn("dhcpfo.failover", RULE["dhcpfo.dhcp"])
        self.assertNotIn("dhcpfo.dhcp", RULE["dhcpfo.failover"])
        self.assertRaises(KeyError, layer, "dhcpfo.lab")


class PackagingTests(SynchronousTestCase):
    """The installed package is the product only: the lab lives in tests/."""

    def test_no_lab_module(self):
        self.assertFalse(os.path.exists(os.path.join(PACKAGE, "lab.py")))
        self.assertFalse(os.path.exists(os.path.join(PACKAGE, "lab")))

    def test_no_module_imports_tests_or_bench(self):
        found = []
        for module, path in sorted(modules().items()):
            for line, name in imports(path, module, path.endswith("__init__.py")):
                if name.split(".")[0] in ("tests", "bench"):
                    found.append("%s line %d: %s" % (module, line, name))
        self.assertEqual(found, [])

    def test_setup_cfg_packages(self):
        """Every dhcpfo package is listed (setup.cfg lists them by hand) and
        nothing from tests/ or bench/ is."""
        parser = configparser.ConfigParser()
        parser.read(os.path.join(ROOT, "setup.cfg"))
        listed = parser["options"]["packages"].split()
        self.assertEqual([p for p in listed if p.split(".")[0] in ("tests", "bench")],
                         [])
        packages = sorted(m for m, path in modules().items()
                          if path.endswith("__init__.py"))
        self.assertEqual(sorted(p for p in listed if p.startswith("dhcpfo")),
                         packages)
        self.assertIn("twisted.plugins", listed)

    def test_version_has_one_source(self):
        import dhcpfo
        parser = configparser.ConfigParser()
        parser.read(os.path.join(ROOT, "setup.cfg"))
        self.assertEqual(parser["metadata"]["version"], "attr: dhcpfo.__version__")
        self.assertRegex(dhcpfo.__version__, r"^\d+\.\d+\.\d+")

    def test_wheel_holds_the_product_only(self):
        """The wheel built from this tree holds every dhcpfo module and the
        twistd plugin, and nothing of tests/ or bench/."""
        missing = [m for m in ("setuptools", "wheel", "pip")
                   if importlib.util.find_spec(m) is None]
        if missing:
            raise SkipTest("cannot build a wheel here without %s" % ", ".join(missing))
        source = self.mktemp()
        os.makedirs(os.path.join(source, "twisted"))
        for name in ("pyproject.toml", "setup.cfg", "README.md"):
            shutil.copy(os.path.join(ROOT, name), source)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache")
        shutil.copytree(PACKAGE, os.path.join(source, "dhcpfo"), ignore=ignore)
        shutil.copytree(os.path.join(ROOT, "twisted", "plugins"),
                        os.path.join(source, "twisted", "plugins"), ignore=ignore)
        out = os.path.abspath(self.mktemp())
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", out, source], check=True,
                       capture_output=True, timeout=300)
        [built] = glob.glob(os.path.join(out, "dhcpfo-*.whl"))
        names = zipfile.ZipFile(built).namelist()
        tops = {n.split("/")[0] for n in names}
        self.assertEqual({t for t in tops if not t.endswith(".dist-info")},
                         {"dhcpfo", "twisted"})
        self.assertEqual([n for n in names if n.startswith("twisted/")],
                         ["twisted/plugins/dhcpfo_plugin.py"])
        expected = sorted(os.path.relpath(path, ROOT).replace(os.sep, "/")
                          for path in modules().values())
        self.assertEqual(sorted(n for n in names if n.startswith("dhcpfo/")
                                and n.endswith(".py")), expected)
