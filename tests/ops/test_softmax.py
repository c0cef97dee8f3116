"""Forward tests of softmax and log-softmax over the feature channels (nodes.md §7)."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close

from ._common import FP16, FP32, run_graph, to_t, from_t

NODES = {"softmax": (mpsnn.MPSCNNSoftMaxNode, R.softmax), "log_softmax": (mpsnn.MPSCNNLogSoftMaxNode, R.log_softmax)}
SHAPES = [(1, 1, 1, 1), (1, 5, 7, 1), (2, 3, 4, 2), (1, 4, 3, 3), (3, 2, 5, 5), (2, 3, 3, 8), (1, 2, 7, 13),
          (2, 1, 1, 37)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", list(NODES))
@pytest.mark.parametrize("scale", [1.0, 10.0], ids=["unit", "wide"])
def test_softmax_forward(kind, shape, scale, device, rng):
    node, ref = NODES[kind]
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    y = run_graph(device, lambda s: node(s), [x])
    assert y.shape == x.shape
    assert_close(y, ref(x), "reduction", k=shape[3])
    if kind == "softmax":
        assert_close(y.sum(axis=-1), np.ones(shape[:3]), "reduction", k=shape[3])


@pytest.mark.parametrize("kind", list(NODES))
def test_softmax_single_channel(kind, device, rng):
    x = (rng.standard_normal((2, 3, 5, 1)) * 100).astype(np.float32)
    y = run_graph(device, lambda s: NODES[kind][0](s), [x])
    assert_close(y, np.ones_like(x) if kind == "softmax" else np.zeros_like(x), "exact")


@pytest.mark.parametrize("kind", list(NODES))
def test_softmax_shift_invariance_large_values(kind, device, rng):
    """Max subtraction: +1000 (and -1000) leaves the result unchanged and finite."""
    x = (rng.standard_normal((2, 3, 4, 6)) * 5).astype(np.float32)
    node, ref = NODES[kind]
    for shift in (1000.0, -1000.0, 80.0):
        # float32: float16 cannot hold x + 1000 to the precision the shift invariance is about
        y = run_graph(device, lambda s: node(s), [x + np.float32(shift)], fmt=FP32)
        assert np.all(np.isfinite(y))
        assert_close(y, ref(x + np.float32(shift)), "reduction", k=6)


def test_softmax_infinities(device):
    """-inf entries give 0 (log: -inf); a +inf entry gives NaN (inf - inf) (nodes.md §7.1)."""
    x = np.array([[[[0.0, -np.inf, 1.0, 2.0], [np.inf, 0.0, 1.0, 0.5]]]], np.float32)
    y = run_graph(device, lambda s: mpsnn.MPSCNNSoftMaxNode(s), [x])
    ref = R.softmax(x)
    assert y[0, 0, 0, 1] == 0
    assert_close(y[0, 0, 0], ref[0, 0, 0], "reduction", k=4)
    assert np.isnan(y[0, 0, 1, 0])
    ly = run_graph(device, lambda s: mpsnn.MPSCNNLogSoftMaxNode(s), [x])
    assert ly[0, 0, 0, 1] == -np.inf
    assert_close(ly[0, 0, 0, [0, 2, 3]], R.log_softmax(x)[0, 0, 0, [0, 2, 3]], "reduction", k=4)


@pytest.mark.parametrize("c", [3, 5, 8])
def test_softmax_vs_torch(c, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = (rng.standard_normal((2, 4, 3, c)) * 4).astype(np.float32)
    y = run_graph(device, lambda s: mpsnn.MPSCNNSoftMaxNode(s), [x])
    assert_close(y, from_t(F.softmax(to_t(x), dim=1)), "reduction", k=c)
    y = run_graph(device, lambda s: mpsnn.MPSCNNLogSoftMaxNode(s), [x])
    assert_close(y, from_t(F.log_softmax(to_t(x), dim=1)), "reduction", k=c)


def test_softmax_after_convolution(device, rng):
    """Softmax of a computed (temporary) image, as at the end of a classifier."""
    from conftest import conv_source
    x = rng.standard_normal((2, 1, 1, 9)).astype(np.float32)
    ds, w, b = conv_source(9, 7, 1, 1, rng)

    def make(src):
        fc = mpsnn.MPSCNNFullyConnectedNode(src, ds)
        return mpsnn.MPSCNNSoftMaxNode(fc.result_image)

    assert_close(run_graph(device, make, [x]), R.softmax(R.fully_connected(x, w, b)), "reduction", k=9)


@pytest.mark.parametrize("kind", list(NODES))
def test_softmax_float16_graph_format(kind, device, rng):
    x = (rng.standard_normal((2, 3, 5, 7)) * 3).astype(np.float32)
    node, ref = NODES[kind]
    y = run_graph(device, lambda s: node(s), [x], fmt=FP16)
    assert y.dtype == np.float16
    assert_close(y, ref(x), "reduction", "float16")


# --------------------------------------------------------------------------------------------
# bad parameters

@pytest.mark.parametrize("kind", list(NODES))
def test_softmax_source_none(kind):
    with pytest.raises(mpsnn.ShapeError, match=r"\[softmax\] source image 0 is None"):
        NODES[kind][0](None)


def test_softmax_source_not_contiguous(device, rng):
    g = mpsnn.MPSNNGraph(device, mpsnn.MPSCNNSoftMaxNode(mpsnn.MPSNNImageNode()).result_image)
    x = rng.standard_normal((1, 4, 6, 3)).astype(np.float32)[:, :, ::2]
    with pytest.raises(mpsnn.DTypeError, match=r"\[MPSNNGraph source image\] array is not C-contiguous"):
        g.run([x])
