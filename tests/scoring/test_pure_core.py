"""The scoring core imports only the standard library, numpy, scipy and itself.

Checked in a fresh interpreter: none of the application's packages (minping, its
database and web stack, the other cores) is loaded by importing the core.

``scoring.report`` (HTML through jinja2), ``scoring.export`` (SPSS/Stata
through pyreadstat) and ``scoring.inputs`` (file readers) are output and input
layers around the core and are not checked here.
"""

from __future__ import annotations

import subprocess
import sys

CORE = ["scoring.aapor", "scoring.assigned", "scoring.composite", "scoring.dispositions",
        "scoring.interviewers", "scoring.modes",
        "scoring.errors", "scoring.estimators", "scoring.intervals", "scoring.scale",
        "scoring.sparse", "scoring.twilio_status", "scoring.units", "scoring.weighting"]

PROGRAM = """
import sys
for name in {core!r}:
    __import__(name)
forbidden = {{"minping", "sampling", "cati", "ivr", "sqlalchemy", "alembic", "flask", "werkzeug",
             "jinja2", "markupsafe", "click", "twilio", "pandas", "pyreadstat"}}
print(" ".join(sorted({{m.split(".")[0] for m in sys.modules}} & forbidden)))
"""


def test_scoring_core_imports_only_numpy_scipy_and_stdlib():
    out = subprocess.run([sys.executable, "-c", PROGRAM.format(core=CORE)], capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == []
