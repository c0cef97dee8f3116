// See own_other_gradients.h for why each of these kernels is ours and not oneDNN's.
#include "backends/cpu/kernels/own_other_gradients.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backends/cpu/kernels/own_kernels.h"

namespace MPSNN_ISA_NAMESPACE::own {

namespace {
constexpr int64_t kParallelMin = 1 << 14;  // elements below which threading costs more than it saves

inline float clamp_nan(float r, float lo, float hi) {
  // NaN-propagating min/max (nodes.md 3.1): a NaN r stays NaN.
  const float a = r < lo ? lo : r;
  return a > hi ? hi : a;
}
}  // namespace

// ---- arithmetic -------------------------------------------------------------------------------

void clamp_with_mask(const TensorView& dst, uint8_t* mask, float lo, float hi) {
  const ImageShape& s = dst.shape;
#pragma omp parallel for collapse(2) schedule(static) if (s.numel() > kParallelMin)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y) {
      uint8_t* m = mask + (n * s.h + y) * s.w * s.c;
      for (int64_t x = 0; x < s.w; ++x) {
        float* p = dst.pixel(n, y, x);
        uint8_t* mp = m + x * s.c;
#pragma omp simd
        for (int64_t c = 0; c < s.c; ++c) {
          const float r = p[c];
          mp[c] = uint8_t(lo < r && r < hi);
          p[c] = clamp_nan(r, lo, hi);
        }
      }
    }
}

void arithmetic_gradient(const TensorView& grad, const uint8_t* mask, const TensorView* other, const TensorView& dst,
                         const ArithmeticGradientParams& p) {
  const ImageShape& o = grad.shape;
  const ImageShape& d = dst.shape;
  float factor = 0;
  switch (p.op) {
    case ArithmeticGradientOp::add: factor = p.secondary ? p.secondary_scale : p.primary_scale; break;
    case ArithmeticGradientOp::subtract: factor = p.secondary ? -p.secondary_scale : p.primary_scale; break;
    case ArithmeticGradientOp::multiply: factor = p.primary_scale * p.secondary_scale; break;
  }
  const bool mul = p.op == ArithmeticGradientOp::multiply;
  const int tc = p.diff_stride[0], ty = p.diff_stride[1], tx = p.diff_stride[2];
  const int oc = p.other_stride[0], oy = p.other_stride[1], ox = p.other_stride[2];
  // m * G * (other), with a zero mask giving 0 even for an infinite G.
  auto term = [&](const float* g, const uint8_t* m, const float* b, int64_t c) {
    const float v = mul ? g[c] * b[c * oc] : g[c];
    return m[c] ? v : 0.0f;
  };
  auto mask_px = [&](int64_t n, int64_t i, int64_t j) { return mask + ((n * o.h + i) * o.w + j) * o.c; };
  auto other_px = [&](int64_t n, int64_t i, int64_t j) -> const float* {
    return mul ? other->pixel(n, oy ? i : 0, ox ? j : 0) : nullptr;
  };

#pragma omp parallel for collapse(2) schedule(static) if (o.numel() > kParallelMin)
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t y = 0; y < d.h; ++y)
      for (int64_t x = 0; x < d.w; ++x) {
        float* out = dst.pixel(n, y, x);
        if ((!ty && y > 0) || (!tx && x > 0)) {  // never read by the forward node
          for (int64_t c = 0; c < d.c; ++c) out[c] = 0.0f;
          continue;
        }
        const int64_t i0 = ty ? y : 0, i1 = ty ? y + 1 : o.h;
        const int64_t j0 = tx ? x : 0, j1 = tx ? x + 1 : o.w;
        if (tc && ty && tx) {  // one term per element; dst may be grad (in place)
          const float* g = grad.pixel(n, y, x);
          const uint8_t* m = mask_px(n, y, x);
          const float* b = other_px(n, y, x);
#pragma omp simd
          for (int64_t c = 0; c < d.c; ++c) out[c] = factor * term(g, m, b, c);
        } else if (tc) {  // sum over the broadcast pixel axes, channel by channel
          for (int64_t c = 0; c < d.c; ++c) out[c] = 0.0f;
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = j0; j < j1; ++j) {
              const float* g = grad.pixel(n, i, j);
              const uint8_t* m = mask_px(n, i, j);
              const float* b = other_px(n, i, j);
#pragma omp simd
              for (int64_t c = 0; c < d.c; ++c) out[c] += term(g, m, b, c);
            }
          for (int64_t c = 0; c < d.c; ++c) out[c] *= factor;
        } else {  // channel broadcast: channel 0 gets the sum over every result channel
          double acc = 0.0;
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = j0; j < j1; ++j) {
              const float* g = grad.pixel(n, i, j);
              const uint8_t* m = mask_px(n, i, j);
              const float* b = other_px(n, i, j);
              for (int64_t c = 0; c < o.c; ++c) acc += term(g, m, b, c);
            }
          out[0] = factor * float(acc);
          for (int64_t c = 1; c < d.c; ++c) out[c] = 0.0f;
        }
      }
}

// ---- dropout ----------------------------------------------------------------------------------

PhiloxBlock philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint64_t p0 = uint64_t(kM0) * c0, p1 = uint64_t(kM1) * c2;
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0), hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return PhiloxBlock{{c0, c1, c2, c3}};
}

void dropout_mask(uint8_t* mask, const ImageShape& ms, float keep_probability, uint64_t seed, uint32_t draw) {
  const int64_t per_image = ms.h * ms.w * ms.c;
  const int64_t blocks = (per_image + 3) / 4;
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  // u < p with u = w * 2^-24 and w < 2^24 an integer: compare integers against ceil(p * 2^24).
  const double scaled = double(keep_probability) * 16777216.0;
  const uint64_t threshold = uint64_t(std::ceil(scaled));
#pragma omp parallel for collapse(2) schedule(static) if (ms.numel() > kParallelMin)
  for (int64_t n = 0; n < ms.n; ++n)
    for (int64_t b = 0; b < blocks; ++b) {
      const PhiloxBlock r = philox4x32_10(uint32_t(b), uint32_t(uint64_t(b) >> 32), uint32_t(n), draw, k0, k1);
      uint8_t* m = mask + n * per_image;
      const int64_t end = std::min<int64_t>(4, per_image - 4 * b);
      for (int64_t w = 0; w < end; ++w) m[4 * b + w] = uint8_t((r.v[w] >> 8) < threshold);
    }
}

void apply_dropout_mask(const TensorView& src, const uint8_t* mask, const ImageShape& ms, float p,
                        const TensorView& dst) {
  const ImageShape& s = dst.shape;
  const bool bc = ms.c == 1 && s.c > 1;
#pragma omp parallel for collapse(2) schedule(static) if (s.numel() > kParallelMin)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y)
      for (int64_t x = 0; x < s.w; ++x) {
        const uint8_t* m = mask + ((n * ms.h + (ms.h > 1 ? y : 0)) * ms.w + (ms.w > 1 ? x : 0)) * ms.c;
        const float* in = src.pixel(n, y, x);
        float* out = dst.pixel(n, y, x);
        if (bc) {
          const bool keep = m[0] != 0;
          for (int64_t c = 0; c < s.c; ++c) out[c] = keep ? in[c] / p : 0.0f;
        } else {
#pragma omp simd
          for (int64_t c = 0; c < s.c; ++c) out[c] = m[c] ? in[c] / p : 0.0f;
        }
      }
}

// ---- normalization gradients ------------------------------------------------------------------

namespace {
// T^-e (nodes.md 8.1: exp(-e ln T)), in double; the exponents of the defaults (0.5, 5) and the
// other small integers and halves by multiplications and one square root, which are exact to the
// last bit or two and several times faster than exp and log.
inline double neg_pow(double t, double e) {
  const double twice = 2.0 * e;
  if (twice >= 1.0 && twice <= 12.0 && twice == std::floor(twice)) {
    const int k = int(twice);
    double q = (k & 1) ? std::sqrt(t) : 1.0;
    for (int i = 0; i < k / 2; ++i) q *= t;
    return 1.0 / q;
  }
  return std::exp(-e * std::log(t));
}

// out[n, y, x, c] = sum of in over rows [y - up, y + down] and columns [x - left, x + right]
// inside the image (zero edges); `in`, `out` and `tmp` are dense NHWC with shape s. Separable:
// a row pass into tmp, then a column pass, each output summed in a fixed order.
template <typename In, typename Out>
void box_sum(const In* in, Out* out, Out* tmp, const ImageShape& s, int64_t up, int64_t down, int64_t left,
             int64_t right) {
  const int64_t C = s.c, row = s.w * C;
#pragma omp parallel for collapse(2) schedule(static) if (s.numel() > kParallelMin)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y) {
      const In* r = in + (n * s.h + y) * row;
      Out* t = tmp + (n * s.h + y) * row;
      for (int64_t x = 0; x < s.w; ++x) {
        Out* tp = t + x * C;
        for (int64_t c = 0; c < C; ++c) tp[c] = 0;
        for (int64_t xx = std::max<int64_t>(0, x - left); xx <= std::min(s.w - 1, x + right); ++xx) {
          const In* ip = r + xx * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) tp[c] += Out(ip[c]);
        }
      }
    }
#pragma omp parallel for collapse(2) schedule(static) if (s.numel() > kParallelMin)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y) {
      Out* o = out + (n * s.h + y) * row;
      for (int64_t k = 0; k < row; ++k) o[k] = 0;
      for (int64_t yy = std::max<int64_t>(0, y - up); yy <= std::min(s.h - 1, y + down); ++yy) {
        const Out* t = tmp + (n * s.h + yy) * row;
#pragma omp simd
        for (int64_t k = 0; k < row; ++k) o[k] += t[k];
      }
    }
}

// Calls f(n, y, x, c, flat) for every element, threaded over rows.
template <typename F>
void for_each_element(const ImageShape& s, F&& f) {
#pragma omp parallel for collapse(2) schedule(static) if (s.numel() > kParallelMin)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y)
      for (int64_t x = 0; x < s.w; ++x) {
        const int64_t base = ((n * s.h + y) * s.w + x) * s.c;
        for (int64_t c = 0; c < s.c; ++c) f(n, y, x, c, base + c);
      }
}
}  // namespace

void cross_channel_normalization_gradient(const TensorView& src, const TensorView& grad, const TensorView& dst,
                                          int64_t N, float alpha, float beta, float delta) {
  const ImageShape& s = src.shape;
  const int64_t C = s.c;
  const double a = double(alpha) / double(N), b = beta, k2 = 2.0 * double(alpha) * double(beta) / double(N);
#pragma omp parallel if (s.numel() > kParallelMin)
  {
    std::vector<double> lb(static_cast<size_t>(C)), t(static_cast<size_t>(C));
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t x = 0; x < s.w; ++x) {
          const float* X = src.pixel(n, y, x);
          const float* G = grad.pixel(n, y, x);
          float* D = dst.pixel(n, y, x);
          for (int64_t k = 0; k < C; ++k) {
            double sum = 0;
            for (int64_t q = std::max<int64_t>(0, k - N / 2); q <= std::min(C - 1, k + (N - 1) / 2); ++q)
              sum += double(X[q]) * X[q];
            const double L = double(delta) + a * sum;
            lb[size_t(k)] = neg_pow(L, b);
            t[size_t(k)] = double(G[k]) * X[k] * lb[size_t(k)] / L;
          }
          for (int64_t k = 0; k < C; ++k) {
            double sum = 0;
            for (int64_t r = std::max<int64_t>(0, k - (N - 1) / 2); r <= std::min(C - 1, k + N / 2); ++r)
              sum += t[size_t(r)];
            D[k] = float(double(G[k]) * lb[size_t(k)] - k2 * X[k] * sum);
          }
        }
  }
}

int64_t spatial_normalization_gradient_scratch(const ImageShape& s) { return 4 * s.numel(); }

void spatial_normalization_gradient(const TensorView& src, const TensorView& grad, const TensorView& dst,
                                    int64_t kw, int64_t kh, float alpha, float beta, float delta, float* scratch) {
  const ImageShape& s = src.shape;
  const int64_t ne = s.numel();
  float *f = scratch, *sum = scratch + ne, *tmp = scratch + 2 * ne, *tb = scratch + 3 * ne;
  const double nw = double(kw) * double(kh), a = double(alpha) / nw, k2 = 2.0 * double(alpha) * double(beta) / nw;
  for_each_element(s, [&](int64_t n, int64_t y, int64_t x, int64_t c, int64_t i) {
    const float v = src.pixel(n, y, x)[c];
    f[i] = v * v;
  });
  box_sum(f, sum, tmp, s, kh / 2, (kh - 1) / 2, kw / 2, (kw - 1) / 2);  // the forward window
  for_each_element(s, [&](int64_t n, int64_t y, int64_t x, int64_t c, int64_t i) {
    const double T = double(delta) + a * sum[i];
    const double p = neg_pow(T, beta);
    tb[i] = float(p);
    f[i] = float(double(grad.pixel(n, y, x)[c]) * src.pixel(n, y, x)[c] * p / T);
  });
  box_sum(f, sum, tmp, s, (kh - 1) / 2, kh / 2, (kw - 1) / 2, kw / 2);  // its transpose
  for_each_element(s, [&](int64_t n, int64_t y, int64_t x, int64_t c, int64_t i) {
    dst.pixel(n, y, x)[c] =
        float(double(grad.pixel(n, y, x)[c]) * tb[i] - k2 * double(src.pixel(n, y, x)[c]) * sum[i]);
  });
}

// Floats: M, S2 and tmp as doubles (2 floats each), then f1..f3, s1..s3 and tb.
int64_t local_contrast_normalization_gradient_scratch(const ImageShape& s) { return 13 * s.numel(); }

void local_contrast_normalization_gradient(const TensorView& src, const TensorView& grad, const TensorView& dst,
                                           int64_t kw, int64_t kh, float alpha, float beta, float delta, float p0,
                                           float ps, float* scratch) {
  const ImageShape& s = src.shape;
  const int64_t ne = s.numel();
  double* M = reinterpret_cast<double*>(scratch);
  double* S2 = M + ne;
  double* dtmp = S2 + ne;
  float* f1 = scratch + 6 * ne;
  float *f2 = f1 + ne, *f3 = f2 + ne, *s1 = f3 + ne, *s2 = s1 + ne, *s3 = s2 + ne, *tb = s3 + ne;
  const double nw = double(kw) * double(kh), k2 = 2.0 * double(alpha) * double(beta) / nw;
  for_each_element(s, [&](int64_t n, int64_t y, int64_t x, int64_t c, int64_t i) {
    const float v = src.pixel(n, y, x)[c];
    f1[i] = v;
    f2[i] = v * v;
  });
  const int64_t up = kh / 2, down = (kh - 1) / 2, left = kw / 2, right = (kw - 1) / 2;
  box_sum(f1, M, dtmp, s, up, down, left, right);
  box_sum(f2, S2, dtmp, s, up, down, left, right);
  for_each_element(s, [&](int64_t n, int64_t y, int64_t x, int64_t c, int64_t i) {
    const double m = M[i] / nw;
    const double v = std::max(S2[i] / nw - m * m, 0.0);
    const double T = double(delta) + double(alpha) * v;
    const double p = neg_pow(T, beta);
    const double g = grad.pixel(n, y, x)[c], xv = src.pixel(n, y, x)[c];
    const double A = g * (xv - double(p0) * m) * p / T;
    M[i] = m;
    tb[i] = float(p);
    f1[i] = float(g * p);
    f2[i] = float(A);
    f3[i] = float(A * m);
  });
  // Transposed window: the outputs q whose window contains p.
  float* ftmp = reinterpret_cast<float*>(dtmp);
  box_sum(f1, s1, ftmp, s, down, up, right, left);
  box_sum(f2, s2, ftmp, s, down, up, right, left);
  box_sum(f3, s3, ftmp, s, down, up, right, left);
  for_each_element(s, [&](int64_t n, int64_t y, int64_t x, int64_t c, int64_t i) {
    const double g = grad.pixel(n, y, x)[c], xv = src.pixel(n, y, x)[c];
    const double r = g * tb[i] - double(p0) / nw * s1[i] - k2 * (xv * s2[i] - s3[i]);
    dst.pixel(n, y, x)[c] = float(double(ps) * r);
  });
}

// ---- upsampling gradient ----------------------------------------------------------------------

namespace {
// r[0..L) = sum_e w[e] a[e][0..L) over `count` taps, in tap order: groups of up to four taps per
// pass over r (one load and store of r per group, not per tap), contiguous and vectorized.
template <int N, bool First>
inline void tap_group(float* r, const float* const* a, const float* w, int64_t L) {
  const float* a0 = a[0];
  const float* a1 = a[N > 1 ? 1 : 0];
  const float* a2 = a[N > 2 ? 2 : 0];
  const float* a3 = a[N > 3 ? 3 : 0];
  const float w0 = w[0], w1 = N > 1 ? w[1] : 0.0f, w2 = N > 2 ? w[2] : 0.0f, w3 = N > 3 ? w[3] : 0.0f;
#pragma omp simd
  for (int64_t k = 0; k < L; ++k) {
    float v = First ? w0 * a0[k] : r[k] + w0 * a0[k];
    if constexpr (N > 1) v += w1 * a1[k];
    if constexpr (N > 2) v += w2 * a2[k];
    if constexpr (N > 3) v += w3 * a3[k];
    r[k] = v;
  }
}
inline void taps(float* r, const float* const* a, const float* w, int64_t count, int64_t L) {
  if (count == 0) std::fill(r, r + L, 0.0f);
  for (int64_t e = 0; e < count; e += 4) {
    const bool first = e == 0;
    switch (std::min<int64_t>(4, count - e)) {
      case 1: first ? tap_group<1, true>(r, a + e, w + e, L) : tap_group<1, false>(r, a + e, w + e, L); break;
      case 2: first ? tap_group<2, true>(r, a + e, w + e, L) : tap_group<2, false>(r, a + e, w + e, L); break;
      case 3: first ? tap_group<3, true>(r, a + e, w + e, L) : tap_group<3, false>(r, a + e, w + e, L); break;
      default: first ? tap_group<4, true>(r, a + e, w + e, L) : tap_group<4, false>(r, a + e, w + e, L); break;
    }
  }
}
}  // namespace

void upsampling_gradient(const TensorView& grad, const TensorView& dst, const AxisAdjoint& ay, const AxisAdjoint& ax) {
  const ImageShape& g = grad.shape;
  const ImageShape& d = dst.shape;
  const int64_t C = d.c, row = g.w * C;
  const bool dense_grad = grad.dense();
  int64_t most = 0;  // the most taps of one index on either axis
  for (const AxisAdjoint* t : {&ay, &ax})
    for (int64_t k = 0; k < (t == &ay ? d.h : d.w); ++k) most = std::max(most, t->offsets[k + 1] - t->offsets[k]);
  detail::with_channel_count(C, [&](auto kc) {
    constexpr int64_t K = decltype(kc)::value;  // channels, when few: straight-line pixel loops
    const int64_t cn = K ? K : C;
#pragma omp parallel if (g.numel() > kParallelMin)
    {
      std::vector<float> buffer(static_cast<size_t>(row));  // one y-reduced gradient row per thread
      std::vector<const float*> src(static_cast<size_t>(most));
      float* r = buffer.data();
#pragma omp for collapse(2) schedule(static)
      for (int64_t n = 0; n < d.n; ++n)
        for (int64_t ky = 0; ky < d.h; ++ky) {
          // y pass: r[j, c] = sum_e wy_e G[n, i_e, j, c], the taps in CSR order.
          const int64_t e0 = ay.offsets[ky], ne = ay.offsets[ky + 1] - e0;
          if (dense_grad) {
            for (int64_t e = 0; e < ne; ++e) src[size_t(e)] = grad.pixel(n, ay.index[e0 + e], 0);
            taps(r, src.data(), ay.weight + e0, ne, row);
          } else {
            for (int64_t j = 0; j < g.w; ++j) {
              for (int64_t e = 0; e < ne; ++e) src[size_t(e)] = grad.pixel(n, ay.index[e0 + e], j);
              taps(r + j * C, src.data(), ay.weight + e0, ne, cn);
            }
          }
          // x pass: dX[n, ky, kx, c] = sum_e wx_e r[j_e, c].
          for (int64_t kx = 0; kx < d.w; ++kx) {
            const int64_t f0 = ax.offsets[kx], nf = ax.offsets[kx + 1] - f0;
            for (int64_t f = 0; f < nf; ++f) src[size_t(f)] = r + ax.index[f0 + f] * C;
            taps(dst.pixel(n, ky, kx), src.data(), ax.weight + f0, nf, cn);
          }
        }
    }
  });
}

}  // namespace MPSNN_ISA_NAMESPACE::own
