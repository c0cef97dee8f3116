#pragma once
// Hand-written CPU gradient kernels for pooling (nodes.md 5.2-5.6) and neurons (nodes.md 6.2,
// 6.3). Conventions as in own_kernels.h: float32 NHWC TensorViews; sources are read only;
// destinations are written completely (channels [0, c) of every pixel, channels between c and
// pixel_stride left alone); shapes are assumed validated. Every kernel is deterministic: each
// destination element is summed by one thread in a fixed order, so results do not depend on the
// thread count.
#include <cstdint>

#include "backends/cpu/isa.h"
#include "core/tensor_view.h"

namespace MPSNN_ISA_NAMESPACE::own {

// ---- pooling gradients (own_gradients.cpp) --------------------------------------------------

// nodes.md 5.3 / 5.5 forward max pooling that also records each output's winning tap, for the
// gradient. Output size is dst.shape; taps at o*stride - pad_before + k*dilation.
//  - clamp edge (zero_edge = false): max over the in-image taps; a window with no in-image tap
//    at all clamps its taps' coordinates into the image (edge replication, 1.4).
//  - zero edge: out-of-image taps read 0 and compete with the in-image ones.
// Ties go to the first maximal tap in row-major tap order (smallest ky, then kx); a NaN tap wins
// and the first NaN stays the winner. indices is dense NHWC with dst's shape and receives
// yy * src.w + xx of the winner (a pixel of the same image and channel), or -1 when the winner is
// an out-of-image zero.
void max_pooling_with_indices(const TensorView& src, const TensorView& dst, int32_t* indices,
                              const WindowAxis& y, const WindowAxis& x, bool zero_edge);

// nodes.md 5.3 / 5.5 gradient: dst (the forward source's shape) = 0, then every element of grad
// is added to the element of dst that `indices` (dense NHWC, grad's shape, values from
// max_pooling_with_indices) names; -1 is skipped. Overlapping windows accumulate in raster order
// of grad. Threads over (image, channel block).
void max_pooling_gradient(const TensorView& grad, const int32_t* indices, const TensorView& dst);

// The forward divisor N(i, j) = Ny(i) * Nx(j) of average pooling (nodes.md 5.2); each factor
// counts the window's taps that land in [-m_before, S + m_after) on its axis.
enum class AverageDivisor {
  window,       // zero edge: every tap counts, N = KH*KW
  clamp,        // clamp edge: taps inside [-zero_pad, S + zero_pad)
  padded_area,  // excludeEdges: taps inside [-pad_before, S + pad_after)
};

// nodes.md 5.2 gradient: dX[y,x] = sum over the windows (i,j) whose in-image taps include (y,x)
// of G[i,j] / N(i,j); windows with N = 0 contribute nothing, pixels no window reads get 0. With
// dilation only the actual taps count. zero_pad_* are used by AverageDivisor::clamp only.
// grad has the forward result's shape, dst the forward source's.
void average_pooling_gradient(const TensorView& grad, const TensorView& dst, const WindowAxis& y,
                              const WindowAxis& x, AverageDivisor divisor, int64_t zero_pad_y,
                              int64_t zero_pad_x);

// nodes.md 5.4 gradient: with Y[i,j] = sqrt(sum of X^2 over the in-image taps) recomputed from
// src (in double), dX[y,x] = sum over the windows containing (y,x) of G[i,j] * X[y,x] / Y[i,j];
// windows with Y = 0 contribute 0. dst has src's shape, grad the forward result's.
void l2_pooling_gradient(const TensorView& src, const TensorView& grad, const TensorView& dst,
                         const WindowAxis& y, const WindowAxis& x);

// ---- neuron gradient (own_gradients.cpp) ----------------------------------------------------

// MPSCNNNeuronType raw values (nodes.md 6.1).
enum class NeuronKind : int {
  none = 0,
  relu = 1,
  linear = 2,
  sigmoid = 3,
  hard_sigmoid = 4,
  tanh = 5,
  absolute = 6,
  soft_plus = 7,
  soft_sign = 8,
  elu = 9,
  prelu = 10,
  relu_n = 11,
  power = 12,
  exponential = 13,
  logarithm = 14,
};

// A neuron descriptor: `type` is a NeuronKind value; `data` / `data_count` are PReLU's slopes
// (at least C of them, or exactly 1 for all channels), unused by the other types.
struct NeuronParams {
  int type;
  float a, b, c;
  const float* data;
  int64_t data_count;
};

// nodes.md 6.3: dX = G * f'(X) element-wise, with X (src) the forward input and f' from the
// table of 6.2; IEEE-754 special values follow the formulas (no epsilons). src, grad and dst
// share one shape; dst may be src or grad (in place, same layout). Returns false, leaving dst
// untouched, for an unknown type or PReLU without enough slopes.
bool neuron_gradient(const NeuronParams& n, const TensorView& src, const TensorView& grad,
                     const TensorView& dst);

}  // namespace MPSNN_ISA_NAMESPACE::own
