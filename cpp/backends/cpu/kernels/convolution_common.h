#pragma once
// How an MPS convolution window maps onto oneDNN's convolution and deconvolution, shared by the
// forward kernels (convolution.cpp) and their gradients (convolution_gradient.cpp), so that a
// gradient differentiates exactly the computation its forward step ran.
#include <optional>

#include "backends/cpu/dnnl_utils.h"

namespace mpsnn::cpu {

// A staged copy of a source: `shape` pixels starting at source pixel (y0, x0), channels
// [c0, c0 + shape.c). Reads outside the source take the nearest edge pixel (clamp) or zero.
struct SourceStage {
  ImageShape shape;  // the staged image
  int64_t y0 = 0, x0 = 0, c0 = 0;
  bool clamp = false;

  void run(const TensorView& src, float* dst) const;
  // The adjoint of run(): dx (the source's shape) = 0, then every staged element's gradient is
  // added to the source element it was read from (the clamped edge pixel, or nothing for a zero
  // read). Each destination row is summed by one thread in a fixed order (deterministic).
  void fold(const float* staged_gradient, const TensorView& dx) const;
};

// Bytes of a dense float32 image, rounded up to 64 (scratch regions stay cache-line aligned).
size_t aligned_bytes(const ImageShape& s);

// oneDNN's weights dims of a descriptor: {O, I, KH, KW}, or {G, O/G, I/G, KH, KW} with groups
// (depthwise: G = channels).
memory::dims weights_dims(const ConvolutionDescriptor& d);
// The OHWI float32 layout of the data source's weights as oneDNN memory (g-OHWI with groups).
memory::desc user_weights_desc(const ConvolutionDescriptor& d, bool fully_connected);
// The weights a primitive reads, for one parameter version at a time. When the primitive's layout
// is the data source's (OHWI float32: fully connected layers, whose inner product takes it as is)
// and nothing is rotated, the parameters themselves are bound, without a copy, and held while
// bound; otherwise they are reordered (rotated 180° when `flip`) into memory of the primitive's
// layout. Either way the one memory object is shared by every execution state of the kernel
// (dnnl::memory is a handle), so load() rebinds them all; callers serialize load() against runs
// (VersionCache, and reloads happen only while no run is in flight).
class PrimitiveWeights {
 public:
  PrimitiveWeights() = default;
  PrimitiveWeights(const memory::desc& primitive_md, const ConvolutionDescriptor& d, bool fully_connected, bool flip);
  void load(const std::shared_ptr<const ConvolutionParams>& p) const;
  const memory& mem() const { return mem_; }
  bool direct() const { return direct_; }

 private:
  mutable memory mem_;
  mutable std::shared_ptr<const ConvolutionParams> held_;
  bool fully_connected_ = false, flip_ = false, direct_ = false;
};
// Rotates dense OHWI weights (O x KH x KW x I) by 180° in place.
void flip_ohwi(float* w, int64_t o, int64_t kh, int64_t kw, int64_t i);

// A regular convolution's source as the primitive reads it: a staged copy (edge clamp, or a source
// channel window: exactly the pixels the windows cover, read without padding), or the source
// itself, cropped where a pad is negative and padded with zeros elsewhere.
struct ConvolutionWindow {
  std::optional<SourceStage> stage;
  memory::desc src_md;
  int64_t src_offset = 0;  // elements from the source's data (direct path)
  bool cropped = false;    // the direct path skips source pixels no window reads
  memory::dims pad_l{0, 0}, pad_r{0, 0};
};
ConvolutionWindow convolution_window(const ImageShape& src, const ImageShape& out, const NodeGeometry& g,
                                     int64_t input_channels);

// A transposed convolution (nodes.md §4.3) as oneDNN's deconvolution with 180°-rotated weights:
// the primitive computes `full`, padded by `lo` / `hi` (pad_before = Ke-1-Pz where positive);
// result pixel o is full pixel o + shift. When that is not the identity (`cropped`), full lies in
// scratch and the wanted window is copied out; result rows no input reaches hold the bias. A source
// channel window is staged densely first (`stage`, `read` is what the primitive reads).
struct TransposeWindow {
  ImageShape full, read;
  int64_t shift_y = 0, shift_x = 0;
  bool cropped = false;
  memory::dims lo{0, 0}, hi{0, 0};
  std::optional<SourceStage> stage;
};
TransposeWindow transpose_window(const ImageShape& src, const ImageShape& out, const NodeGeometry& g,
                                 int64_t input_channels);

}  // namespace mpsnn::cpu
