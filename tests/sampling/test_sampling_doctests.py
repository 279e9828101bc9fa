"""The examples in the sampling docstrings run and give what they show."""

from __future__ import annotations

import doctest

import pytest

import sampling.allocation
import sampling.balance


@pytest.mark.parametrize("module", [sampling.allocation, sampling.balance])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
