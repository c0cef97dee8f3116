"""One reference check per forward node class (odd sizes, batch 2, channels not divisible by 4);
the per-family tables with every padding method live in tests/ops/."""

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close, conv_source, run_node

X = (2, 7, 9, 6)


def geo(shape, k, s=(1, 1), d=(1, 1), method=R.SIZE_SAME):
    return R.window_geometry(shape[1:3], k, s, d, method)


def neuron_case(cls, kind, **params):
    return (cls.__name__, lambda n, rng: cls(source=n, **params), lambda x: R.neuron(x, kind, **params), "elementwise")


def conv_case(rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    ds, w, b = conv_source(6, 5, 3, 3, rng, stride=(2, 1))
    g = geo(X, (3, 3), (2, 1))
    return ("MPSCNNConvolutionNode", lambda n, r: mpsnn.MPSCNNConvolutionNode(source=n, weights=ds),
            lambda x: R.conv2d(x, w, b, stride=(2, 1), pad=g["pad"], out_hw=g["out_hw"]), "reduction")


def fc_case():
    rng = np.random.default_rng(1)
    ds, w, b = conv_source(6, 11, 7, 9, rng)
    return ("MPSCNNFullyConnectedNode", lambda n, r: mpsnn.MPSCNNFullyConnectedNode(source=n, weights=ds),
            lambda x: R.fully_connected(x, w, b), "reduction")


def transpose_case():
    rng = np.random.default_rng(2)
    ds, w, b = conv_source(6, 5, 3, 3, rng, stride=(2, 2))
    D_h, P_h, _ = R.window_axis(7, 3, 2, 1, R.SIZE_SAME, "y", reverse=True)
    D_w, P_w, _ = R.window_axis(9, 3, 2, 1, R.SIZE_SAME, "x", reverse=True)
    return ("MPSCNNConvolutionTransposeNode",
            lambda n, r: mpsnn.MPSCNNConvolutionTransposeNode(source=n, convolution_gradient_state=None, weights=ds),
            lambda x: R.conv_transpose2d(x, w, b, stride=(2, 2), pad_z=(P_h, P_w), out_hw=(D_h, D_w)), "reduction")


def pool_case(cls, mode):
    g = geo(X, (3, 3), (2, 2))
    return (cls.__name__, lambda n, r: cls(source=n, filter_size=3, stride=2),
            lambda x: R.pool2d(x, mode, (3, 3), (2, 2), pad=g["pad"], out_hw=g["out_hw"], pad_after=g["pad_after"]),
            "reduction")


def bn_ds(c=6):
    r = np.random.default_rng(3)
    return (r.uniform(0.5, 1.5, c), r.standard_normal(c), r.standard_normal(c), r.uniform(0.5, 2, c))


GAMMA, BETA, MEAN, VAR = bn_ds()

CASES = [
    conv_case(), fc_case(), transpose_case(),
    pool_case(mpsnn.MPSCNNPoolingMaxNode, "max"),
    pool_case(mpsnn.MPSCNNPoolingAverageNode, "average"),
    pool_case(mpsnn.MPSCNNPoolingL2NormNode, "l2"),
    ("MPSCNNDilatedPoolingMaxNode",
     lambda n, r: mpsnn.MPSCNNDilatedPoolingMaxNode(n, 2, 2, 1, 1, 2, 2),
     lambda x: R.pool2d(x, "max", (2, 2), (1, 1), dilation_hw=(2, 2), **{k: v for k, v in (
         ("pad", geo(X, (2, 2), d=(2, 2))["pad"]), ("out_hw", geo(X, (2, 2), d=(2, 2))["out_hw"]),
         ("pad_after", geo(X, (2, 2), d=(2, 2))["pad_after"]))}), "exact"),
    neuron_case(mpsnn.MPSCNNNeuronReLUNode, "relu", a=0.1),
    neuron_case(mpsnn.MPSCNNNeuronSigmoidNode, "sigmoid"),
    neuron_case(mpsnn.MPSCNNNeuronTanHNode, "tanh", a=1.5, b=0.5),
    neuron_case(mpsnn.MPSCNNNeuronLinearNode, "linear", a=2.0, b=-1.0),
    neuron_case(mpsnn.MPSCNNNeuronAbsoluteNode, "absolute"),
    neuron_case(mpsnn.MPSCNNNeuronELUNode, "elu", a=0.7),
    neuron_case(mpsnn.MPSCNNNeuronHardSigmoidNode, "hard_sigmoid", a=0.2, b=0.5),
    neuron_case(mpsnn.MPSCNNNeuronReLUNNode, "relu_n", a=0.0, b=1.0),
    neuron_case(mpsnn.MPSCNNNeuronSoftPlusNode, "soft_plus", a=0.5, b=2.0),
    neuron_case(mpsnn.MPSCNNNeuronSoftSignNode, "soft_sign"),
    neuron_case(mpsnn.MPSCNNNeuronExponentialNode, "exponential", a=0.5, b=0.1, c=2.0),
    ("MPSCNNNeuronLogarithmNode", lambda n, r: mpsnn.MPSCNNNeuronLogarithmNode(source=n, a=1.0, b=10.0, c=-1.0),
     lambda x: R.neuron(x, "logarithm", a=1.0, b=10.0, c=-1.0), "elementwise"),
    ("MPSCNNNeuronPowerNode", lambda n, r: mpsnn.MPSCNNNeuronPowerNode(source=n, a=1.0, b=0.0, c=2.0),
     lambda x: R.neuron(x, "power", a=1.0, b=0.0, c=2.0), "elementwise"),
    ("MPSCNNNeuronPReLUNode", lambda n, r: mpsnn.MPSCNNNeuronPReLUNode(source=n, a_data=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
     lambda x: R.neuron(x, "prelu", data=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), "elementwise"),
    ("MPSCNNSoftMaxNode", lambda n, r: mpsnn.MPSCNNSoftMaxNode(source=n), R.softmax, "elementwise"),
    ("MPSCNNLogSoftMaxNode", lambda n, r: mpsnn.MPSCNNLogSoftMaxNode(source=n), R.log_softmax, "reduction"),
    ("MPSCNNBatchNormalizationNode",
     lambda n, r: mpsnn.MPSCNNBatchNormalizationNode(source=n, data_source=mpsnn.ArrayBatchNormalizationDataSource(
         GAMMA, BETA, MEAN, VAR, epsilon=1e-5)),
     lambda x: R.batch_norm_inference(x, MEAN, VAR, GAMMA, BETA, 1e-5), "reduction"),
    ("MPSCNNInstanceNormalizationNode",
     lambda n, r: mpsnn.MPSCNNInstanceNormalizationNode(source=n, data_source=mpsnn.ArrayInstanceNormalizationDataSource(
         GAMMA, BETA, epsilon=1e-5)),
     lambda x: R.instance_norm(x, GAMMA, BETA, 1e-5), "reduction"),
    ("MPSCNNCrossChannelNormalizationNode", lambda n, r: mpsnn.MPSCNNCrossChannelNormalizationNode(source=n, kernel_size=3),
     lambda x: R.cross_channel_norm(x, 3, 1, 5, 1), "reduction"),
    ("MPSCNNSpatialNormalizationNode", lambda n, r: mpsnn.MPSCNNSpatialNormalizationNode(source=n, kernel_size=3),
     lambda x: R.spatial_norm(x, 3, 3, 1, 5, 1), "reduction"),
    ("MPSCNNLocalContrastNormalizationNode",
     lambda n, r: mpsnn.MPSCNNLocalContrastNormalizationNode(source=n, kernel_size=3),
     lambda x: R.local_contrast_norm(x, 3, 3, 1, 0.5, 1 / 1024, 0, 1, 1), "reduction"),
    ("MPSCNNDropoutNode", lambda n, r: mpsnn.MPSCNNDropoutNode(source=n, keep_probability=0.5), R.dropout_inference,
     "exact"),
    ("MPSCNNUpsamplingNearestNode", lambda n, r: mpsnn.MPSCNNUpsamplingNearestNode(n, 2, 3),
     lambda x: R.upsample_nearest(x, 2, 3), "exact"),
    ("MPSCNNUpsamplingBilinearNode", lambda n, r: mpsnn.MPSCNNUpsamplingBilinearNode(n, 3, 2, align_corners=False),
     lambda x: R.upsample_bilinear(x, 3, 2, False), "elementwise"),
    ("MPSNNBilinearScaleNode", lambda n, r: mpsnn.MPSNNBilinearScaleNode(source=n, output_size=(13, 5)),
     lambda x: R.bilinear_scale(x, 13, 5), "elementwise"),
    ("MPSNNLanczosScaleNode", lambda n, r: mpsnn.MPSNNLanczosScaleNode(source=n, output_size=(5, 11)),
     lambda x: R.lanczos_scale(x, 5, 11), "reduction"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("fuse", [True, False])
def test_forward_matches_reference(device, rng, case, fuse):
    name, make, ref, row = case
    x = rng.standard_normal(X).astype(np.float32)
    y = run_node(device, lambda n: make(n, rng), [x], fuse=fuse)
    assert_close(y, ref(x.astype(np.float64)), row, k=54)


@pytest.mark.parametrize("cls, ref", [(mpsnn.MPSNNAdditionNode, np.add), (mpsnn.MPSNNSubtractionNode, np.subtract),
                                      (mpsnn.MPSNNMultiplicationNode, np.multiply), (mpsnn.MPSNNDivisionNode, np.divide)])
def test_arithmetic(device, rng, cls, ref):
    a, b = rng.standard_normal((2,) + X).astype(np.float32)
    y = run_node(device, lambda p, q: cls(left_source=p, right_source=q), [a, b])
    assert_close(y, ref(a.astype(np.float64), b), "elementwise")


def test_arithmetic_broadcast_scales_and_clamp(device, rng):
    a = rng.standard_normal(X).astype(np.float32)
    b = rng.standard_normal((2, 1, 1, 6)).astype(np.float32)

    def make(p, q):
        n = mpsnn.MPSNNMultiplicationNode(sources=[p, q])
        n.secondary_stride_in_pixels_x = 0
        n.secondary_stride_in_pixels_y = 0
        n.primary_scale, n.secondary_scale, n.bias = 2.0, 0.5, 0.25
        n.minimum_value, n.maximum_value = -0.5, 0.75
        return n

    y = run_node(device, make, [a, b])
    expected = R.binary_arithmetic("multiply", a, b, 2.0, 0.5, 0.25, secondary_strides=(1, 0, 0),
                                   minimum_value=-0.5, maximum_value=0.75)
    assert_close(y, expected, "elementwise")


def test_concatenation_aligns_slots(device, rng):
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = rng.standard_normal((2, 3, 4, 3)).astype(np.float32)
    y = run_node(device, lambda p, q: mpsnn.MPSNNConcatenationNode(sources=[p, q]), [a, b])
    assert y.shape == (2, 3, 4, 11)
    np.testing.assert_array_equal(y, R.concatenate([a, b]))


def test_binary_convolution(device, rng):
    cin, cout = 37, 5
    words = (cin + 31) // 32
    bits = rng.integers(0, 2**32, (cout, 3, 3, words), dtype=np.uint64).astype(np.uint32)
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=cin,
                                          output_feature_channels=cout)
    ds = mpsnn.ArrayConvolutionDataSource(d, bits)
    x = rng.standard_normal((2, 6, 7, cin)).astype(np.float32)
    for fc, cls in ((False, mpsnn.MPSCNNBinaryConvolutionNode),):
        y = run_node(device, lambda n: cls(source=n, weights=ds, scale_value=0.5,
                                           type=mpsnn.MPSCNNBinaryConvolutionType.xnor, flags=0), [x])
        g = R.window_geometry((6, 7), (3, 3), method=R.SIZE_VALID_ONLY)
        ref = R.binary_conv2d(x, bits, cin, type=1, out_scale=np.full(cout, 0.5), pad=g["pad"], out_hw=g["out_hw"])
        assert_close(y, ref, "reduction", k=cin * 9)
    xf = rng.standard_normal((2, 3, 3, cin)).astype(np.float32)
    y = run_node(device, lambda n: mpsnn.MPSCNNBinaryFullyConnectedNode(
        source=n, weights=ds, scale_value=1.0, type=mpsnn.MPSCNNBinaryConvolutionType.binary_weights, flags=0), [xf])
    assert_close(y, R.binary_fully_connected(xf, bits, cin, type=0), "reduction", k=cin * 9)
