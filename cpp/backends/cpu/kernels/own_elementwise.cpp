// Element-wise kernels: the neurons our own loops compute (every neuron fused into a convolution
// whose function oneDNN does not compute exactly, and the neuron node's), soft-sign, PReLU, the
// NaN-keeping clamp, MPS binary arithmetic and concatenation.
// oneDNN 3.2 has no soft-sign eltwise algorithm and no PReLU eltwise algorithm (its separate
// prelu primitive cannot follow a convolution as a post-op tail on the output view, where
// neurons are applied too), and its binary primitive cannot express the MPS arithmetic semantics
// (per-operand scales, a NaN-propagating clamp that is always applied, stride-0 broadcasting of
// the primary operand); concatenation needs zero-filled gap channels between 4-aligned slots,
// which oneDNN's concat does not write.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "backends/cpu/kernels/own_kernels.h"
#include "core/errors.h"
#include "graph/attrs.h"

namespace MPSNN_ISA_NAMESPACE::own {
namespace {

// Below this many elements the OpenMP fork costs more than the work.
constexpr int64_t kParallelMin = 1 << 15;

// ---- neurons ---------------------------------------------------------------------------------

// dst = f(src) elementwise (src and dst may alias). Dense views run as flat blocks (thin images
// such as RGB vectorize too); strided views per pixel. `f` is copied into each block's loop, so
// its captured constants are registers there, not loads through a pointer the stores may alias.
template <typename F>
void map_view(const TensorView& src, const TensorView& dst, const F& f) {
  const ImageShape& s = src.shape;
  if (src.dense() && dst.dense()) {
    const int64_t total = s.numel();
    const int64_t block = 1 << 14;
    const int64_t nblocks = (total + block - 1) / block;
    const float* x = src.data;
    float* y = dst.data;
#pragma omp parallel for schedule(static) if (total > kParallelMin)
    for (int64_t b = 0; b < nblocks; ++b) {
      const F g = f;
      const int64_t end = std::min(total, (b + 1) * block);
#pragma omp simd
      for (int64_t i = b * block; i < end; ++i) y[i] = g(x[i]);
    }
    return;
  }
  const int64_t pixels = s.n * s.h * s.w, c = s.c;
#pragma omp parallel for schedule(static) if (pixels * c > kParallelMin)
  for (int64_t p = 0; p < pixels; ++p) {
    const F g = f;
    const float* x = src.data + p * src.pixel_stride;
    float* y = dst.data + p * dst.pixel_stride;
#pragma omp simd
    for (int64_t k = 0; k < c; ++k) y[k] = g(x[k]);
  }
}

inline float stable_sigmoid(float t) {
  if (t >= 0) return 1.0f / (1.0f + std::exp(-t));
  const float e = std::exp(t);
  return e / (1.0f + e);
}

// ---- soft-sign ------------------------------------------------------------------------------

inline void soft_sign_span(const float* s, float* d, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const float u = s[i];
    d[i] = u / (1.0f + std::fabs(u));
  }
}

// ---- PReLU ------------------------------------------------------------------------------------

inline void prelu_span(const float* s, float* d, const float* a, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const float u = s[i];
    d[i] = u >= 0.0f ? u : a[i] * u;
  }
}

// ---- binary arithmetic ----------------------------------------------------------------------

struct ArithConsts {
  float sa, sb, bias, lo, hi;
};

// One run of `len` outputs. A_VEC / B_VEC: the operand advances with the run; otherwise its
// single value is read once before anything is written (so in-place runs on a broadcast operand
// are safe within the run). PLAIN: both scales are 1, whose products are exact and skipped (the
// bias is still added: x + 0 turns -0 into +0).
template <ArithmeticOp OP, bool A_VEC, bool B_VEC, bool PLAIN>
void arith_span(const float* a, const float* b, float* d, int64_t len, const ArithConsts& k) {
  const float a0 = a[0], b0 = b[0];
  const float sa = k.sa, sb = k.sb, bias = k.bias, lo = k.lo, hi = k.hi;
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const float av = PLAIN ? (A_VEC ? a[i] : a0) : sa * (A_VEC ? a[i] : a0);
    const float bv = PLAIN ? (B_VEC ? b[i] : b0) : sb * (B_VEC ? b[i] : b0);
    float r;
    if constexpr (OP == ArithmeticOp::add) r = av + bv;
    else if constexpr (OP == ArithmeticOp::subtract) r = av - bv;
    else if constexpr (OP == ArithmeticOp::multiply) r = av * bv;
    else r = av / bv;
    r = r + bias;
    // Written so that a NaN r fails both comparisons and passes through (unlike fmin/fmax).
    r = r < lo ? lo : r;
    r = r > hi ? hi : r;
    d[i] = r;
  }
}

using ArithSpanFn = void (*)(const float*, const float*, float*, int64_t, const ArithConsts&);

template <ArithmeticOp OP, bool PLAIN>
ArithSpanFn pick_span(bool a_vec, bool b_vec) {
  if (a_vec) return b_vec ? arith_span<OP, true, true, PLAIN> : arith_span<OP, true, false, PLAIN>;
  return b_vec ? arith_span<OP, false, true, PLAIN> : arith_span<OP, false, false, PLAIN>;
}

template <ArithmeticOp OP>
ArithSpanFn pick_span(bool a_vec, bool b_vec, bool plain) {
  return plain ? pick_span<OP, true>(a_vec, b_vec) : pick_span<OP, false>(a_vec, b_vec);
}

ArithSpanFn pick_span(ArithmeticOp op, bool a_vec, bool b_vec, bool plain) {
  switch (op) {
    case ArithmeticOp::add: return pick_span<ArithmeticOp::add>(a_vec, b_vec, plain);
    case ArithmeticOp::subtract: return pick_span<ArithmeticOp::subtract>(a_vec, b_vec, plain);
    case ArithmeticOp::multiply: return pick_span<ArithmeticOp::multiply>(a_vec, b_vec, plain);
    case ArithmeticOp::divide: break;
  }
  return pick_span<ArithmeticOp::divide>(a_vec, b_vec, plain);
}

// How one operand is walked along a destination row.
struct OperandWalk {
  const TensorView* v;
  int tc, ty, tx;
  // The whole row is one contiguous run of w*c values, or a single value.
  bool row_vector(const ImageShape& d) const {
    return tc == 1 && tx == 1 && v->dense() && v->shape.w == d.w && v->shape.c == d.c;
  }
  bool row_scalar() const { return tc == 0 && tx == 0; }
  const float* row(int64_t n, int64_t i) const {
    return v->pixel(v->shape.n == 1 ? 0 : n, ty ? i : 0, 0);
  }
};

// Copies / zeroes c_n channels of w pixels (K: c_n known at compile time, 0 if not). Inline
// loops: a memcpy call per pixel costs more than copying a few channels.
template <int64_t K>
inline void copy_pixels(const float* ps, int64_t sps, float* pd, int64_t dps, int64_t w,
                        int64_t c_n) {
  for (int64_t x = 0; x < w; ++x) {
    const float* s = ps + x * sps;
    float* d = pd + x * dps;
    if constexpr (K > 0) {
      for (int64_t c = 0; c < K; ++c) d[c] = s[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < c_n; ++c) d[c] = s[c];
    }
  }
}

template <int64_t K>
inline void zero_pixels(float* pd, int64_t dps, int64_t w, int64_t c_n) {
  for (int64_t x = 0; x < w; ++x) {
    float* d = pd + x * dps;
    if constexpr (K > 0) {
      for (int64_t c = 0; c < K; ++c) d[c] = 0.0f;
    } else {
#pragma omp simd
      for (int64_t c = 0; c < c_n; ++c) d[c] = 0.0f;
    }
  }
}

#ifdef __AVX512F__
// Concatenation of COUNT <= 4 sources of <= 4 channels into <= 16 channels: slot k is exactly
// lanes [4k, 4k+4) of one 512-bit register, so a destination pixel is COUNT masked loads (which
// leave the gap lanes 0) and one masked store. Copying a few channels per source pixel with
// scalar moves costs twice as much (stores are the limit).
template <int COUNT>
void concatenate_thin(const TensorView* srcs, const TensorView& dst) {
  const ImageShape& d = dst.shape;
  const __mmask16 store = static_cast<__mmask16>((1u << d.c) - 1);
  const int64_t dps = dst.pixel_stride;
#pragma omp parallel for collapse(2) schedule(static) if (d.numel() > kParallelMin)
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t y = 0; y < d.h; ++y) {
      // Source k's pixels of this row, as (first, pixel stride, load mask) in locals that the
      // stores below cannot change.
      struct Row {
        const float* p;
        int64_t ps;
        __mmask8 m;
      } r[4] = {};
      for (int k = 0; k < COUNT; ++k)
        r[k] = {srcs[k].pixel(n, y, 0), srcs[k].pixel_stride,
                static_cast<__mmask8>((1u << srcs[k].shape.c) - 1)};
      float* rd = dst.pixel(n, y, 0);
      for (int64_t x = 0; x < d.w; ++x) {
        auto slot = [&](int k) { return _mm_maskz_loadu_ps(r[k].m, r[k].p + x * r[k].ps); };
        __m512 v = _mm512_zextps128_ps512(slot(0));  // channels past the last slot are 0
        if constexpr (COUNT > 1) v = _mm512_insertf32x4(v, slot(1), 1);
        if constexpr (COUNT > 2) v = _mm512_insertf32x4(v, slot(2), 2);
        if constexpr (COUNT > 3) v = _mm512_insertf32x4(v, slot(3), 3);
        _mm512_mask_storeu_ps(rd + x * dps, store, v);
      }
    }
}
#endif

}  // namespace

void neuron(const NeuronDescriptor& n, const TensorView& src, const TensorView& dst) {
  const float a = n.a, b = n.b, c = n.c;
  switch (n.type) {
    case NeuronType::none: map_view(src, dst, [](float u) { return u; }); return;
    // The product is computed before the select: written inside the conditional it is a possibly
    // trapping operation that GCC (-ftrapping-math) will not if-convert, and the loop became a
    // mispredicted branch per element (7x slower on mixed signs than on positive inputs).
    case NeuronType::relu:
      map_view(src, dst, [a](float u) {
        const float s = a * u;
        return u >= 0 ? u : s;
      });
      return;
    case NeuronType::linear: map_view(src, dst, [a, b](float u) { return a * u + b; }); return;
    case NeuronType::sigmoid: map_view(src, dst, [](float u) { return stable_sigmoid(u); }); return;
    case NeuronType::hard_sigmoid:
      map_view(src, dst, [a, b](float u) { return std::min(std::max(a * u + b, 0.0f), 1.0f); });
      return;
    case NeuronType::tanh: map_view(src, dst, [a, b](float u) { return a * std::tanh(b * u); }); return;
    case NeuronType::absolute: map_view(src, dst, [](float u) { return std::fabs(u); }); return;
    case NeuronType::soft_plus:
      map_view(src, dst, [a, b](float u) {
        const float t = b * u;
        return a * (std::max(t, 0.0f) + std::log1p(std::exp(-std::fabs(t))));
      });
      return;
    case NeuronType::soft_sign: soft_sign(src, dst); return;
    case NeuronType::elu:
      map_view(src, dst, [a](float u) { return u >= 0 ? u : a * (std::exp(u) - 1.0f); });
      return;
    case NeuronType::prelu: prelu(src, dst, n.data.data(), int64_t(n.data.size())); return;
    case NeuronType::relu_n:
      map_view(src, dst, [a, b](float u) {
        const float s = a * u;  // before the select, as for relu
        return std::min(u >= 0 ? u : s, b);
      });
      return;
    case NeuronType::power: map_view(src, dst, [a, b, c](float u) { return std::pow(a * u + b, c); }); return;
    case NeuronType::exponential:
      if (c == -1.0f) map_view(src, dst, [a, b](float u) { return std::exp(a * u + b); });
      else map_view(src, dst, [a, b, c](float u) { return std::exp((a * u + b) * std::log(c)); });
      return;
    case NeuronType::logarithm:
      if (c == -1.0f) map_view(src, dst, [a, b](float u) { return std::log(a * u + b); });
      else map_view(src, dst, [a, b, c](float u) { return std::log(a * u + b) / std::log(c); });
      return;
    default:
      MPSNN_THROW(UnsupportedError, "[neuron] type ", int(n.type), " has no CPU implementation");
  }
}

void clamp(const TensorView& out, float lo, float hi) {
  map_view(out, out, [lo, hi](float u) { return u != u ? u : std::min(std::max(u, lo), hi); });
}

void soft_sign(const TensorView& src, const TensorView& dst) {
  const ImageShape& s = dst.shape;
  if (src.dense() && dst.dense()) {
    const int64_t total = s.numel();
    const int64_t block = 1 << 14;
    const int64_t nblocks = (total + block - 1) / block;
#pragma omp parallel for schedule(static) if (total > kParallelMin)
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t begin = b * block;
      soft_sign_span(src.data + begin, dst.data + begin, std::min(block, total - begin));
    }
    return;
  }
#pragma omp parallel for collapse(2) schedule(static) if (s.numel() > kParallelMin)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y)
      for (int64_t x = 0; x < s.w; ++x) soft_sign_span(src.pixel(n, y, x), dst.pixel(n, y, x), s.c);
}

void prelu(const TensorView& src, const TensorView& dst, const float* slopes, int64_t count) {
  const ImageShape& s = dst.shape;
  // The slopes repeated along a whole row (dense data) or a pixel, so that a run of any number of
  // channels is one flat vector loop.
  const bool rows = src.dense() && dst.dense();
  std::vector<float> a(static_cast<size_t>(rows ? s.w * s.c : s.c));
  for (size_t i = 0; i < a.size(); ++i)
    a[i] = slopes[count == 1 ? 0 : static_cast<int64_t>(i) % s.c];
#pragma omp parallel for collapse(2) schedule(static) if (s.numel() > kParallelMin)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y) {
      if (rows) {
        prelu_span(src.pixel(n, y, 0), dst.pixel(n, y, 0), a.data(), s.w * s.c);
        continue;
      }
      for (int64_t x = 0; x < s.w; ++x)
        prelu_span(src.pixel(n, y, x), dst.pixel(n, y, x), a.data(), s.c);
    }
}

void binary_arithmetic(const TensorView& a, const TensorView& b, const TensorView& dst,
                       const ArithmeticParams& p) {
  const ImageShape& s = dst.shape;
  const OperandWalk wa{&a, p.primary_stride[0], p.primary_stride[1], p.primary_stride[2]};
  const OperandWalk wb{&b, p.secondary_stride[0], p.secondary_stride[1], p.secondary_stride[2]};
  const ArithConsts k{p.primary_scale, p.secondary_scale, p.bias, p.minimum, p.maximum};

  // Fast case: each operand is either contiguous along the whole row or a single value.
  const bool flat_a = wa.row_vector(s) || wa.row_scalar();
  const bool flat_b = wb.row_vector(s) || wb.row_scalar();
  const bool flat = dst.dense() && flat_a && flat_b;
  const bool plain = p.primary_scale == 1.0f && p.secondary_scale == 1.0f;
  const ArithSpanFn span = flat ? pick_span(p.op, !wa.row_scalar(), !wb.row_scalar(), plain)
                                : pick_span(p.op, wa.tc, wb.tc, plain);
  const int64_t a_px = wa.tx ? a.pixel_stride : 0, b_px = wb.tx ? b.pixel_stride : 0;

#pragma omp parallel for collapse(2) schedule(static) if (s.numel() > kParallelMin)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t i = 0; i < s.h; ++i) {
      const float* ra = wa.row(n, i);
      const float* rb = wb.row(n, i);
      float* rd = dst.pixel(n, i, 0);
      if (flat) {
        span(ra, rb, rd, s.w * s.c, k);
        continue;
      }
      for (int64_t j = 0; j < s.w; ++j)
        span(ra + j * a_px, rb + j * b_px, rd + j * dst.pixel_stride, s.c, k);
    }
}

void concatenate(const TensorView* srcs, int64_t count, const TensorView& dst) {
  const ImageShape& d = dst.shape;
  std::vector<int64_t> offsets(static_cast<size_t>(count) + 1);
  for (int64_t k = 0; k < count; ++k) offsets[k + 1] = offsets[k] + (srcs[k].shape.c + 3) / 4 * 4;
#ifdef __AVX512F__
  bool thin = count >= 1 && count <= 4 && d.c <= 16;
  for (int64_t k = 0; k < count; ++k) thin = thin && srcs[k].shape.c <= 4;
  if (thin) {
    switch (count) {
      case 1: return concatenate_thin<1>(srcs, dst);
      case 2: return concatenate_thin<2>(srcs, dst);
      case 3: return concatenate_thin<3>(srcs, dst);
      default: return concatenate_thin<4>(srcs, dst);
    }
  }
#endif
  // Row by row, so that a destination row is still in cache when the next source fills it.
#pragma omp parallel for collapse(2) schedule(static) if (d.numel() > kParallelMin)
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t y = 0; y < d.h; ++y) {
      float* rd = dst.pixel(n, y, 0);
      if (count == 0)
        zero_pixels<0>(rd, dst.pixel_stride, d.w, d.c);
      for (int64_t k = 0; k < count; ++k) {
        // Source k, then the gap up to the next slot (after the last source: to the end).
        const TensorView& src = srcs[k];
        detail::with_channel_count(src.shape.c, [&](auto kc) {
          constexpr int64_t K = decltype(kc)::value;
          copy_pixels<K>(src.pixel(n, y, 0), src.pixel_stride, rd + offsets[k], dst.pixel_stride,
                         d.w, K ? K : src.shape.c);
        });
        const int64_t begin = offsets[k] + src.shape.c;
        const int64_t end = k + 1 < count ? offsets[k + 1] : d.c;
        if (end > begin)
          detail::with_channel_count(end - begin, [&](auto kc) {
            constexpr int64_t K = decltype(kc)::value;
            zero_pixels<K>(rd + begin, dst.pixel_stride, d.w, K ? K : end - begin);
          });
      }
    }
}

}  // namespace MPSNN_ISA_NAMESPACE::own
