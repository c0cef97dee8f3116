#pragma once
// Hand-written CPU kernels for the gradients (and the training-mode forward parts) oneDNN 3.2 has
// no primitive for: binary arithmetic with MPS's clamp mask and stride-0 broadcasting (oneDNN's
// binary primitive has no backward), dropout with its own counter-based mask (oneDNN has no
// dropout), the spatial and local-contrast normalization gradients (oneDNN's within-channel LRN
// is square, has no mean term and centres even windows differently), the cross-channel LRN
// gradient for even windows (oneDNN centres them one channel differently from MPS) and for
// windows of 1 (oneDNN 3.2's avx512 nhwc LRN backward crashes generating its code for them), and the
// upsampling gradients: oneDNN's resampling has no align-corners mode, and its NHWC backward
// (linear and nearest) is several times slower than a separable gather through a row buffer
// (measured in benchmarks/README.md, "Backward ops against PyTorch autograd").
// Conventions as in own_kernels.h: float32 NHWC TensorViews, sources read only, destinations
// written completely, shapes validated by the graph. Every kernel is deterministic: each
// destination element is computed by one thread in a fixed order, whatever the thread count.
#include <cstdint>

#include "backends/cpu/isa.h"
#include "core/tensor_view.h"

namespace MPSNN_ISA_NAMESPACE::own {

// ---- arithmetic (nodes.md 3.1, 3.3) ----------------------------------------------------------

// In place on dst (the unclamped result r): mask = [lo < r < hi] (strict; 0 for NaN), then
// dst = min(max(r, lo), hi) with NaN propagated. mask is dense uint8 with dst's shape.
void clamp_with_mask(const TensorView& dst, uint8_t* mask, float lo, float hi);

enum class ArithmeticGradientOp { add, subtract, multiply };

struct ArithmeticGradientParams {
  ArithmeticGradientOp op;
  bool secondary;  // differentiate B (else A)
  float primary_scale, secondary_scale;
  int diff_stride[3];   // (channel, y, x) strides of the differentiated operand
  int other_stride[3];  // of the other operand (read by multiplication only)
};

// nodes.md 3.3: per result element the derivative of r w.r.t. the differentiated operand (alpha,
// +-beta, or alpha*beta*other) times mask * grad, summed over every axis on which that operand
// has stride 0. dst has the operand's shape: on a stride-0 axis index 0 receives the sum and the
// other indices (never read by the forward) receive 0. grad and mask have the result's shape;
// `other` (null unless multiply) is the other operand, addressed by its strides.
void arithmetic_gradient(const TensorView& grad, const uint8_t* mask, const TensorView* other,
                         const TensorView& dst, const ArithmeticGradientParams& p);

// ---- dropout (nodes.md 11) -------------------------------------------------------------------

// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011) on a
// 128-bit counter with a 64-bit key; returns the four 32-bit output words.
struct PhiloxBlock {
  uint32_t v[4];
};
PhiloxBlock philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1);

// The keep mask of nodes.md 11.1 (chosen generator): for image n and flat index i of the mask
// (NHWC over mask_shape, i = (y*W_m + x)*C_m + c), the word i mod 4 of
// philox4x32_10(counter = (i div 4 low, i div 4 high, n, draw), key = (seed low, seed high))
// gives u = (word >> 8) * 2^-24 in [0, 1); the element is kept (mask 1) iff u < keep_probability.
// The mask depends only on (seed, draw, n, i), never on the thread count.
// `draw` is an mpsnn choice the spec leaves open: the number of masks this dropout step drew
// before (0 for the first encode of a compiled graph, then 1, 2, ...), in the counter word the
// spec's (n high) occupies — n < 2^32 always — so draw 0 is exactly nodes.md's mask. Without it
// every training iteration would drop the same units (a fixed thinned network, not dropout: the
// MNIST sample loses about a point of accuracy); with it the same seed still gives the same
// sequence of masks.
void dropout_mask(uint8_t* mask, const ImageShape& mask_shape, float keep_probability, uint64_t seed,
                  uint32_t draw);

// dst = src * M / p, where element (n, y, x, c) reads the mask entry whose coordinates are 0 on
// each axis the mask has extent 1 (mask_shape; broadcast groups share one draw). Used for the
// forward (src = X) and for the gradient (src = G). May run in place.
void apply_dropout_mask(const TensorView& src, const uint8_t* mask, const ImageShape& mask_shape,
                        float keep_probability, const TensorView& dst);

// ---- normalization gradients (nodes.md 8.2-8.4) ---------------------------------------------

// nodes.md 8.2 exact derivative for any window size N (window [k - N/2, k + (N-1)/2], divisor N):
// dX[k] = G[k] L[k]^-b - (2ab/N) X[k] sum_{r : k in Q(r)} G[r] X[r] L[r]^(-b-1).
void cross_channel_normalization_gradient(const TensorView& src, const TensorView& grad, const TensorView& dst,
                                          int64_t kernel_size, float alpha, float beta, float delta);

// Floats of scratch the two spatial gradients below need for `shape` (whole batch).
int64_t spatial_normalization_gradient_scratch(const ImageShape& shape);
int64_t local_contrast_normalization_gradient_scratch(const ImageShape& shape);

// nodes.md 8.3 exact derivative (zero edges, divisor KW*KH, window [p - K/2, p + (K-1)/2]).
void spatial_normalization_gradient(const TensorView& src, const TensorView& grad, const TensorView& dst,
                                    int64_t kernel_w, int64_t kernel_h, float alpha, float beta, float delta,
                                    float* scratch);

// nodes.md 8.4 exact derivative of the chosen forward (the variance's max(., 0) guard ignored).
void local_contrast_normalization_gradient(const TensorView& src, const TensorView& grad, const TensorView& dst,
                                           int64_t kernel_w, int64_t kernel_h, float alpha, float beta,
                                           float delta, float p0, float ps, float* scratch);

// ---- upsampling gradient (nodes.md 9.1, 9.2) ------------------------------------------------

// The adjoint of separable linear interpolation given per axis as, for every source index k,
// the result indices o and weights w with Y[o] += w X[k] (CSR: offsets[k] .. offsets[k+1] into
// index/weight, o ascending). dX[ky, kx] = sum over (i, j) of wy(i, ky) wx(j, kx) G[i, j]: per
// result row ky, a y pass sums the rows i of G that ky's taps name into one row buffer (in
// cache), then an x pass gathers each dX pixel from that buffer; both in CSR order, one thread
// per row (deterministic for any thread count). Every scale factor and both align-corners modes
// of bilinear upsampling are such tables, and so is nearest upsampling's block sum (weights 1).
struct AxisAdjoint {
  const int64_t* offsets;
  const int64_t* index;
  const float* weight;
};
void upsampling_gradient(const TensorView& grad, const TensorView& dst, const AxisAdjoint& y, const AxisAdjoint& x);

}  // namespace MPSNN_ISA_NAMESPACE::own
