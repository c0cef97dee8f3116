#pragma once
// Typed attributes of every node kind (never string-keyed maps). Defaults are MPS's, or the
// chosen definitions of spec/nodes.md where MPS is silent. A new member goes into its struct's field list in graph/serialize.cpp too (the serialized format; bump kSerializationVersion).
#include <array>
#include <cfloat>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/format.h"

namespace mpsnn {

// MPSCNNNeuronType raw values.
enum class NeuronType : int {
  none = 0, relu = 1, linear = 2, sigmoid = 3, hard_sigmoid = 4, tanh = 5, absolute = 6,
  soft_plus = 7, soft_sign = 8, elu = 9, prelu = 10, relu_n = 11, power = 12, exponential = 13,
  logarithm = 14, gelu = 15
};

// MPSNNNeuronDescriptor. `data` holds PReLU's per-channel slopes.
struct NeuronDescriptor {
  NeuronType type = NeuronType::none;
  float a = 0.0f, b = 0.0f, c = 0.0f;
  std::vector<float> data;
};

// Per-type defaults of nodes.md §6.2 for parameters not given.
NeuronDescriptor make_neuron(NeuronType type, std::optional<float> a = {}, std::optional<float> b = {},
                             std::optional<float> c = {});
const char* neuron_name(NeuronType type);

// MPSImageEdgeMode raw values.
enum class EdgeMode : int { zero = 0, clamp = 1, mirror = 2, mirror_with_edge = 3, constant = 4 };

// MPSNNTrainingStyle raw values.
enum class TrainingStyle : int { update_device_none = 0, update_device_cpu = 1, update_device_gpu = 2 };

enum class ConvolutionVariant { regular, fully_connected, transpose };

struct ConvolutionAttrs {
  ConvolutionVariant variant = ConvolutionVariant::regular;
  int accumulator_precision = 1;  // MPSNNConvolutionAccumulatorPrecisionOption.float
  TrainingStyle training_style = TrainingStyle::update_device_gpu;
};

enum class BinaryConvolutionType : int { binary_weights = 0, xnor = 1, and_ = 2 };

struct BinaryConvolutionAttrs {
  bool fully_connected = false;
  BinaryConvolutionType type = BinaryConvolutionType::binary_weights;
  int flags = 0;  // MPSCNNBinaryConvolutionFlags: 1 = useBetaScaling
  // Inherited from MPSCNNConvolutionNode; binary nodes have no gradient (graph.md §1.7).
  int accumulator_precision = 1;
  TrainingStyle training_style = TrainingStyle::update_device_gpu;
  std::optional<float> scale_value;  // the scale_value initializer; else the four arrays
  std::vector<float> output_bias_terms, output_scale_terms, input_bias_terms, input_scale_terms;
};

enum class PoolingMode { max, average, l2_norm, dilated_max };

struct PoolingAttrs {
  PoolingMode mode = PoolingMode::max;
  int64_t kernel_width = 1, kernel_height = 1, stride_x = 1, stride_y = 1;
  int64_t dilation_x = 1, dilation_y = 1;
  EdgeMode edge_mode = EdgeMode::clamp;  // pooling default (nodes.md §1.4)
  int64_t zero_pad_size_x = 0, zero_pad_size_y = 0;
};

struct NeuronAttrs {
  NeuronDescriptor neuron;
};

struct SoftMaxAttrs {
  bool log = false;
  // Gradient nodes only: the node's source_image is the forward node's source X, not its result
  // Y, so the kernel recomputes Y first (nodes.md §7.2 chosen definition).
  bool gradient_reads_source = false;
};

enum class ArithmeticOp : int { add = 0, subtract = 1, multiply = 2, divide = 3 };

struct ArithmeticAttrs {
  ArithmeticOp op = ArithmeticOp::add;
  float primary_scale = 1.0f, secondary_scale = 1.0f, bias = 0.0f;
  // (feature channels, y, x); 0 broadcasts index 0 along that axis.
  std::array<int, 3> primary_strides{1, 1, 1}, secondary_strides{1, 1, 1};
  float minimum_value = -FLT_MAX, maximum_value = FLT_MAX;
  // Gradient nodes only (nodes.md §3.3): false differentiates the primary operand, true the secondary.
  bool is_secondary_source_filter = false;
};

struct ConcatenationAttrs {
  // Gradient nodes only: the forward source whose slice this node returns; -1 (hand-built
  // nodes) finds it as the forward source that is the node's source_image.
  int64_t source_index = -1;
};

// MPSCNNBatchNormalizationFlags raw values.
enum class BatchNormalizationFlags : int { automatic = 0, always = 1, never = 2 };

struct BatchNormalizationAttrs {
  BatchNormalizationFlags flags = BatchNormalizationFlags::automatic;
  TrainingStyle training_style = TrainingStyle::update_device_gpu;
};

struct InstanceNormalizationAttrs {
  TrainingStyle training_style = TrainingStyle::update_device_gpu;
};

enum class NormalizationMode { cross_channel, spatial, local_contrast };

struct NormalizationAttrs {
  NormalizationMode mode = NormalizationMode::cross_channel;
  int64_t kernel_width = 5, kernel_height = 5;  // cross channel: kernel_width is the channel window
  float alpha = 1.0f, beta = 5.0f, delta = 1.0f;
  float pm = 0.0f, ps = 1.0f, p0 = 1.0f;  // local contrast only
};

struct DropoutAttrs {
  float keep_probability = 0.5f;
  uint64_t seed = 0;
  std::array<int64_t, 3> mask_stride{1, 1, 1};
};

enum class UpsamplingMode { nearest, bilinear };

struct UpsamplingAttrs {
  UpsamplingMode mode = UpsamplingMode::nearest;
  int64_t scale_factor_x = 1, scale_factor_y = 1;
  bool align_corners = false;
};

// MPSScaleTransform: dest = source * scale + translate, pixel-edge coordinates.
struct ScaleTransform {
  double scale_x = 1, scale_y = 1, translate_x = 0, translate_y = 0;
};

class Handle;

// MPSImageTransformProvider: asked once per source image size when a plan is compiled, with the
// handle of the scale node's source image node (may be null).
class TransformProvider {
 public:
  virtual ~TransformProvider() = default;
  virtual std::optional<ScaleTransform> transform(int64_t source_width, int64_t source_height,
                                                  int64_t source_channels,
                                                  const std::shared_ptr<Handle>& source_handle) const = 0;
};

enum class ScaleMode { bilinear, lanczos };

struct ScaleAttrs {
  ScaleMode mode = ScaleMode::bilinear;
  int64_t output_width = 1, output_height = 1, output_depth = 1;
  std::shared_ptr<TransformProvider> transform_provider;
};

// MPSCNNLossType / MPSCNNReductionType raw values (graph.md §0.2).
enum class LossType : int {
  mean_absolute_error = 0, mean_squared_error = 1, softmax_cross_entropy = 2, sigmoid_cross_entropy = 3,
  categorical_cross_entropy = 4, hinge = 5, huber = 6, cosine_distance = 7, log = 8,
  kullback_leibler_divergence = 9
};
enum class ReductionType : int { none = 0, sum = 1, mean = 2, sum_by_non_zero_weights = 3 };
const char* loss_type_name(LossType type);
const char* reduction_type_name(ReductionType type);

// MPSCNNLossDescriptor (nodes.md §13.2). `weight` is the scalar weight used when the labels carry
// no weights image.
struct LossDescriptor {
  LossType type = LossType::mean_squared_error;
  ReductionType reduction = ReductionType::none;
  float weight = 1.0f;
  float label_smoothing = 0.0f;
  int64_t number_of_classes = 1;
  float epsilon = 1e-7f;
  float delta = 1.0f;
};

struct LossAttrs {
  LossDescriptor loss;
};

// MPSCNNYOLOLossDescriptor (nodes.md §13.3). The sub-descriptors' reduction types are ignored.
struct YOLOLossAttrs {
  LossDescriptor xy, wh, confidence, classes;
  ReductionType reduction = ReductionType::sum;
  bool rescore = true;
  float scale_xy = 10.0f, scale_wh = 10.0f, scale_no_object = 5.0f, scale_object = 100.0f, scale_class = 2.0f;
  float min_iou_for_object_presence = 0.7f, max_iou_for_object_absence = 0.3f;
  int64_t number_of_anchor_boxes = 1;
  std::vector<float> anchor_boxes;  // (width, height) pairs in grid-cell units
};

// Internal kinds. Convert: between a caller image's storage format and the activation values plans
// compute on. Fill: a 32-bit pattern repeated over every element byte (poisoning test aid).
struct ConvertAttrs {
  ChannelFormat from = ChannelFormat::float32, to = ChannelFormat::float32;
};
struct FillAttrs {
  uint32_t pattern = 0;
};

// Every attrs type of op_list.def (schema.cpp checks each row against this list).
using Attrs = std::variant<ConvolutionAttrs, BinaryConvolutionAttrs, PoolingAttrs, NeuronAttrs, SoftMaxAttrs,
                           ArithmeticAttrs, ConcatenationAttrs, BatchNormalizationAttrs,
                           InstanceNormalizationAttrs, NormalizationAttrs, DropoutAttrs, UpsamplingAttrs,
                           ScaleAttrs, LossAttrs, YOLOLossAttrs, ConvertAttrs, FillAttrs>;

}  // namespace mpsnn
