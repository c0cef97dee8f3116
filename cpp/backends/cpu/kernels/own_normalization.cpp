// Spatial, local-contrast and instance normalization (nodes.md 8.3, 8.4, 8.6).
// oneDNN 3.2's within-channel LRN has a square local_size x local_size window and no mean term:
// it cannot express unequal kernel width/height, MPS's placement of even-size windows, or the
// local-contrast mean subtraction with its pm/ps/p0 parameters. Both kernels are written here,
// each fused into one pass (window sums by running sums, then the output). oneDNN 3.2 has no
// instance normalization either (batch normalization with batch statistics would need one call
// per image).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backends/cpu/kernels/own_kernels.h"

#if defined(__GNUC__)
#define MPSNN_INLINE inline __attribute__((always_inline))
#else
#define MPSNN_INLINE inline
#endif

namespace MPSNN_ISA_NAMESPACE::own {
namespace {

// ---- T^-beta, branch-free so that the output loops vectorize -----------------------------
// std::pow/std::exp/std::log are opaque calls that stop the compiler from vectorizing; these
// double-precision versions are plain arithmetic (relative error about 1e-12).

constexpr double kLn2 = 0.69314718055994530942;
constexpr double kLog2e = 1.44269504088896340736;
// ln 2 split so that k * kLn2Hi is exact for |k| < 2^29.
constexpr double kLn2Hi = 0.693147182464599609375;  // ln 2 rounded to float
constexpr double kLn2Lo = kLn2 - kLn2Hi;
constexpr double kSqrt2 = 1.41421356237309504880;
// Adding 1.5 * 2^52 rounds a double of magnitude < 2^51 to an integer held in the low bits.
constexpr double kRoundMagic = 6755399441055744.0;

MPSNN_INLINE int64_t bits_of(double v) {
  int64_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}
MPSNN_INLINE double double_of(int64_t b) {
  double v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

// Natural log: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s), s = (m-1)/(m+1),
// |s| <= 0.172, series to s^13 (next term < 5e-13). IEEE results for 0, <0, inf, NaN.
MPSNN_INLINE double log_d(double x) {
  const bool tiny = x < 2.2250738585072014e-308;  // subnormal: scale into the normal range
  const double xs = tiny ? x * 1152921504606846976.0 : x;  // 2^60
  const int64_t b = bits_of(xs);
  const int64_t e = ((b >> 52) & 0x7ff) - 1023;
  double m = double_of((b & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
  const bool big = m > kSqrt2;
  m = big ? 0.5 * m : m;
  const double ed = static_cast<double>(e) + (big ? 1.0 : 0.0) - (tiny ? 60.0 : 0.0);
  const double s = (m - 1.0) / (m + 1.0);
  const double z = s * s;
  const double series =
      1.0 + z * (1.0 / 3 + z * (1.0 / 5 + z * (1.0 / 7 + z * (1.0 / 9 + z * (1.0 / 11 + z / 13)))));
  double r = ed * kLn2 + 2.0 * s * series;
  r = x > 0.0 ? r : (x == 0.0 ? -std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::quiet_NaN());
  return x < std::numeric_limits<double>::infinity() ? r : x;  // +inf and NaN pass through
}

// e^y: y = k ln2 + r with |r| <= ln2/2, Taylor series to r^11 (next term < 7e-15), 2^k applied
// in two halves so that overflow gives inf and small results underflow gradually.
MPSNN_INLINE double exp_d(double y) {
  double yc = y < -1400.0 ? -1400.0 : y;
  yc = yc > 1400.0 ? 1400.0 : yc;
  const double t = yc * kLog2e + kRoundMagic;
  const double k = t - kRoundMagic;
  const int64_t ki = bits_of(t) - bits_of(kRoundMagic);
  const double r = (yc - k * kLn2Hi) - k * kLn2Lo;
  double p = 1.0 / 39916800;
  p = p * r + 1.0 / 3628800;
  p = p * r + 1.0 / 362880;
  p = p * r + 1.0 / 40320;
  p = p * r + 1.0 / 5040;
  p = p * r + 1.0 / 720;
  p = p * r + 1.0 / 120;
  p = p * r + 1.0 / 24;
  p = p * r + 1.0 / 6;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const int64_t k1 = ki / 2, k2 = ki - k1;
  // Exponent fields built unsigned: for a NaN y, ki is meaningless and must not overflow a shift.
  const double s1 = double_of(static_cast<int64_t>(static_cast<uint64_t>(k1 + 1023) << 52));
  const double s2 = double_of(static_cast<int64_t>(static_cast<uint64_t>(k2 + 1023) << 52));
  const double res = p * s1 * s2;
  return y == y ? res : y;
}

// 1/sqrt(t): a first guess from the bits of t, then four Newton steps, each squaring the relative
// error (3.4e-2, 1.8e-3, 4.6e-6, 3e-11, then below double rounding). 1 / std::sqrt would be two
// instructions, but std::sqrt may set errno, which keeps GCC from vectorizing the output loop
// (measured 2.2x slower). IEEE results for 0, < 0, inf and NaN; subnormals are scaled up first.
MPSNN_INLINE double rsqrt_d(double t) {
  const bool tiny = t < 2.2250738585072014e-308;
  const double ts = tiny ? t * 1152921504606846976.0 : t;  // 2^60
  const uint64_t b = static_cast<uint64_t>(bits_of(ts));
  double y = double_of(static_cast<int64_t>(0x5fe6eb50c7b537a9ULL - (b >> 1)));
  const double h = 0.5 * ts;
  for (int i = 0; i < 4; ++i) y = y * (1.5 - h * y * y);
  y = tiny ? y * 1073741824.0 : y;  // 2^30
  y = t > 0.0 ? y : (t == 0.0 ? std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::quiet_NaN());
  return t < std::numeric_limits<double>::infinity() ? y : (t == t ? 0.0 : t);
}

// Functors computing T^-beta; exact shortcuts for the common exponents.
struct NegPowZero {
  MPSNN_INLINE double operator()(double) const { return 1.0; }
};
struct NegPowHalf {  // local-contrast default
  MPSNN_INLINE double operator()(double t) const { return rsqrt_d(t); }
};
template <int K>
struct NegPowInt {  // spatial default beta = 5
  MPSNN_INLINE double operator()(double t) const {
    double q = t;
    for (int i = 1; i < K; ++i) q *= t;
    return 1.0 / q;
  }
};
struct NegPowGeneral {
  double beta;
  MPSNN_INLINE double operator()(double t) const { return exp_d(-beta * log_d(t)); }
};

template <class F>
void with_neg_pow(double beta, F&& f) {
  if (beta == 0.0) return f(NegPowZero{});
  if (beta == 0.5) return f(NegPowHalf{});
  if (beta == 1.0) return f(NegPowInt<1>{});
  if (beta == 2.0) return f(NegPowInt<2>{});
  if (beta == 3.0) return f(NegPowInt<3>{});
  if (beta == 4.0) return f(NegPowInt<4>{});
  if (beta == 5.0) return f(NegPowInt<5>{});
  f(NegPowGeneral{beta});
}

// ---- window sums ----------------------------------------------------------------------------
// Sums over a KH x KW window with zero padding, O(1) per pixel in the window size: a vertical
// running sum V (double, one dense row of W*C) is updated from row y-1 to row y by adding the
// horizontal window sums of the entering row and subtracting those of the leaving row; both
// horizontal sums come from one running sum along x over (entering - leaving). Accumulating in
// double keeps the sliding updates and the one-pass variance of 8.4 free of cancellation.

struct Slide {
  int64_t w, c, l, r;  // window along x: [x - l, x + r]
  const float* enter;  // row entering the window (pixel stride enter_ps; 0 for the zero row)
  const float* leave;
  int64_t enter_ps, leave_ps;
  double* v2;  // sums of X^2
  double* v1;  // sums of X (local contrast only)
  double* acc2;
  double* acc1;
};

// Running sum along x over columns [x0, x1): ADD: column x + r enters, SUB: x - l - 1 leaves.
template <bool kMean, bool kAdd, bool kSub>
void slide_segment(const Slide& s, int64_t x0, int64_t x1) {
  const int64_t c_n = s.c;
  double* acc2 = s.acc2;
  double* acc1 = s.acc1;
  for (int64_t x = x0; x < x1; ++x) {
    const float *ea = nullptr, *la = nullptr, *es = nullptr, *ls = nullptr;
    if constexpr (kAdd) {
      ea = s.enter + (x + s.r) * s.enter_ps;
      la = s.leave + (x + s.r) * s.leave_ps;
    }
    if constexpr (kSub) {
      es = s.enter + (x - s.l - 1) * s.enter_ps;
      ls = s.leave + (x - s.l - 1) * s.leave_ps;
    }
    double* v2 = s.v2 + x * c_n;
    double* v1 = kMean ? s.v1 + x * c_n : nullptr;
#pragma omp simd
    for (int64_t c = 0; c < c_n; ++c) {
      double d2 = 0.0, d1 = 0.0;
      if constexpr (kAdd) {
        const double a = ea[c], b = la[c];
        d2 += a * a - b * b;
        d1 += a - b;
      }
      if constexpr (kSub) {
        const double a = es[c], b = ls[c];
        d2 -= a * a - b * b;
        d1 -= a - b;
      }
      acc2[c] += d2;
      v2[c] += acc2[c];
      if constexpr (kMean) {
        acc1[c] += d1;
        v1[c] += acc1[c];
      }
    }
  }
}

// V += horizontal window sums of (enter - leave).
template <bool kMean>
void slide_rows(const Slide& s) {
  std::fill(s.acc2, s.acc2 + s.c, 0.0);
  if (kMean) std::fill(s.acc1, s.acc1 + s.c, 0.0);
  // Column 0's window is [-l, r]: its in-image taps are [0, min(r, w-1)].
  const int64_t first_hi = std::min(s.r, s.w - 1);
  for (int64_t k = 0; k <= first_hi; ++k) {
    const float* e = s.enter + k * s.enter_ps;
    const float* l = s.leave + k * s.leave_ps;
#pragma omp simd
    for (int64_t c = 0; c < s.c; ++c) {
      const double a = e[c], b = l[c];
      s.acc2[c] += a * a - b * b;
      if constexpr (kMean) s.acc1[c] += a - b;
    }
  }
#pragma omp simd
  for (int64_t c = 0; c < s.c; ++c) {
    s.v2[c] += s.acc2[c];
    if constexpr (kMean) s.v1[c] += s.acc1[c];
  }
  // Columns 1..w-1: column x + r enters while x + r < w; column x - l - 1 leaves once >= 0.
  const int64_t add_end = std::max<int64_t>(1, s.w - s.r);  // x < add_end: something enters
  const int64_t sub_begin = std::min(s.w, s.l + 1);         // x >= sub_begin: something leaves
  const int64_t b1 = std::min(add_end, sub_begin), b2 = std::max(add_end, sub_begin);
  const int64_t lo = 1;
  // Within each of the three segments below, both conditions are constant.
  auto seg = [&](int64_t x0, int64_t x1) {
    x0 = std::max(x0, lo);
    x1 = std::min(x1, s.w);
    if (x0 >= x1) return;
    const bool add = x0 < add_end, sub = x0 >= sub_begin;
    if (add && sub) slide_segment<kMean, true, true>(s, x0, x1);
    else if (add) slide_segment<kMean, true, false>(s, x0, x1);
    else if (sub) slide_segment<kMean, false, true>(s, x0, x1);
    else slide_segment<kMean, false, false>(s, x0, x1);
  };
  seg(lo, b1);
  seg(b1, b2);
  seg(b2, s.w);
}

// True if rows [y_lo, y_hi] of image n hold a NaN or an infinity. Running sums would smear such
// a value over every later window (inf - inf and NaN - NaN are NaN), so those rows are summed
// directly instead.
bool has_non_finite(const TensorView& src, int64_t n, int64_t y_lo, int64_t y_hi) {
  const int64_t w = src.shape.w, c_n = src.shape.c;
  int bad = 0;
  for (int64_t y = y_lo; y <= y_hi; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const float* px = src.pixel(n, y, x);
#pragma omp simd reduction(| : bad)
      for (int64_t c = 0; c < c_n; ++c) bad |= !(std::fabs(px[c]) <= 3.40282347e38f);
    }
  return bad != 0;
}

// Window sums of row y computed tap by tap (O(KW*KH) per pixel): the fallback for rows near
// non-finite values.
template <bool kMean>
void direct_sums(const TensorView& src, int64_t n, int64_t y, int64_t l, int64_t r, int64_t t,
                 int64_t b, double* v2, double* v1) {
  const int64_t w = src.shape.w, c_n = src.shape.c;
  std::fill(v2, v2 + w * c_n, 0.0);
  if (kMean) std::fill(v1, v1 + w * c_n, 0.0);
  for (int64_t yy = std::max<int64_t>(0, y - t); yy <= std::min(src.shape.h - 1, y + b); ++yy)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t xx = std::max<int64_t>(0, x - l); xx <= std::min(w - 1, x + r); ++xx) {
        const float* px = src.pixel(n, yy, xx);
        for (int64_t c = 0; c < c_n; ++c) {
          const double v = px[c];
          v2[x * c_n + c] += v * v;
          if (kMean) v1[x * c_n + c] += v;
        }
      }
}

// Calls emit(n, y, v2, v1) for every row of the image with the window sums of X^2 (and X when
// kMean) for each pixel of that row, as dense rows of W*C doubles. Rows are split into chunks
// so that both threads have work even for one image; each chunk primes its own running sum.
template <bool kMean, class Emit>
void window_sums(const TensorView& src, int64_t kernel_w, int64_t kernel_h, const Emit& emit) {
  const ImageShape& s = src.shape;
  const int64_t l = kernel_w / 2, r = (kernel_w - 1) / 2;
  const int64_t t = kernel_h / 2, b = (kernel_h - 1) / 2;
  const int64_t threads = detail::max_threads();
  const int64_t min_rows = std::max<int64_t>(2 * kernel_h, 8);
  const int64_t wanted = (4 * threads + s.n - 1) / s.n;  // chunks per image
  int64_t chunks = std::max<int64_t>(1, std::min(wanted, s.h / min_rows));
  if (chunks * s.n < threads) chunks = std::min(s.h, (threads + s.n - 1) / s.n);
  const int64_t rows_per_chunk = (s.h + chunks - 1) / chunks;
  chunks = (s.h + rows_per_chunk - 1) / rows_per_chunk;
  const int64_t row_len = s.w * s.c;
  const int64_t nq = kMean ? 2 : 1;

#pragma omp parallel if (s.numel() > 4096)
  {
    std::vector<double> buf(nq * (row_len + s.c));
    const std::vector<float> zero_pixel(s.c, 0.0f);
    Slide sl{};
    sl.w = s.w;
    sl.c = s.c;
    sl.l = l;
    sl.r = r;
    sl.v2 = buf.data();
    sl.acc2 = buf.data() + row_len;
    sl.v1 = kMean ? buf.data() + row_len + s.c : nullptr;
    sl.acc1 = kMean ? sl.v1 + row_len : nullptr;
    auto slide = [&](int64_t n, int64_t enter_y, int64_t leave_y) {
      const bool has_enter = enter_y >= 0 && enter_y < s.h;
      const bool has_leave = leave_y >= 0 && leave_y < s.h;
      if (!has_enter && !has_leave) return;
      sl.enter = has_enter ? src.pixel(n, enter_y, 0) : zero_pixel.data();
      sl.enter_ps = has_enter ? src.pixel_stride : 0;
      sl.leave = has_leave ? src.pixel(n, leave_y, 0) : zero_pixel.data();
      sl.leave_ps = has_leave ? src.pixel_stride : 0;
      slide_rows<kMean>(sl);
    };

#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t ch = 0; ch < chunks; ++ch) {
        const int64_t y0 = ch * rows_per_chunk;
        const int64_t y1 = std::min(s.h, y0 + rows_per_chunk);
        if (has_non_finite(src, n, std::max<int64_t>(0, y0 - t), std::min(s.h - 1, y1 - 1 + b))) {
          for (int64_t y = y0; y < y1; ++y) {
            direct_sums<kMean>(src, n, y, l, r, t, b, sl.v2, sl.v1);
            emit(n, y, sl.v2, sl.v1);
          }
          continue;
        }
        std::fill(sl.v2, sl.v2 + row_len, 0.0);
        if (kMean) std::fill(sl.v1, sl.v1 + row_len, 0.0);
        for (int64_t yy = std::max<int64_t>(0, y0 - t); yy <= std::min(s.h - 1, y0 + b); ++yy)
          slide(n, yy, -1);
        for (int64_t y = y0; y < y1; ++y) {
          if (y > y0) slide(n, y + b, y - t - 1);
          emit(n, y, sl.v2, sl.v1);
        }
      }
  }
}

// Applies `span(x, v2, v1, y, len)` to a row: one call when src and dst are dense, else per pixel.
template <class Span>
void emit_row(const TensorView& src, const TensorView& dst, int64_t n, int64_t y,
              const double* v2, const double* v1, const Span& span) {
  const int64_t w = src.shape.w, c = src.shape.c;
  const float* xs = src.pixel(n, y, 0);
  float* yd = dst.pixel(n, y, 0);
  if (src.dense() && dst.dense()) {
    span(xs, v2, v1, yd, w * c);
    return;
  }
  for (int64_t x = 0; x < w; ++x)
    span(xs + x * src.pixel_stride, v2 + x * c, v1 ? v1 + x * c : nullptr,
         yd + x * dst.pixel_stride, c);
}

// Instance normalization in pieces: per-channel sums over rows [y0, y1) of image n, of X when
// mean is null, else of (X - mean)^2; and the output rows.
template <bool kDeviation>
void channel_sums(const TensorView& src, int64_t n, int64_t y0, int64_t y1, const double* mean,
                  double* sums) {
  const int64_t c_n = src.shape.c;
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = 0; x < src.shape.w; ++x) {
      const float* px = src.pixel(n, y, x);
#pragma omp simd
      for (int64_t c = 0; c < c_n; ++c) {
        const double d = kDeviation ? px[c] - mean[c] : px[c];
        sums[c] += kDeviation ? d * d : d;
      }
    }
}

void channel_sums(const TensorView& src, int64_t n, int64_t y0, int64_t y1, const double* mean,
                  double* sums) {
  if (mean) channel_sums<true>(src, n, y0, y1, mean, sums);
  else channel_sums<false>(src, n, y0, y1, mean, sums);
}

// Per channel of one image, Y = (X - hi) * scale + shift: hi is the mean rounded to float (so
// X - hi is exact near the mean, and exactly 0 in a constant channel), scale = gamma /
// sqrt(var + epsilon) and shift = beta - (mean - hi) * scale, which is beta in a constant
// channel. (X * scale + (beta - mean * scale) would miss beta there by rounding, and lose the
// mean's low bits at large offsets.)
struct ChannelAffine {
  std::vector<float> hi, scale, shift;
};

void set_affine(ChannelAffine& a, int64_t n, int64_t c_n, const double* mean, const double* var,
                const float* gamma, const float* beta, double epsilon) {
  for (int64_t c = 0; c < c_n; ++c) {
    const size_t i = static_cast<size_t>(n * c_n + c);
    const double scale = gamma[c] / std::sqrt(var[c] + epsilon);
    a.hi[i] = static_cast<float>(mean[c]);
    a.scale[i] = static_cast<float>(scale);
    a.shift[i] = static_cast<float>(beta[c] - (mean[c] - a.hi[i]) * scale);
  }
}

void normalize_rows(const TensorView& src, const TensorView& dst, int64_t n, int64_t y0,
                    int64_t y1, const ChannelAffine& a) {
  const int64_t c_n = src.shape.c;
  const float* hi = a.hi.data() + n * c_n;
  const float* sc = a.scale.data() + n * c_n;
  const float* sh = a.shift.data() + n * c_n;
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = 0; x < src.shape.w; ++x) {
      const float* px = src.pixel(n, y, x);
      float* pd = dst.pixel(n, y, x);
#pragma omp simd
      for (int64_t c = 0; c < c_n; ++c) pd[c] = (px[c] - hi[c]) * sc[c] + sh[c];
    }
}

}  // namespace

void instance_normalization(const TensorView& src, const TensorView& dst, const float* gamma,
                            const float* beta, double epsilon) {
  const ImageShape& s = src.shape;
  const int64_t c_n = s.c;
  const double pixels = static_cast<double>(s.h * s.w);
  const bool parallel = s.numel() > 4096;
  const int64_t threads = detail::max_threads();
  ChannelAffine a;
  a.hi.resize(static_cast<size_t>(s.n * c_n));
  a.scale.resize(a.hi.size());
  a.shift.resize(a.hi.size());
  // Two passes (mean, then the mean squared deviation): no cancellation for large offsets.
  if (!parallel || s.n >= threads) {
    // One task per image: its three passes stay in the core's cache.
#pragma omp parallel if (parallel)
    {
      std::vector<double> mean(static_cast<size_t>(c_n)), var(mean.size());
#pragma omp for schedule(static)
      for (int64_t n = 0; n < s.n; ++n) {
        std::fill(mean.begin(), mean.end(), 0.0);
        std::fill(var.begin(), var.end(), 0.0);
        channel_sums(src, n, 0, s.h, nullptr, mean.data());
        for (double& m : mean) m /= pixels;
        channel_sums(src, n, 0, s.h, mean.data(), var.data());
        for (double& v : var) v /= pixels;
        set_affine(a, n, c_n, mean.data(), var.data(), gamma, beta, epsilon);
        normalize_rows(src, dst, n, 0, s.h, a);
      }
    }
    return;
  }
  // Fewer images than threads: each image's rows in chunks, each chunk summing into its own
  // slots, added up in a fixed order (results do not depend on timing).
  const int64_t chunks = std::clamp<int64_t>((2 * threads + s.n - 1) / s.n, 1, s.h);
  const int64_t rows = (s.h + chunks - 1) / chunks;
  const int64_t slot = (c_n + 7) / 8 * 8;  // whole cache lines: no false sharing between chunks
  std::vector<double> part(static_cast<size_t>(s.n * chunks * slot));
  std::vector<double> mean(static_cast<size_t>(s.n * c_n)), var(mean.size());
  auto pass = [&](const double* m, std::vector<double>& out) {
    std::fill(part.begin(), part.end(), 0.0);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t ch = 0; ch < chunks; ++ch)
        channel_sums(src, n, ch * rows, std::min(s.h, (ch + 1) * rows), m ? m + n * c_n : nullptr,
                     part.data() + (n * chunks + ch) * slot);
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t c = 0; c < c_n; ++c) {
        double sum = 0.0;
        for (int64_t ch = 0; ch < chunks; ++ch) sum += part[(n * chunks + ch) * slot + c];
        out[n * c_n + c] = sum / pixels;
      }
  };
  pass(nullptr, mean);
  pass(mean.data(), var);
  for (int64_t n = 0; n < s.n; ++n)
    set_affine(a, n, c_n, mean.data() + n * c_n, var.data() + n * c_n, gamma, beta, epsilon);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t ch = 0; ch < chunks; ++ch)
      normalize_rows(src, dst, n, ch * rows, std::min(s.h, (ch + 1) * rows), a);
}

void spatial_normalization(const TensorView& src, const TensorView& dst, int64_t kernel_w,
                           int64_t kernel_h, float alpha, float beta, float delta) {
  const double scale = static_cast<double>(alpha) / static_cast<double>(kernel_w * kernel_h);
  const double d = delta;
  with_neg_pow(beta, [&](auto neg_pow) {
    auto span = [=](const float* x, const double* v2, const double*, float* y, int64_t len) {
#pragma omp simd
      for (int64_t i = 0; i < len; ++i)
        y[i] = static_cast<float>(x[i] * neg_pow(d + scale * v2[i]));
    };
    window_sums<false>(src, kernel_w, kernel_h,
                       [&](int64_t n, int64_t y, const double* v2, const double* v1) {
                         emit_row(src, dst, n, y, v2, v1, span);
                       });
  });
}

void local_contrast_normalization(const TensorView& src, const TensorView& dst, int64_t kernel_w,
                                  int64_t kernel_h, float alpha, float beta, float delta, float pm,
                                  float ps, float p0) {
  const double inv_n = 1.0 / static_cast<double>(kernel_w * kernel_h);
  const double a = alpha, d = delta, m0 = pm, s0 = ps, q0 = p0;
  with_neg_pow(beta, [&](auto neg_pow) {
    auto span = [=](const float* x, const double* v2, const double* v1, float* y, int64_t len) {
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) {
        const double mean = v1[i] * inv_n;
        double var = v2[i] * inv_n - mean * mean;
        var = var < 0.0 ? 0.0 : var;  // rounding guard; NaN passes
        y[i] = static_cast<float>(m0 + s0 * (x[i] - q0 * mean) * neg_pow(d + a * var));
      }
    };
    window_sums<true>(src, kernel_w, kernel_h,
                      [&](int64_t n, int64_t y, const double* v2, const double* v1) {
                        emit_row(src, dst, n, y, v2, v1, span);
                      });
  });
}

}  // namespace MPSNN_ISA_NAMESPACE::own
