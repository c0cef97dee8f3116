#pragma once
// MPSNNPaddingMethod rules (graph.md §4, nodes.md §1.2) and the padding-policy interface.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/image.h"
#include "core/tensor_view.h"
#include "graph/attrs.h"

namespace mpsnn {

class FilterNode;

namespace padding {
// MPSNNPaddingMethod bits (raw values).
constexpr int kAlignCentered = 0, kAlignTopLeft = 1, kAlignBottomRight = 2, kAlignMask = 3;
constexpr int kRemainderTopLeft = 0, kRemainderTopRight = 4, kRemainderBottomLeft = 8,
              kRemainderBottomRight = 12, kRemainderMask = 12;
constexpr int kSizeValidOnly = 0, kSizeSame = 16, kSizeFull = 32, kSizeReserved = 48, kSizeMask = 0x7F0;
constexpr int kCustomAllowForNodeFusion = 0x2000, kCustom = 0x4000, kExcludeEdges = 0x8000;
}  // namespace padding

// The kernel properties a padding policy configures (MPSCNNKernel's geometry). A custom
// policy's hook receives them with `offset` already set and may change them.
struct KernelProps {
  int64_t offset_x = 0, offset_y = 0, offset_z = 0;
  EdgeMode edge_mode = EdgeMode::zero;
  int64_t kernel_width = 1, kernel_height = 1, stride_x = 1, stride_y = 1, dilation_x = 1, dilation_y = 1;
  int64_t source_feature_channel_offset = 0, destination_feature_channel_offset = 0;
  // MPS's sourceFeatureChannelMaxCount (default ULONG_MAX: everything after the offset).
  int64_t source_feature_channel_max_count = INT64_MAX;
  bool is_backwards = false;
};

// What the custom hook sees about the node's inputs.
struct PaddingRequest {
  std::vector<ImageShape> sources;
  std::vector<ChannelFormat> source_formats;
  std::string node_context;
  const FilterNode* node = nullptr;  // the node being shaped (bindings pick the kernel class from it)
};

class PaddingPolicy {
 public:
  virtual ~PaddingPolicy() = default;
  virtual int padding_method() const = 0;
  virtual std::optional<std::string> label() const { return std::nullopt; }
  // Called when padding_method() has the `custom` bit. Returns the final descriptor; may change
  // `kernel` (offset, edge mode).
  virtual ImageDescriptor destination_image_descriptor(const PaddingRequest& request, KernelProps& kernel,
                                                       const ImageDescriptor& suggested) const {
    (void)request;
    (void)kernel;
    return suggested;
  }
};

using PaddingPtr = std::shared_ptr<PaddingPolicy>;

// MPSNNDefaultPadding: a plain method, or one of the two TensorFlow average-pooling policies
// whose custom step sets edge_mode = clamp.
class DefaultPadding : public PaddingPolicy {
 public:
  enum class Kind { plain, tensorflow_average_pooling, tensorflow_average_pooling_valid_only };
  static std::shared_ptr<DefaultPadding> with_method(int method);
  static std::shared_ptr<DefaultPadding> tensorflow_average_pooling(bool valid_only);
  int padding_method() const override { return method_; }
  std::optional<std::string> label() const override;
  ImageDescriptor destination_image_descriptor(const PaddingRequest& request, KernelProps& kernel,
                                               const ImageDescriptor& suggested) const override;
  Kind kind() const { return kind_; }

 private:
  DefaultPadding(int method, Kind kind) : method_(method), kind_(kind) {}
  int method_;
  Kind kind_;
};

// Result size and pad-before along one axis from the method bits (nodes.md §1.2).
// `is_x` selects the remainder bit of the axis; `reverse` is for enlarging filters.
struct AxisSize {
  int64_t size;    // D
  int64_t offset;  // floor(Ke/2) - pad_before
};
AxisSize resolve_axis(int64_t source, int64_t kernel, int64_t stride, int64_t dilation, int method, bool is_x,
                      bool reverse);

// Completes a window axis from the result size and the kernel offset.
WindowAxis window_from_offset(int64_t source, int64_t result, int64_t kernel, int64_t stride, int64_t dilation,
                              int64_t offset);

std::string describe_padding_method(int method);

}  // namespace mpsnn
