"""Property-based fuzzing of MPSNNGraph (issue 9): random valid graphs against the float64
references, non-finite and resized inputs, invalid graphs and inputs that must raise a typed
error naming the node, and training graphs (training_graph() of a loss on a random differentiable
graph: gradients against finite differences of the float64 reference; invalid training cases). The
`_long` variants are the opt-in long run (tests/README.md)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from .profiles import ci_settings, long_settings
from .invalid import invalid_cases
from .properties import check_case, check_nonfinite_inputs, check_resized_inputs, check_valid_spec
from .strategies import LONG, conditioned, graph_specs, nonfinite_inputs, resized_inputs
from .training import TRAIN_LONG, Kink, check_training_spec, directional, training_specs
from .training_invalid import invalid_training_cases

# Shares of MPSNN_FUZZ_EXAMPLES in the long run.
SHARES = {"valid": 0.45, "nonfinite": 0.08, "resized": 0.07, "invalid": 0.2, "training": 0.16,
          "training_invalid": 0.04}


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


@ci_settings(100)
@given(ts=training_specs())
def test_training_graphs(ts, device):
    check_training_spec(ts, device)


@ci_settings(50)
@given(case=invalid_training_cases())
def test_invalid_training_raises_typed_errors(case, device):
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


@pytest.mark.long
@long_settings(SHARES["training"])
@given(ts=training_specs(TRAIN_LONG))
def test_training_graphs_long(ts, device):
    check_training_spec(ts, device)


@pytest.mark.long
@long_settings(SHARES["training_invalid"])
@given(case=invalid_training_cases())
def test_invalid_training_raises_typed_errors_long(case, device):
    _invalid(case, device)


def test_directional_difference_rejects_kinks():
    """The kink rule of training.directional: along f(t) = 2e^t + t²/2 + Δs·max(0, t − δ) a kink
    anywhere in [−1.2h, 1.2h] is either rejected or biases the derivative by less than the
    threshold (at δ = 0 the float32 run may take either side's slope)."""
    h, tau = 1e-4, 1e-3
    worst, rejected = 0.0, 0
    for ds in (1e-3, -3e-3, 1e-2, 0.3):
        for delta in np.linspace(-1.2, 1.2, 481) * h:
            def f(t, perturb, ds=ds, delta=delta):
                return 2 * np.exp(t) + 0.5 * t * t + ds * max(0.0, t - delta)
            try:
                fd, _, _, _ = directional(f, lambda c: tau, h)
            except Kink:
                rejected += 1
                continue
            slopes = [2.0 + ds] if delta < 0 else [2.0] if delta > 0 else [2.0, 2.0 + ds]
            worst = max(worst, min(abs(fd - s) for s in slopes) / tau)
    assert worst < 0.85, worst
    assert 0 < rejected < 4 * 481
