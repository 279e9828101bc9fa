"""minping (民评): a telephone survey system for a third-party polling center.

The core package: the Flask app factory, settings, the database (models and
migrations), the case life cycle shared by IVR and CATI, and the ``minping`` CLI.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("minping")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

from minping.app import create_app  # noqa: E402

__all__ = ["__version__", "create_app"]
