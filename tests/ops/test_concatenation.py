"""Forward tests of channel concatenation (nodes.md §12.1): 4-aligned slots, zero gap channels, the last
source unpadded, sources that are graph inputs or computed images."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close, conv_source

from ._common import FP16, make_graph, run_graph

CASES = [
    ((1, 1, 1), (3,)),
    ((1, 5, 7), (5, 8, 3, 2)),
    ((2, 3, 4), (4, 4)),
    ((2, 4, 3), (3, 3, 3)),
    ((3, 2, 5), (1, 7)),
    ((1, 3, 3), (8, 1, 4, 6, 2)),
    ((2, 6, 1), (2, 13)),
]


def _concat(*srcs):
    return mpsnn.MPSNNConcatenationNode(sources=list(srcs))


@pytest.mark.parametrize("nhw,channels", CASES, ids=str)
def test_concatenation_of_inputs(nhw, channels, device, rng):
    xs = [rng.standard_normal(nhw + (c,)).astype(np.float32) for c in channels]
    y = run_graph(device, _concat, xs)
    offs, c_out = R.concat_offsets(channels)
    assert y.shape == nhw + (c_out,)
    assert_close(y, R.concatenate(xs), "exact")


@pytest.mark.parametrize("nhw,channels", CASES[1:], ids=str)
def test_concatenation_of_computed_images_gaps_are_zero(nhw, channels, device, rng):
    """Sources produced in the graph are written into their slots; gap channels stay 0 even with
    temporary memory poisoned with NaN before the run."""
    x = rng.standard_normal(nhw + (3,)).astype(np.float32)
    convs = [conv_source(3, c, 3, 3, rng) for c in channels]

    def make(src):
        outs = [mpsnn.MPSCNNConvolutionNode(src, ds).result_image for ds, _, _ in convs]
        return _concat(*outs)

    g = make_graph(device, make, 1)
    g.poison_temporaries = True
    y = np.array(g.run([x]).numpy())
    ref = R.concatenate([R.conv2d(x, w, b) for _, w, b in convs])
    assert_close(y, ref, "reduction", k=27)
    assert not np.isnan(y).any()


def test_concatenation_then_convolution_and_relu(device, rng):
    """concat -> conv -> relu: the consumer reads the 4-aligned layout (gaps included as zeros)."""
    a = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    b = rng.standard_normal((2, 5, 4, 2)).astype(np.float32)
    cat_c = R.concat_offsets([3, 2])[1]                       # 4 + 2 = 6
    ds, w, bias = conv_source(cat_c, 5, 3, 3, rng)

    def make(p, q):
        r = mpsnn.MPSCNNNeuronReLUNode(p)
        cat = _concat(r.result_image, q)
        conv = mpsnn.MPSCNNConvolutionNode(cat.result_image, ds)
        return mpsnn.MPSCNNNeuronReLUNode(conv.result_image)

    ref = R.neuron(R.conv2d(R.concatenate([R.neuron(a, 'relu'), b]), w, bias), 'relu')
    for fuse in (True, False):
        assert_close(run_graph(device, make, [a, b], fuse=fuse), ref, "reduction", k=9 * cat_c)


def test_concatenation_same_source_twice(device, rng):
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    y = run_graph(device, lambda s: _concat(s, s, s), [x])
    assert_close(y, R.concatenate([x, x, x]), "exact")


def test_concatenation_source_also_read_elsewhere(device, rng):
    """A computed image that is both concatenated and added keeps its value in both uses."""
    x = rng.standard_normal((1, 4, 4, 4)).astype(np.float32)
    ds, w, b = conv_source(4, 4, 3, 3, rng)

    def make(src):
        conv = mpsnn.MPSCNNConvolutionNode(src, ds)
        cat = _concat(conv.result_image, src)
        add = mpsnn.MPSNNAdditionNode(left_source=conv.result_image, right_source=src)
        return _concat(cat.result_image, add.result_image)

    c = R.conv2d(x, w, b)
    ref = R.concatenate([R.concatenate([c, x]), c + x])
    for fuse in (True, False):
        assert_close(run_graph(device, make, [x], fuse=fuse), ref, "reduction", k=36)


def test_concatenation_float16_graph_format(device, rng):
    xs = [rng.standard_normal((2, 3, 5, c)).astype(np.float32) for c in (5, 2, 3)]
    y = run_graph(device, _concat, xs, fmt=FP16)
    assert y.dtype == np.float16
    assert_close(y, R.concatenate(xs), "elementwise", "float16")


# --------------------------------------------------------------------------------------------
# bad parameters

def test_concatenation_size_mismatch(device, rng):
    a = rng.standard_normal((1, 5, 5, 4)).astype(np.float32)
    b = rng.standard_normal((1, 5, 4, 4)).astype(np.float32)
    with pytest.raises(mpsnn.ShapeError,
                       match=r"\[concatenation\] source 1 is 4x5 with 1 images; expected 5x5 with 1 images"):
        run_graph(device, _concat, [a, b])


def test_concatenation_batch_mismatch(device, rng):
    a = rng.standard_normal((2, 3, 3, 4)).astype(np.float32)
    b = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)
    with pytest.raises(mpsnn.ShapeError,
                       match=r"\[concatenation\] source 1 has 1 images, source 0 has 2; expected equal batch sizes"):
        run_graph(device, _concat, [a, b])


def test_concatenation_no_sources():
    with pytest.raises(mpsnn.ShapeError, match=r"\[concatenation\] got 0 source image\(s\); expected at least 1"):
        mpsnn.MPSNNConcatenationNode(sources=[])


def test_concatenation_none_source():
    with pytest.raises(mpsnn.ShapeError, match=r"\[concatenation\] source image 1 is None"):
        mpsnn.MPSNNConcatenationNode(sources=[mpsnn.MPSNNImageNode(), None])
