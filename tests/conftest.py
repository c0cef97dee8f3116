"""Shared fixtures and the one tolerance table (STYLE.md §7)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import mpsnn  # noqa: E402

# Tests name a row, never a number. K is the reduction length. The column is the result's storage
# format: a float16 result (a float16 graph, the default on CUDA as in MPS) is compared with the
# float16 column unless the test names one. In float16 "exact" means exact up to the rounding of
# the float32 source and of the result to float16 (the result equals the float16 rounding of the
# reference for operations that commute with rounding: copies, max, ReLU), and "reduction" grows
# with sqrt(K) as the rounding errors of K float16 products add up.
# bfloat16 keeps 8 significant bits where float16 keeps 11: its column is float16's scaled by 2^3.
TOLERANCES = {
    "exact": {"float32": (0.0, 0.0), "float16": (2.0 ** -10, 2.0 ** -24), "bfloat16": (2.0 ** -7, 2.0 ** -126)},
    "elementwise": {"float32": (1e-5, 1e-6), "float16": (4e-3, 2e-3), "bfloat16": (3.2e-2, 1.6e-2)},
    "reduction": {"float32": (1e-4, 1e-5), "float16": (1e-2, 1e-2), "bfloat16": (8e-2, 8e-2)},
}
# Growth of the 16-bit "reduction" atol with sqrt(K) (see above).
_REDUCTION_GROWTH = {"float16": 2e-3, "bfloat16": 1.6e-2}


def result_dtype(actual) -> str:
    """The tolerance column of a result: "float16" for float16 values, "bfloat16" for bfloat16 ones
    (ml_dtypes' NumPy dtype or a torch tensor's), else "float32"."""
    name = str(getattr(actual, "dtype", np.asarray(actual).dtype)).removeprefix("torch.")
    return name if name in ("float16", "bfloat16") else "float32"


def assert_close(actual, expected, row: str, dtype: str | None = None, k: int = 1):
    dtype = dtype or result_dtype(actual)
    rtol, atol = TOLERANCES[row][dtype]
    if row == "reduction":
        atol = (atol * float(np.sqrt(max(k, 1))) if dtype == "float32"
                else max(atol, _REDUCTION_GROWTH[dtype] * float(np.sqrt(max(k, 1)))))
    if hasattr(actual, "detach"):  # a torch tensor
        actual = actual.detach().float().cpu().numpy()
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=rtol, atol=atol)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _test_devices():
    """The devices the `device` fixture runs on: every device of this build (the CPU, CUDA GPUs
    when the build has the CUDA backend and the machine a GPU, the Metal GPUs of a Mac: the Metal
    backend's devices are listed first there), or MPSNN_TEST_DEVICES="cpu,cuda:0" / "metal:0"."""
    names = os.environ.get("MPSNN_TEST_DEVICES")
    if names:
        return [mpsnn.MTLDevice(n.strip()) for n in names.split(",") if n.strip()]
    return list(mpsnn.MTLCopyAllDevices())


TEST_DEVICES = _test_devices()


@pytest.fixture(scope="session", params=TEST_DEVICES, ids=[d.registry_id for d in TEST_DEVICES])
def device(request):
    return request.param


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a GPU device, a node kind that backend does not run yet raises UnsupportedError naming the
    node: that test is reported as skipped (with the message), never as passed. The CPU runs
    every node, so there the error stays a failure."""
    outcome = yield
    report = outcome.get_result()
    dev = getattr(item, "callspec", None) and item.callspec.params.get("device")
    if (report.when == "call" and call.excinfo is not None and dev is not None and dev.backend != "cpu"
            and call.excinfo.errisinstance(mpsnn.UnsupportedError)):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"not on {dev.registry_id} yet: {call.excinfo.value}")


# MPSNN_TEST_FORMAT=float32 (or float16) runs the graphs that make_graph builds without a format of
# their own in that format on GPU devices, instead of the device's default (float16 on CUDA):
# tools/gpu_check.sh runs the CUDA suite both ways.
_TEST_FORMAT = os.environ.get("MPSNN_TEST_FORMAT")


def make_graph(device, make, n_inputs, fuse=True, fmt=None):
    """Builds image nodes, calls make(*nodes) -> filter node and returns its MPSNNGraph, in the
    device's default format unless `fmt` (or MPSNN_TEST_FORMAT, on GPUs) names one. Temporary
    memory and the result are poisoned (NaN) before each run, so stale reads and elements a kernel
    leaves unwritten show up as NaN (on Metal only the result: MPS owns its temporaries)."""
    nodes = [mpsnn.MPSNNImageNode() for _ in range(n_inputs)]
    f = make(*nodes)
    g = mpsnn.MPSNNGraph(device, f.result_image)
    g.fusion_enabled = fuse
    g.poison_temporaries = True
    if fmt is None and _TEST_FORMAT and device.backend != "cpu":
        fmt = getattr(mpsnn.MPSImageFeatureChannelFormat, _TEST_FORMAT)
    if fmt is not None:
        g.format = fmt
    return g


def run_node(device, make, inputs, fuse=True):
    """Builds image nodes for `inputs`, calls make(*nodes) -> filter node, runs it, returns numpy."""
    g = make_graph(device, make, len(inputs), fuse)
    return g.run([np.ascontiguousarray(x, np.float32) for x in inputs]).numpy()


def conv_source(cin, cout, kh, kw, rng, stride=(1, 1), dilation=(1, 1), groups=1, bias=True, neuron=None):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=kw, kernel_height=kh, input_feature_channels=cin,
                                          output_feature_channels=cout)
    d.stride_in_pixels_y, d.stride_in_pixels_x = stride
    d.dilation_rate_y, d.dilation_rate_x = dilation
    d.groups = groups
    if neuron is not None:
        d.fused_neuron_descriptor = neuron
    w = rng.standard_normal((cout, kh, kw, cin // groups)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    return mpsnn.ArrayConvolutionDataSource(d, w, b), w, b
