// Hand-written gradients of pooling and neurons (declared in own_gradients.h):
//  - max_pooling_with_indices (nodes.md 5.3, 5.5): the forward max pool plus each output's
//    winning source pixel, the "arg-max recomputed from the forward source" of the gradient.
//  - max_pooling_gradient (5.3, 5.5): scatters G onto the recorded winners.
//  - average_pooling_gradient (5.2): dX[y,x] = sum over windows reading (y,x) of G / N.
//  - l2_pooling_gradient (5.4): dX[y,x] = sum over windows reading (y,x) of G * X / Y.
//  - neuron_gradient (6.2, 6.3): dX = G * f'(X) for every MPSCNNNeuronType.
// Determinism: no kernel shares a destination element between threads, and every sum runs in
// an order fixed by the geometry alone, so any thread count gives bit-identical results.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/kernels/own_gradients.h"
#include "backends/cpu/kernels/own_kernels.h"

namespace MPSNN_ISA_NAMESPACE::own {

using detail::TapRange;

namespace {

// Below this many elements the OpenMP fork costs more than the work.
constexpr int64_t kParallelMin = 1 << 15;

// ---- max pooling with indices -------------------------------------------------------------

// The running winner of one output pixel, per channel (K: channel count known at compile time,
// 0 if not). Taps must be offered in row-major tap order.
template <int64_t K>
struct MaxWinner {
  float* best;
  int32_t* arg;
  int64_t c_n;
  bool empty = true;

  // A tap reading source pixel p (nullptr: an out-of-image zero) of the given index. A later tap
  // replaces the winner only when strictly greater, or when it is NaN and the winner is not (a
  // NaN winner then stays: every comparison with it fails).
  void offer(const float* p, int32_t index) {
    const int64_t n = K ? K : c_n;
    if (empty) {
      empty = false;
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) {
        best[c] = p ? p[c] : 0.0f;
        arg[c] = index;
      }
    } else if (p) {
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) {
        const float v = p[c], b = best[c];
        // | and & rather than || and &&: short-circuit control flow keeps GCC from vectorizing
        // (a scalar loop of unpredictable branches, 3-6x slower).
        const bool take = (v > b) | ((v != v) & (b == b));
        best[c] = take ? v : b;
        arg[c] = take ? index : arg[c];
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) {
        const bool take = 0.0f > best[c];
        best[c] = take ? 0.0f : best[c];
        arg[c] = take ? index : arg[c];
      }
    }
  }
};

template <int64_t K>
void max_pool_pixel(const TensorView& src, int64_t n, const TapRange& rows, const TapRange& cols,
                    const WindowAxis& y, const WindowAxis& x, bool zero_edge, MaxWinner<K>& win) {
  const ImageShape& s = src.shape;
  const int64_t nr = rows.hi - rows.lo, nc = cols.hi - cols.lo;
  auto offer_in = [&](int64_t yy, int64_t xx) {
    win.offer(src.pixel(n, yy, xx), static_cast<int32_t>(yy * s.w + xx));
  };
  if (!zero_edge && (nr == 0 || nc == 0)) {
    // Clamp edge, no in-image tap: every tap reads the nearest in-image pixel (1.4), on both axes
    // (as the forward's DirectPoolingKernel does).
    for (int64_t ky = 0; ky < y.kernel; ++ky) {
      const int64_t yy = std::clamp<int64_t>(rows.start + ky * y.dilation, 0, s.h - 1);
      for (int64_t kx = 0; kx < x.kernel; ++kx)
        offer_in(yy, std::clamp<int64_t>(cols.start + kx * x.dilation, 0, s.w - 1));
    }
  } else if (!zero_edge || nr * nc == y.kernel * x.kernel) {
    // Only in-image taps matter: clamp edge (replicated pixels never beat the in-window ones,
    // 5.3) or a zero-edge window entirely inside the image.
    for (int64_t ky = rows.lo; ky < rows.hi; ++ky)
      for (int64_t kx = cols.lo; kx < cols.hi; ++kx)
        offer_in(rows.start + ky * y.dilation, cols.start + kx * x.dilation);
  } else {
    // Zero edge with out-of-image taps: all taps in row-major order, so that ties between a zero
    // of the padding and an in-image zero go to the earlier one. After the first zero the winner
    // is >= 0 or NaN, so later zeros cannot win and are skipped.
    bool zero_offered = false;
    for (int64_t ky = 0; ky < y.kernel; ++ky) {
      const bool row_in = ky >= rows.lo && ky < rows.hi;
      for (int64_t kx = 0; kx < x.kernel; ++kx) {
        if (row_in && kx >= cols.lo && kx < cols.hi) {
          offer_in(rows.start + ky * y.dilation, cols.start + kx * x.dilation);
        } else if (!zero_offered) {
          zero_offered = true;
          win.offer(nullptr, -1);
        }
      }
    }
  }
}

// ---- window gathers (average and L2 gradients) ------------------------------------------

// Per source position p of one axis, the windows whose in-image taps include p, in ascending
// window order, each with a weight (CSR layout: entries [begin[p], begin[p+1])). Windows of
// weight 0 are left out entirely, so that their (possibly infinite) gradients never enter a
// sum as 0 * G.
struct AxisGather {
  std::vector<int64_t> begin, window;
  std::vector<float> weight;
};

template <class Weight>
AxisGather gather_axis(const WindowAxis& a, int64_t outputs, int64_t size, Weight weight_of) {
  AxisGather g;
  g.begin.assign(static_cast<size_t>(size + 1), 0);
  std::vector<float> w(static_cast<size_t>(outputs));
  for (int64_t o = 0; o < outputs; ++o) {
    w[o] = weight_of(o);
    if (w[o] == 0.0f) continue;
    const TapRange t = detail::in_image_taps(a, o, size);
    for (int64_t k = t.lo; k < t.hi; ++k) ++g.begin[t.start + k * a.dilation + 1];
  }
  for (int64_t p = 0; p < size; ++p) g.begin[p + 1] += g.begin[p];
  g.window.resize(static_cast<size_t>(g.begin[size]));
  g.weight.resize(g.window.size());
  std::vector<int64_t> fill(g.begin.begin(), g.begin.end() - 1);
  for (int64_t o = 0; o < outputs; ++o) {
    if (w[o] == 0.0f) continue;
    const TapRange t = detail::in_image_taps(a, o, size);
    for (int64_t k = t.lo; k < t.hi; ++k) {
      const int64_t e = fill[t.start + k * a.dilation]++;
      g.window[e] = o;
      g.weight[e] = w[o];
    }
  }
  return g;
}

// d[i] = w * s[i] (first term) or d[i] += w * s[i], for i < len (K > 0: len = K).
template <int64_t K, bool WEIGHTED>
inline void axpy(float* d, const float* s, float w, int64_t len, bool first) {
  const int64_t n = K ? K : len;
  if (first) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) d[i] = WEIGHTED ? w * s[i] : s[i];
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) d[i] += WEIGHTED ? w * s[i] : s[i];
  }
}

// The transposed window sum dst[n,y,x,c] = sum_{(i,wy) in gy[y]} sum_{(j,wx) in gx[x]}
// wy*wx*g[n,i,j,c] (times xs[n,y,x,c] when xs is given), separably: per destination row a
// buffer t[j][c] = sum_i wy*g[n,i,j,c], then per pixel the sum over its windows' columns. That
// costs (windows per row + windows per column) instead of their product per element. Every sum
// runs in ascending window order; threads own destination rows.
template <bool WEIGHTED>
void transposed_window_sum(const TensorView& g, const AxisGather& gy, const AxisGather& gx,
                           const TensorView& dst, const TensorView* xs) {
  const ImageShape& d = dst.shape;
  const int64_t C = d.c, gw = g.shape.w;
  detail::with_channel_count(C, [&](auto kc) {
    constexpr int64_t K = decltype(kc)::value;
#pragma omp parallel if (d.numel() + g.shape.numel() > kParallelMin)
    {
      std::vector<float> t(static_cast<size_t>(gw * C));
#pragma omp for collapse(2) schedule(static)
      for (int64_t n = 0; n < d.n; ++n)
        for (int64_t y = 0; y < d.h; ++y) {
          const int64_t e0 = gy.begin[y], e1 = gy.begin[y + 1];
          for (int64_t e = e0; e < e1; ++e) {
            const float wy = gy.weight[e];
            const float* row = g.pixel(n, gy.window[e], 0);
            if (g.dense()) {
              axpy<0, WEIGHTED>(t.data(), row, wy, gw * C, e == e0);
            } else {
              for (int64_t j = 0; j < gw; ++j)
                axpy<K, WEIGHTED>(t.data() + j * C, row + j * g.pixel_stride, wy, C, e == e0);
            }
          }
          for (int64_t x = 0; x < d.w; ++x) {
            float* out = dst.pixel(n, y, x);
            const int64_t f0 = gx.begin[x], f1 = gx.begin[x + 1];
            if (e0 == e1 || f0 == f1) {  // no window reads this pixel
#pragma omp simd
              for (int64_t c = 0; c < (K ? K : C); ++c) out[c] = 0.0f;
              continue;
            }
            for (int64_t f = f0; f < f1; ++f)
              axpy<K, WEIGHTED>(out, t.data() + gx.window[f] * C, gx.weight[f], C, f == f0);
            if (xs) {
              const float* px = xs->pixel(n, y, x);
#pragma omp simd
              for (int64_t c = 0; c < (K ? K : C); ++c) out[c] *= px[c];
            }
          }
        }
    }
  });
}

// The average pooling divisor factor of one axis: the taps of window o that land in
// [-before, size + after) (nodes.md 5.2; as count_taps in pooling.cpp).
int64_t count_taps(const WindowAxis& a, int64_t o, int64_t size, int64_t before, int64_t after) {
  const int64_t start = o * a.stride - a.pad_before;
  int64_t k = 0;
  for (int64_t t = 0; t < a.kernel; ++t) {
    const int64_t p = start + t * a.dilation;
    k += p >= -before && p < size + after;
  }
  return k;
}

// ---- neuron gradient --------------------------------------------------------------------------

// d = g * slope(u) over all elements: one flat loop when every view is dense, per pixel
// otherwise (pixel p of a view starts at p * pixel_stride, rows and images being packed).
// Two things keep these loops vectorized with GCC:
//  - slope is firstprivate: read through OpenMP's shared-variable pointer, its captured
//    parameters are memory loads that GCC will not if-convert (relu became a mispredicted branch,
//    10x slower);
//  - the slope is a statement of its own before the product: in one expression,
//    `g * (u >= 0 ? 1 : a)` becomes `u >= 0 ? g : g*a`, whose conditional multiply cannot be
//    if-converted under the default -ftrapping-math without AVX-512 masking (portable builds).
template <class Slope>
void map_gradient(const TensorView& src, const TensorView& grad, const TensorView& dst,
                  Slope slope) {
  const ImageShape& s = dst.shape;
  if (src.dense() && grad.dense() && dst.dense()) {
    const int64_t total = s.numel();
    const float* u = src.data;
    const float* g = grad.data;
    float* d = dst.data;
#pragma omp parallel for simd schedule(static) firstprivate(slope) if (total > kParallelMin)
    for (int64_t i = 0; i < total; ++i) {
      const float f = slope(u[i]);
      d[i] = g[i] * f;
    }
    return;
  }
  const int64_t pixels = s.n * s.h * s.w, c = s.c;
#pragma omp parallel for schedule(static) firstprivate(slope) if (pixels * c > kParallelMin)
  for (int64_t p = 0; p < pixels; ++p) {
    const float* u = src.data + p * src.pixel_stride;
    const float* g = grad.data + p * grad.pixel_stride;
    float* d = dst.data + p * dst.pixel_stride;
#pragma omp simd
    for (int64_t k = 0; k < c; ++k) {
      const float f = slope(u[k]);
      d[k] = g[k] * f;
    }
  }
}

// sigma(t) evaluated without overflow: 1/(1+e^-t) for t >= 0, e^t/(1+e^t) otherwise.
// One division of a selected numerator: a division under the select would be a branch.
inline float stable_sigmoid(float t) {
  const float e = std::exp(-std::fabs(t));
  const float num = t >= 0.0f ? 1.0f : e;
  return num / (1.0f + e);
}

// sigma(t)*(1 - sigma(t)) = e/(1+e)^2 with e = e^-|t|: the two factors are sigma(|t|) and
// 1 - sigma(|t|) = e/(1+e), the latter without the cancellation of 1 - s, which loses all digits
// once s rounds to 1 (|t| > 17) and most of them well before.
inline float sigmoid_slope(float t) {
  const float e = std::exp(-std::fabs(t));
  const float q = 1.0f + e;
  return e / (q * q);
}

}  // namespace

void max_pooling_with_indices(const TensorView& src, const TensorView& dst, int32_t* indices,
                              const WindowAxis& y, const WindowAxis& x, bool zero_edge) {
  const ImageShape& s = src.shape;
  const ImageShape& d = dst.shape;
  std::vector<TapRange> cols(static_cast<size_t>(d.w));
  for (int64_t j = 0; j < d.w; ++j) cols[j] = detail::in_image_taps(x, j, s.w);
  detail::with_channel_count(d.c, [&](auto kc) {
    constexpr int64_t K = decltype(kc)::value;
#pragma omp parallel for collapse(2) schedule(static) if (d.numel() > kParallelMin / 8)
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t i = 0; i < d.h; ++i) {
        const TapRange rows = detail::in_image_taps(y, i, s.h);
        int32_t* arg = indices + (n * d.h + i) * d.w * d.c;
        for (int64_t j = 0; j < d.w; ++j, arg += d.c) {
          MaxWinner<K> win{dst.pixel(n, i, j), arg, d.c};
          max_pool_pixel<K>(src, n, rows, cols[j], y, x, zero_edge, win);
        }
      }
  });
}

void max_pooling_gradient(const TensorView& grad, const int32_t* indices, const TensorView& dst) {
  const ImageShape& g = grad.shape;
  const ImageShape& d = dst.shape;
  const int64_t C = d.c, ps = dst.pixel_stride;
  const int64_t out_pixels = g.h * g.w, in_pixels = d.h * d.w;
  // A winner can be any pixel of its image, so threads own (image, channel block) slices of dst
  // and each walks all of its image's gradient in raster order. As few blocks per image as keep
  // every thread busy (each block re-reads the image's gradient rows); blocks wider than 16
  // channels are whole cache lines wide, so that neighbouring blocks share fewer lines.
  const int64_t per_image = std::max<int64_t>(1, (detail::max_threads() + d.n - 1) / d.n);
  int64_t block = (C + per_image - 1) / per_image;
  if (block > 16) block = (block + 15) / 16 * 16;
  const int64_t blocks = (C + block - 1) / block;
#pragma omp parallel for collapse(2) schedule(static) if (g.numel() + d.numel() > kParallelMin)
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * block, c1 = std::min(C, c0 + block);
      // Pixel k of image n is at base + k * ps: rows and pixels of a view are packed.
      float* base = dst.pixel(n, 0, 0);
      for (int64_t p = 0; p < in_pixels; ++p)
        for (int64_t c = c0; c < c1; ++c) base[p * ps + c] = 0.0f;
      const int32_t* idx = indices + n * out_pixels * C;
      for (int64_t i = 0; i < g.h; ++i)
        for (int64_t j = 0; j < g.w; ++j) {
          const float* gp = grad.pixel(n, i, j);
          const int32_t* ip = idx + (i * g.w + j) * C;
          // Distinct channels of one gradient pixel always land on distinct elements.
#pragma omp simd
          for (int64_t c = c0; c < c1; ++c)
            if (ip[c] >= 0) base[ip[c] * ps + c] += gp[c];
        }
    }
}

void average_pooling_gradient(const TensorView& grad, const TensorView& dst, const WindowAxis& y,
                              const WindowAxis& x, AverageDivisor divisor, int64_t zero_pad_y,
                              int64_t zero_pad_x) {
  const ImageShape& g = grad.shape;
  const ImageShape& d = dst.shape;
  // N(i,j) = Ny(i) * Nx(j), so 1/N splits into one weight per axis; 0 marks N = 0.
  auto axis = [&](const WindowAxis& a, int64_t outputs, int64_t size, int64_t zero_pad) {
    return gather_axis(a, outputs, size, [&](int64_t o) {
      int64_t count = a.kernel;
      if (divisor == AverageDivisor::clamp)
        count = count_taps(a, o, size, zero_pad, zero_pad);
      else if (divisor == AverageDivisor::padded_area)
        count = count_taps(a, o, size, a.pad_before, a.pad_after);
      return count > 0 ? 1.0f / static_cast<float>(count) : 0.0f;
    });
  };
  const AxisGather gy = axis(y, g.h, d.h, zero_pad_y);
  const AxisGather gx = axis(x, g.w, d.w, zero_pad_x);
  transposed_window_sum<true>(grad, gy, gx, dst, nullptr);
}

void l2_pooling_gradient(const TensorView& src, const TensorView& grad, const TensorView& dst,
                         const WindowAxis& y, const WindowAxis& x) {
  const ImageShape& s = src.shape;
  const ImageShape& g = grad.shape;
  const int64_t C = g.c;
  // dX[y,x] = X[y,x] * sum over windows of R[i,j] with R = G / Y, Y summed in double (float
  // squares underflow below 1e-19). R = 0 where Y = 0; a NaN or infinite Y passes through (an
  // infinite X then gets inf * 0 = NaN, as G*X/Y would). R overflows only for windows of
  // denormal values.
  std::vector<float> r(static_cast<size_t>(g.numel()));
  std::vector<TapRange> cols(static_cast<size_t>(g.w));
  for (int64_t j = 0; j < g.w; ++j) cols[j] = detail::in_image_taps(x, j, s.w);
#pragma omp parallel if (g.numel() > kParallelMin / 8)
  {
    std::vector<double> acc(static_cast<size_t>(C));
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t i = 0; i < g.h; ++i) {
        const TapRange rows = detail::in_image_taps(y, i, s.h);
        for (int64_t j = 0; j < g.w; ++j) {
          const TapRange& cj = cols[j];
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t ky = rows.lo; ky < rows.hi; ++ky)
            for (int64_t kx = cj.lo; kx < cj.hi; ++kx) {
              const float* p = src.pixel(n, rows.start + ky * y.dilation, cj.start + kx * x.dilation);
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) acc[c] += double(p[c]) * double(p[c]);
            }
          const float* gp = grad.pixel(n, i, j);
          float* rp = r.data() + ((n * g.h + i) * g.w + j) * C;
          for (int64_t c = 0; c < C; ++c)
            rp[c] = acc[c] != 0.0 ? static_cast<float>(double(gp[c]) / std::sqrt(acc[c])) : 0.0f;
        }
      }
  }
  const AxisGather gy = gather_axis(y, g.h, s.h, [](int64_t) { return 1.0f; });
  const AxisGather gx = gather_axis(x, g.w, s.w, [](int64_t) { return 1.0f; });
  const TensorView rv = dense_view(r.data(), g);
  transposed_window_sum<false>(rv, gy, gx, dst, &src);
}

bool neuron_gradient(const NeuronParams& p, const TensorView& src, const TensorView& grad,
                     const TensorView& dst) {
  // Each case passes f'(u) of nodes.md 6.2; map_gradient multiplies by G.
  const float a = p.a, b = p.b, c = p.c;
  switch (static_cast<NeuronKind>(p.type)) {
    case NeuronKind::none:
      map_gradient(src, grad, dst, [](float) { return 1.0f; });
      return true;
    case NeuronKind::relu:
      map_gradient(src, grad, dst, [a](float u) { return u >= 0.0f ? 1.0f : a; });
      return true;
    case NeuronKind::linear:
      map_gradient(src, grad, dst, [a](float) { return a; });
      return true;
    case NeuronKind::sigmoid:
      map_gradient(src, grad, dst, [](float u) { return sigmoid_slope(u); });
      return true;
    case NeuronKind::hard_sigmoid:
      map_gradient(src, grad, dst, [a, b](float u) {
        const float t = a * u + b;
        return (t > 0.0f) & (t < 1.0f) ? a : 0.0f;
      });
      return true;
    case NeuronKind::tanh: {
      // 1 - tanh(v)^2 = sech(v)^2 = 4 sigma(2v) (1 - sigma(2v)): no cancellation near |tanh| = 1.
      const float ab = a * b;
      map_gradient(src, grad, dst, [ab, b](float u) { return ab * (4.0f * sigmoid_slope(2.0f * b * u)); });
      return true;
    }
    case NeuronKind::absolute:  // sign(u), 0 at 0, NaN stays NaN
      map_gradient(src, grad, dst,
                   [](float u) { return u > 0.0f ? 1.0f : u < 0.0f ? -1.0f : u == 0.0f ? 0.0f : u; });
      return true;
    case NeuronKind::soft_plus: {
      const float ab = a * b;
      map_gradient(src, grad, dst, [ab, b](float u) { return ab * stable_sigmoid(b * u); });
      return true;
    }
    case NeuronKind::soft_sign:
      map_gradient(src, grad, dst, [](float u) {
        const float q = 1.0f + std::fabs(u);
        return 1.0f / (q * q);
      });
      return true;
    case NeuronKind::elu:
      map_gradient(src, grad, dst, [a](float u) { return u >= 0.0f ? 1.0f : a * std::exp(u); });
      return true;
    case NeuronKind::prelu: {
      const ImageShape& s = dst.shape;
      if (!p.data || (p.data_count != 1 && p.data_count < s.c)) return false;
      // The slopes repeated along a whole row (dense views) or one pixel, so that every run is a
      // flat loop over channel-indexed slopes.
      const bool rows = src.dense() && grad.dense() && dst.dense();
      const int64_t run = rows ? s.w * s.c : s.c;
      std::vector<float> slope(static_cast<size_t>(run));
      for (int64_t i = 0; i < run; ++i) slope[i] = p.data[p.data_count == 1 ? 0 : i % s.c];
      const float* sl = slope.data();
#pragma omp parallel for collapse(2) schedule(static) if (s.numel() > kParallelMin)
      for (int64_t n = 0; n < s.n; ++n)
        for (int64_t yy = 0; yy < s.h; ++yy)
          for (int64_t xx = 0; xx < (rows ? 1 : s.w); ++xx) {
            const float* u = src.pixel(n, yy, xx);
            const float* g = grad.pixel(n, yy, xx);
            float* d = dst.pixel(n, yy, xx);
#pragma omp simd
            for (int64_t k = 0; k < run; ++k) {
              const float a_k = sl[k];  // loaded unconditionally: a conditional load blocks if-conversion
              const float f = u[k] >= 0.0f ? 1.0f : a_k;  // and see map_gradient on this split
              d[k] = g[k] * f;
            }
          }
      return true;
    }
    case NeuronKind::relu_n: {
      // (u >= 0 ? 1 : a) * [r < b], r = (u >= 0 ? u : a*u), as selects of precomputed values
      // (a0 = a*0, the product where r >= b: 0, -0 or NaN) and with both comparisons made for
      // every element: GCC moves a multiply used on one side only back under a branch, which
      // portable builds cannot if-convert (see map_gradient).
      const float a0 = a * 0.0f;
      map_gradient(src, grad, dst, [a, b, a0](float u) {
        const bool pos = u >= 0.0f;
        const bool below = (pos & (u < b)) | (!pos & (a * u < b));
        const float pass = pos ? 1.0f : a, stop = pos ? 0.0f : a0;
        return below ? pass : stop;
      });
      return true;
    }
    case NeuronKind::power: {
      const float ac = a * c, e = c - 1.0f;
      map_gradient(src, grad, dst, [a, b, ac, e](float u) { return ac * std::pow(a * u + b, e); });
      return true;
    }
    case NeuronKind::exponential:
      if (c == -1.0f) {
        map_gradient(src, grad, dst, [a, b](float u) { return a * std::exp(a * u + b); });
      } else {
        // pow rather than exp(v * ln c): exact for c = 0 (0^v) and without the error of ln c
        // magnified by v.
        const float k = a * std::log(c);
        map_gradient(src, grad, dst, [a, b, c, k](float u) { return k * std::pow(c, a * u + b); });
      }
      return true;
    case NeuronKind::logarithm:
      if (c == -1.0f) {
        map_gradient(src, grad, dst, [a, b](float u) { return a / (a * u + b); });
      } else {
        const float l = std::log(c);
        map_gradient(src, grad, dst, [a, b, l](float u) { return a / (l * (a * u + b)); });
      }
      return true;
  }
  return false;
}

}  // namespace MPSNN_ISA_NAMESPACE::own
