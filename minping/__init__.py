"""minping (民评): a telephone survey system for a third-party polling center.

The core package: the Flask app factory, settings, the database (models and
migrations), the case life cycle shared by IVR and CATI, and the ``minping`` CLI.

Importing ``minping`` (or a light module such as ``minping.errors``) does not
import Flask, SQLAlchemy nor ``importlib.metadata``: ``minping.create_app`` and
``minping.__version__`` are looked up on first use.
"""

__all__ = ["__version__", "create_app"]


def __getattr__(name: str):
    if name == "__version__":  # looked up on first use: importlib.metadata costs ~40 ms
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("minping")
        except PackageNotFoundError:  # running from a source tree that was not installed
            value = "0.0.0+source"
        globals()["__version__"] = value
        return value
    if name == "create_app":
        from minping.app import create_app

        return create_app
    raise AttributeError(f"module 'minping' has no attribute {name!r}")
