"""Fuzz run sizes. By default (CI) each fuzz test runs a fixed, derandomized few dozen to a hundred
examples. The long run is opt-in: MPSNN_FUZZ_EXAMPLES=N runs the tests marked `long`, which share
N examples between them (see tests/README.md); without it they are skipped."""

from __future__ import annotations

import pytest

from .profiles import LONG_TOTAL


def pytest_collection_modifyitems(config, items):
    if LONG_TOTAL:
        return
    skip = pytest.mark.skip(reason="long fuzz run: set MPSNN_FUZZ_EXAMPLES=N (tests/README.md)")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)
