"""minping (民评): a telephone survey system for a third-party polling center.

The core package: the Flask app factory, settings, the database (models and
migrations), the case life cycle shared by IVR and CATI, and the ``minping`` CLI.

Importing ``minping`` (or a light module such as ``minping.errors``) does not
import Flask or SQLAlchemy: ``minping.create_app`` is looked up on first use.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("minping")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from minping.app import create_app

        return create_app
    raise AttributeError(f"module 'minping' has no attribute {name!r}")
