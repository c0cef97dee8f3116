"""Hypothesis settings of the fuzz tests: CI (default) and the long run (MPSNN_FUZZ_EXAMPLES=N)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG_TOTAL = int(os.environ.get("MPSNN_FUZZ_EXAMPLES", "0") or 0)
_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def ci_settings(examples):
    """A fixed set of examples (derandomized: the same graphs on every CI run)."""
    return settings(max_examples=examples, derandomize=True, **_COMMON)


def long_settings(share):
    """`share` of MPSNN_FUZZ_EXAMPLES, randomly drawn (a failure prints its reproduction blob)."""
    return settings(max_examples=max(1, int(LONG_TOTAL * share)), derandomize=False, **_COMMON)
