"""Run the docstring examples of the functional metrics and metric classes (the repo's pytest does not use
--doctest-modules, so the examples are executed here and cannot rot)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "bench.functional.occm",
    "bench.functional.inception",
    "bench.functional.csd",
    "bench.functional.cids",
    "bench.functional.matching",
    "bench.functional.copy_paste",
    "bench.functional.alignment",
    "bench.functional.aesthetics",
    "bench.functional.aggregate",
    "bench.metrics.csd",
    "bench.metrics.cids",
    "bench.metrics.occm",
    "bench.metrics.alignment",
    "bench.metrics.inception",
    "bench.metrics.aesthetics",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
