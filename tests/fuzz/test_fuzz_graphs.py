"""Property-based fuzzing of MPSNNGraph (issue 9): random valid graphs against the float64
references, non-finite and resized inputs, and invalid graphs and inputs that must raise a typed
error naming the node. The `_long` variants are the opt-in long run (tests/README.md)."""

from __future__ import annotations

import pytest
from hypothesis import given

from .profiles import ci_settings, long_settings
from .invalid import invalid_cases
from .properties import check_case, check_nonfinite_inputs, check_resized_inputs, check_valid_spec
from .strategies import LONG, conditioned, graph_specs, nonfinite_inputs, resized_inputs

# Shares of MPSNN_FUZZ_EXAMPLES in the long run.
SHARES = {"valid": 0.55, "nonfinite": 0.1, "resized": 0.1, "invalid": 0.25}


def _valid(spec, device):
    check_valid_spec(spec, device)


def _nonfinite(case, device):
    check_nonfinite_inputs(case[0], device, *case[1:])


def _resized(case, device):
    check_resized_inputs(case[0], device, case[1], conditioned)


def _invalid(case, device):
    check_case(case, device)


@ci_settings(250)
@given(spec=graph_specs())
def test_valid_graphs(spec, device):
    _valid(spec, device)


@ci_settings(60)
@given(case=nonfinite_inputs())
def test_nonfinite_inputs_propagate(case, device):
    _nonfinite(case, device)


@ci_settings(60)
@given(case=resized_inputs())
def test_resized_inputs(case, device):
    _resized(case, device)


@ci_settings(180)
@given(case=invalid_cases())
def test_invalid_graphs_raise_typed_errors(case, device):
    _invalid(case, device)


@pytest.mark.long
@long_settings(SHARES["valid"])
@given(spec=graph_specs(LONG))
def test_valid_graphs_long(spec, device):
    _valid(spec, device)


@pytest.mark.long
@long_settings(SHARES["nonfinite"])
@given(case=nonfinite_inputs(LONG))
def test_nonfinite_inputs_propagate_long(case, device):
    _nonfinite(case, device)


@pytest.mark.long
@long_settings(SHARES["resized"])
@given(case=resized_inputs(LONG))
def test_resized_inputs_long(case, device):
    _resized(case, device)


@pytest.mark.long
@long_settings(SHARES["invalid"])
@given(case=invalid_cases())
def test_invalid_graphs_raise_typed_errors_long(case, device):
    _invalid(case, device)
