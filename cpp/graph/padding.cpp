#include "graph/padding.h"

#include <sstream>

#include "core/errors.h"

namespace mpsnn {

using namespace padding;

std::shared_ptr<DefaultPadding> DefaultPadding::with_method(int method) {
  MPSNN_CHECK((method & kCustom) == 0, ShapeError,
              "[MPSNNDefaultPadding] method ", describe_padding_method(method),
              " has the custom bit; a custom policy must implement destination_image_descriptor itself");
  MPSNN_CHECK((method & kSizeMask) != kSizeReserved && (method & kAlignMask) != kAlignMask, ShapeError,
              "[MPSNNDefaultPadding] method ", method, " uses a reserved size or alignment value");
  return std::shared_ptr<DefaultPadding>(new DefaultPadding(method, Kind::plain));
}

std::shared_ptr<DefaultPadding> DefaultPadding::tensorflow_average_pooling(bool valid_only) {
  // graph.md §4.5: TensorFlow SAME puts the odd pixel after (bottom right); the custom step
  // switches the kernel to edge clamp, i.e. dividing by the number of valid pixels.
  const int method = valid_only ? (kSizeValidOnly | kCustom)
                                : (kSizeSame | kAlignCentered | kRemainderBottomRight | kCustom);
  return std::shared_ptr<DefaultPadding>(new DefaultPadding(
      method, valid_only ? Kind::tensorflow_average_pooling_valid_only : Kind::tensorflow_average_pooling));
}

std::optional<std::string> DefaultPadding::label() const {
  switch (kind_) {
    case Kind::tensorflow_average_pooling: return "TensorFlow average pooling (same)";
    case Kind::tensorflow_average_pooling_valid_only: return "TensorFlow average pooling (valid only)";
    default: return describe_padding_method(method_);
  }
}

ImageDescriptor DefaultPadding::destination_image_descriptor(const PaddingRequest&, KernelProps& kernel,
                                                             const ImageDescriptor& suggested) const {
  if (kind_ != Kind::plain) kernel.edge_mode = EdgeMode::clamp;
  return suggested;
}

AxisSize resolve_axis(int64_t S, int64_t K, int64_t s, int64_t d, int method, bool is_x, bool reverse) {
  const int64_t Ke = (K - 1) * d + 1;
  const int size_bits = method & kSizeMask;
  const int64_t sigma = size_bits == kSizeValidOnly ? -1 : size_bits == kSizeSame ? 0 : 1;
  int64_t D, R, E;
  if (!reverse) {
    const int64_t num = S + sigma * (Ke - 1);
    D = num > 0 ? (num + s - 1) / s : -((-num) / s);  // ceil for any sign
    R = (D - 1) * s + Ke;
    E = R - S;
  } else {
    D = (S - 1) * s + 1 + sigma * (Ke - 1);
    R = (D - 1) + Ke;
    E = R - ((S - 1) * s + 1);
  }
  int64_t pad_before;
  switch (method & kAlignMask) {
    case kAlignTopLeft: pad_before = E; break;
    case kAlignBottomRight: pad_before = 0; break;
    default: {
      const int rem = method & kRemainderMask;
      // Remainder to the top (y) or the left (x).
      const bool first = is_x ? (rem == kRemainderTopLeft || rem == kRemainderBottomLeft)
                              : (rem == kRemainderTopLeft || rem == kRemainderTopRight);
      pad_before = (E + (first ? 1 : 0)) / 2;  // C++ division truncates toward zero
    }
  }
  return AxisSize{D, Ke / 2 - pad_before};
}

WindowAxis window_from_offset(int64_t S, int64_t D, int64_t K, int64_t s, int64_t d, int64_t offset) {
  WindowAxis w;
  w.kernel = K;
  w.stride = s;
  w.dilation = d;
  w.pad_before = w.extent() / 2 - offset;
  w.pad_after = (D - 1) * s + w.extent() - S - w.pad_before;
  return w;
}

std::string describe_padding_method(int method) {
  std::ostringstream os;
  const int size = method & kSizeMask;
  os << (size == kSizeValidOnly ? "sizeValidOnly" : size == kSizeSame ? "sizeSame" : size == kSizeFull ? "sizeFull" : "sizeReserved");
  const int align = method & kAlignMask;
  os << (align == kAlignCentered ? "|alignCentered" : align == kAlignTopLeft ? "|alignTopLeft" : align == kAlignBottomRight ? "|alignBottomRight" : "|alignReserved");
  const int rem = method & kRemainderMask;
  os << (rem == kRemainderTopLeft ? "|addRemainderToTopLeft" : rem == kRemainderTopRight ? "|addRemainderToTopRight" : rem == kRemainderBottomLeft ? "|addRemainderToBottomLeft" : "|addRemainderToBottomRight");
  if (method & kCustomAllowForNodeFusion) os << "|customAllowForNodeFusion";
  if (method & kCustom) os << "|custom";
  if (method & kExcludeEdges) os << "|excludeEdges";
  return os.str();
}

}  // namespace mpsnn
