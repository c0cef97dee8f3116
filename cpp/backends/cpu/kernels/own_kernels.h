#pragma once
// Hand-written CPU kernels for the MPS operations that oneDNN 3.2 has no primitive for, or
// whose MPS semantics a oneDNN primitive cannot express. All data is float32 NHWC
// (TensorView); sources are read only, destinations are written completely (channels
// [0, c) of every pixel; channels between c and pixel_stride are left alone). Kernels
// assume validated shapes (the graph checks them) and thread over (image, row) with OpenMP.
#include <cstdint>
#include <memory>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backends/cpu/isa.h"
#include "core/tensor_view.h"

namespace MPSNN_ISA_NAMESPACE::own {

// ---- normalization (own_normalization.cpp) -------------------------------------------------

// nodes.md 8.3: Y = X * (delta + alpha/(KW*KH) * sum_window X^2)^-beta per channel; window
// [p - K/2, p + (K-1)/2] per axis, out-of-image taps read 0, divisor fixed. dst has src's shape.
void spatial_normalization(const TensorView& src, const TensorView& dst, int64_t kernel_w,
                           int64_t kernel_h, float alpha, float beta, float delta);

// nodes.md 8.4: Y = pm + ps * (X - p0*M) * (delta + alpha*V)^-beta with M, V the window mean
// and population variance (zero-padded taps, divisor KW*KH, V clamped at 0).
void local_contrast_normalization(const TensorView& src, const TensorView& dst, int64_t kernel_w,
                                  int64_t kernel_h, float alpha, float beta, float delta, float pm,
                                  float ps, float p0);

// nodes.md 8.6: per image n and channel c, over its H*W pixels, Y = gamma_c * (X - mean) /
// sqrt(var + epsilon) + beta_c with the biased variance (two passes in double). A constant
// channel gives beta_c exactly. gamma and beta have C entries. May run in place.
void instance_normalization(const TensorView& src, const TensorView& dst, const float* gamma,
                            const float* beta, double epsilon);

// ---- pooling (own_pooling.cpp) -------------------------------------------------------------

// nodes.md 5.4: Y = sqrt(sum of X^2 over the in-image taps of the window); out-of-image taps
// contribute nothing. Output size is dst.shape; taps at o*stride - pad_before + k*dilation.
void l2_pooling(const TensorView& src, const TensorView& dst, const WindowAxis& y,
                const WindowAxis& x);

// ---- resampling (own_scale.cpp) ------------------------------------------------------------

// dest = source * scale + translate in pixel-edge coordinates (nodes.md 10.1).
struct ScaleTransform {
  double scale_x, scale_y, translate_x, translate_y;
};

// nodes.md 10.3: half-pixel bilinear sampling at u = (o + 0.5 - t)/s - 0.5 with source indices
// clamped to [0, S-1]; no prefilter. Output size is dst.shape.
void bilinear_scale(const TensorView& src, const TensorView& dst, const ScaleTransform& t);

// nodes.md 10.4: Pillow's separable Lanczos-3 (support widened by the downscale factor,
// weights renormalized, out-of-image taps dropped), x pass then y pass.
void lanczos_scale(const TensorView& src, const TensorView& dst, const ScaleTransform& t);

// ---- binary convolution (own_binary_conv.cpp) ----------------------------------------------

enum class BinaryConvType { binary_weights = 0, xnor = 1, and_ = 2 };

// Per-channel terms of nodes.md 4.5. Each pointer may be nullptr, meaning 1 (scales) or 0
// (biases); out_* have Cout entries, in_* have Cin entries.
struct BinaryConvParams {
  BinaryConvType type;
  bool beta_scaling;
  const float* out_scale;
  const float* out_bias;
  const float* in_scale;
  const float* in_bias;
};

// nodes.md 4.5 (groups = 1). weights: uint32 words [Cout][KH][KW][ceil(Cin/32)], bit b of word
// w is input channel 32w + b (bit 1 = +1). Out-of-image taps contribute nothing, also to the
// beta image, whose divisor stays KH*KW. Cout = dst.c.
// Made once per plan: the constructor picks the algorithm for these shapes, rearranges the
// weights for it and copies the per-channel terms (nothing of `weights` or `p` is kept); run()
// takes images of exactly the constructor's shapes and may be called from several threads.
class BinaryConvolution {
 public:
  BinaryConvolution(const uint32_t* weights, const ImageShape& src, const ImageShape& dst,
                    const WindowAxis& y, const WindowAxis& x, const BinaryConvParams& p);
  ~BinaryConvolution();
  BinaryConvolution(BinaryConvolution&&) noexcept;
  BinaryConvolution& operator=(BinaryConvolution&&) noexcept;
  void run(const TensorView& src, const TensorView& dst) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One call of a BinaryConvolution made for these shapes (tests; kernels keep the object).
void binary_convolution(const TensorView& src, const TensorView& dst, const uint32_t* weights,
                        const WindowAxis& y, const WindowAxis& x, const BinaryConvParams& p);

// ---- element-wise (own_elementwise.cpp) ----------------------------------------------------

// nodes.md 6.2: every neuron function, as MPS defines it (NaN kept). May run in place.
void neuron(const NeuronDescriptor& n, const TensorView& src, const TensorView& dst);
// The NaN-keeping clamp of fused arithmetic: u = min(max(u, lo), hi), NaN stays NaN. In place.
void clamp(const TensorView& out, float lo, float hi);

// nodes.md 6.2: Y = u / (1 + |u|). May run in place (src.data == dst.data, same layout).
void soft_sign(const TensorView& src, const TensorView& dst);

// nodes.md 6.2: Y = u if u >= 0 else a_c * u, with `count` slopes: C of them, or 1 for all
// channels. May run in place.
void prelu(const TensorView& src, const TensorView& dst, const float* slopes, int64_t count);

enum class ArithmeticOp { add, subtract, multiply, divide };

// nodes.md 3.1. Strides are (channel, y, x); 0 re-reads index 0 of that axis of the operand.
struct ArithmeticParams {
  ArithmeticOp op;
  float primary_scale = 1, secondary_scale = 1, bias = 0, minimum = -3.40282347e38f,
        maximum = 3.40282347e38f;
  int primary_stride[3] = {1, 1, 1};
  int secondary_stride[3] = {1, 1, 1};
};

// nodes.md 3.1: Y = min(max(alpha*A op beta*B + bias, lo), hi) with a NaN-propagating clamp that
// is always applied. dst's shape is the resolved result shape. An operand whose batch size is 1
// is re-read for every image. May run in place on an operand addressed like dst (no stride 0).
void binary_arithmetic(const TensorView& a, const TensorView& b, const TensorView& dst,
                       const ArithmeticParams& p);

// nodes.md 12.1 in one pass over dst: source k goes to channels [off_k, off_k + C_k) with
// off_0 = 0, off_{k+1} = off_k + 4*ceil(C_k/4); every other channel of dst is written 0. All
// share n, h, w.
void concatenate(const TensorView* srcs, int64_t count, const TensorView& dst);

// ---- helpers shared by the kernel files above -----------------------------------------------
namespace detail {

// The taps k in [lo, hi) of window output o that land inside [0, size); tap k reads source
// position start + k*dilation (nodes.md 1.1).
struct TapRange {
  int64_t start, lo, hi;
};

inline TapRange in_image_taps(const WindowAxis& a, int64_t o, int64_t size) {
  const int64_t start = o * a.stride - a.pad_before;
  const int64_t lo = start >= 0 ? 0 : (-start + a.dilation - 1) / a.dilation;
  const int64_t last = size - 1 - start;  // largest offset k*dilation that stays inside
  const int64_t hi = last < 0 ? 0 : (last / a.dilation + 1 < a.kernel ? last / a.dilation + 1
                                                                       : a.kernel);
  return {start, lo, hi > lo ? hi : lo};
}

// Calls f(std::integral_constant<int64_t, K>{}) with K = c for 1 <= c <= 4 and K = 0 (a runtime
// count) otherwise. Per-pixel channel loops over a compile-time K unroll into straight code;
// for thin images (RGB, masks) a runtime-length loop costs more than its body.
template <class F>
void with_channel_count(int64_t c, F&& f) {
  switch (c) {
    case 1: return f(std::integral_constant<int64_t, 1>{});
    case 2: return f(std::integral_constant<int64_t, 2>{});
    case 3: return f(std::integral_constant<int64_t, 3>{});
    case 4: return f(std::integral_constant<int64_t, 4>{});
    default: return f(std::integral_constant<int64_t, 0>{});
  }
}

inline int64_t max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace detail

}  // namespace MPSNN_ISA_NAMESPACE::own
