"""Moved: the CSV/XLSX reader is :mod:`minping.tables` (reading files is the application's job).

A transitional alias, loaded lazily so that importing it brings in nothing:
``scoring.inputs`` still reads its tables through ``sampling.tables`` until
its reader moves to the application too.  Delete this module then.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    return getattr(importlib.import_module("minping.tables"), name)
