// MPS enumerations as real enum.IntEnum / enum.IntFlag classes with MPS's raw values.
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {
// Python-only flag type for MPSNNPaddingMethod (C++ passes the raw int).
enum class PaddingMethod : int {};
enum class KernelOptions : int {};
enum class BinaryConvolutionFlags : int {};
enum class ConvolutionWeightsLayout : int { ohwi = 0 };
}  // namespace

void bind_enums(py::module_& m) {
  py::native_enum<ChannelFormat>(m, "MPSImageFeatureChannelFormat", "enum.IntEnum", "Storage format of image channels.")
      .value("none", ChannelFormat::none)
      .value("unorm8", ChannelFormat::unorm8)
      .value("unorm16", ChannelFormat::unorm16)
      .value("float16", ChannelFormat::float16)
      .value("float32", ChannelFormat::float32)
      .value("bfloat16", ChannelFormat::bfloat16)  // mpsnn's own (raw value 100): MPS has no bfloat16 images
      .finalize();
  py::native_enum<DataLayout>(m, "MPSDataLayout", "enum.IntEnum", "Buffer layout of read_bytes / write_bytes.")
      .value("height_x_width_x_feature_channels", DataLayout::height_width_channels)
      .value("feature_channels_x_height_x_width", DataLayout::channels_height_width)
      .value("HeightxWidthxFeatureChannels", DataLayout::height_width_channels)  // earlier spellings, aliases
      .value("featureChannelsxHeightxWidth", DataLayout::channels_height_width)
      .finalize();
  py::native_enum<EdgeMode>(m, "MPSImageEdgeMode", "enum.IntEnum", "How reads outside the source are satisfied.")
      .value("zero", EdgeMode::zero)
      .value("clamp", EdgeMode::clamp)
      .value("mirror", EdgeMode::mirror)
      .value("mirror_with_edge", EdgeMode::mirror_with_edge)
      .value("constant", EdgeMode::constant)
      .finalize();
  py::native_enum<PaddingMethod>(m, "MPSNNPaddingMethod", "enum.IntFlag", "Padding method bit field (graph.md §4.1).")
      .value("align_centered", PaddingMethod(0))
      .value("align_top_left", PaddingMethod(1))
      .value("align_bottom_right", PaddingMethod(2))
      .value("align_reserved", PaddingMethod(3))
      .value("add_remainder_to_top_left", PaddingMethod(0))
      .value("add_remainder_to_top_right", PaddingMethod(4))
      .value("add_remainder_to_bottom_left", PaddingMethod(8))
      .value("add_remainder_to_bottom_right", PaddingMethod(12))
      .value("size_valid_only", PaddingMethod(0))
      .value("size_same", PaddingMethod(16))
      .value("size_full", PaddingMethod(32))
      .value("size_reserved", PaddingMethod(48))
      .value("custom_whitelist_for_node_fusion", PaddingMethod(0x2000))
      .value("custom_allow_for_node_fusion", PaddingMethod(0x2000))
      .value("custom", PaddingMethod(0x4000))
      .value("size_mask", PaddingMethod(0x7F0))
      .value("exclude_edges", PaddingMethod(0x8000))
      .finalize();
  py::native_enum<KernelOptions>(m, "MPSKernelOptions", "enum.IntFlag", "MPSKernel option flags.")
      .value("none", KernelOptions(0))
      .value("skip_api_validation", KernelOptions(1))
      .value("allow_reduced_precision", KernelOptions(2))
      .value("disable_internal_tiling", KernelOptions(4))
      .value("insert_debug_groups", KernelOptions(8))
      .value("verbose", KernelOptions(16))
      .finalize();
  py::native_enum<TrainingStyle>(m, "MPSNNTrainingStyle", "enum.IntEnum", "Where trainable nodes update parameters.")
      .value("update_device_none", TrainingStyle::update_device_none)
      .value("update_device_cpu", TrainingStyle::update_device_cpu)
      .value("update_device_gpu", TrainingStyle::update_device_gpu)
      .finalize();
  py::native_enum<NeuronType>(m, "MPSCNNNeuronType", "enum.IntEnum", "Neuron (activation) function.")
      // snake_case of the Swift cases (graph.md §9.1) ...
      .value("none", NeuronType::none)
      .value("relu", NeuronType::relu)
      .value("linear", NeuronType::linear)
      .value("sigmoid", NeuronType::sigmoid)
      .value("hard_sigmoid", NeuronType::hard_sigmoid)
      .value("tanh", NeuronType::tanh)
      .value("absolute", NeuronType::absolute)
      .value("soft_plus", NeuronType::soft_plus)
      .value("soft_sign", NeuronType::soft_sign)
      .value("elu", NeuronType::elu)
      .value("prelu", NeuronType::prelu)
      .value("relun", NeuronType::relu_n)
      .value("power", NeuronType::power)
      .value("exponential", NeuronType::exponential)
      .value("logarithm", NeuronType::logarithm)
      // ... and the earlier (Swift-cased) spellings as aliases.
      .value("reLU", NeuronType::relu)
      .value("hardSigmoid", NeuronType::hard_sigmoid)
      .value("tanH", NeuronType::tanh)
      .value("softPlus", NeuronType::soft_plus)
      .value("softSign", NeuronType::soft_sign)
      .value("eLU", NeuronType::elu)
      .value("pReLU", NeuronType::prelu)
      .value("reLUN", NeuronType::relu_n)
      .finalize();
  py::native_enum<DataType>(m, "MPSDataType", "enum.IntEnum", "Element type of data-source buffers.")
      .value("invalid", DataType::invalid)
      .value("float32", DataType::float32)
      .value("float16", DataType::float16)
      .value("int8", DataType::int8)
      .value("int16", DataType::int16)
      .value("uint8", DataType::uint8)
      .value("uint16", DataType::uint16)
      .value("uint32", DataType::uint32)
      .value("unorm1", DataType::unorm1)
      .value("unorm8", DataType::unorm8)
      .finalize();
  py::native_enum<BatchNormalizationFlags>(m, "MPSCNNBatchNormalizationFlags", "enum.IntEnum",
                                           "When batch normalization computes batch statistics.")
      .value("default", BatchNormalizationFlags::automatic)
      .value("calculate_statistics_automatic", BatchNormalizationFlags::automatic)
      .value("calculate_statistics_always", BatchNormalizationFlags::always)
      .value("calculate_statistics_never", BatchNormalizationFlags::never)
      .finalize();
  py::native_enum<BinaryConvolutionType>(m, "MPSCNNBinaryConvolutionType", "enum.IntEnum", "Binary convolution type.")
      .value("binary_weights", BinaryConvolutionType::binary_weights)
      .value("xnor", BinaryConvolutionType::xnor)
      .value("and_", BinaryConvolutionType::and_)
      .finalize();
  py::native_enum<BinaryConvolutionFlags>(m, "MPSCNNBinaryConvolutionFlags", "enum.IntFlag", "Binary convolution flags.")
      .value("none", BinaryConvolutionFlags(0))
      .value("use_beta_scaling", BinaryConvolutionFlags(1))
      .finalize();
  py::native_enum<CommandBufferStatus>(m, "MTLCommandBufferStatus", "enum.IntEnum", "Command buffer status.")
      .value("not_enqueued", CommandBufferStatus::not_enqueued)
      .value("enqueued", CommandBufferStatus::enqueued)
      .value("committed", CommandBufferStatus::committed)
      .value("scheduled", CommandBufferStatus::scheduled)
      .value("completed", CommandBufferStatus::completed)
      .value("error", CommandBufferStatus::error)
      .finalize();
  py::native_enum<ConvolutionWeightsLayout>(m, "MPSCNNConvolutionWeightsLayout", "enum.IntEnum",
                                            "Layout of convolution weights and their gradients (10.15): OHWI only.")
      .value("ohwi", ConvolutionWeightsLayout::ohwi)
      .finalize();
}

}  // namespace mpsnn::bindings
