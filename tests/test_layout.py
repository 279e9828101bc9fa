"""The layout's contracts: pure cores, no import circles, no Flask behind ``import minping``.

``sampling`` and ``scoring`` are pure (the design's rule): importing any of their
modules pulls in only the standard library, numpy, scipy and their own modules
(``scoring`` still also the pure error vocabulary ``minping.errors``, stdlib only;
the light package ``minping/__init__`` comes with it).  Each check runs in a fresh interpreter whose
import system refuses the web app and the database (a meta-path finder), so a
forbidden import fails loudly with the name of the module that asked for it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Third-party packages a pure core may import at module level.
SCIENTIFIC = {"numpy", "scipy"}
#: Edges of a core named one by one: none.  Reading files (frames, phone numbers, the
#: scores' inputs), the HTML report and the exports are the application's: minping.tables,
#: minping.phones, minping.frame_file, minping.input_files, minping.report, minping.export.
EDGES = {"sampling": set(), "scoring": set()}
#: minping modules a core may use: none (their errors are sampling.errors, scoring.errors).
SHARED = {"sampling": [], "scoring": []}
#: What a pure module must never bring in.
FORBIDDEN = ["minping", "flask", "werkzeug", "sqlalchemy", "alembic", "twilio", "ivr", "cati",
             "psycopg", "gunicorn"]

PROBE = r"""
import importlib, json, pkgutil, sys
FORBIDDEN, SHARED, package = json.loads(sys.argv[1])

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in FORBIDDEN and name not in SHARED:
            raise ImportError(f"forbidden import of {name}")
        return None

science = set(sys.modules)
import numpy, scipy.linalg, scipy.optimize, scipy.sparse, scipy.special, scipy.stats  # noqa
science = {m.partition(".")[0] for m in set(sys.modules) - science}
sys.meta_path.insert(0, Refuse())
before = set(sys.modules)
root = importlib.import_module(package)
errors = {}
for name in [package] + [i.name for i in pkgutil.walk_packages(root.__path__, package + ".")]:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        errors[name] = str(exc)
loaded = {m.partition(".")[0] for m in set(sys.modules) - before}
print(json.dumps({"errors": errors, "loaded": sorted(loaded), "science": sorted(science)}))
"""


@pytest.mark.parametrize("package", ["sampling", "scoring"])
def test_pure_core_imports_only_stdlib_numpy_scipy_and_itself(package):
    run = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([FORBIDDEN, SHARED[package], package])],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}, f"{package}: {result['errors']}"
    allowed = (set(sys.stdlib_module_names) | SCIENTIFIC | set(result["science"])
               | {package} | {m.partition(".")[0] for m in SHARED[package]}
               | EDGES[package])
    extra = {m for m in result["loaded"] if m not in allowed and not m.startswith("_")}
    assert not extra, f"{package} imports {sorted(extra)} (allowed: stdlib, numpy, scipy)"


#: Cores whose every import statement, deferred ones inside functions included, is
#: checked in the source (the probe above sees only what importing loads).
SOURCE_CHECKED = ["scoring"]


@pytest.mark.parametrize("package", SOURCE_CHECKED)
def test_pure_core_source_names_only_stdlib_numpy_scipy_and_itself(package):
    allowed = set(sys.stdlib_module_names) | SCIENTIFIC | {package}
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                      if n.partition(".")[0] not in allowed]
    assert found == [], "\n".join(found)


def test_import_minping_errors_brings_no_flask_and_no_sqlalchemy():
    code = ("import sys, minping.errors, minping; "
            "print(sorted(m for m in ('flask', 'sqlalchemy', 'minping.app') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    assert run.stdout.strip() == "[]"


def test_blueprints_and_commands_do_not_import_the_factory_or_the_cli():
    """The request helpers live in minping.db; the shared CLI options in minping.commands.options."""
    code = ("import sys, cati.views, cati.auth, ivr.webhooks, minping.commands.dial, "
            "minping.commands.sample, minping.commands.score, minping.commands.report; "
            "print(sorted(m for m in ('minping.app', 'minping.cli') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    assert run.stdout.strip() == "[]"
