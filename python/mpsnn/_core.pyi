"""
mpsnn native core: Apple's MPSNNGraph node system on oneDNN (CPU).
"""
from __future__ import annotations
import collections.abc
import enum
from mpsnn import BackendError
from mpsnn import DTypeError
from mpsnn import MPSError
from mpsnn import MPSGraphError
from mpsnn import MPSTemporaryImageError
from mpsnn import SerializationError
from mpsnn import ShapeError
from mpsnn import UnsupportedError
import typing
import typing_extensions
import os
import numpy
import numpy.typing
import mpsnn._types
import mpsnn.protocols
_Bytes: typing_extensions.TypeAlias = numpy.typing.NDArray[typing.Any] | bytes | bytearray | memoryview
_WritableBytes: typing_extensions.TypeAlias = numpy.typing.NDArray[typing.Any] | bytearray | memoryview
_FloatVector: typing_extensions.TypeAlias = collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] | numpy.typing.NDArray[typing.Any]
_SourceImage: typing_extensions.TypeAlias = MPSImage | numpy.typing.NDArray[typing.Any] | mpsnn.protocols.SupportsDLPack
_Handle: typing_extensions.TypeAlias = mpsnn.protocols.MPSHandle | None
__all__: list[str] = ['BackendError', 'DTypeError', 'LabelHandle', 'MPSCNNAdd', 'MPSCNNArithmetic', 'MPSCNNArithmeticGradientState', 'MPSCNNBatchNormalization', 'MPSCNNBatchNormalizationFlags', 'MPSCNNBatchNormalizationGradientNode', 'MPSCNNBatchNormalizationNode', 'MPSCNNBatchNormalizationState', 'MPSCNNBinaryConvolution', 'MPSCNNBinaryConvolutionFlags', 'MPSCNNBinaryConvolutionNode', 'MPSCNNBinaryConvolutionType', 'MPSCNNBinaryFullyConnected', 'MPSCNNBinaryFullyConnectedNode', 'MPSCNNBinaryKernel', 'MPSCNNConvolution', 'MPSCNNConvolutionDescriptor', 'MPSCNNConvolutionGradientNode', 'MPSCNNConvolutionGradientState', 'MPSCNNConvolutionGradientStateNode', 'MPSCNNConvolutionNode', 'MPSCNNConvolutionTranspose', 'MPSCNNConvolutionTransposeGradientNode', 'MPSCNNConvolutionTransposeGradientStateNode', 'MPSCNNConvolutionTransposeNode', 'MPSCNNConvolutionWeightsAndBiasesState', 'MPSCNNConvolutionWeightsLayout', 'MPSCNNCrossChannelNormalization', 'MPSCNNCrossChannelNormalizationGradientNode', 'MPSCNNCrossChannelNormalizationNode', 'MPSCNNDepthWiseConvolutionDescriptor', 'MPSCNNDilatedPoolingMax', 'MPSCNNDilatedPoolingMaxGradient', 'MPSCNNDilatedPoolingMaxGradientNode', 'MPSCNNDilatedPoolingMaxNode', 'MPSCNNDivide', 'MPSCNNDropout', 'MPSCNNDropoutGradientNode', 'MPSCNNDropoutGradientState', 'MPSCNNDropoutNode', 'MPSCNNFullyConnected', 'MPSCNNFullyConnectedGradientNode', 'MPSCNNFullyConnectedNode', 'MPSCNNGradientKernel', 'MPSCNNInstanceNormalization', 'MPSCNNInstanceNormalizationGradientNode', 'MPSCNNInstanceNormalizationGradientState', 'MPSCNNInstanceNormalizationNode', 'MPSCNNKernel', 'MPSCNNLocalContrastNormalization', 'MPSCNNLocalContrastNormalizationGradientNode', 'MPSCNNLocalContrastNormalizationNode', 'MPSCNNLogSoftMax', 'MPSCNNLogSoftMaxGradientNode', 'MPSCNNLogSoftMaxNode', 'MPSCNNLossDataDescriptor', 'MPSCNNLossDescriptor', 'MPSCNNLossLabels', 'MPSCNNLossNode', 'MPSCNNLossType', 'MPSCNNMultiply', 'MPSCNNNeuron', 'MPSCNNNeuronAbsoluteNode', 'MPSCNNNeuronELUNode', 'MPSCNNNeuronExponentialNode', 'MPSCNNNeuronGradient', 'MPSCNNNeuronGradientNode', 'MPSCNNNeuronHardSigmoidNode', 'MPSCNNNeuronLinearNode', 'MPSCNNNeuronLogarithmNode', 'MPSCNNNeuronNode', 'MPSCNNNeuronPReLUNode', 'MPSCNNNeuronPowerNode', 'MPSCNNNeuronReLUNNode', 'MPSCNNNeuronReLUNode', 'MPSCNNNeuronSigmoidNode', 'MPSCNNNeuronSoftPlusNode', 'MPSCNNNeuronSoftSignNode', 'MPSCNNNeuronTanHNode', 'MPSCNNNeuronType', 'MPSCNNNormalizationGammaAndBetaState', 'MPSCNNNormalizationMeanAndVarianceState', 'MPSCNNNormalizationNode', 'MPSCNNPooling', 'MPSCNNPoolingAverage', 'MPSCNNPoolingAverageGradient', 'MPSCNNPoolingAverageGradientNode', 'MPSCNNPoolingAverageNode', 'MPSCNNPoolingGradient', 'MPSCNNPoolingGradientNode', 'MPSCNNPoolingL2Norm', 'MPSCNNPoolingL2NormGradient', 'MPSCNNPoolingL2NormGradientNode', 'MPSCNNPoolingL2NormNode', 'MPSCNNPoolingMax', 'MPSCNNPoolingMaxGradient', 'MPSCNNPoolingMaxGradientNode', 'MPSCNNPoolingMaxNode', 'MPSCNNPoolingNode', 'MPSCNNReductionType', 'MPSCNNSoftMax', 'MPSCNNSoftMaxGradientNode', 'MPSCNNSoftMaxNode', 'MPSCNNSpatialNormalization', 'MPSCNNSpatialNormalizationGradientNode', 'MPSCNNSpatialNormalizationNode', 'MPSCNNSubPixelConvolutionDescriptor', 'MPSCNNSubtract', 'MPSCNNUpsampling', 'MPSCNNUpsamplingBilinear', 'MPSCNNUpsamplingBilinearGradientNode', 'MPSCNNUpsamplingBilinearNode', 'MPSCNNUpsamplingNearest', 'MPSCNNUpsamplingNearestGradientNode', 'MPSCNNUpsamplingNearestNode', 'MPSCNNYOLOLossDescriptor', 'MPSCNNYOLOLossNode', 'MPSCommandBuffer', 'MPSDataLayout', 'MPSDataType', 'MPSError', 'MPSGraphError', 'MPSImage', 'MPSImageAllocator', 'MPSImageBatchIncrementReadCount', 'MPSImageBatchResourceSize', 'MPSImageBatchSynchronize', 'MPSImageBilinearScale', 'MPSImageDescriptor', 'MPSImageEdgeMode', 'MPSImageFeatureChannelFormat', 'MPSImageLanczosScale', 'MPSImageScale', 'MPSKernel', 'MPSKernelOptions', 'MPSNNAdditionGradientNode', 'MPSNNAdditionNode', 'MPSNNArithmeticGradientNode', 'MPSNNArithmeticGradientStateNode', 'MPSNNBilinearScaleNode', 'MPSNNBinaryArithmeticNode', 'MPSNNBinaryGradientState', 'MPSNNBinaryGradientStateNode', 'MPSNNConcatenationGradientNode', 'MPSNNConcatenationNode', 'MPSNNDefaultPadding', 'MPSNNDivisionNode', 'MPSNNFilterNode', 'MPSNNGradientFilterNode', 'MPSNNGradientState', 'MPSNNGradientStateNode', 'MPSNNGraph', 'MPSNNImageNode', 'MPSNNLabelsNode', 'MPSNNLanczosScaleNode', 'MPSNNMultiaryGradientState', 'MPSNNMultiaryGradientStateNode', 'MPSNNMultiplicationGradientNode', 'MPSNNMultiplicationNode', 'MPSNNNeuronDescriptor', 'MPSNNOptimizer', 'MPSNNOptimizerAdam', 'MPSNNOptimizerDescriptor', 'MPSNNOptimizerRMSProp', 'MPSNNOptimizerStochasticGradientDescent', 'MPSNNPaddingMethod', 'MPSNNRegularizationType', 'MPSNNScaleNode', 'MPSNNStateNode', 'MPSNNSubtractionGradientNode', 'MPSNNSubtractionNode', 'MPSNNTrainingStyle', 'MPSScaleTransform', 'MPSState', 'MPSTemporaryImage', 'MPSTemporaryImageError', 'MPSVector', 'MPSVectorDescriptor', 'MTLBuffer', 'MTLCommandBuffer', 'MTLCommandBufferStatus', 'MTLCommandQueue', 'MTLCopyAllDevices', 'MTLCreateSystemDefaultDevice', 'MTLDevice', 'MTLPixelFormat', 'MTLTexture', 'MTLTextureDescriptor', 'MTLTextureType', 'MTLTextureUsage', 'SerializationError', 'ShapeError', 'UnsupportedError', 'available_backends']
class MPSImageFeatureChannelFormat(enum.IntEnum):
    """
    Storage format of image channels.
    """
    bfloat16: typing.ClassVar[MPSImageFeatureChannelFormat]
    float16: typing.ClassVar[MPSImageFeatureChannelFormat]
    float32: typing.ClassVar[MPSImageFeatureChannelFormat]
    none: typing.ClassVar[MPSImageFeatureChannelFormat]
    unorm16: typing.ClassVar[MPSImageFeatureChannelFormat]
    unorm8: typing.ClassVar[MPSImageFeatureChannelFormat]
class MPSDataLayout(enum.IntEnum):
    """
    Buffer layout of read_bytes / write_bytes.
    """
    HeightxWidthxFeatureChannels: typing.ClassVar[MPSDataLayout]
    featureChannelsxHeightxWidth: typing.ClassVar[MPSDataLayout]
    feature_channels_x_height_x_width: typing.ClassVar[MPSDataLayout]
    height_x_width_x_feature_channels: typing.ClassVar[MPSDataLayout]
class MPSImageEdgeMode(enum.IntEnum):
    """
    How reads outside the source are satisfied.
    """
    clamp: typing.ClassVar[MPSImageEdgeMode]
    constant: typing.ClassVar[MPSImageEdgeMode]
    mirror: typing.ClassVar[MPSImageEdgeMode]
    mirror_with_edge: typing.ClassVar[MPSImageEdgeMode]
    zero: typing.ClassVar[MPSImageEdgeMode]
class MPSNNPaddingMethod(enum.IntFlag):
    """
    Padding method bit field (graph.md §4.1).
    """
    add_remainder_to_bottom_left: typing.ClassVar[MPSNNPaddingMethod]
    add_remainder_to_bottom_right: typing.ClassVar[MPSNNPaddingMethod]
    add_remainder_to_top_left: typing.ClassVar[MPSNNPaddingMethod]
    add_remainder_to_top_right: typing.ClassVar[MPSNNPaddingMethod]
    align_bottom_right: typing.ClassVar[MPSNNPaddingMethod]
    align_centered: typing.ClassVar[MPSNNPaddingMethod]
    align_reserved: typing.ClassVar[MPSNNPaddingMethod]
    align_top_left: typing.ClassVar[MPSNNPaddingMethod]
    custom: typing.ClassVar[MPSNNPaddingMethod]
    custom_allow_for_node_fusion: typing.ClassVar[MPSNNPaddingMethod]
    custom_whitelist_for_node_fusion: typing.ClassVar[MPSNNPaddingMethod]
    exclude_edges: typing.ClassVar[MPSNNPaddingMethod]
    size_full: typing.ClassVar[MPSNNPaddingMethod]
    size_mask: typing.ClassVar[MPSNNPaddingMethod]
    size_reserved: typing.ClassVar[MPSNNPaddingMethod]
    size_same: typing.ClassVar[MPSNNPaddingMethod]
    size_valid_only: typing.ClassVar[MPSNNPaddingMethod]
class MPSKernelOptions(enum.IntFlag):
    """
    MPSKernel option flags.
    """
    allow_reduced_precision: typing.ClassVar[MPSKernelOptions]
    disable_internal_tiling: typing.ClassVar[MPSKernelOptions]
    insert_debug_groups: typing.ClassVar[MPSKernelOptions]
    none: typing.ClassVar[MPSKernelOptions]
    skip_api_validation: typing.ClassVar[MPSKernelOptions]
    verbose: typing.ClassVar[MPSKernelOptions]
class MPSNNTrainingStyle(enum.IntEnum):
    """
    Where trainable nodes update parameters.
    """
    update_device_cpu: typing.ClassVar[MPSNNTrainingStyle]
    update_device_gpu: typing.ClassVar[MPSNNTrainingStyle]
    update_device_none: typing.ClassVar[MPSNNTrainingStyle]
class MPSCNNNeuronType(enum.IntEnum):
    """
    Neuron (activation) function.
    """
    absolute: typing.ClassVar[MPSCNNNeuronType]
    eLU: typing.ClassVar[MPSCNNNeuronType]
    elu: typing.ClassVar[MPSCNNNeuronType]
    exponential: typing.ClassVar[MPSCNNNeuronType]
    hardSigmoid: typing.ClassVar[MPSCNNNeuronType]
    hard_sigmoid: typing.ClassVar[MPSCNNNeuronType]
    linear: typing.ClassVar[MPSCNNNeuronType]
    logarithm: typing.ClassVar[MPSCNNNeuronType]
    none: typing.ClassVar[MPSCNNNeuronType]
    pReLU: typing.ClassVar[MPSCNNNeuronType]
    power: typing.ClassVar[MPSCNNNeuronType]
    prelu: typing.ClassVar[MPSCNNNeuronType]
    reLU: typing.ClassVar[MPSCNNNeuronType]
    reLUN: typing.ClassVar[MPSCNNNeuronType]
    relu: typing.ClassVar[MPSCNNNeuronType]
    relun: typing.ClassVar[MPSCNNNeuronType]
    sigmoid: typing.ClassVar[MPSCNNNeuronType]
    softPlus: typing.ClassVar[MPSCNNNeuronType]
    softSign: typing.ClassVar[MPSCNNNeuronType]
    soft_plus: typing.ClassVar[MPSCNNNeuronType]
    soft_sign: typing.ClassVar[MPSCNNNeuronType]
    tanH: typing.ClassVar[MPSCNNNeuronType]
    tanh: typing.ClassVar[MPSCNNNeuronType]
class MPSDataType(enum.IntEnum):
    """
    Element type of data-source buffers.
    """
    float16: typing.ClassVar[MPSDataType]
    float32: typing.ClassVar[MPSDataType]
    int16: typing.ClassVar[MPSDataType]
    int8: typing.ClassVar[MPSDataType]
    invalid: typing.ClassVar[MPSDataType]
    uint16: typing.ClassVar[MPSDataType]
    uint32: typing.ClassVar[MPSDataType]
    uint8: typing.ClassVar[MPSDataType]
    unorm1: typing.ClassVar[MPSDataType]
    unorm8: typing.ClassVar[MPSDataType]
class MPSCNNBatchNormalizationFlags(enum.IntEnum):
    """
    When batch normalization computes batch statistics.
    """
    calculate_statistics_always: typing.ClassVar[MPSCNNBatchNormalizationFlags]
    calculate_statistics_automatic: typing.ClassVar[MPSCNNBatchNormalizationFlags]
    calculate_statistics_never: typing.ClassVar[MPSCNNBatchNormalizationFlags]
    default: typing.ClassVar[MPSCNNBatchNormalizationFlags]
class MPSCNNBinaryConvolutionType(enum.IntEnum):
    """
    Binary convolution type.
    """
    and_: typing.ClassVar[MPSCNNBinaryConvolutionType]
    binary_weights: typing.ClassVar[MPSCNNBinaryConvolutionType]
    xnor: typing.ClassVar[MPSCNNBinaryConvolutionType]
class MPSCNNBinaryConvolutionFlags(enum.IntFlag):
    """
    Binary convolution flags.
    """
    none: typing.ClassVar[MPSCNNBinaryConvolutionFlags]
    use_beta_scaling: typing.ClassVar[MPSCNNBinaryConvolutionFlags]
class MTLCommandBufferStatus(enum.IntEnum):
    """
    Command buffer status.
    """
    committed: typing.ClassVar[MTLCommandBufferStatus]
    completed: typing.ClassVar[MTLCommandBufferStatus]
    enqueued: typing.ClassVar[MTLCommandBufferStatus]
    error: typing.ClassVar[MTLCommandBufferStatus]
    not_enqueued: typing.ClassVar[MTLCommandBufferStatus]
    scheduled: typing.ClassVar[MTLCommandBufferStatus]
class MPSCNNConvolutionWeightsLayout(enum.IntEnum):
    """
    Layout of convolution weights and their gradients (10.15): OHWI only.
    """
    ohwi: typing.ClassVar[MPSCNNConvolutionWeightsLayout]
class MTLDevice:
    """
    A compute device. There is one object per device: MTLDevice('cpu') is MTLDevice('cpu:0').
    """
    @staticmethod
    def __init__(*args, **kwargs):
        """
        (self: object, *args, **kwargs) -> None
        """
    @staticmethod
    def __new__(*args, **kwargs):
        """
        (cls: object, name: str = 'cpu') -> mpsnn._core.MTLDevice
        
        The device 'backend' or 'backend:index' (e.g. 'cpu', 'cuda:1'), as MPSNN_DEVICE spells it.
        """
    def __repr__(self) -> str:
        ...
    def make_buffer(self, length: typing.SupportsInt | typing.SupportsIndex) -> MTLBuffer:
        """
        A new zero-filled MTLBuffer of `length` bytes (device.makeBuffer(length:)).
        """
    def make_command_queue(self) -> MTLCommandQueue:
        """
        A new MTLCommandQueue on this device.
        """
    def make_texture(self, descriptor: MTLTextureDescriptor) -> MTLTexture:
        """
        A new zero-filled MTLTexture (device.makeTexture(descriptor:)).
        """
    @property
    def backend(self) -> str:
        ...
    @property
    def has_unified_memory(self) -> bool:
        ...
    @property
    def index(self) -> int:
        ...
    @property
    def memory_kind(self) -> str:
        """
        'host', 'unified' or 'device': whether NumPy views of its memory are possible.
        """
    @property
    def name(self) -> str:
        ...
    @property
    def registry_id(self) -> str:
        """
        'backend:index'.
        """
class MTLCommandQueue:
    """
    Runs committed command buffers in order on a worker thread.
    """
    label: str
    def __init__(self, device: MTLDevice) -> None:
        ...
    def command_buffer(self) -> MTLCommandBuffer:
        """
        Alias of make_command_buffer (Swift makeCommandBuffer).
        """
    def drain(self) -> None:
        """
        Wait until every buffer committed to this queue before the call completed (not those other threads commit meanwhile).
        """
    def make_command_buffer(self) -> MTLCommandBuffer:
        """
        A new MPSCommandBuffer on this queue.
        """
    @property
    def device(self) -> MTLDevice:
        ...
class MTLCommandBuffer:
    """
    Collects encoded work; commit() runs it on the queue's worker thread without the GIL. Errors raised there are stored and re-raised by wait_until_completed().
    """
    label: str
    @staticmethod
    def command_buffer_from_command_queue(command_queue: MTLCommandQueue) -> MTLCommandBuffer:
        ...
    def __init__(self, command_queue: MTLCommandQueue) -> None:
        ...
    def add_completed_handler(self, handler: collections.abc.Callable[[MTLCommandBuffer], object]) -> None:
        """
        Call handler(command_buffer) on the worker thread once the work completed.
        """
    def commit(self) -> None:
        ...
    def commit_and_continue(self) -> None:
        """
        Run what was encoded so far now and keep the buffer open for more work.
        """
    def wait_until_completed(self) -> None:
        """
        Block until the buffer completed; raises the first error of its work or handlers.
        """
    @property
    def command_queue(self) -> MTLCommandQueue:
        ...
    @property
    def device(self) -> MTLDevice:
        ...
    @property
    def error(self) -> typing.Any:
        """
        Message of the first error of this buffer's work or handlers, or None.
        """
    @property
    def root_command_buffer(self) -> MTLCommandBuffer:
        ...
    @property
    def status(self) -> MTLCommandBufferStatus:
        ...
class MTLBuffer:
    """
    A length of device memory; on host-visible devices contents() and numpy() are views.
    """
    label: str
    @staticmethod
    def from_numpy(array: typing.Any, device: MTLDevice | None = None) -> MTLBuffer:
        """
        Wrap a writeable C-contiguous array without copying.
        """
    def __init__(self, device: MTLDevice, length: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __len__(self) -> int:
        ...
    def contents(self) -> numpy.typing.NDArray[typing.Any]:
        """
        The buffer's bytes as a writeable uint8 NumPy view (no copy).
        """
    def numpy(self, dtype: typing.Any = ...) -> numpy.typing.NDArray[typing.Any]:
        """
        The buffer as a flat NumPy view of `dtype` (no copy).
        """
    @property
    def device(self) -> MTLDevice:
        ...
    @property
    def length(self) -> int:
        ...
class MPSState:
    """
    Buffers beside an image (graph.md §5.1). Temporary states belong to one command buffer and live while read_count > 0; persistent states live on their device.
    """
    label: str
    @staticmethod
    def temporary_state(command_buffer: MTLCommandBuffer, buffer_size: typing.SupportsInt | typing.SupportsIndex | None = None, resource_list: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] | None = None) -> MPSState:
        ...
    @typing.overload
    def __init__(self, device: MTLDevice, *, buffer_size: typing.SupportsInt | typing.SupportsIndex | None = None, resource_list: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] | None = None) -> None:
        ...
    @typing.overload
    def __init__(self, *, resource: MTLBuffer) -> None:
        ...
    @typing.overload
    def __init__(self, *, resources: collections.abc.Sequence[MTLBuffer]) -> None:
        ...
    def __repr__(self) -> str:
        ...
    def buffer_size(self, index: typing.SupportsInt | typing.SupportsIndex = 0) -> int:
        ...
    def numpy(self, index: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[typing.Any]:
        """
        mpsnn extension: a buffer of a graph-made state as a typed (N, H, W, C) NumPy view, e.g. the int32 arg-max of max pooling (y * width + x of the winning source pixel, -1 for a zero of the padding).
        """
    def resource(self, index: typing.SupportsInt | typing.SupportsIndex = 0, allocate_memory: bool = True) -> MTLBuffer:
        """
        The MTLBuffer at `index`; None without memory when allocate_memory is False.
        """
    def resource_size(self) -> int:
        ...
    @property
    def device(self) -> MTLDevice:
        ...
    @property
    def is_temporary(self) -> bool:
        ...
    @property
    def read_count(self) -> int:
        ...
    @read_count.setter
    def read_count(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def resource_count(self) -> int:
        ...
class MPSNNGradientState(MPSState):
    """
    A state a forward node fills for its gradient node (geometry, arg-max, ...).
    """
class MPSCNNConvolutionGradientState(MPSNNGradientState):
    """
    A convolution's gradient state. The one a convolution gradient node delivers (its result state) holds the parameter gradients, float32, summed over the batch; a forward node's holds none (None below).
    """
    @property
    def convolution(self) -> typing.Any:
        """
        The forward kernel (an MPSCNNConvolution, MPSCNNFullyConnected or MPSCNNConvolutionTranspose) with the geometry it ran with: kernel size, strides, dilation, offset, edge mode, channel window (a transposed convolution's offset is in its zero-inserted source). None for a state no graph made.
        """
    @property
    def gradient_for_biases(self) -> typing.Any:
        """
        MTLBuffer of dL/db, one float32 per output channel (computed also when the data source has no bias). None without weight gradients.
        """
    @property
    def gradient_for_weights(self) -> typing.Any:
        """
        MTLBuffer of dL/dW in the data source's weight layout, OHWI: [Cout][KH][KW][Cin/groups] (depthwise [Cout][KH][KW]); `.numpy().reshape(w.shape)`. None without weight gradients.
        """
    @property
    def gradient_for_weights_layout(self) -> ...:
        """
        MPSCNNConvolutionWeightsLayout.ohwi (the only layout).
        """
    @property
    def source_height(self) -> typing.Any:
        """
        Height of the forward convolution's source.
        """
    @property
    def source_width(self) -> typing.Any:
        """
        Width of the forward convolution's source (MPSImageSizeEncodingState); None for a state no graph made.
        """
class MPSCNNBatchNormalizationState(MPSNNGradientState):
    """
    Batch normalization's state (graph.md §5.2): mean() and variance() it normalized with (the batch's, biased, in training), and, from its gradient node, gamma(), beta(), gradient_for_gamma(), gradient_for_beta() (summed over the batch). Each is an MTLBuffer of C float32, or None when the state holds no such buffer.
    """
    def beta(self: MPSState) -> typing.Any:
        ...
    def gamma(self: MPSState) -> typing.Any:
        ...
    def gradient_for_beta(self: MPSState) -> typing.Any:
        ...
    def gradient_for_gamma(self: MPSState) -> typing.Any:
        ...
    def mean(self: MPSState) -> typing.Any:
        ...
    def reset(self: MPSState) -> None:
        """
        Clears the accumulated gradients (gradient_for_gamma / gradient_for_beta set to 0).
        """
    def variance(self: MPSState) -> typing.Any:
        ...
    @property
    def sample_count(self) -> typing.Any:
        """
        mpsnn extension: the values per channel the batch statistics cover (N*H*W), e.g. for an unbiased running variance; None for a state no graph made.
        """
class MPSCNNInstanceNormalizationGradientState(MPSNNGradientState):
    """
    Instance normalization's gradient state (graph.md §5.2): gamma, beta as used and gradient_for_gamma, gradient_for_beta, each an MTLBuffer of C float32 (None where absent). This backend runs a batch as one run: the gradients are the per-image parts summed over the batch, and an encode_batch state batch holds this one object N times.
    """
    @property
    def beta(self) -> typing.Any:
        ...
    @property
    def gamma(self) -> typing.Any:
        ...
    @property
    def gradient_for_beta(self) -> typing.Any:
        ...
    @property
    def gradient_for_gamma(self) -> typing.Any:
        ...
class MPSNNBinaryGradientState(MPSState):
    """
    The gradient state of a two-source node.
    """
class MPSCNNArithmeticGradientState(MPSNNBinaryGradientState):
    """
    The clamp mask of a binary arithmetic node, read by both of its gradient nodes (numpy(): uint8 (N, H, W, C), 1 where minimum_value < r < maximum_value).
    """
class MPSNNMultiaryGradientState(MPSState):
    """
    The gradient state of a node with several sources.
    """
class MPSCNNDropoutGradientState(MPSNNGradientState):
    """
    The keep mask a training-mode dropout sampled (graph.md §5.2); never temporary.
    """
    def mask_data(self) -> numpy.typing.NDArray[typing.Any]:
        """
        A copy of the keep mask as a uint8 (N, H, W, C) array, 1 = kept; an axis whose mask stride is 0 has extent 1 (its elements share one draw), so it broadcasts against the image.
        """
class MPSCNNConvolutionWeightsAndBiasesState(MPSState):
    """
    Weights (float32, OHWI) and biases (float32 x Cout) of a convolution: what a data source's update_with_command_buffer returns and optimizers read and write.
    """
    @staticmethod
    def temporary_cnn_convolution_weights_and_biases_state(command_buffer: MTLCommandBuffer, *, cnn_convolution_descriptor: ...) -> MPSCNNConvolutionWeightsAndBiasesState:
        ...
    @typing.overload
    def __init__(self, *, weights: MTLBuffer, biases: MTLBuffer | None = None) -> None:
        """
        MPSCNNConvolutionWeightsAndBiasesState(weights:biases:)
        """
    @typing.overload
    def __init__(self, *, weights: MTLBuffer, weights_offset: typing.SupportsInt | typing.SupportsIndex, biases: MTLBuffer, biases_offset: typing.SupportsInt | typing.SupportsIndex, cnn_convolution_descriptor: ...) -> None:
        """
        (weights:weightsOffset:biases:biasesOffset:cnnConvolutionDescriptor:)
        """
    @typing.overload
    def __init__(self, device: MTLDevice, *, cnn_convolution_descriptor: ...) -> None:
        """
        Zero-filled buffers sized by the descriptor.
        """
    @property
    def biases(self) -> MTLBuffer:
        """
        MTLBuffer of float32 values (None when absent).
        """
    @property
    def biases_offset(self) -> int:
        """
        Byte offset into the buffer.
        """
    @property
    def weights(self) -> MTLBuffer:
        """
        MTLBuffer of float32 values.
        """
    @property
    def weights_offset(self) -> int:
        """
        Byte offset into the buffer.
        """
class MPSCNNNormalizationGammaAndBetaState(MPSState):
    """
    Gamma and beta of a normalization (float32 x channels each).
    """
    @staticmethod
    def temporary_state(command_buffer: MTLCommandBuffer, *, number_of_feature_channels: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNNormalizationGammaAndBetaState:
        ...
    def __init__(self, *, gamma: MTLBuffer, beta: MTLBuffer) -> None:
        ...
    @property
    def beta(self) -> MTLBuffer:
        """
        MTLBuffer of float32 values (None when absent).
        """
    @property
    def beta_offset(self) -> int:
        """
        Byte offset into the buffer.
        """
    @property
    def gamma(self) -> MTLBuffer:
        """
        MTLBuffer of float32 values.
        """
    @property
    def gamma_offset(self) -> int:
        """
        Byte offset into the buffer.
        """
class MPSCNNNormalizationMeanAndVarianceState(MPSState):
    """
    Mean and variance of a normalization (float32 x channels each).
    """
    @staticmethod
    def temporary_state(command_buffer: MTLCommandBuffer, *, number_of_feature_channels: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNNormalizationMeanAndVarianceState:
        ...
    def __init__(self, *, mean: MTLBuffer, variance: MTLBuffer) -> None:
        ...
    @property
    def mean(self) -> MTLBuffer:
        """
        MTLBuffer of float32 values.
        """
    @property
    def mean_offset(self) -> int:
        """
        Byte offset into the buffer.
        """
    @property
    def variance(self) -> MTLBuffer:
        """
        MTLBuffer of float32 values (None when absent).
        """
    @property
    def variance_offset(self) -> int:
        """
        Byte offset into the buffer.
        """
class MTLPixelFormat(enum.IntEnum):
    """
    Texture pixel formats (Metal's raw values) that an MPSImage can alias.
    """
    invalid: typing.ClassVar[MTLPixelFormat]
    r16_float: typing.ClassVar[MTLPixelFormat]
    r16_unorm: typing.ClassVar[MTLPixelFormat]
    r32_float: typing.ClassVar[MTLPixelFormat]
    r8_unorm: typing.ClassVar[MTLPixelFormat]
    rg16_float: typing.ClassVar[MTLPixelFormat]
    rg16_unorm: typing.ClassVar[MTLPixelFormat]
    rg32_float: typing.ClassVar[MTLPixelFormat]
    rg8_unorm: typing.ClassVar[MTLPixelFormat]
    rgba16_float: typing.ClassVar[MTLPixelFormat]
    rgba16_unorm: typing.ClassVar[MTLPixelFormat]
    rgba32_float: typing.ClassVar[MTLPixelFormat]
    rgba8_unorm: typing.ClassVar[MTLPixelFormat]
class MTLTextureType(enum.IntEnum):
    """
    Texture types (Metal's raw values).
    """
    type2d: typing.ClassVar[MTLTextureType]
    type2d_array: typing.ClassVar[MTLTextureType]
class MTLTextureUsage(enum.IntFlag):
    """
    Texture usage flags (Metal's raw values).
    """
    pixel_format_view: typing.ClassVar[MTLTextureUsage]
    render_target: typing.ClassVar[MTLTextureUsage]
    shader_read: typing.ClassVar[MTLTextureUsage]
    shader_write: typing.ClassVar[MTLTextureUsage]
    unknown: typing.ClassVar[MTLTextureUsage]
class MTLTextureDescriptor:
    """
    Size, pixel format, type and usage of a texture.
    """
    pixel_format: MTLPixelFormat
    texture_type: MTLTextureType
    @staticmethod
    def texture2d_descriptor(pixel_format: MTLPixelFormat, width: typing.SupportsInt | typing.SupportsIndex, height: typing.SupportsInt | typing.SupportsIndex, mipmapped: bool = False) -> MTLTextureDescriptor:
        """
        MTLTextureDescriptor.texture2DDescriptor(pixelFormat:width:height:mipmapped:).
        """
    def __init__(self, pixel_format: MTLPixelFormat = ..., width: typing.SupportsInt | typing.SupportsIndex = 1, height: typing.SupportsInt | typing.SupportsIndex = 1, texture_type: MTLTextureType = ..., array_length: typing.SupportsInt | typing.SupportsIndex = 1, usage: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        ...
    def __repr__(self) -> str:
        ...
    @property
    def array_length(self) -> int:
        ...
    @array_length.setter
    def array_length(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def cpu_cache_mode(self) -> int:
        ...
    @cpu_cache_mode.setter
    def cpu_cache_mode(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def depth(self) -> int:
        ...
    @depth.setter
    def depth(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def height(self) -> int:
        ...
    @height.setter
    def height(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def mipmap_level_count(self) -> int:
        ...
    @mipmap_level_count.setter
    def mipmap_level_count(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def sample_count(self) -> int:
        ...
    @sample_count.setter
    def sample_count(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def storage_mode(self) -> int:
        ...
    @storage_mode.setter
    def storage_mode(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def usage(self) -> typing.Any:
        """
        MTLTextureUsage flags (default shader_read).
        """
    @usage.setter
    def usage(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def width(self) -> int:
        ...
    @width.setter
    def width(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MTLTexture:
    """
    A 2-D texture or texture array in host memory, laid out as (array_length, height, width, channels); MPSImage(texture=, feature_channels=) aliases it.
    """
    label: str
    @staticmethod
    def from_numpy(array: typing.Any, device: MTLDevice | None = None, usage: typing.SupportsInt | typing.SupportsIndex = 3) -> MTLTexture:
        """
        Wrap a C-contiguous (H, W), (H, W, channels) or (array_length, H, W, channels) float32/float16/uint8/uint16 array without copying (1, 2 or 4 channels; 4-D arrays make a type2d_array texture).
        
        Raises:
            DTypeError: wrong dtype or not C-contiguous.
            ShapeError: other shapes.
        """
    def __repr__(self) -> str:
        ...
    def numpy(self) -> numpy.typing.NDArray[typing.Any]:
        """
        A NumPy view of the texture's memory ((H, W, C) or (array_length, H, W, C)).
        """
    @property
    def allocated_size(self) -> int:
        ...
    @property
    def array_length(self) -> int:
        ...
    @property
    def depth(self) -> int:
        ...
    @property
    def device(self) -> MTLDevice:
        ...
    @property
    def height(self) -> int:
        ...
    @property
    def mipmap_level_count(self) -> int:
        ...
    @property
    def pixel_format(self) -> MTLPixelFormat:
        ...
    @property
    def sample_count(self) -> int:
        ...
    @property
    def texture_type(self) -> MTLTextureType:
        ...
    @property
    def usage(self) -> typing.Any:
        ...
    @property
    def width(self) -> int:
        ...
class MPSImageDescriptor:
    """
    Size, channels and format of an image.
    """
    channel_format: MPSImageFeatureChannelFormat
    @staticmethod
    def image_descriptor(channel_format: MPSImageFeatureChannelFormat, width: typing.SupportsInt | typing.SupportsIndex, height: typing.SupportsInt | typing.SupportsIndex, feature_channels: typing.SupportsInt | typing.SupportsIndex, number_of_images: typing.SupportsInt | typing.SupportsIndex = 1, usage: typing.SupportsInt | typing.SupportsIndex = 3) -> MPSImageDescriptor:
        ...
    def __init__(self, channel_format: MPSImageFeatureChannelFormat = ..., width: typing.SupportsInt | typing.SupportsIndex = 1, height: typing.SupportsInt | typing.SupportsIndex = 1, feature_channels: typing.SupportsInt | typing.SupportsIndex = 1, number_of_images: typing.SupportsInt | typing.SupportsIndex = 1, usage: typing.SupportsInt | typing.SupportsIndex = 3) -> None:
        ...
    def __repr__(self) -> str:
        ...
    def copy(self) -> MPSImageDescriptor:
        ...
    @property
    def cpu_cache_mode(self) -> int:
        ...
    @cpu_cache_mode.setter
    def cpu_cache_mode(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def feature_channels(self) -> int:
        ...
    @feature_channels.setter
    def feature_channels(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def height(self) -> int:
        ...
    @height.setter
    def height(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def number_of_images(self) -> int:
        ...
    @number_of_images.setter
    def number_of_images(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def storage_mode(self) -> int:
        ...
    @storage_mode.setter
    def storage_mode(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def usage(self) -> int:
        ...
    @usage.setter
    def usage(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def width(self) -> int:
        ...
    @width.setter
    def width(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MPSImageAllocator:
    """
    Built-in image allocator (persistent or temporary).
    """
    @property
    def is_temporary(self) -> bool:
        ...
class MPSImage:
    """
    N images of H x W x C pixels, stored NHWC. Memory is allocated on first use. numpy() and from_numpy() share memory with NumPy without copying.
    """
    label: str
    @staticmethod
    def default_allocator() -> MPSImageAllocator:
        """
        Allocator of persistent images.
        """
    @staticmethod
    def from_dlpack(tensor: typing.Any, device: MTLDevice | None = None) -> MPSImage:
        """
        Wrap a DLPack tensor (PyTorch, JAX, CuPy, NumPy...) of shape (N, H, W, C), C-contiguous,
        float32/float16/bfloat16/uint8/uint16, without copying: host tensors for the CPU, CUDA tensors for
        their GPU (device=None picks the device holding the memory). A CUDA producer's pending writes are
        waited for (its __dlpack__(stream=) orders them before a stream of ours, which is synchronized).
        A channels_last PyTorch tensor t qualifies as t.permute(0, 2, 3, 1).
        
        Raises:
            UnsupportedError: the tensor's memory is not the device's.
            DTypeError: wrong dtype or not C-contiguous (nothing is copied silently).
            ShapeError: not 4-dimensional.
        """
    @staticmethod
    def from_numpy(array: typing.Any, device: MTLDevice | None = None) -> MPSImage:
        """
        Wrap a C-contiguous (N, H, W, C) float32/float16/bfloat16 (ml_dtypes)/uint8/uint16 array without copying
        on the CPU; on a GPU (device=, or the default device when it is one) the array is copied into device
        memory through pinned staging.
        
        Raises:
            DTypeError: wrong dtype or not C-contiguous (nothing is copied silently).
            ShapeError: not 4-dimensional.
        """
    def __array__(self, dtype: typing.Any = None, copy: typing.Any = None) -> typing.Any:
        """
        NumPy protocol: np.asarray(image) is the numpy() view, np.array(image) a copy; np.argmax(image, axis=-1) and other NumPy functions see the (N, H, W, C) values. NumPy 2 copy semantics: copy=False raises ValueError when a copy would be needed (a dtype change), copy=None views when possible.
        """
    def __dlpack__(self, **kwargs) -> typing.Any:
        """
        DLPack export of the (N, H, W, C) memory, without a copy: torch.from_dlpack(image), cupy.from_dlpack(image). Host images: NumPy implements the protocol, and the export waits for the producing command buffer as numpy() does. CUDA images: the consumer's stream (stream=, None meaning the legacy default stream) waits for encoded work still writing the image (an event on the queue's stream, no host wait), and the memory goes back to mpsnn only after that stream has passed the point where the consumer let go. dl_device=(1, 0) gets a host copy unless copy=False.
        """
    def __dlpack_device__(self) -> tuple[int, int]:
        """
        (1, 0) for host memory (kDLCPU), (2, index) for CUDA memory (kDLCUDA).
        """
    def __getitem__(self, key: typing.Any) -> typing.Any:
        """
        image[key] is image.numpy()[key]: NumPy indexing of the (N, H, W, C) view (slices are views).
        """
    @typing.overload
    def __init__(self, device: MTLDevice, image_descriptor: MPSImageDescriptor) -> None:
        ...
    @typing.overload
    def __init__(self, texture: MTLTexture, feature_channels: typing.SupportsInt | typing.SupportsIndex) -> None:
        """
        MPSImage(texture:featureChannels:): an image aliasing the texture's memory (no copy), with number_of_images = texture.array_length. feature_channels may be fewer than the pixel format's channels (pass 3 for an RGB photo in an rgba8_unorm texture) but not more: images of more than 4 channels span several texture slices, which this backend's (N, H, W, C) images cannot alias (UnsupportedError).
        """
    @typing.overload
    def __init__(self, parent_image: MPSImage, slice_range: typing.Any, feature_channels: typing.SupportsInt | typing.SupportsIndex) -> None:
        """
        Alias slices [start, start+length) of a parent image (one slice = 4 channels).
        """
    def __repr__(self) -> str:
        ...
    def batch_representation(self, with_sub_range: typing.Any = None) -> list[MPSImage]:
        """
        Split into single-image aliases sharing memory.
        """
    def numpy(self) -> numpy.typing.NDArray[typing.Any]:
        """
        An (N, H, W, C) NumPy view of the image's memory (no copy; keeps it alive).
        
        An image returned by MPSNNGraph.encode is written when its command buffer runs: reading it waits for a committed command buffer to complete, and raises MPSGraphError (naming the buffer's status) when the buffer was never committed, since waiting would never end. The same holds for read_bytes, write_bytes, __array__, __getitem__ and DLPack export. Temporary images raise MPSTemporaryImageError.
        """
    def read_bytes(self, data: _WritableBytes, data_layout: MPSDataLayout, image_index: typing.SupportsInt | typing.SupportsIndex = 0, *, bytes_per_row: typing.SupportsInt | typing.SupportsIndex = 0, bytes_per_image: typing.SupportsInt | typing.SupportsIndex = 0, region: mpsnn._types.MTLRegion | None = None, feature_channel_info: mpsnn._types.MPSImageReadWriteParams | None = None) -> None:
        """
        Copy pixels into `data` (element type = the image's format). Strides 0 mean dense.
        """
    def resource_size(self) -> int:
        ...
    def set_purgeable_state(self, state: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def sub_image(self, with_feature_channel_range: typing.Any) -> MPSImage:
        """
        Alias of a channel range (start and length multiples of 4).
        """
    def synchronize(self, command_buffer: typing.Any) -> None:
        """
        No-op: host memory is always CPU-visible.
        """
    def write_bytes(self, data: _Bytes, data_layout: MPSDataLayout, image_index: typing.SupportsInt | typing.SupportsIndex = 0, *, bytes_per_column: typing.SupportsInt | typing.SupportsIndex = 0, bytes_per_row: typing.SupportsInt | typing.SupportsIndex = 0, bytes_per_image: typing.SupportsInt | typing.SupportsIndex = 0, region: mpsnn._types.MTLRegion | None = None, feature_channel_info: mpsnn._types.MPSImageReadWriteParams | None = None) -> None:
        """
        Copy pixels from `data` into the image.
        """
    @property
    def device(self) -> MTLDevice:
        ...
    @property
    def feature_channel_format(self) -> MPSImageFeatureChannelFormat:
        ...
    @property
    def feature_channels(self) -> int:
        ...
    @property
    def height(self) -> int:
        ...
    @property
    def is_temporary(self) -> bool:
        ...
    @property
    def mtl_texture(self) -> MTLTexture:
        """
        mpsnn: the MTLTexture this image aliases (MPSImage(texture=, feature_channels=)), or None.
        """
    @property
    def number_of_images(self) -> int:
        ...
    @property
    def parent(self) -> MPSImage:
        ...
    @property
    def pixel_format(self) -> MPSImageFeatureChannelFormat:
        ...
    @property
    def pixel_size(self) -> int:
        ...
    @property
    def precision(self) -> int:
        ...
    @property
    def texture(self) -> numpy.typing.NDArray[typing.Any]:
        """
        The backing memory as a NumPy view (forces allocation).
        """
    @property
    def texture_type(self) -> int:
        ...
    @property
    def usage(self) -> int:
        ...
    @property
    def width(self) -> int:
        ...
class MPSTemporaryImage(MPSImage):
    """
    An image valid only on one command buffer, with no CPU access, released when read_count reaches 0.
    """
    @staticmethod
    def default_allocator() -> MPSImageAllocator:
        """
        Allocator of temporary images.
        """
    @staticmethod
    def prefetch_storage(command_buffer: MTLCommandBuffer, image_descriptor_list: typing.Any) -> None:
        """
        A hint; host memory needs no prefetch.
        """
    @staticmethod
    def temporary_image(command_buffer: MTLCommandBuffer, image_descriptor: MPSImageDescriptor) -> MPSTemporaryImage:
        ...
    def __init__(self, command_buffer: MTLCommandBuffer, image_descriptor: MPSImageDescriptor) -> None:
        ...
    @property
    def read_count(self) -> int:
        ...
    @read_count.setter
    def read_count(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MPSNNImageNode:
    """
    Placeholder for an image in a graph.
    """
    export_from_graph: bool
    format: MPSImageFeatureChannelFormat
    handle: _Handle
    image_allocator: mpsnn.protocols.MPSImageAllocator
    stop_gradient: bool
    synchronize_resource: bool
    @staticmethod
    def exported_node(handle: _Handle = None) -> MPSNNImageNode:
        ...
    @staticmethod
    def node(handle: _Handle = None) -> MPSNNImageNode:
        ...
    def __deepcopy__(self, memo: typing.Any) -> typing.Any:
        ...
    def __init__(self, handle: _Handle = None) -> None:
        ...
    def __reduce__(self) -> tuple[..., tuple[bytes]]:
        ...
    @property
    def parent(self) -> MPSNNFilterNode | None:
        """
        The filter producing this image, or None for an input.
        """
class MPSNNStateNode:
    """
    Placeholder for a state in a graph.
    """
    export_from_graph: bool
    handle: _Handle
    synchronize_resource: bool
    def __deepcopy__(self, memo: typing.Any) -> typing.Any:
        ...
    def __reduce__(self) -> tuple[..., tuple[bytes]]:
        ...
class MPSNNGradientStateNode(MPSNNStateNode):
    pass
class MPSCNNConvolutionGradientStateNode(MPSNNGradientStateNode):
    pass
class MPSCNNConvolutionTransposeGradientStateNode(MPSCNNConvolutionGradientStateNode):
    pass
class MPSNNBinaryGradientStateNode(MPSNNStateNode):
    pass
class MPSNNArithmeticGradientStateNode(MPSNNBinaryGradientStateNode):
    pass
class MPSNNMultiaryGradientStateNode(MPSNNStateNode):
    pass
class MPSNNLabelsNode(MPSNNStateNode):
    pass
class _NativePadding:
    def label(self) -> str | None:
        ...
    def padding_method(self) -> int:
        ...
class MPSNNDefaultPadding(_NativePadding):
    """
    Padding policy from an MPSNNPaddingMethod (graph.md §4.5).
    """
    @staticmethod
    def padding_for_tensorflow_average_pooling() -> MPSNNDefaultPadding:
        """
        TensorFlow SAME average pooling: same size, odd pixel after, edge clamp (divide by valid pixels).
        """
    @staticmethod
    def padding_for_tensorflow_average_pooling_valid_only() -> MPSNNDefaultPadding:
        ...
    @staticmethod
    def padding_with_method(method: typing.SupportsInt | typing.SupportsIndex) -> MPSNNDefaultPadding:
        ...
    def __init__(self, method: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MPSNNNeuronDescriptor:
    """
    A neuron type with its a, b, c parameters (and PReLU data).
    """
    neuron_type: MPSCNNNeuronType
    @staticmethod
    def cnn_neuron_descriptor(neuron_type: MPSCNNNeuronType, a: typing.SupportsFloat | typing.SupportsIndex | None = None, b: typing.SupportsFloat | typing.SupportsIndex | None = None, c: typing.SupportsFloat | typing.SupportsIndex | None = None) -> MPSNNNeuronDescriptor:
        """
        Parameters not given take the per-type defaults of nodes.md §6.2.
        """
    @staticmethod
    def cnn_neuron_prelu_descriptor(data: _FloatVector, no_copy: bool = False) -> MPSNNNeuronDescriptor:
        ...
    def __init__(self, neuron_type: MPSCNNNeuronType = ..., a: typing.SupportsFloat | typing.SupportsIndex | None = None, b: typing.SupportsFloat | typing.SupportsIndex | None = None, c: typing.SupportsFloat | typing.SupportsIndex | None = None) -> None:
        ...
    @property
    def a(self) -> float:
        ...
    @a.setter
    def a(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def b(self) -> float:
        ...
    @b.setter
    def b(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def c(self) -> float:
        ...
    @c.setter
    def c(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def data(self) -> list[float]:
        ...
    @data.setter
    def data(self, arg0: _FloatVector) -> None:
        ...
class MPSCNNConvolutionDescriptor:
    """
    Geometry of a convolution, read from its data source.
    """
    neuron_type: MPSCNNNeuronType
    @staticmethod
    def cnn_convolution_descriptor(kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, input_feature_channels: typing.SupportsInt | typing.SupportsIndex, output_feature_channels: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNConvolutionDescriptor:
        """
        A descriptor of this class (Apple's instancetype class factory).
        """
    def __init__(self, kernel_width: typing.SupportsInt | typing.SupportsIndex = 3, kernel_height: typing.SupportsInt | typing.SupportsIndex = 3, input_feature_channels: typing.SupportsInt | typing.SupportsIndex = 1, output_feature_channels: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        ...
    def set_batch_normalization_parameters_for_inference(self, mean: _FloatVector, variance: _FloatVector, gamma: _FloatVector | None, beta: _FloatVector | None, epsilon: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def set_neuron_to_prelu_with_parameters_a(self, a: typing.Any) -> None:
        """
        Deprecated: fused PReLU with one slope per output feature channel (floats, or bytes of float32).
        """
    def set_neuron_type(self, neuron_type: MPSCNNNeuronType, parameter_a: typing.SupportsFloat | typing.SupportsIndex | None = None, parameter_b: typing.SupportsFloat | typing.SupportsIndex | None = None) -> None:
        """
        Deprecated: sets fused_neuron_descriptor to the neuron (parameters not given take the type's defaults).
        """
    @property
    def dilation_rate_x(self) -> int:
        ...
    @dilation_rate_x.setter
    def dilation_rate_x(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def dilation_rate_y(self) -> int:
        ...
    @dilation_rate_y.setter
    def dilation_rate_y(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def fused_neuron_descriptor(self) -> MPSNNNeuronDescriptor:
        ...
    @fused_neuron_descriptor.setter
    def fused_neuron_descriptor(self, arg1: typing.Any) -> None:
        ...
    @property
    def groups(self) -> int:
        ...
    @groups.setter
    def groups(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def input_feature_channels(self) -> int:
        ...
    @input_feature_channels.setter
    def input_feature_channels(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def kernel_height(self) -> int:
        ...
    @kernel_height.setter
    def kernel_height(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def kernel_width(self) -> int:
        ...
    @kernel_width.setter
    def kernel_width(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def neuron_parameter_a(self) -> float:
        ...
    @neuron_parameter_a.setter
    def neuron_parameter_a(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def neuron_parameter_b(self) -> float:
        ...
    @neuron_parameter_b.setter
    def neuron_parameter_b(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def neuron_parameter_c(self) -> float:
        ...
    @neuron_parameter_c.setter
    def neuron_parameter_c(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def output_feature_channels(self) -> int:
        ...
    @output_feature_channels.setter
    def output_feature_channels(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def stride_in_pixels_x(self) -> int:
        ...
    @stride_in_pixels_x.setter
    def stride_in_pixels_x(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def stride_in_pixels_y(self) -> int:
        ...
    @stride_in_pixels_y.setter
    def stride_in_pixels_y(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MPSCNNDepthWiseConvolutionDescriptor(MPSCNNConvolutionDescriptor):
    """
    Each input channel is convolved separately (multiplier 1).
    """
    @staticmethod
    def cnn_convolution_descriptor(kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, input_feature_channels: typing.SupportsInt | typing.SupportsIndex, output_feature_channels: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNDepthWiseConvolutionDescriptor:
        """
        A descriptor of this class (Apple's instancetype class factory).
        """
    def __init__(self, kernel_width: typing.SupportsInt | typing.SupportsIndex = 3, kernel_height: typing.SupportsInt | typing.SupportsIndex = 3, input_feature_channels: typing.SupportsInt | typing.SupportsIndex = 1, output_feature_channels: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        ...
    @property
    def channel_multiplier(self) -> int:
        ...
class MPSCNNSubPixelConvolutionDescriptor(MPSCNNConvolutionDescriptor):
    """
    Rearranges output channels into r x r pixel blocks.
    """
    @staticmethod
    def cnn_convolution_descriptor(kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, input_feature_channels: typing.SupportsInt | typing.SupportsIndex, output_feature_channels: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNSubPixelConvolutionDescriptor:
        """
        A descriptor of this class (Apple's instancetype class factory).
        """
    def __init__(self, kernel_width: typing.SupportsInt | typing.SupportsIndex = 3, kernel_height: typing.SupportsInt | typing.SupportsIndex = 3, input_feature_channels: typing.SupportsInt | typing.SupportsIndex = 1, output_feature_channels: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        ...
    @property
    def sub_pixel_scale_factor(self) -> int:
        ...
    @sub_pixel_scale_factor.setter
    def sub_pixel_scale_factor(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MPSNNFilterNode:
    """
    Base of every operation node.
    """
    label: str | None
    padding_policy: mpsnn.protocols.MPSNNPadding
    def __deepcopy__(self, memo: typing.Any) -> typing.Any:
        ...
    def __reduce__(self) -> tuple[..., tuple[bytes]]:
        """
        Pickles this node with everything upstream of it (data only: weights, attributes, handle labels).
        """
    def __repr__(self) -> str:
        ...
    def gradient_filter(self, with_source: MPSNNImageNode | None = None, with_sources: collections.abc.Sequence[MPSNNImageNode] | None = None) -> MPSNNFilterNode:
        """
        The gradient node of this node for the incoming gradient image (graph.md §1.8): its sources are the gradient and this node's sources, its gradient state this node's result_state.
        """
    def gradient_filters(self, with_source: MPSNNImageNode | None = None, with_sources: collections.abc.Sequence[MPSNNImageNode] | None = None) -> list[MPSNNFilterNode]:
        """
        One gradient node per source of this node.
        """
    def training_graph(self, with_source_gradient: MPSNNImageNode | None = None, node_handler: typing.Any = None) -> typing.Any:
        """
        Build the backward graph of the graph ending at this node (graph.md §1.9) and return its terminal nodes (whose results no other new node reads) in creation order, or None when nothing was created.
        
        The seed is with_source_gradient, else this node's result image; a loss node seeds the gradient of its source with its own result. Forward nodes are visited in reverse topological order through image links (state links are not followed); an image read by several forward nodes gets the sum of their gradients from inserted MPSNNAdditionNodes, chained left to right in the order the gradients were created. Nothing propagates past an image with stop_gradient; a trainable node reading one still gets its gradient node (for its parameters). node_handler(gradient_node, inference_node, inference_source, gradient_source) is called for every created node (inference_node None for additions); setting inference_source.stop_gradient = True in it prunes the traversal there. Without a handler, inference_source.handle is copied to gradient_node.result_image.handle. Training styles are copied.
        """
    @property
    def data_source(self) -> typing.Any:
        """
        mpsnn extension: the data source of a convolution-family or normalization node (the object given as weights= / data_source=, or the Array data source a loaded graph made), e.g. to read trained weights back; None for other nodes.
        """
    @property
    def result_image(self) -> MPSNNImageNode:
        ...
    @property
    def result_state(self) -> MPSNNStateNode:
        ...
    @property
    def result_states(self) -> list[MPSNNStateNode]:
        ...
    @property
    def source_images(self) -> list[MPSNNImageNode]:
        ...
class MPSNNGradientFilterNode(MPSNNFilterNode):
    """
    Base of the gradient nodes: sources are the incoming gradient, then the forward node's source(s); the gradient state is the forward node's result_state. Gradients of gradients are not supported (gradient_filter raises NotImplementedError).
    """
class MPSScaleTransform:
    """
    dest = source * scale + translate (pixel-edge coordinates).
    """
    def __init__(self, scale_x: typing.SupportsFloat | typing.SupportsIndex = 1.0, scale_y: typing.SupportsFloat | typing.SupportsIndex = 1.0, translate_x: typing.SupportsFloat | typing.SupportsIndex = 0.0, translate_y: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        ...
    @property
    def scale_x(self) -> float:
        ...
    @scale_x.setter
    def scale_x(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def scale_y(self) -> float:
        ...
    @scale_y.setter
    def scale_y(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def translate_x(self) -> float:
        ...
    @translate_x.setter
    def translate_x(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def translate_y(self) -> float:
        ...
    @translate_y.setter
    def translate_y(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class MPSCNNConvolutionNode(MPSNNFilterNode):
    """
    Convolution (nodes.md §4.2). Weights come from an MPSCNNConvolutionDataSource, read when a graph is built.
    
    Args:
        source: MPSNNImageNode (N, H, W, Cin).
        weights: data source; weights OHWI (Cout, KH, KW, Cin/groups).
    """
    @staticmethod
    def node(source: MPSNNImageNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource) -> MPSCNNConvolutionNode:
        ...
    def __init__(self, source: MPSNNImageNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource) -> None:
        ...
    @property
    def accumulator_precision(self) -> int:
        """
        0 half, 1 float; the CPU always accumulates in float32.
        """
    @accumulator_precision.setter
    def accumulator_precision(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def convolution_gradient_state(self) -> MPSNNStateNode:
        ...
    @property
    def training_style(self) -> MPSNNTrainingStyle:
        """
        MPSNNTrainingStyle (copied to gradients).
        """
    @training_style.setter
    def training_style(self, arg1: MPSNNTrainingStyle) -> None:
        ...
class MPSCNNFullyConnectedNode(MPSCNNConvolutionNode):
    """
    Fully connected layer: the kernel covers the whole source, result 1x1xCout; flatten order is row, column, channel.
    """
    @staticmethod
    def node(source: MPSNNImageNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource) -> MPSCNNFullyConnectedNode:
        ...
    def __init__(self, source: MPSNNImageNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource) -> None:
        ...
class MPSCNNConvolutionTransposeNode(MPSCNNConvolutionNode):
    """
    Transposed convolution (nodes.md §4.3). With a convolution's gradient state the result takes that convolution's source size; weights are used as given (no rotation).
    """
    @staticmethod
    def node(source: MPSNNImageNode, convolution_gradient_state: MPSNNStateNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource) -> MPSCNNConvolutionTransposeNode:
        ...
    def __init__(self, source: MPSNNImageNode, convolution_gradient_state: MPSNNStateNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource) -> None:
        ...
class MPSCNNConvolutionGradientNode(MPSNNGradientFilterNode):
    """
    Convolution gradient (nodes.md §4.6): the result is dL/dX with the forward source's size; the result state (an MPSCNNConvolutionGradientStateNode) delivers an MPSCNNConvolutionGradientState with dL/dW (OHWI, as the data source's weights) and dL/db, float32, summed over the batch. The forward geometry (padding, strides, dilation, groups, edge mode) comes from the forward node through its gradient state. Made by forward.gradient_filter(with_source=g) or by this initializer.
    
    Args:
        source_gradient: dL/dY, the forward result's size (N, H', W', Cout).
        source_image: the forward source X (N, H, W, Cin).
        convolution_gradient_state: the forward node's convolution_gradient_state.
        weights: a data source, or None for the forward node's.
    
    With training_style update_device_none only dL/dX is computed; dL/dX is skipped when nothing reads it.
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, convolution_gradient_state: MPSNNStateNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource | None = None) -> MPSCNNConvolutionGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, convolution_gradient_state: MPSNNStateNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource | None = None) -> None:
        ...
    @property
    def training_style(self) -> MPSNNTrainingStyle:
        """
        MPSNNTrainingStyle (copied from the forward node); update_device_none: no weight gradients.
        """
    @training_style.setter
    def training_style(self, arg1: MPSNNTrainingStyle) -> None:
        ...
class MPSCNNFullyConnectedGradientNode(MPSCNNConvolutionGradientNode):
    """
    Fully connected gradient (nodes.md §4.4): dX[c,p,q] = sum_o W[o,p,q,c] G[o], dW = sum_n G X, db = sum_n G.
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, convolution_gradient_state: MPSNNStateNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource | None = None) -> MPSCNNFullyConnectedGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, convolution_gradient_state: MPSNNStateNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource | None = None) -> None:
        ...
class MPSCNNConvolutionTransposeGradientNode(MPSCNNConvolutionGradientNode):
    """
    Transposed convolution gradient (nodes.md §4.3), with the forward node's geometry (including sizing by a paired convolution's gradient state).
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, convolution_transpose_gradient_state: MPSNNStateNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource | None = None) -> MPSCNNConvolutionTransposeGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, convolution_transpose_gradient_state: MPSNNStateNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource | None = None) -> None:
        ...
class MPSCNNBinaryConvolutionNode(MPSCNNConvolutionNode):
    """
    Binary convolution (nodes.md §4.5): uint32 bit-packed weights [Cout][KH][KW][ceil(Cin/32)]; inference only.
    """
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource, scale_value: typing.SupportsFloat | typing.SupportsIndex, type: MPSCNNBinaryConvolutionType, flags: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNBinaryConvolutionNode:
        ...
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource, output_bias_terms: _FloatVector | None, output_scale_terms: _FloatVector | None, input_bias_terms: _FloatVector | None, input_scale_terms: _FloatVector | None, type: MPSCNNBinaryConvolutionType, flags: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNBinaryConvolutionNode:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource, scale_value: typing.SupportsFloat | typing.SupportsIndex, type: MPSCNNBinaryConvolutionType, flags: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource, output_bias_terms: _FloatVector | None, output_scale_terms: _FloatVector | None, input_bias_terms: _FloatVector | None, input_scale_terms: _FloatVector | None, type: MPSCNNBinaryConvolutionType, flags: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def accumulator_precision(self) -> int:
        """
        0 half, 1 float; the CPU always accumulates in float32.
        """
    @accumulator_precision.setter
    def accumulator_precision(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def convolution_gradient_state(self) -> typing.Any:
        ...
    @property
    def training_style(self) -> MPSNNTrainingStyle:
        """
        MPSNNTrainingStyle (formal only: binary convolutions have no gradient).
        """
    @training_style.setter
    def training_style(self, arg1: MPSNNTrainingStyle) -> None:
        ...
class MPSCNNBinaryFullyConnectedNode(MPSCNNBinaryConvolutionNode):
    """
    Binary fully connected layer.
    """
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource, scale_value: typing.SupportsFloat | typing.SupportsIndex, type: MPSCNNBinaryConvolutionType, flags: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNBinaryFullyConnectedNode:
        ...
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource, output_bias_terms: _FloatVector | None, output_scale_terms: _FloatVector | None, input_bias_terms: _FloatVector | None, input_scale_terms: _FloatVector | None, type: MPSCNNBinaryConvolutionType, flags: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNBinaryFullyConnectedNode:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource, scale_value: typing.SupportsFloat | typing.SupportsIndex, type: MPSCNNBinaryConvolutionType, flags: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, weights: mpsnn.protocols.MPSCNNConvolutionDataSource, output_bias_terms: _FloatVector | None, output_scale_terms: _FloatVector | None, input_bias_terms: _FloatVector | None, input_scale_terms: _FloatVector | None, type: MPSCNNBinaryConvolutionType, flags: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MPSCNNPoolingNode(MPSNNFilterNode):
    """
    Base of max, average and L2-norm pooling; default edge mode clamp, padding sizeSame.
    """
    @property
    def edge_mode(self) -> MPSImageEdgeMode:
        """
        Kernel edge mode (zero or clamp).
        """
    @edge_mode.setter
    def edge_mode(self, arg1: MPSImageEdgeMode) -> None:
        ...
    @property
    def kernel_height(self) -> int:
        ...
    @property
    def kernel_width(self) -> int:
        ...
    @property
    def stride_in_pixels_x(self) -> int:
        ...
    @property
    def stride_in_pixels_y(self) -> int:
        ...
    @property
    def zero_pad_size_x(self) -> int:
        """
        Average pooling with clamp: zero border counted in the divisor.
        """
    @zero_pad_size_x.setter
    def zero_pad_size_x(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def zero_pad_size_y(self) -> int:
        ...
    @zero_pad_size_y.setter
    def zero_pad_size_y(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MPSCNNPoolingMaxNode(MPSCNNPoolingNode):
    """
    Max pooling (nodes.md §5.3).
    """
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNPoolingMaxNode:
        ...
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, filter_size: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex | None = None) -> MPSCNNPoolingMaxNode:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, filter_size: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex | None = None) -> None:
        ...
class MPSCNNPoolingAverageNode(MPSCNNPoolingNode):
    """
    Average pooling (nodes.md §5.2).
    """
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNPoolingAverageNode:
        ...
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, filter_size: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex | None = None) -> MPSCNNPoolingAverageNode:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, filter_size: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex | None = None) -> None:
        ...
class MPSCNNPoolingL2NormNode(MPSCNNPoolingNode):
    """
    L2-norm pooling: sqrt of the window's sum of squares (§5.4).
    """
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNPoolingL2NormNode:
        ...
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, filter_size: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex | None = None) -> MPSCNNPoolingL2NormNode:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, filter_size: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex | None = None) -> None:
        ...
class MPSCNNDilatedPoolingMaxNode(MPSNNFilterNode):
    """
    Dilated max pooling (nodes.md §5.5).
    """
    edge_mode: MPSImageEdgeMode
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex, dilation_rate_x: typing.SupportsInt | typing.SupportsIndex, dilation_rate_y: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNDilatedPoolingMaxNode:
        ...
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, filter_size: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex | None = None, dilation_rate: typing.SupportsInt | typing.SupportsIndex | None = None) -> MPSCNNDilatedPoolingMaxNode:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex, dilation_rate_x: typing.SupportsInt | typing.SupportsIndex, dilation_rate_y: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, filter_size: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex | None = None, dilation_rate: typing.SupportsInt | typing.SupportsIndex | None = None) -> None:
        ...
    @property
    def dilation_rate_x(self) -> int:
        ...
    @property
    def dilation_rate_y(self) -> int:
        ...
    @property
    def kernel_height(self) -> int:
        ...
    @property
    def kernel_width(self) -> int:
        ...
    @property
    def stride_in_pixels_x(self) -> int:
        ...
    @property
    def stride_in_pixels_y(self) -> int:
        ...
class MPSCNNPoolingGradientNode(MPSNNGradientFilterNode):
    """
    Base of the pooling gradient nodes: dX with the forward source's size. Padding, edge mode and zero-pad sizes are the forward node's (from its gradient state).
    """
    @property
    def kernel_height(self) -> int:
        ...
    @property
    def kernel_width(self) -> int:
        ...
    @property
    def stride_in_pixels_x(self) -> int:
        ...
    @property
    def stride_in_pixels_y(self) -> int:
        ...
class MPSCNNPoolingMaxGradientNode(MPSCNNPoolingGradientNode):
    """
    Max pooling gradient: G routed to each window's arg-max (first maximal tap).
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex, padding_policy: mpsnn.protocols.MPSNNPadding | None = None) -> MPSCNNPoolingMaxGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex, padding_policy: mpsnn.protocols.MPSNNPadding | None = None) -> None:
        ...
class MPSCNNPoolingAverageGradientNode(MPSCNNPoolingGradientNode):
    """
    Average pooling gradient: G / N spread over each window's in-image taps.
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex, padding_policy: mpsnn.protocols.MPSNNPadding | None = None) -> MPSCNNPoolingAverageGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex, padding_policy: mpsnn.protocols.MPSNNPadding | None = None) -> None:
        ...
class MPSCNNPoolingL2NormGradientNode(MPSCNNPoolingGradientNode):
    """
    L2-norm pooling gradient: G * X / Y over each window.
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex, padding_policy: mpsnn.protocols.MPSNNPadding | None = None) -> MPSCNNPoolingL2NormGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex, padding_policy: mpsnn.protocols.MPSNNPadding | None = None) -> None:
        ...
class MPSCNNDilatedPoolingMaxGradientNode(MPSCNNPoolingGradientNode):
    """
    Dilated max pooling gradient (nodes.md §5.5, §5.6).
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex, dilation_rate_x: typing.SupportsInt | typing.SupportsIndex, dilation_rate_y: typing.SupportsInt | typing.SupportsIndex, padding_policy: mpsnn.protocols.MPSNNPadding | None = None) -> MPSCNNDilatedPoolingMaxGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_x: typing.SupportsInt | typing.SupportsIndex, stride_in_pixels_y: typing.SupportsInt | typing.SupportsIndex, dilation_rate_x: typing.SupportsInt | typing.SupportsIndex, dilation_rate_y: typing.SupportsInt | typing.SupportsIndex, padding_policy: mpsnn.protocols.MPSNNPadding | None = None) -> None:
        ...
    @property
    def dilation_rate_x(self) -> int:
        ...
    @property
    def dilation_rate_y(self) -> int:
        ...
class MPSCNNNeuronNode(MPSNNFilterNode):
    """
    Base of the neuron (activation) nodes; elementwise, shape preserved.
    """
    @staticmethod
    def node(source: MPSNNImageNode, descriptor: MPSNNNeuronDescriptor) -> MPSNNFilterNode:
        """
        The neuron node subclass matching descriptor.neuron_type.
        """
    @property
    def a(self) -> float:
        ...
    @property
    def b(self) -> float:
        ...
    @property
    def c(self) -> float:
        ...
    @property
    def descriptor(self) -> MPSNNNeuronDescriptor:
        ...
class _MPSCNNNeuronNoneNode(MPSCNNNeuronNode):
    """
    Identity neuron (type none).
    """
    @staticmethod
    def node(source: MPSNNImageNode) -> _MPSCNNNeuronNoneNode:
        ...
    def __init__(self, source: MPSNNImageNode) -> None:
        ...
class MPSCNNNeuronReLUNode(MPSCNNNeuronNode):
    """
    f(u) = u if u >= 0 else a*u (a = 0: ReLU).
    """
    @staticmethod
    def node(source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> MPSCNNNeuronReLUNode:
        ...
    def __init__(self, source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        ...
class MPSCNNNeuronLinearNode(MPSCNNNeuronNode):
    """
    f(u) = a*u + b.
    """
    @staticmethod
    def node(source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> MPSCNNNeuronLinearNode:
        ...
    def __init__(self, source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        ...
class MPSCNNNeuronSigmoidNode(MPSCNNNeuronNode):
    """
    f(u) = 1 / (1 + e^-u).
    """
    @staticmethod
    def node(source: MPSNNImageNode) -> MPSCNNNeuronSigmoidNode:
        ...
    def __init__(self, source: MPSNNImageNode) -> None:
        ...
class MPSCNNNeuronHardSigmoidNode(MPSCNNNeuronNode):
    """
    f(u) = clamp(a*u + b, 0, 1).
    """
    @staticmethod
    def node(source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 0.20000000298023224, b: typing.SupportsFloat | typing.SupportsIndex = 0.5) -> MPSCNNNeuronHardSigmoidNode:
        ...
    def __init__(self, source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 0.20000000298023224, b: typing.SupportsFloat | typing.SupportsIndex = 0.5) -> None:
        ...
class MPSCNNNeuronTanHNode(MPSCNNNeuronNode):
    """
    f(u) = a * tanh(b*u).
    """
    @staticmethod
    def node(source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> MPSCNNNeuronTanHNode:
        ...
    def __init__(self, source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> None:
        ...
class MPSCNNNeuronAbsoluteNode(MPSCNNNeuronNode):
    """
    f(u) = |u|.
    """
    @staticmethod
    def node(source: MPSNNImageNode) -> MPSCNNNeuronAbsoluteNode:
        ...
    def __init__(self, source: MPSNNImageNode) -> None:
        ...
class MPSCNNNeuronSoftPlusNode(MPSCNNNeuronNode):
    """
    f(u) = a * ln(1 + e^(b*u)).
    """
    @staticmethod
    def node(source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> MPSCNNNeuronSoftPlusNode:
        ...
    def __init__(self, source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> None:
        ...
class MPSCNNNeuronSoftSignNode(MPSCNNNeuronNode):
    """
    f(u) = u / (1 + |u|).
    """
    @staticmethod
    def node(source: MPSNNImageNode) -> MPSCNNNeuronSoftSignNode:
        ...
    def __init__(self, source: MPSNNImageNode) -> None:
        ...
class MPSCNNNeuronELUNode(MPSCNNNeuronNode):
    """
    f(u) = u if u >= 0 else a*(e^u - 1).
    """
    @staticmethod
    def node(source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> MPSCNNNeuronELUNode:
        ...
    def __init__(self, source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> None:
        ...
class MPSCNNNeuronReLUNNode(MPSCNNNeuronNode):
    """
    f(u) = min(u if u >= 0 else a*u, b).
    """
    @staticmethod
    def node(source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 6.0) -> MPSCNNNeuronReLUNNode:
        ...
    def __init__(self, source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 6.0) -> None:
        ...
class MPSCNNNeuronPowerNode(MPSCNNNeuronNode):
    """
    f(u) = (a*u + b)^c.
    """
    @staticmethod
    def node(source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 0.0, c: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> MPSCNNNeuronPowerNode:
        ...
    def __init__(self, source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 0.0, c: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> None:
        ...
class MPSCNNNeuronExponentialNode(MPSCNNNeuronNode):
    """
    f(u) = c^(a*u + b); base e when c = -1.
    """
    @staticmethod
    def node(source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 0.0, c: typing.SupportsFloat | typing.SupportsIndex = -1.0) -> MPSCNNNeuronExponentialNode:
        ...
    def __init__(self, source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 0.0, c: typing.SupportsFloat | typing.SupportsIndex = -1.0) -> None:
        ...
class MPSCNNNeuronLogarithmNode(MPSCNNNeuronNode):
    """
    f(u) = log_c(a*u + b); natural log when c = -1.
    """
    @staticmethod
    def node(source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 0.0, c: typing.SupportsFloat | typing.SupportsIndex = -1.0) -> MPSCNNNeuronLogarithmNode:
        ...
    def __init__(self, source: MPSNNImageNode, a: typing.SupportsFloat | typing.SupportsIndex = 1.0, b: typing.SupportsFloat | typing.SupportsIndex = 0.0, c: typing.SupportsFloat | typing.SupportsIndex = -1.0) -> None:
        ...
class MPSCNNNeuronPReLUNode(MPSCNNNeuronNode):
    """
    f(u) = u if u >= 0 else a[c]*u with one slope per feature channel (or one for all).
    """
    @staticmethod
    def node(source: MPSNNImageNode, a_data: _FloatVector) -> MPSCNNNeuronPReLUNode:
        ...
    def __init__(self, source: MPSNNImageNode, a_data: _FloatVector) -> None:
        ...
class MPSCNNNeuronGradientNode(MPSNNGradientFilterNode):
    """
    Neuron gradient: dX = G * f'(X), X the forward node's source.
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, descriptor: MPSNNNeuronDescriptor) -> MPSCNNNeuronGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, descriptor: MPSNNNeuronDescriptor) -> None:
        ...
    @property
    def descriptor(self) -> MPSNNNeuronDescriptor:
        ...
class MPSNNBinaryArithmeticNode(MPSNNFilterNode):
    """
    Y = clamp(op(primary_scale*A, secondary_scale*B) + bias, minimum_value, maximum_value); a stride of 0 broadcasts an operand along that axis.
    """
    def gradient_class(self: MPSNNFilterNode) -> typing.Any:
        """
        The class of this node's two gradient nodes (nodes.md §3.1).
        """
    @property
    def bias(self) -> float:
        ...
    @bias.setter
    def bias(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def maximum_value(self) -> float:
        ...
    @maximum_value.setter
    def maximum_value(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def minimum_value(self) -> float:
        ...
    @minimum_value.setter
    def minimum_value(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def primary_scale(self) -> float:
        ...
    @primary_scale.setter
    def primary_scale(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def primary_stride_in_feature_channels(self) -> int:
        ...
    @primary_stride_in_feature_channels.setter
    def primary_stride_in_feature_channels(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def primary_stride_in_pixels_x(self) -> int:
        ...
    @primary_stride_in_pixels_x.setter
    def primary_stride_in_pixels_x(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def primary_stride_in_pixels_y(self) -> int:
        ...
    @primary_stride_in_pixels_y.setter
    def primary_stride_in_pixels_y(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def secondary_scale(self) -> float:
        ...
    @secondary_scale.setter
    def secondary_scale(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def secondary_stride_in_feature_channels(self) -> int:
        ...
    @secondary_stride_in_feature_channels.setter
    def secondary_stride_in_feature_channels(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def secondary_stride_in_pixels_x(self) -> int:
        ...
    @secondary_stride_in_pixels_x.setter
    def secondary_stride_in_pixels_x(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def secondary_stride_in_pixels_y(self) -> int:
        ...
    @secondary_stride_in_pixels_y.setter
    def secondary_stride_in_pixels_y(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MPSNNAdditionNode(MPSNNBinaryArithmeticNode):
    """
    A + B.
    """
    @staticmethod
    def node(sources: collections.abc.Sequence[MPSNNImageNode] | None = None, left_source: MPSNNImageNode | None = None, right_source: MPSNNImageNode | None = None) -> MPSNNAdditionNode:
        ...
    def __init__(self, sources: collections.abc.Sequence[MPSNNImageNode] | None = None, left_source: MPSNNImageNode | None = None, right_source: MPSNNImageNode | None = None) -> None:
        ...
class MPSNNSubtractionNode(MPSNNBinaryArithmeticNode):
    """
    A - B.
    """
    @staticmethod
    def node(sources: collections.abc.Sequence[MPSNNImageNode] | None = None, left_source: MPSNNImageNode | None = None, right_source: MPSNNImageNode | None = None) -> MPSNNSubtractionNode:
        ...
    def __init__(self, sources: collections.abc.Sequence[MPSNNImageNode] | None = None, left_source: MPSNNImageNode | None = None, right_source: MPSNNImageNode | None = None) -> None:
        ...
class MPSNNMultiplicationNode(MPSNNBinaryArithmeticNode):
    """
    A * B.
    """
    @staticmethod
    def node(sources: collections.abc.Sequence[MPSNNImageNode] | None = None, left_source: MPSNNImageNode | None = None, right_source: MPSNNImageNode | None = None) -> MPSNNMultiplicationNode:
        ...
    def __init__(self, sources: collections.abc.Sequence[MPSNNImageNode] | None = None, left_source: MPSNNImageNode | None = None, right_source: MPSNNImageNode | None = None) -> None:
        ...
class MPSNNDivisionNode(MPSNNBinaryArithmeticNode):
    """
    A / B (IEEE: x/0 = inf).
    """
    @staticmethod
    def node(sources: collections.abc.Sequence[MPSNNImageNode] | None = None, left_source: MPSNNImageNode | None = None, right_source: MPSNNImageNode | None = None) -> MPSNNDivisionNode:
        ...
    def __init__(self, sources: collections.abc.Sequence[MPSNNImageNode] | None = None, left_source: MPSNNImageNode | None = None, right_source: MPSNNImageNode | None = None) -> None:
        ...
class MPSNNConcatenationNode(MPSNNFilterNode):
    """
    Channel concatenation; each source but the last occupies a slot rounded up to 4 channels (gaps are 0).
    """
    @staticmethod
    def node(sources: collections.abc.Sequence[MPSNNImageNode]) -> MPSNNConcatenationNode:
        ...
    def __init__(self, sources: collections.abc.Sequence[MPSNNImageNode]) -> None:
        ...
class MPSCNNSoftMaxNode(MPSNNFilterNode):
    """
    Softmax over the feature channels of each pixel.
    """
    @staticmethod
    def node(source: MPSNNImageNode) -> MPSCNNSoftMaxNode:
        ...
    def __init__(self, source: MPSNNImageNode) -> None:
        ...
class MPSCNNLogSoftMaxNode(MPSNNFilterNode):
    """
    Log-softmax over the feature channels of each pixel.
    """
    @staticmethod
    def node(source: MPSNNImageNode) -> MPSCNNLogSoftMaxNode:
        ...
    def __init__(self, source: MPSNNImageNode) -> None:
        ...
class MPSCNNDropoutNode(MPSNNFilterNode):
    """
    Dropout: Y = X*M/keep_probability with a Bernoulli(keep_probability) mask M, sampled when its result state is consumed (a training graph) by Philox-4x32-10 keyed by seed (the same seed gives the same mask); in inference graphs the identity (the compiler removes it).
    """
    @staticmethod
    def node(source: MPSNNImageNode, keep_probability: typing.SupportsFloat | typing.SupportsIndex = 0.5, seed: typing.SupportsInt | typing.SupportsIndex = 0, mask_stride_in_pixels: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"] = [1, 1, 1]) -> MPSCNNDropoutNode:
        ...
    def __init__(self, source: MPSNNImageNode, keep_probability: typing.SupportsFloat | typing.SupportsIndex = 0.5, seed: typing.SupportsInt | typing.SupportsIndex = 0, mask_stride_in_pixels: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"] = [1, 1, 1]) -> None:
        ...
    @property
    def keep_probability(self) -> float:
        ...
    @property
    def mask_stride_in_pixels(self) -> typing.Annotated[list[int], "FixedSize(3)"]:
        ...
    @property
    def seed(self) -> int:
        ...
class MPSNNArithmeticGradientNode(MPSNNGradientFilterNode):
    """
    Base of the binary arithmetic gradient nodes: the gradient w.r.t. the primary (is_secondary_source_filter False) or secondary operand, including the scales and the forward clamp mask, summed over the axes that operand is broadcast along (stride 0). Made in pairs by forward.gradient_filters(with_source=g).
    """
    @property
    def bias(self) -> float:
        """
        Ignored by the gradient.
        """
    @bias.setter
    def bias(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def is_secondary_source_filter(self) -> bool:
        ...
    @property
    def maximum_value(self) -> float:
        ...
    @maximum_value.setter
    def maximum_value(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def minimum_value(self) -> float:
        ...
    @minimum_value.setter
    def minimum_value(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def primary_scale(self) -> float:
        ...
    @primary_scale.setter
    def primary_scale(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def secondary_scale(self) -> float:
        ...
    @secondary_scale.setter
    def secondary_scale(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def secondary_stride_in_feature_channels(self) -> int:
        """
        Broadcasting of the operand this node differentiates; must equal the forward node's.
        """
    @secondary_stride_in_feature_channels.setter
    def secondary_stride_in_feature_channels(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def secondary_stride_in_pixels_x(self) -> int:
        """
        Broadcasting of the operand this node differentiates; must equal the forward node's.
        """
    @secondary_stride_in_pixels_x.setter
    def secondary_stride_in_pixels_x(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def secondary_stride_in_pixels_y(self) -> int:
        """
        Broadcasting of the operand this node differentiates; must equal the forward node's.
        """
    @secondary_stride_in_pixels_y.setter
    def secondary_stride_in_pixels_y(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MPSNNAdditionGradientNode(MPSNNArithmeticGradientNode):
    """
    dA = primary_scale*m*G, dB = secondary_scale*m*G.
    """
    @staticmethod
    @typing.overload
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, is_secondary_source_filter: bool) -> MPSNNAdditionGradientNode:
        ...
    @staticmethod
    @typing.overload
    def node(gradient_images: collections.abc.Sequence[MPSNNImageNode], forward_filter: MPSNNFilterNode, is_secondary_source_filter: bool) -> MPSNNAdditionGradientNode:
        ...
    @typing.overload
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, is_secondary_source_filter: bool) -> None:
        ...
    @typing.overload
    def __init__(self, gradient_images: collections.abc.Sequence[MPSNNImageNode], forward_filter: MPSNNFilterNode, is_secondary_source_filter: bool) -> None:
        ...
class MPSNNSubtractionGradientNode(MPSNNArithmeticGradientNode):
    """
    dA = primary_scale*m*G, dB = -secondary_scale*m*G.
    """
    @staticmethod
    @typing.overload
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, is_secondary_source_filter: bool) -> MPSNNSubtractionGradientNode:
        ...
    @staticmethod
    @typing.overload
    def node(gradient_images: collections.abc.Sequence[MPSNNImageNode], forward_filter: MPSNNFilterNode, is_secondary_source_filter: bool) -> MPSNNSubtractionGradientNode:
        ...
    @typing.overload
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, is_secondary_source_filter: bool) -> None:
        ...
    @typing.overload
    def __init__(self, gradient_images: collections.abc.Sequence[MPSNNImageNode], forward_filter: MPSNNFilterNode, is_secondary_source_filter: bool) -> None:
        ...
class MPSNNMultiplicationGradientNode(MPSNNArithmeticGradientNode):
    """
    dA = primary_scale*secondary_scale*B*m*G, dB = primary_scale*secondary_scale*A*m*G; source_image is the other operand.
    """
    @staticmethod
    @typing.overload
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, is_secondary_source_filter: bool) -> MPSNNMultiplicationGradientNode:
        ...
    @staticmethod
    @typing.overload
    def node(gradient_images: collections.abc.Sequence[MPSNNImageNode], forward_filter: MPSNNFilterNode, is_secondary_source_filter: bool) -> MPSNNMultiplicationGradientNode:
        ...
    @typing.overload
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, is_secondary_source_filter: bool) -> None:
        ...
    @typing.overload
    def __init__(self, gradient_images: collections.abc.Sequence[MPSNNImageNode], forward_filter: MPSNNFilterNode, is_secondary_source_filter: bool) -> None:
        ...
class MPSNNConcatenationGradientNode(MPSNNGradientFilterNode):
    """
    The slice of the concatenation's incoming gradient that belongs to source_image (its 4-aligned channel slot). One per source, made by forward.gradient_filters(with_source=g).
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode) -> MPSNNConcatenationGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode) -> None:
        ...
class MPSCNNSoftMaxGradientNode(MPSNNGradientFilterNode):
    """
    dX = Y*(G - sum_c G*Y), Y the forward result (source_image).
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode) -> MPSCNNSoftMaxGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode) -> None:
        ...
class MPSCNNLogSoftMaxGradientNode(MPSNNGradientFilterNode):
    """
    dX = G - exp(Y)*sum_c G, Y the forward result (source_image).
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode) -> MPSCNNLogSoftMaxGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode) -> None:
        ...
class MPSCNNDropoutGradientNode(MPSNNGradientFilterNode):
    """
    dX = G*M/keep_probability with the mask M the forward dropout sampled (its MPSCNNDropoutGradientState).
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, keep_probability: typing.SupportsFloat | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, mask_stride_in_pixels: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"]) -> MPSCNNDropoutGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, keep_probability: typing.SupportsFloat | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, mask_stride_in_pixels: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"]) -> None:
        ...
    @property
    def keep_probability(self) -> float:
        ...
    @property
    def mask_stride_in_pixels(self) -> typing.Annotated[list[int], "FixedSize(3)"]:
        ...
    @property
    def seed(self) -> int:
        ...
class MPSCNNBatchNormalizationNode(MPSNNFilterNode):
    """
    y = gamma*(x - mean)/sqrt(variance + epsilon) + beta. Inference uses the data source's statistics (and is folded into a preceding convolution); flags=calculate_statistics_always uses the batch's own.
    """
    training_style: MPSNNTrainingStyle
    @staticmethod
    def node(source: MPSNNImageNode, data_source: mpsnn.protocols.MPSCNNBatchNormalizationDataSource) -> MPSCNNBatchNormalizationNode:
        ...
    def __init__(self, source: MPSNNImageNode, data_source: mpsnn.protocols.MPSCNNBatchNormalizationDataSource) -> None:
        ...
    @property
    def flags(self) -> MPSCNNBatchNormalizationFlags:
        """
        MPSCNNBatchNormalizationFlags.
        """
    @flags.setter
    def flags(self, arg1: MPSCNNBatchNormalizationFlags) -> None:
        ...
class MPSCNNInstanceNormalizationNode(MPSNNFilterNode):
    """
    Normalization per image and channel over its pixels (nodes.md §8.6).
    """
    training_style: MPSNNTrainingStyle
    @staticmethod
    def node(source: MPSNNImageNode, data_source: mpsnn.protocols.MPSCNNInstanceNormalizationDataSource) -> MPSCNNInstanceNormalizationNode:
        ...
    def __init__(self, source: MPSNNImageNode, data_source: mpsnn.protocols.MPSCNNInstanceNormalizationDataSource) -> None:
        ...
class _MPSCNNBatchNormalizationStateNode(MPSNNGradientStateNode):
    """
    The result state of batch normalization and of its gradient: delivered as an MPSCNNBatchNormalizationState.
    """
class _MPSCNNInstanceNormalizationGradientStateNode(MPSNNGradientStateNode):
    """
    The result state of instance normalization and of its gradient: delivered as an MPSCNNInstanceNormalizationGradientState.
    """
class MPSCNNBatchNormalizationGradientNode(MPSNNGradientFilterNode):
    """
    Batch normalization gradient (nodes.md §8.5): dL/dX with the forward source's size, in the mode the forward ran in (batch statistics in training; the data source's otherwise). Its result state delivers an MPSCNNBatchNormalizationState with the statistics, gamma, beta and gradient_for_gamma() / gradient_for_beta() summed over the batch.
    
    Args:
        source_gradient: dL/dY (N, H, W, C).
        source_image: the forward source X.
        gradient_state: the forward node's result_state.
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode) -> MPSCNNBatchNormalizationGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode) -> None:
        ...
    @property
    def training_style(self) -> MPSNNTrainingStyle:
        """
        MPSNNTrainingStyle (copied from the forward node); update_device_none: no gamma/beta gradients.
        """
    @training_style.setter
    def training_style(self, arg1: MPSNNTrainingStyle) -> None:
        ...
class MPSCNNInstanceNormalizationGradientNode(MPSNNGradientFilterNode):
    """
    Instance normalization gradient (nodes.md §8.6): dL/dX; its result state delivers an MPSCNNInstanceNormalizationGradientState with gamma, beta and their gradients summed over the batch.
    """
    training_style: MPSNNTrainingStyle
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode) -> MPSCNNInstanceNormalizationGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode) -> None:
        ...
class MPSCNNNormalizationNode(MPSNNFilterNode):
    """
    Base of the LRN-style normalizations; alpha, beta, delta.
    """
    @property
    def alpha(self) -> float:
        ...
    @alpha.setter
    def alpha(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def beta(self) -> float:
        ...
    @beta.setter
    def beta(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def delta(self) -> float:
        ...
    @delta.setter
    def delta(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class MPSCNNCrossChannelNormalizationNode(MPSCNNNormalizationNode):
    """
    Local response normalization across channels (nodes.md §8.2).
    """
    @staticmethod
    def node(source: MPSNNImageNode, kernel_size: typing.SupportsInt | typing.SupportsIndex = 5) -> MPSCNNCrossChannelNormalizationNode:
        ...
    def __init__(self, source: MPSNNImageNode, kernel_size: typing.SupportsInt | typing.SupportsIndex = 5) -> None:
        ...
    @property
    def kernel_size_in_feature_channels(self) -> int:
        ...
class MPSCNNSpatialNormalizationNode(MPSCNNNormalizationNode):
    """
    Normalization over a spatial window per channel (nodes.md §8.3).
    """
    @staticmethod
    def node(source: MPSNNImageNode, kernel_size: typing.SupportsInt | typing.SupportsIndex = 5) -> MPSCNNSpatialNormalizationNode:
        ...
    def __init__(self, source: MPSNNImageNode, kernel_size: typing.SupportsInt | typing.SupportsIndex = 5) -> None:
        ...
    @property
    def kernel_height(self) -> int:
        ...
    @kernel_height.setter
    def kernel_height(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def kernel_width(self) -> int:
        ...
    @kernel_width.setter
    def kernel_width(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MPSCNNLocalContrastNormalizationNode(MPSCNNNormalizationNode):
    """
    Local contrast normalization (nodes.md §8.4).
    """
    @staticmethod
    def node(source: MPSNNImageNode, kernel_size: typing.SupportsInt | typing.SupportsIndex = 5) -> MPSCNNLocalContrastNormalizationNode:
        ...
    def __init__(self, source: MPSNNImageNode, kernel_size: typing.SupportsInt | typing.SupportsIndex = 5) -> None:
        ...
    @property
    def kernel_height(self) -> int:
        ...
    @kernel_height.setter
    def kernel_height(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def kernel_width(self) -> int:
        ...
    @kernel_width.setter
    def kernel_width(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def p0(self) -> float:
        ...
    @p0.setter
    def p0(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def pm(self) -> float:
        ...
    @pm.setter
    def pm(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def ps(self) -> float:
        ...
    @ps.setter
    def ps(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class MPSCNNCrossChannelNormalizationGradientNode(MPSNNGradientFilterNode):
    """
    Gradient of the cross-channel normalization (the exact derivative of nodes.md §8.2).
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_size: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNCrossChannelNormalizationGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_size: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def alpha(self) -> float:
        """
        mpsnn extension (MPS takes it from the state).
        """
    @alpha.setter
    def alpha(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def beta(self) -> float:
        """
        mpsnn extension (MPS takes it from the state).
        """
    @beta.setter
    def beta(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def delta(self) -> float:
        """
        mpsnn extension (MPS takes it from the state).
        """
    @delta.setter
    def delta(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def kernel_size(self) -> int:
        ...
class MPSCNNSpatialNormalizationGradientNode(MPSNNGradientFilterNode):
    """
    Gradient of the spatial normalization (nodes.md §8.3).
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_size: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNSpatialNormalizationGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_size: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def alpha(self) -> float:
        ...
    @alpha.setter
    def alpha(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def beta(self) -> float:
        ...
    @beta.setter
    def beta(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def delta(self) -> float:
        ...
    @delta.setter
    def delta(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def kernel_height(self) -> int:
        ...
    @property
    def kernel_width(self) -> int:
        ...
class MPSCNNLocalContrastNormalizationGradientNode(MPSNNGradientFilterNode):
    """
    Gradient of the local contrast normalization (nodes.md §8.4); alpha defaults to 0 when built by hand.
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNLocalContrastNormalizationGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, kernel_width: typing.SupportsInt | typing.SupportsIndex, kernel_height: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def alpha(self) -> float:
        ...
    @alpha.setter
    def alpha(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def beta(self) -> float:
        ...
    @beta.setter
    def beta(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def delta(self) -> float:
        ...
    @delta.setter
    def delta(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def kernel_height(self) -> int:
        ...
    @property
    def kernel_width(self) -> int:
        ...
    @property
    def p0(self) -> float:
        ...
    @p0.setter
    def p0(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def pm(self) -> float:
        ...
    @pm.setter
    def pm(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def ps(self) -> float:
        ...
    @ps.setter
    def ps(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class MPSCNNUpsamplingNearestNode(MPSNNFilterNode):
    """
    Nearest-neighbour upsampling by integer factors.
    """
    @staticmethod
    def node(source: MPSNNImageNode, integer_scale_factor_x: typing.SupportsInt | typing.SupportsIndex, integer_scale_factor_y: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNUpsamplingNearestNode:
        ...
    def __init__(self, source: MPSNNImageNode, integer_scale_factor_x: typing.SupportsInt | typing.SupportsIndex, integer_scale_factor_y: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def scale_factor_x(self) -> float:
        ...
    @property
    def scale_factor_y(self) -> float:
        ...
class MPSCNNUpsamplingBilinearNode(MPSNNFilterNode):
    """
    Bilinear upsampling by integer factors (align_corners on or off).
    """
    @staticmethod
    def node(source: MPSNNImageNode, integer_scale_factor_x: typing.SupportsInt | typing.SupportsIndex, integer_scale_factor_y: typing.SupportsInt | typing.SupportsIndex, align_corners: bool = False) -> MPSCNNUpsamplingBilinearNode:
        ...
    def __init__(self, source: MPSNNImageNode, integer_scale_factor_x: typing.SupportsInt | typing.SupportsIndex, integer_scale_factor_y: typing.SupportsInt | typing.SupportsIndex, align_corners: bool = False) -> None:
        ...
    @property
    def align_corners(self) -> bool:
        ...
    @property
    def scale_factor_x(self) -> float:
        ...
    @property
    def scale_factor_y(self) -> float:
        ...
class MPSCNNUpsamplingNearestGradientNode(MPSNNGradientFilterNode):
    """
    Nearest upsampling gradient: the sum of G over each fy x fx block.
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, scale_factor_x: typing.SupportsFloat | typing.SupportsIndex, scale_factor_y: typing.SupportsFloat | typing.SupportsIndex) -> MPSCNNUpsamplingNearestGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, scale_factor_x: typing.SupportsFloat | typing.SupportsIndex, scale_factor_y: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def scale_factor_x(self) -> float:
        ...
    @property
    def scale_factor_y(self) -> float:
        ...
class MPSCNNUpsamplingBilinearGradientNode(MPSNNGradientFilterNode):
    """
    Bilinear upsampling gradient: the adjoint of the forward interpolation (align_corners of the forward node).
    """
    @staticmethod
    def node(source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, scale_factor_x: typing.SupportsFloat | typing.SupportsIndex, scale_factor_y: typing.SupportsFloat | typing.SupportsIndex) -> MPSCNNUpsamplingBilinearGradientNode:
        ...
    def __init__(self, source_gradient: MPSNNImageNode, source_image: MPSNNImageNode, gradient_state: MPSNNStateNode, scale_factor_x: typing.SupportsFloat | typing.SupportsIndex, scale_factor_y: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def align_corners(self) -> bool:
        ...
    @property
    def scale_factor_x(self) -> float:
        ...
    @property
    def scale_factor_y(self) -> float:
        ...
class MPSNNScaleNode(MPSNNFilterNode):
    """
    Base of the resampling nodes with a fixed output size.
    """
class MPSNNBilinearScaleNode(MPSNNScaleNode):
    """
    Bilinear resampling (nodes.md §10.3).
    """
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, output_size: mpsnn._types.MTLSize) -> MPSNNBilinearScaleNode:
        ...
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, transform_provider: mpsnn.protocols.MPSImageTransformProvider, output_size: mpsnn._types.MTLSize) -> MPSNNBilinearScaleNode:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, output_size: mpsnn._types.MTLSize) -> None:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, transform_provider: mpsnn.protocols.MPSImageTransformProvider, output_size: mpsnn._types.MTLSize) -> None:
        ...
class MPSNNLanczosScaleNode(MPSNNScaleNode):
    """
    Lanczos-3 resampling (nodes.md §10.4).
    """
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, output_size: mpsnn._types.MTLSize) -> MPSNNLanczosScaleNode:
        ...
    @staticmethod
    @typing.overload
    def node(source: MPSNNImageNode, transform_provider: mpsnn.protocols.MPSImageTransformProvider, output_size: mpsnn._types.MTLSize) -> MPSNNLanczosScaleNode:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, output_size: mpsnn._types.MTLSize) -> None:
        ...
    @typing.overload
    def __init__(self, source: MPSNNImageNode, transform_provider: mpsnn.protocols.MPSImageTransformProvider, output_size: mpsnn._types.MTLSize) -> None:
        ...
class MPSCNNLossType(enum.IntEnum):
    """
    Loss functions of MPSCNNLossNode (nodes.md §13.2).
    """
    categorical_cross_entropy: typing.ClassVar[MPSCNNLossType]
    cosine_distance: typing.ClassVar[MPSCNNLossType]
    hinge: typing.ClassVar[MPSCNNLossType]
    huber: typing.ClassVar[MPSCNNLossType]
    kullback_leibler_divergence: typing.ClassVar[MPSCNNLossType]
    log: typing.ClassVar[MPSCNNLossType]
    mean_absolute_error: typing.ClassVar[MPSCNNLossType]
    mean_squared_error: typing.ClassVar[MPSCNNLossType]
    sigmoid_cross_entropy: typing.ClassVar[MPSCNNLossType]
    soft_max_cross_entropy: typing.ClassVar[MPSCNNLossType]
    softmax_cross_entropy: typing.ClassVar[MPSCNNLossType]
class MPSCNNReductionType(enum.IntEnum):
    """
    How a loss is reduced per image.
    """
    mean: typing.ClassVar[MPSCNNReductionType]
    none: typing.ClassVar[MPSCNNReductionType]
    sum: typing.ClassVar[MPSCNNReductionType]
    sum_by_non_zero_weights: typing.ClassVar[MPSCNNReductionType]
class MPSCNNLossDescriptor:
    """
    Loss type, reduction and parameters of MPSCNNLossNode (nodes.md §13.2).
    """
    loss_type: MPSCNNLossType
    reduction_type: MPSCNNReductionType
    @staticmethod
    def cnn_loss_descriptor(loss_type: MPSCNNLossType, reduction_type: MPSCNNReductionType) -> MPSCNNLossDescriptor:
        ...
    def __init__(self, loss_type: MPSCNNLossType, reduction_type: MPSCNNReductionType) -> None:
        ...
    @property
    def delta(self) -> float:
        """
        Huber delta.
        """
    @delta.setter
    def delta(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def epsilon(self) -> float:
        """
        Log loss epsilon.
        """
    @epsilon.setter
    def epsilon(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def label_smoothing(self) -> float:
        """
        Softmax / sigmoid cross entropy: t' = t (1 - ls) + ls / K (K = number_of_classes, 2 for sigmoid).
        """
    @label_smoothing.setter
    def label_smoothing(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def number_of_classes(self) -> int:
        """
        K of softmax cross-entropy label smoothing (set it to the channel count).
        """
    @number_of_classes.setter
    def number_of_classes(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def weight(self) -> float:
        """
        Scalar weight of every element when the labels have no weights.
        """
    @weight.setter
    def weight(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class MPSCNNLossDataDescriptor:
    """
    Float32 labels or weights data with its layout and size (width, height, feature channels). The data may hold several images one after the other (mpsnn: one labels object for a whole batch); bytes_per_row and bytes_per_image (0: dense) are the strides of write_bytes.
    """
    @staticmethod
    def cnn_loss_data_descriptor(data: typing.Any, layout: MPSDataLayout, size: typing.Any) -> MPSCNNLossDataDescriptor:
        ...
    def __init__(self, data: typing.Any, layout: MPSDataLayout, size: typing.Any) -> None:
        ...
    @property
    def bytes_per_image(self) -> int:
        ...
    @bytes_per_image.setter
    def bytes_per_image(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def bytes_per_row(self) -> int:
        ...
    @bytes_per_row.setter
    def bytes_per_row(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def layout(self) -> MPSDataLayout:
        ...
    @property
    def size(self) -> typing.Any:
        ...
class MPSCNNLossLabels(MPSState):
    """
    Labels of a loss node, optional per-element weights, and the loss image the node writes (graph.md §5.2). Pass one per image in source_states (encode_batch: an MPSStateBatch, i.e. a list), or one whose data holds all N images. The loss image is 1x1x1 per image (reductions sum, mean, sumByNonZeroWeights) unless loss_image_size says otherwise (reduction none: the source's size).
    """
    def __init__(self, device: MTLDevice, labels_descriptor: MPSCNNLossDataDescriptor | None = None, *, loss_image_size: typing.Any = None, weights_descriptor: MPSCNNLossDataDescriptor | None = None, labels_image: MPSImage | None = None, weights_image: MPSImage | None = None) -> None:
        ...
    def labels_image(self) -> MPSImage:
        ...
    def loss_image(self) -> MPSImage:
        """
        The float32 loss image (1 image per labels image); valid once the command buffer completed.
        """
    def weights_image(self) -> MPSImage:
        ...
class MPSCNNLossNode(MPSNNFilterNode):
    """
    A loss (nodes.md §13.2). Its own gradient: the result image is dL/d(source), same shape as the source; the loss value goes to the loss image of the MPSCNNLossLabels bound to input_labels. gradient_filter is unavailable.
    """
    @staticmethod
    def node(source: MPSNNImageNode, loss_descriptor: MPSCNNLossDescriptor) -> MPSCNNLossNode:
        ...
    def __init__(self, source: MPSNNImageNode, loss_descriptor: MPSCNNLossDescriptor) -> None:
        ...
    @property
    def input_labels(self) -> MPSNNStateNode:
        """
        The MPSNNLabelsNode of this loss (a source state of the graph).
        """
class MPSCNNYOLOLossDescriptor:
    """
    The YOLO loss (nodes.md §13.3).
    """
    classes_loss_descriptor: MPSCNNLossDescriptor
    confidence_loss_descriptor: MPSCNNLossDescriptor
    reduction_type: MPSCNNReductionType
    rescore: bool
    wh_loss_descriptor: MPSCNNLossDescriptor
    xy_loss_descriptor: MPSCNNLossDescriptor
    @staticmethod
    def cnn_loss_descriptor(xy_loss_type: MPSCNNLossType, wh_loss_type: MPSCNNLossType, confidence_loss_type: MPSCNNLossType, classes_loss_type: MPSCNNLossType, reduction_type: MPSCNNReductionType, anchor_boxes: typing.Any, number_of_anchor_boxes: typing.SupportsInt | typing.SupportsIndex) -> MPSCNNYOLOLossDescriptor:
        """
        anchor_boxes: (width, height) float32 pairs in grid-cell units, one per anchor box.
        """
    @property
    def anchor_boxes(self) -> list[float]:
        ...
    @anchor_boxes.setter
    def anchor_boxes(self, arg1: typing.Any) -> None:
        ...
    @property
    def max_iou_for_object_absence(self) -> float:
        ...
    @max_iou_for_object_absence.setter
    def max_iou_for_object_absence(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def min_iou_for_object_presence(self) -> float:
        ...
    @min_iou_for_object_presence.setter
    def min_iou_for_object_presence(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def number_of_anchor_boxes(self) -> int:
        ...
    @number_of_anchor_boxes.setter
    def number_of_anchor_boxes(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def scale_class(self) -> float:
        ...
    @scale_class.setter
    def scale_class(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def scale_no_object(self) -> float:
        ...
    @scale_no_object.setter
    def scale_no_object(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def scale_object(self) -> float:
        ...
    @scale_object.setter
    def scale_object(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def scale_wh(self) -> float:
        ...
    @scale_wh.setter
    def scale_wh(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def scale_xy(self) -> float:
        ...
    @scale_xy.setter
    def scale_xy(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class MPSCNNYOLOLossNode(MPSNNFilterNode):
    """
    The YOLO detection loss (nodes.md §13.3): per grid cell A blocks of [x, y, w, h, confidence, K classes]. Its own gradient, like MPSCNNLossNode; the labels use the source's layout (a weights image of the labels is not used: the sub-descriptors' scalar weights apply).
    """
    @staticmethod
    def node(source: MPSNNImageNode, loss_descriptor: MPSCNNYOLOLossDescriptor) -> MPSCNNYOLOLossNode:
        ...
    def __init__(self, source: MPSNNImageNode, loss_descriptor: MPSCNNYOLOLossDescriptor) -> None:
        ...
    @property
    def input_labels(self) -> MPSNNStateNode:
        """
        The MPSNNLabelsNode of this loss (a source state of the graph).
        """
class MPSKernel:
    """
    Base of the MPS kernel classes.
    """
    label: str | None
class MPSCNNKernel(MPSKernel):
    """
    A unary CNN kernel as a custom padding policy's destination_image_descriptor sees it: its geometry, with offset and edge_mode writable. The object is an instance of the node's MPS kernel class (MPSCNNPoolingMax, MPSCNNConvolution, ...).
    """
    edge_mode: MPSImageEdgeMode
    offset: mpsnn._types.MPSOffset
    @property
    def destination_feature_channel_offset(self) -> int:
        ...
    @destination_feature_channel_offset.setter
    def destination_feature_channel_offset(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def dilation_rate_x(self) -> int:
        ...
    @property
    def dilation_rate_y(self) -> int:
        ...
    @property
    def is_backwards(self) -> bool:
        ...
    @property
    def kernel_height(self) -> int:
        ...
    @property
    def kernel_width(self) -> int:
        ...
    @property
    def offset_x(self) -> int:
        ...
    @offset_x.setter
    def offset_x(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def offset_y(self) -> int:
        ...
    @offset_y.setter
    def offset_y(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def offset_z(self) -> int:
        ...
    @offset_z.setter
    def offset_z(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def source_feature_channel_max_count(self) -> int:
        ...
    @source_feature_channel_max_count.setter
    def source_feature_channel_max_count(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def source_feature_channel_offset(self) -> int:
        ...
    @source_feature_channel_offset.setter
    def source_feature_channel_offset(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def stride_in_pixels_x(self) -> int:
        ...
    @property
    def stride_in_pixels_y(self) -> int:
        ...
class MPSCNNBinaryKernel(MPSKernel):
    """
    A two-source CNN kernel (arithmetic, gradients) as a padding hook sees it; primary_offset and primary_edge_mode are the primary source's geometry (offset / edge_mode are the same values).
    """
    edge_mode: MPSImageEdgeMode
    offset: mpsnn._types.MPSOffset
    primary_edge_mode: MPSImageEdgeMode
    primary_offset: mpsnn._types.MPSOffset
    @property
    def destination_feature_channel_offset(self) -> int:
        ...
    @destination_feature_channel_offset.setter
    def destination_feature_channel_offset(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def dilation_rate_x(self) -> int:
        ...
    @property
    def dilation_rate_y(self) -> int:
        ...
    @property
    def is_backwards(self) -> bool:
        ...
    @property
    def kernel_height(self) -> int:
        ...
    @property
    def kernel_width(self) -> int:
        ...
    @property
    def offset_x(self) -> int:
        ...
    @offset_x.setter
    def offset_x(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def offset_y(self) -> int:
        ...
    @offset_y.setter
    def offset_y(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def offset_z(self) -> int:
        ...
    @offset_z.setter
    def offset_z(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def primary_dilation_rate_x(self) -> int:
        ...
    @property
    def primary_dilation_rate_y(self) -> int:
        ...
    @property
    def primary_kernel_height(self) -> int:
        ...
    @property
    def primary_kernel_width(self) -> int:
        ...
    @property
    def primary_stride_in_pixels_x(self) -> int:
        ...
    @property
    def primary_stride_in_pixels_y(self) -> int:
        ...
    @property
    def source_feature_channel_max_count(self) -> int:
        ...
    @source_feature_channel_max_count.setter
    def source_feature_channel_max_count(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def source_feature_channel_offset(self) -> int:
        ...
    @source_feature_channel_offset.setter
    def source_feature_channel_offset(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def stride_in_pixels_x(self) -> int:
        ...
    @property
    def stride_in_pixels_y(self) -> int:
        ...
class MPSCNNConvolution(MPSCNNKernel):
    pass
class MPSCNNFullyConnected(MPSCNNConvolution):
    pass
class MPSCNNConvolutionTranspose(MPSCNNKernel):
    pass
class MPSCNNBinaryConvolution(MPSCNNKernel):
    pass
class MPSCNNBinaryFullyConnected(MPSCNNBinaryConvolution):
    pass
class MPSCNNPooling(MPSCNNKernel):
    pass
class MPSCNNPoolingMax(MPSCNNPooling):
    pass
class MPSCNNPoolingAverage(MPSCNNPooling):
    pass
class MPSCNNPoolingL2Norm(MPSCNNPooling):
    pass
class MPSCNNDilatedPoolingMax(MPSCNNPooling):
    pass
class MPSCNNNeuron(MPSCNNKernel):
    pass
class MPSCNNSoftMax(MPSCNNKernel):
    pass
class MPSCNNLogSoftMax(MPSCNNKernel):
    pass
class MPSCNNCrossChannelNormalization(MPSCNNKernel):
    pass
class MPSCNNSpatialNormalization(MPSCNNKernel):
    pass
class MPSCNNLocalContrastNormalization(MPSCNNKernel):
    pass
class MPSCNNBatchNormalization(MPSCNNKernel):
    pass
class MPSCNNInstanceNormalization(MPSCNNKernel):
    pass
class MPSCNNUpsampling(MPSCNNKernel):
    pass
class MPSCNNUpsamplingNearest(MPSCNNUpsampling):
    pass
class MPSCNNUpsamplingBilinear(MPSCNNUpsampling):
    pass
class MPSCNNDropout(MPSCNNKernel):
    pass
class MPSCNNArithmetic(MPSCNNBinaryKernel):
    pass
class MPSCNNAdd(MPSCNNArithmetic):
    pass
class MPSCNNSubtract(MPSCNNArithmetic):
    pass
class MPSCNNMultiply(MPSCNNArithmetic):
    pass
class MPSCNNDivide(MPSCNNArithmetic):
    pass
class MPSCNNGradientKernel(MPSCNNBinaryKernel):
    pass
class MPSCNNPoolingGradient(MPSCNNGradientKernel):
    pass
class MPSCNNPoolingMaxGradient(MPSCNNPoolingGradient):
    pass
class MPSCNNPoolingAverageGradient(MPSCNNPoolingGradient):
    pass
class MPSCNNPoolingL2NormGradient(MPSCNNPoolingGradient):
    pass
class MPSCNNDilatedPoolingMaxGradient(MPSCNNPoolingGradient):
    pass
class MPSCNNNeuronGradient(MPSCNNGradientKernel):
    pass
class MPSImageScale(MPSKernel):
    """
    Base of the stand-alone resampling kernels (nodes.md §10): encode(command_buffer, source_image, destination_image) resamples the source to the destination's width and height with scale_transform (None: the whole source fills the destination). Runs on the command buffer like a graph.
    """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, source_image: MPSImage, destination_image: MPSImage) -> None:
        ...
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, source_texture: MPSImage, destination_texture: MPSImage) -> None:
        """
        Apple's texture form; textures are MPSImages here.
        """
    @property
    def device(self) -> MTLDevice:
        ...
    @property
    def scale_transform(self) -> MPSScaleTransform | None:
        """
        MPSScaleTransform or None (dest = source * scale + translate, pixel-edge coordinates).
        """
    @scale_transform.setter
    def scale_transform(self, arg1: MPSScaleTransform | None) -> None:
        ...
class MPSImageBilinearScale(MPSImageScale):
    """
    Bilinear resampling (nodes.md §10.3).
    """
    def __init__(self, device: MTLDevice) -> None:
        ...
class MPSImageLanczosScale(MPSImageScale):
    """
    Lanczos-3 resampling (nodes.md §10.4).
    """
    def __init__(self, device: MTLDevice) -> None:
        ...
class MPSNNRegularizationType(enum.IntEnum):
    """
    The regularization term optimizers add to each gradient (graph.md §7.2).
    """
    l1: typing.ClassVar[MPSNNRegularizationType]
    l2: typing.ClassVar[MPSNNRegularizationType]
    none: typing.ClassVar[MPSNNRegularizationType]
class MPSVectorDescriptor:
    """
    The shape of an MPSVector: `vectors` vectors of `length` elements, `vector_bytes` apart.
    """
    data_type: MPSDataType
    @staticmethod
    def vector_bytes_for_length(length: typing.SupportsInt | typing.SupportsIndex, data_type: MPSDataType) -> int:
        """
        The bytes of one densely packed vector (vectorBytesForLength:dataType:).
        """
    @staticmethod
    def vector_descriptor(length: typing.SupportsInt | typing.SupportsIndex, data_type: MPSDataType) -> MPSVectorDescriptor:
        """
        vectorDescriptorWithLength:dataType:
        """
    def __init__(self, length: typing.SupportsInt | typing.SupportsIndex, data_type: MPSDataType = ..., *, vectors: typing.SupportsInt | typing.SupportsIndex = 1, vector_bytes: typing.SupportsInt | typing.SupportsIndex | None = None) -> None:
        ...
    def __repr__(self) -> str:
        ...
    @property
    def length(self) -> int:
        ...
    @length.setter
    def length(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def vector_bytes(self) -> int:
        ...
    @vector_bytes.setter
    def vector_bytes(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def vectors(self) -> int:
        ...
    @vectors.setter
    def vectors(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MPSVector:
    """
    A vector (or several) over an MTLBuffer. On host-visible devices numpy() is a view.
    """
    @staticmethod
    def from_numpy(array: typing.Any, device: MTLDevice | None = None) -> MPSVector:
        """
        mpsnn extension: wrap a writeable C-contiguous float32/float16 array of shape (length,) or (vectors, length) without copying.
        """
    @typing.overload
    def __init__(self, buffer: MTLBuffer, descriptor: MPSVectorDescriptor, *, offset: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        """
        MPSVector(buffer:descriptor:) / (buffer:offset:descriptor:)
        """
    @typing.overload
    def __init__(self, device: MTLDevice, descriptor: MPSVectorDescriptor) -> None:
        """
        A new zero-filled vector (MPSVector(device:descriptor:)).
        """
    def numpy(self) -> numpy.typing.NDArray[typing.Any]:
        """
        mpsnn extension: a view of the elements, shape (length,) or (vectors, length).
        """
    def resource_size(self) -> int:
        """
        Bytes the vector spans.
        """
    @property
    def data(self) -> MTLBuffer:
        """
        The MTLBuffer.
        """
    @property
    def data_type(self) -> MPSDataType:
        ...
    @property
    def device(self) -> MTLDevice:
        ...
    @property
    def length(self) -> int:
        ...
    @property
    def offset(self) -> int:
        ...
    @property
    def vector_bytes(self) -> int:
        ...
    @property
    def vectors(self) -> int:
        ...
class MPSNNOptimizerDescriptor:
    """
    Learning rate, gradient rescale and clipping, regularization (graph.md §7.1).
    """
    apply_gradient_clipping: bool
    regularization_type: MPSNNRegularizationType
    @staticmethod
    def optimizer_descriptor(*, learning_rate: typing.SupportsFloat | typing.SupportsIndex, gradient_rescale: typing.SupportsFloat | typing.SupportsIndex, apply_gradient_clipping: bool = False, gradient_clip_max: typing.SupportsFloat | typing.SupportsIndex = ..., gradient_clip_min: typing.SupportsFloat | typing.SupportsIndex = ..., regularization_type: MPSNNRegularizationType = ..., regularization_scale: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> MPSNNOptimizerDescriptor:
        ...
    def __init__(self, *, learning_rate: typing.SupportsFloat | typing.SupportsIndex = 0.0010000000474974513, gradient_rescale: typing.SupportsFloat | typing.SupportsIndex = 1.0, apply_gradient_clipping: bool = False, gradient_clip_max: typing.SupportsFloat | typing.SupportsIndex = ..., gradient_clip_min: typing.SupportsFloat | typing.SupportsIndex = ..., regularization_type: MPSNNRegularizationType = ..., regularization_scale: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        ...
    @property
    def gradient_clip_max(self) -> float:
        ...
    @gradient_clip_max.setter
    def gradient_clip_max(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def gradient_clip_min(self) -> float:
        ...
    @gradient_clip_min.setter
    def gradient_clip_min(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def gradient_rescale(self) -> float:
        ...
    @gradient_rescale.setter
    def gradient_rescale(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def learning_rate(self) -> float:
        ...
    @learning_rate.setter
    def learning_rate(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def regularization_scale(self) -> float:
        ...
    @regularization_scale.setter
    def regularization_scale(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class MPSNNOptimizer:
    """
    Base of the optimizers (abstract: make a subclass).
    """
    apply_gradient_clipping: bool
    def __repr__(self) -> str:
        ...
    def set_learning_rate(self, value: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def device(self) -> MTLDevice:
        ...
    @property
    def gradient_clip_max(self) -> float:
        ...
    @property
    def gradient_clip_min(self) -> float:
        ...
    @property
    def gradient_rescale(self) -> float:
        ...
    @property
    def learning_rate(self) -> float:
        ...
    @property
    def regularization_scale(self) -> float:
        ...
    @property
    def regularization_type(self) -> MPSNNRegularizationType:
        ...
class MPSNNOptimizerStochasticGradientDescent(MPSNNOptimizer):
    """
    w = w - lr*g; with a momentum vector m = mu*m + lr*g, w = w - m; Nesterov m = mu*m + g, w = w - lr*(g + mu*m).
    """
    @typing.overload
    def __init__(self, device: MTLDevice, learning_rate: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, device: MTLDevice, *, momentum_scale: typing.SupportsFloat | typing.SupportsIndex, use_nestrov_momentum: bool | None = None, optimizer_descriptor: MPSNNOptimizerDescriptor, use_nesterov_momentum: bool | None = None) -> None:
        ...
    def copy(self) -> MPSNNOptimizerStochasticGradientDescent:
        """
        An independent optimizer with the same settings and time step.
        """
    def copy_with_device(self, device: MTLDevice) -> MPSNNOptimizerStochasticGradientDescent:
        """
        The same on `device` (copyWithZone:device:).
        """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, *, input_gradient_vector: MPSVector, input_values_vector: MPSVector, input_momentum_vector: MPSVector | None = None, result_values_vector: MPSVector) -> None:
        """
        One SGD update of the vector (momentum updated in place; result may be the values vector).
        """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, *, convolution_gradient_state: MPSState, convolution_source_state: MPSCNNConvolutionWeightsAndBiasesState, input_momentum_vectors: collections.abc.Sequence[MPSVector] | None = None, result_state: MPSCNNConvolutionWeightsAndBiasesState) -> None:
        """
        The convolution form: weights (list index 0) and biases (index 1) from a convolution gradient state.
        """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, *, batch_normalization_state: MPSState, input_momentum_vectors: collections.abc.Sequence[MPSVector] | None = None, result_state: MPSCNNNormalizationGammaAndBetaState) -> None:
        """
        The batch-normalization form: gamma (index 0) and beta (index 1) and their gradients from one state.
        """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, *, batch_normalization_gradient_state: MPSState, batch_normalization_source_state: MPSState, input_momentum_vectors: collections.abc.Sequence[MPSVector] | None = None, result_state: MPSCNNNormalizationGammaAndBetaState) -> None:
        """
        The batch-normalization form with gradients and values from two states.
        """
    @property
    def momentum_scale(self) -> float:
        ...
    @property
    def use_nesterov_momentum(self) -> bool:
        """
        Alias of MPS's use_nestrov_momentum.
        """
    @property
    def use_nestrov_momentum(self) -> bool:
        ...
class MPSNNOptimizerRMSProp(MPSNNOptimizer):
    """
    s = decay*s + (1 - decay)*g^2; w = w - lr*g / (sqrt(s) + epsilon).
    """
    @typing.overload
    def __init__(self, device: MTLDevice, learning_rate: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, device: MTLDevice, *, decay: typing.SupportsFloat | typing.SupportsIndex, epsilon: typing.SupportsFloat | typing.SupportsIndex, optimizer_descriptor: MPSNNOptimizerDescriptor) -> None:
        ...
    def copy(self) -> MPSNNOptimizerRMSProp:
        """
        An independent optimizer with the same settings and time step.
        """
    def copy_with_device(self, device: MTLDevice) -> MPSNNOptimizerRMSProp:
        """
        The same on `device` (copyWithZone:device:).
        """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, *, input_gradient_vector: MPSVector, input_values_vector: MPSVector, input_sum_of_squares_vector: MPSVector, result_values_vector: MPSVector) -> None:
        """
        One RMSProp update of the vector (sum of squares updated in place).
        """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, *, convolution_gradient_state: MPSState, convolution_source_state: MPSCNNConvolutionWeightsAndBiasesState, input_sum_of_squares_vectors: collections.abc.Sequence[MPSVector] | None = None, result_state: MPSCNNConvolutionWeightsAndBiasesState) -> None:
        """
        The convolution form: weights (list index 0) and biases (index 1) from a convolution gradient state.
        """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, *, batch_normalization_state: MPSState, input_sum_of_squares_vectors: collections.abc.Sequence[MPSVector] | None = None, result_state: MPSCNNNormalizationGammaAndBetaState) -> None:
        """
        The batch-normalization form: gamma (index 0) and beta (index 1) and their gradients from one state.
        """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, *, batch_normalization_gradient_state: MPSState, batch_normalization_source_state: MPSState, input_sum_of_squares_vectors: collections.abc.Sequence[MPSVector] | None = None, result_state: MPSCNNNormalizationGammaAndBetaState) -> None:
        """
        The batch-normalization form with gradients and values from two states.
        """
    @property
    def decay(self) -> float:
        ...
    @property
    def epsilon(self) -> float:
        ...
class MPSNNOptimizerAdam(MPSNNOptimizer):
    """
    Adam (graph.md §7.5): time_step advances once per encode; a maximum_velocity_vector selects AMSGrad.
    """
    @typing.overload
    def __init__(self, device: MTLDevice, learning_rate: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, device: MTLDevice, *, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, epsilon: typing.SupportsFloat | typing.SupportsIndex, time_step: typing.SupportsInt | typing.SupportsIndex, optimizer_descriptor: MPSNNOptimizerDescriptor) -> None:
        ...
    def copy(self) -> MPSNNOptimizerAdam:
        """
        An independent optimizer with the same settings and time step.
        """
    def copy_with_device(self, device: MTLDevice) -> MPSNNOptimizerAdam:
        """
        The same on `device` (copyWithZone:device:).
        """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, *, input_gradient_vector: MPSVector, input_values_vector: MPSVector, input_momentum_vector: MPSVector, input_velocity_vector: MPSVector, maximum_velocity_vector: MPSVector | None = None, result_values_vector: MPSVector) -> None:
        """
        One Adam update (AMSGrad with maximum_velocity_vector); momentum and velocity updated in place.
        """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, *, convolution_gradient_state: MPSState, convolution_source_state: MPSCNNConvolutionWeightsAndBiasesState, input_momentum_vectors: collections.abc.Sequence[MPSVector] | None = None, input_velocity_vectors: collections.abc.Sequence[MPSVector] | None = None, maximum_velocity_vectors: collections.abc.Sequence[MPSVector] | None = None, result_state: MPSCNNConvolutionWeightsAndBiasesState) -> None:
        """
        The convolution form: weights (list index 0) and biases (index 1) from a convolution gradient state.
        """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, *, batch_normalization_state: MPSState, input_momentum_vectors: collections.abc.Sequence[MPSVector] | None = None, input_velocity_vectors: collections.abc.Sequence[MPSVector] | None = None, maximum_velocity_vectors: collections.abc.Sequence[MPSVector] | None = None, result_state: MPSCNNNormalizationGammaAndBetaState) -> None:
        """
        The batch-normalization form: gamma (index 0) and beta (index 1) and their gradients from one state.
        """
    @typing.overload
    def encode(self, command_buffer: MTLCommandBuffer, *, batch_normalization_gradient_state: MPSState, batch_normalization_source_state: MPSState, input_momentum_vectors: collections.abc.Sequence[MPSVector] | None = None, input_velocity_vectors: collections.abc.Sequence[MPSVector] | None = None, maximum_velocity_vectors: collections.abc.Sequence[MPSVector] | None = None, result_state: MPSCNNNormalizationGammaAndBetaState) -> None:
        """
        The batch-normalization form with gradients and values from two states.
        """
    @property
    def beta1(self) -> float:
        ...
    @property
    def beta2(self) -> float:
        ...
    @property
    def epsilon(self) -> float:
        ...
    @property
    def time_step(self) -> int:
        ...
    @time_step.setter
    def time_step(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class MPSNNGraph:
    """
    An optimized, executable form of the nodes needed for one or more result images.
    
    The graph reads its data sources when it is built and compiles one immutable plan per set of source sizes and formats (pruning, shape inference, batch-norm folding, neuron and residual-addition fusion, NHWC layouts, temporary memory reuse). On the CPU backend `format` defaults to float32 (MPS's default is float16); float16, unorm8 and unorm16 are supported as storage at the graph's boundaries.
    
    Example:
        graph = MPSNNGraph(device, result_image=softmax.result_image)
        probs = graph.run([x]).numpy()
    """
    destination_image_allocator: mpsnn.protocols.MPSImageAllocator
    label: str
    output_state_is_temporary: bool
    @staticmethod
    def from_bytes(data: _Bytes, device: MTLDevice | None = None) -> MPSNNGraph:
        """
        A graph from to_bytes() data, on `device` (None: the system default device). Nothing in the data is executed: data sources are loaded as ArrayConvolutionDataSource / ArrayBatchNormalizationDataSource / ArrayInstanceNormalizationDataSource, handles as LabelHandle. Truncated or corrupted data raises SerializationError naming the section, field and byte offset.
        """
    @staticmethod
    def graph(device: MTLDevice, result_image: MPSNNImageNode | None = None, result_image_is_needed: bool = True, *, result_images: collections.abc.Sequence[MPSNNImageNode] | None = None, results_are_needed: collections.abc.Sequence[bool] | None = None) -> MPSNNGraph:
        ...
    def __copy__(self) -> MPSNNGraph:
        ...
    def __deepcopy__(self, memo: typing.Any) -> MPSNNGraph:
        """
        An independent graph with its own nodes and data sources (through to_bytes).
        """
    def __init__(self, device: MTLDevice, result_image: MPSNNImageNode | None = None, result_image_is_needed: bool = True, *, result_images: collections.abc.Sequence[MPSNNImageNode] | None = None, results_are_needed: collections.abc.Sequence[bool] | None = None) -> None:
        ...
    def __reduce__(self) -> tuple[..., tuple[bytes]]:
        """
        Pickles through to_bytes(); unpickling makes the graph on the system default device.
        """
    def copy(self, device: MTLDevice | None = None) -> MPSNNGraph:
        """
        An independent graph over the same nodes with the same properties, on `device` or this graph's (MPSKernel copy, graph.md §2.9). The data sources are read again.
        """
    def encode(self, command_buffer: MTLCommandBuffer, source_images: collections.abc.Sequence[_SourceImage], source_states: collections.abc.Sequence[MPSState] | None = None, intermediate_images: list[MPSImage] | None = None, destination_states: list[MPSState] | None = None) -> MPSImage | None:
        """
        Encode one run; returns the result image (written when the command buffer runs) or None. CPU reads of the returned images (numpy(), read_bytes, __array__, DLPack) wait for the committed command buffer and raise MPSGraphError before commit(). destination_states receives the exported result states (result_state_handles order), temporary iff output_state_is_temporary.
        """
    def encode_batch(self, command_buffer: MTLCommandBuffer, source_images: collections.abc.Sequence[collections.abc.Sequence[_SourceImage]], source_states: collections.abc.Sequence[collections.abc.Sequence[MPSState]] | None = None, intermediate_images: list[list[MPSImage]] | None = None, destination_states: list[list[MPSState]] | None = None) -> list[MPSImage] | None:
        """
        Encode a batch: one list of single images per source.
        """
    def execute_async(self, source_images: collections.abc.Sequence[_SourceImage], completion_handler: collections.abc.Callable[[MPSImage | None, str | None], object]) -> MPSImage | None:
        """
        Run on a private queue; completion_handler(result, error) is called on a worker thread: error is None or the message of what failed (invalid sources included: nothing is raised here), result then None. Returns the result image (None when encoding failed).
        """
    def plan_description(self, source_images: collections.abc.Sequence[_SourceImage]) -> str:
        """
        mpsnn extension: the compiled plan for these sources (steps, buffers, fusion).
        """
    def read_count_for_source_image(self, index: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def read_count_for_source_state(self, index: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def reload_from_data_sources(self) -> None:
        ...
    def run(self, source_images: collections.abc.Sequence[_SourceImage], intermediate_images: list[MPSImage] | None = None, source_states: collections.abc.Sequence[MPSState] | None = None, destination_states: list[MPSState] | None = None) -> MPSImage | list[MPSImage | None] | None:
        """
        mpsnn convenience: run now on this thread (GIL released) and return the result MPSImage (a list for the several-results initializer).
        
        Args:
            source_images: MPSImages or C-contiguous (N, H, W, C) NumPy arrays (wrapped without copying), in source_image_handles order.
            intermediate_images: optional list that receives the exported images.
            source_states: MPSStates in source_state_handles order (persistent ones: run has no command buffer).
            destination_states: optional list that receives the exported result states (persistent MPSStates).
        """
    def save_picture(self, path: str | os.PathLike[str], plan: bool = False, source_images: collections.abc.Sequence[_SourceImage] | None = None, source_states: collections.abc.Sequence[MPSState] | None = None) -> None:
        """
        mpsnn extension: writes to_dot(plan, source_images) as a picture, SVG or PNG by the path's extension, with Graphviz's `dot` (it must be on PATH: UnsupportedError otherwise).
        """
    def to_bytes(self) -> bytes:
        """
        The graph as bytes (graph.md §2.9): its nodes with every attribute, padding policy, handle label and the weights and parameters of its data sources, and its properties, in mpsnn's versioned, data-only format (cpp/graph/serialize.h documents it). Custom padding policies, image allocators and transform providers (Python code) cannot be stored: UnsupportedError names the node.
        """
    def to_dot(self, plan: bool = False, source_images: collections.abc.Sequence[_SourceImage] | None = None, source_states: collections.abc.Sequence[MPSState] | None = None) -> str:
        """
        mpsnn extension: the graph as Graphviz DOT text. plan=False: its nodes (MPS class names, labels, attributes that differ from the defaults, handles; with source_images (and source_states for a graph that has source states, e.g. loss labels) also the image sizes). plan=True: the plan compiled for source_images (steps with what they fused, values with their arena offsets: values sharing an offset reuse one block of memory).
        """
    @property
    def _num_compiled_plans(self) -> int:
        """
        Test aid: plans in the cache (one per set of source sizes and formats).
        """
    @property
    def debug_description(self) -> str:
        """
        The nodes and the compiled plans, as text (a property, as in MPS).
        """
    @property
    def device(self) -> MTLDevice:
        ...
    @property
    def format(self) -> MPSImageFeatureChannelFormat:
        """
        Storage format of result and exported images whose node format is none (float32 by default).
        """
    @format.setter
    def format(self, arg1: MPSImageFeatureChannelFormat) -> None:
        ...
    @property
    def fusion_enabled(self) -> bool:
        """
        mpsnn extension: fuse batch norm, neurons and residual additions into convolutions (default True). Results are the same either way; switch off to compare.
        """
    @fusion_enabled.setter
    def fusion_enabled(self, arg1: bool) -> None:
        ...
    @property
    def intermediate_image_handles(self) -> list[_Handle]:
        ...
    @property
    def options(self) -> MPSKernelOptions:
        """
        MPSKernelOptions; with verbose, each plan the graph compiles is described on stderr (steps, fusions, buffers).
        """
    @options.setter
    def options(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def poison_temporaries(self) -> bool:
        """
        mpsnn extension (testing aid): fill temporary memory with NaN before every run.
        """
    @poison_temporaries.setter
    def poison_temporaries(self, arg1: bool) -> None:
        ...
    @property
    def result_handle(self) -> _Handle:
        ...
    @property
    def result_image_is_needed(self) -> bool:
        ...
    @property
    def result_state_handles(self) -> list[_Handle]:
        ...
    @property
    def source_image_handles(self) -> list[_Handle]:
        ...
    @property
    def source_state_handles(self) -> list[_Handle]:
        ...
class LabelHandle:
    """
    mpsnn: the MPSHandle of a node in a graph loaded from bytes or a pickle. Handles are stored as their label() (loading never runs code from the data), so a loaded graph's handle lists hold LabelHandles with the original labels, one object per original handle.
    """
    def __eq__(self, arg0: typing.Any) -> bool:
        ...
    def __getstate__(self) -> tuple[str | None]:
        ...
    def __hash__(self) -> int:
        ...
    def __init__(self, label: str | None = None) -> None:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, arg0: tuple) -> None:
        ...
    def label(self) -> str | None:
        ...
def MPSImageBatchIncrementReadCount(batch: collections.abc.Sequence[MPSImage], amount: typing.SupportsInt | typing.SupportsIndex) -> int:
    ...
def MPSImageBatchResourceSize(batch: collections.abc.Sequence[MPSImage]) -> int:
    ...
def MPSImageBatchSynchronize(batch: collections.abc.Sequence[MPSImage], command_buffer: MTLCommandBuffer) -> None:
    ...
def MTLCopyAllDevices() -> list[MTLDevice]:
    """
    Every device of this build.
    """
def MTLCreateSystemDefaultDevice() -> MTLDevice:
    """
    The default device: MPSNN_DEVICE ('cpu', 'cuda:1', ...) if set, else the first device of this build.
    """
def _at_exit() -> None:
    """
    Registered with atexit: waits for the work committed so far (its completion handlers run), then stops every queue; buffers committed later complete with status error, running neither work nor handlers.
    """
def _drain_all_queues() -> None:
    """
    Wait for the work committed so far to every queue.
    """
def _fail_host_allocation_after(k: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Test aid (fault injection): the next k host allocations succeed and the one after raises MemoryError, once; k < 0 disarms.
    """
def _host_allocation_count() -> int:
    """
    Test aid: blocks the host allocator has handed out (images, buffers, plan arenas).
    """
def _host_live_allocation_count() -> int:
    """
    Test aid: blocks of the host allocator not yet released (leak checks).
    """
def _nodes_from_bytes(data: _Bytes) -> typing.Any:
    """
    Loads what a node's pickle holds (the node and everything upstream of it); see MPSNNGraph.to_bytes for the format. Raises SerializationError for bytes that are not such data.
    """
def _op_kinds() -> list:
    """
    Test aid: every op kind of op_list.def with its gradient kind and the backends that have a kernel for it.
    """
def _set_vendor_library_dirs(dirs: collections.abc.Sequence[str]) -> None:
    """
    Folders (site-packages/nvidia) where the CUDA backend looks for cuDNN when first used; set at import.
    """
def available_backends() -> list[str]:
    """
    Backends compiled into this build.
    """
MPSCommandBuffer = MTLCommandBuffer
