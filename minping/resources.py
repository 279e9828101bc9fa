"""Files shipped inside the package, found with :mod:`importlib.resources`.

Nothing here is looked up relative to a source checkout, so an installed wheel
finds the same files as a development tree:

``minping/data/survey.toml``
    The campaign template: the default configuration and what ``minping init``
    copies into a new campaign folder.
``minping/data/sample-inputs/``
    The synthetic assessment ballots, online votes and inspection records the
    demo imports.
``minping/migrations/``
    The Alembic migrations ``minping db upgrade`` runs.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["CAMPAIGN_TEMPLATE", "MIGRATIONS", "SAMPLE_INPUTS", "package_path"]


def package_path(*parts: str) -> Path:
    """The file system path of a file or folder shipped in the ``minping`` package."""
    resource = files("minping").joinpath(*parts)
    # The wheel installs unpacked, so every resource is a real file; say so if not.
    path = Path(str(resource))
    if not path.exists():
        raise FileNotFoundError(f"minping package data missing: {'/'.join(parts)} "
                                f"(looked in {path}); reinstall minping")
    return path


CAMPAIGN_TEMPLATE = package_path("data", "survey.toml")
SAMPLE_INPUTS = package_path("data", "sample-inputs")
MIGRATIONS = package_path("migrations")
