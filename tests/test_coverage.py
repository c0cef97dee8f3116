"""Every node class of the foundation and forward issues has a binding, a CPU kernel (its kind is
registered) and a test that mentions it."""

import pathlib
import re

import pytest

import mpsnn

# class -> base class it must derive from (MPS's inheritance)
CLASSES = {
    "MPSCNNConvolutionNode": "MPSNNFilterNode",
    "MPSCNNFullyConnectedNode": "MPSCNNConvolutionNode",
    "MPSCNNConvolutionTransposeNode": "MPSCNNConvolutionNode",
    "MPSCNNBinaryConvolutionNode": "MPSCNNConvolutionNode",
    "MPSCNNBinaryFullyConnectedNode": "MPSCNNBinaryConvolutionNode",
    "MPSCNNPoolingNode": "MPSNNFilterNode",
    "MPSCNNPoolingMaxNode": "MPSCNNPoolingNode",
    "MPSCNNPoolingAverageNode": "MPSCNNPoolingNode",
    "MPSCNNPoolingL2NormNode": "MPSCNNPoolingNode",
    "MPSCNNDilatedPoolingMaxNode": "MPSNNFilterNode",
    "MPSCNNNeuronNode": "MPSNNFilterNode",
    "MPSCNNNeuronReLUNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronSigmoidNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronTanHNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronLinearNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronAbsoluteNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronELUNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronHardSigmoidNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronPReLUNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronReLUNNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronSoftPlusNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronSoftSignNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronExponentialNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronLogarithmNode": "MPSCNNNeuronNode",
    "MPSCNNNeuronPowerNode": "MPSCNNNeuronNode",
    "MPSCNNSoftMaxNode": "MPSNNFilterNode",
    "MPSCNNLogSoftMaxNode": "MPSNNFilterNode",
    "MPSNNBinaryArithmeticNode": "MPSNNFilterNode",
    "MPSNNAdditionNode": "MPSNNBinaryArithmeticNode",
    "MPSNNSubtractionNode": "MPSNNBinaryArithmeticNode",
    "MPSNNMultiplicationNode": "MPSNNBinaryArithmeticNode",
    "MPSNNDivisionNode": "MPSNNBinaryArithmeticNode",
    "MPSNNConcatenationNode": "MPSNNFilterNode",
    "MPSCNNBatchNormalizationNode": "MPSNNFilterNode",
    "MPSCNNInstanceNormalizationNode": "MPSNNFilterNode",
    "MPSCNNNormalizationNode": "MPSNNFilterNode",
    "MPSCNNCrossChannelNormalizationNode": "MPSCNNNormalizationNode",
    "MPSCNNLocalContrastNormalizationNode": "MPSCNNNormalizationNode",
    "MPSCNNSpatialNormalizationNode": "MPSCNNNormalizationNode",
    "MPSCNNDropoutNode": "MPSNNFilterNode",
    "MPSCNNUpsamplingNearestNode": "MPSNNFilterNode",
    "MPSCNNUpsamplingBilinearNode": "MPSNNFilterNode",
    "MPSNNScaleNode": "MPSNNFilterNode",
    "MPSNNBilinearScaleNode": "MPSNNScaleNode",
    "MPSNNLanczosScaleNode": "MPSNNScaleNode",
    "MPSNNGradientFilterNode": "MPSNNFilterNode",
    "MPSCNNPoolingGradientNode": "MPSNNGradientFilterNode",
    "MPSCNNPoolingMaxGradientNode": "MPSCNNPoolingGradientNode",
    "MPSCNNPoolingAverageGradientNode": "MPSCNNPoolingGradientNode",
    "MPSCNNPoolingL2NormGradientNode": "MPSCNNPoolingGradientNode",
    "MPSCNNDilatedPoolingMaxGradientNode": "MPSCNNPoolingGradientNode",
    "MPSCNNNeuronGradientNode": "MPSNNGradientFilterNode",
    # gradients of the trainable families
    "MPSCNNConvolutionGradientNode": "MPSNNGradientFilterNode",
    "MPSCNNFullyConnectedGradientNode": "MPSCNNConvolutionGradientNode",
    "MPSCNNConvolutionTransposeGradientNode": "MPSCNNConvolutionGradientNode",
    "MPSCNNBatchNormalizationGradientNode": "MPSNNGradientFilterNode",
    "MPSCNNInstanceNormalizationGradientNode": "MPSNNGradientFilterNode",
    # losses: self-gradient filter nodes (not gradient nodes; nodes.md §13)
    "MPSCNNLossNode": "MPSNNFilterNode",
    "MPSCNNYOLOLossNode": "MPSNNFilterNode",
    "MPSNNArithmeticGradientNode": "MPSNNGradientFilterNode",
    "MPSNNAdditionGradientNode": "MPSNNArithmeticGradientNode",
    "MPSNNSubtractionGradientNode": "MPSNNArithmeticGradientNode",
    "MPSNNMultiplicationGradientNode": "MPSNNArithmeticGradientNode",
    "MPSNNConcatenationGradientNode": "MPSNNGradientFilterNode",
    "MPSCNNSoftMaxGradientNode": "MPSNNGradientFilterNode",
    "MPSCNNLogSoftMaxGradientNode": "MPSNNGradientFilterNode",
    "MPSCNNCrossChannelNormalizationGradientNode": "MPSNNGradientFilterNode",
    "MPSCNNSpatialNormalizationGradientNode": "MPSNNGradientFilterNode",
    "MPSCNNLocalContrastNormalizationGradientNode": "MPSNNGradientFilterNode",
    "MPSCNNUpsamplingNearestGradientNode": "MPSNNGradientFilterNode",
    "MPSCNNUpsamplingBilinearGradientNode": "MPSNNGradientFilterNode",
    "MPSCNNDropoutGradientNode": "MPSNNGradientFilterNode",
}
# gradient class -> (its op kind, the float64 oracle(s) in tests/reference)
GRADIENTS = {
    "MPSNNAdditionGradientNode": ("arithmetic gradient", ["arithmetic_gradient"]),
    "MPSNNSubtractionGradientNode": ("arithmetic gradient", ["arithmetic_gradient"]),
    "MPSNNMultiplicationGradientNode": ("arithmetic gradient", ["arithmetic_gradient"]),
    "MPSNNConcatenationGradientNode": ("concatenation gradient", ["concatenation_gradient"]),
    "MPSCNNSoftMaxGradientNode": ("softmax gradient", ["softmax_gradient"]),
    "MPSCNNLogSoftMaxGradientNode": ("softmax gradient", ["log_softmax_gradient"]),
    "MPSCNNCrossChannelNormalizationGradientNode": ("normalization gradient", ["cross_channel_norm_gradient"]),
    "MPSCNNSpatialNormalizationGradientNode": ("normalization gradient", ["spatial_norm_gradient"]),
    "MPSCNNLocalContrastNormalizationGradientNode": ("normalization gradient", ["local_contrast_norm_gradient"]),
    "MPSCNNUpsamplingNearestGradientNode": ("upsampling gradient", ["upsample_nearest_gradient"]),
    "MPSCNNUpsamplingBilinearGradientNode": ("upsampling gradient", ["upsample_bilinear_gradient"]),
    "MPSCNNDropoutGradientNode": ("dropout gradient", ["dropout_gradient", "dropout_mask"]),
    "MPSCNNPoolingMaxGradientNode": ("pooling gradient", ["max_pool2d_gradient"]),
    "MPSCNNPoolingAverageGradientNode": ("pooling gradient", ["average_pool2d_gradient"]),
    "MPSCNNPoolingL2NormGradientNode": ("pooling gradient", ["l2_pool2d_gradient"]),
    "MPSCNNDilatedPoolingMaxGradientNode": ("pooling gradient", ["max_pool2d_gradient"]),
    "MPSCNNNeuronGradientNode": ("neuron gradient", ["neuron_gradient"]),
}
# state class -> base
STATES = {
    "MPSNNGradientState": "MPSState",
    "MPSCNNConvolutionGradientState": "MPSNNGradientState",
    "MPSNNBinaryGradientState": "MPSState",
    "MPSNNMultiaryGradientState": "MPSState",
    "MPSCNNDropoutGradientState": "MPSNNGradientState",
    "MPSCNNArithmeticGradientState": "MPSNNBinaryGradientState",
    "MPSCNNLossLabels": "MPSState",
    "MPSCNNBatchNormalizationState": "MPSNNGradientState",
    "MPSCNNInstanceNormalizationGradientState": "MPSNNGradientState",
}
# gradient kind -> (forward kind, float64 oracle of tests/reference, test file of tests/ops)
GRADIENT_KINDS = {
    "convolution gradient": ("convolution", ("conv2d_gradient", "fully_connected_gradient",
                                             "conv_transpose2d_gradient"), "test_convolution_gradient.py"),
    "batch normalization gradient": ("batch normalization", ("batch_norm_gradient",), "test_normalization_gradient.py"),
    "instance normalization gradient": ("instance normalization", ("instance_norm_gradient",),
                                        "test_normalization_gradient.py"),
}
OTHER = ["MPSNNGraph", "MPSNNImageNode", "MPSNNStateNode", "MPSImage", "MPSTemporaryImage", "MPSImageDescriptor",
         "MPSNNDefaultPadding", "MPSCNNConvolutionDescriptor", "MPSCNNDepthWiseConvolutionDescriptor",
         "MPSNNNeuronDescriptor", "MTLCommandBuffer", "MPSCommandBuffer", "MTLCommandQueue",
         "MPSCNNConvolutionGradientStateNode", "MPSNNLabelsNode", "MPSCNNConvolutionTransposeGradientStateNode",
         "MPSCNNConvolutionWeightsLayout", "MPSCNNLossDescriptor", "MPSCNNLossDataDescriptor",
         "MPSCNNYOLOLossDescriptor", "MPSCNNLossType", "MPSCNNReductionType", "MPSNNArithmeticGradientStateNode",
         "MPSNNBinaryGradientStateNode", "MPSNNMultiaryGradientStateNode", "MPSNNGradientStateNode"]
# Every loss class has a float64 oracle in reference/loss.py with finite-difference checks.
LOSS_REFERENCES = {"MPSCNNLossNode": "loss", "MPSCNNYOLOLossNode": "yolo_loss"}
# Known gaps: none. A class listed here needs a reason.
KNOWN_GAPS: dict = {}

TEST_TEXT = "\n".join(p.read_text() for p in pathlib.Path(__file__).parent.rglob("test_*.py")
                      if p.name != "test_coverage.py")


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_node_class_bound_derived_and_tested(name):
    cls = getattr(mpsnn, name)
    assert issubclass(cls, getattr(mpsnn, CLASSES[name]))
    assert issubclass(cls, mpsnn.MPSNNFilterNode)
    if name not in KNOWN_GAPS:
        abstract = name in ("MPSCNNPoolingNode", "MPSCNNNeuronNode", "MPSNNBinaryArithmeticNode",
                            "MPSCNNNormalizationNode", "MPSNNScaleNode", "MPSNNGradientFilterNode",
                            "MPSCNNPoolingGradientNode", "MPSNNArithmeticGradientNode")
        assert abstract or re.search(rf"\b{name}\b", TEST_TEXT), f"no test mentions {name}"


@pytest.mark.parametrize("name", OTHER)
def test_other_classes_bound(name):
    assert isinstance(getattr(mpsnn, name), type)


@pytest.mark.parametrize("name", sorted(STATES))
def test_state_classes(name):
    assert issubclass(getattr(mpsnn, name), getattr(mpsnn, STATES[name]))


def test_op_list_kernels_and_gradients():
    kinds = {k["name"]: k for k in mpsnn._core._op_kinds()}
    for name, k in kinds.items():
        assert "cpu" in k["kernels"], name     # dropout's runs in training graphs (its mask)
        if k["gradient"] is not None:
            assert kinds[k["gradient"]]["is_gradient"], name
    assert kinds["pooling"]["gradient"] == "pooling gradient" and kinds["neuron"]["gradient"] == "neuron gradient"
    for forward in ("arithmetic", "concatenation", "softmax", "normalization", "upsampling", "dropout"):
        assert kinds[forward]["gradient"] == forward + " gradient", forward
    assert kinds["convert"]["internal"] and kinds["fill"]["internal"]
    # losses are their own gradient: no gradient kind
    assert kinds["loss"]["gradient"] is None and kinds["yolo loss"]["gradient"] is None
    assert not kinds["loss"]["is_gradient"] and not kinds["yolo loss"]["is_gradient"]


@pytest.mark.parametrize("name", sorted(LOSS_REFERENCES))
def test_loss_classes_have_references_and_tests(name):
    from reference import loss as RL

    assert callable(getattr(RL, LOSS_REFERENCES[name]))
    ref_tests = (pathlib.Path(__file__).parent / "reference" / "test_loss_references.py").read_text()
    assert f"RL.{LOSS_REFERENCES[name]}(" in ref_tests, f"no finite-difference check of {LOSS_REFERENCES[name]}"
    assert re.search(rf"\b{name}\b", TEST_TEXT)


def test_training_graph_is_tested():
    assert "training_graph(" in TEST_TEXT and "MPSCNNLossLabels" in TEST_TEXT


@pytest.mark.parametrize("name", sorted(GRADIENT_KINDS))
def test_trainable_gradient_kinds_have_kernel_reference_and_test(name):
    import reference as R

    kinds = {k["name"]: k for k in mpsnn._core._op_kinds()}
    forward, oracles, test_file = GRADIENT_KINDS[name]
    assert kinds[forward]["gradient"] == name and kinds[name]["is_gradient"]
    assert "cpu" in kinds[name]["kernels"]
    for oracle in oracles:
        assert callable(getattr(R, oracle)), oracle
        assert re.search(rf"\b{oracle}\b", TEST_TEXT), f"no test uses the oracle {oracle}"
    assert (pathlib.Path(__file__).parent / "ops" / test_file).exists()


def test_every_kind_has_a_cpu_kernel(device):
    # A graph containing one node of every kind compiles: compile fails listing any node without a kernel.
    import numpy as np

    x = mpsnn.MPSNNImageNode()
    nodes = [
        mpsnn.MPSCNNNeuronReLUNode(source=x),
        mpsnn.MPSCNNPoolingMaxNode(source=x, filter_size=1),
        mpsnn.MPSCNNSoftMaxNode(source=x),
        mpsnn.MPSNNAdditionNode(left_source=x, right_source=x),
        mpsnn.MPSNNConcatenationNode(sources=[x, x]),
        mpsnn.MPSCNNCrossChannelNormalizationNode(source=x),
        mpsnn.MPSCNNUpsamplingNearestNode(source=x, integer_scale_factor_x=1, integer_scale_factor_y=1),
        mpsnn.MPSNNBilinearScaleNode(source=x, output_size=(3, 3)),
        mpsnn.MPSCNNBatchNormalizationNode(source=x, data_source=mpsnn.ArrayBatchNormalizationDataSource(
            np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), epsilon=1e-5)),
        mpsnn.MPSCNNInstanceNormalizationNode(source=x, data_source=mpsnn.ArrayInstanceNormalizationDataSource(
            np.ones(4), np.zeros(4), epsilon=1e-5)),
    ]
    g = mpsnn.MPSNNGraph(device, result_images=[n.result_image for n in nodes])
    outs = g.run([np.ones((1, 3, 3, 4), np.float32)])
    assert all(o is not None for o in outs)


@pytest.mark.parametrize("name", sorted(GRADIENTS))
def test_gradient_class_has_kind_kernel_reference_and_test(name):
    """Every gradient class: a registered CPU kernel of its kind, a float64 oracle in tests/reference, a
    test that builds it, and a gradient_filter(s) route from its forward node."""
    import reference as R

    kind, oracles = GRADIENTS[name]
    kinds = {k["name"]: k for k in mpsnn._core._op_kinds()}
    assert kinds[kind]["is_gradient"] and "cpu" in kinds[kind]["kernels"], kind
    for fn in oracles:
        assert callable(getattr(R, fn, None)), f"no reference {fn} for {name}"
    assert issubclass(getattr(mpsnn, name), mpsnn.MPSNNGradientFilterNode)
    assert re.search(rf"\b{name}\b", TEST_TEXT), f"no test mentions {name}"
