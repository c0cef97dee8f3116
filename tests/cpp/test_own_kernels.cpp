// Standalone test of the hand-written CPU kernels (cpp/backends/cpu/kernels/own_*.cpp) against
// naive float64 loops written from nodes.md. Prints the worst error per case; exits non-zero on
// any failure. Covers odd sizes, batch > 1, channel counts not divisible by 4 and views whose
// pixel_stride exceeds their channel count (whose extra channels must stay untouched).
// Some kernels have an AVX-512 path and a portable one: build it with -march=native and again
// with -march=x86-64-v3 to run both.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/kernels/own_kernels.h"

using namespace mpsnn;
using namespace MPSNN_ISA_NAMESPACE::own;

namespace {

constexpr float kSentinel = 12345.0f;  // value of the channels beyond c in strided views
int g_failures = 0;
std::mt19937 g_rng(1234);

// A float32 NHWC image with `extra` unused channels per pixel (pixel_stride = c + extra).
struct Image {
  std::vector<float> data;
  TensorView v;
  Image(const ImageShape& s, int64_t extra) {
    data.assign(static_cast<size_t>(s.n * s.h * s.w * (s.c + extra)), kSentinel);
    v = TensorView{data.data(), s, s.c + extra};
  }
  float& at(int64_t n, int64_t y, int64_t x, int64_t c) { return v.pixel(n, y, x)[c]; }
  double get(int64_t n, int64_t y, int64_t x, int64_t c) const { return v.pixel(n, y, x)[c]; }
  // Fills channels [0, c) with uniform values in [lo, hi), avoiding |value| < min_abs.
  void fill(float lo, float hi, float min_abs = 0.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    for (int64_t n = 0; n < v.shape.n; ++n)
      for (int64_t y = 0; y < v.shape.h; ++y)
        for (int64_t x = 0; x < v.shape.w; ++x)
          for (int64_t c = 0; c < v.shape.c; ++c) {
            float u;
            do u = dist(g_rng);
            while (std::fabs(u) < min_abs);
            at(n, y, x, c) = u;
          }
  }
  void fill_value(float value) {
    for (int64_t n = 0; n < v.shape.n; ++n)
      for (int64_t y = 0; y < v.shape.h; ++y)
        for (int64_t x = 0; x < v.shape.w; ++x)
          for (int64_t c = 0; c < v.shape.c; ++c) at(n, y, x, c) = value;
  }
};

// Dense float64 expected values, NHWC.
struct Expected {
  ImageShape s;
  std::vector<double> d;
  explicit Expected(const ImageShape& shape) : s(shape), d(static_cast<size_t>(shape.numel())) {}
  double& at(int64_t n, int64_t y, int64_t x, int64_t c) {
    return d[((n * s.h + y) * s.w + x) * s.c + c];
  }
};

std::string shape_str(const ImageShape& s, int64_t ps) {
  char b[96];
  std::snprintf(b, sizeof b, "%lldx%lldx%lldx%lld ps%lld", (long long)s.n, (long long)s.h,
                (long long)s.w, (long long)s.c, (long long)ps);
  return b;
}

// Compares got against want: |g - e| <= atol + rtol*|e| (NaN must match NaN, inf must match
// exactly), and checks that channels beyond c are untouched. Prints the worst absolute error.
void check(const std::string& name, const Image& got, Expected& want, double atol, double rtol) {
  const ImageShape& s = got.v.shape;
  assert(s == want.s);
  double max_abs = 0.0, worst_ratio = 0.0;
  int64_t bad = 0, sentinel_bad = 0;
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y)
      for (int64_t x = 0; x < s.w; ++x) {
        const float* px = got.v.pixel(n, y, x);
        for (int64_t c = s.c; c < got.v.pixel_stride; ++c)
          if (px[c] != kSentinel) ++sentinel_bad;
        for (int64_t c = 0; c < s.c; ++c) {
          const double g = px[c], e = want.at(n, y, x, c);
          bool ok;
          if (std::isnan(e) || std::isnan(g)) ok = std::isnan(e) && std::isnan(g);
          else if (std::isinf(e) || std::isinf(g)) ok = g == e;
          else {
            const double err = std::fabs(g - e);
            max_abs = std::max(max_abs, err);
            const double tol = atol + rtol * std::fabs(e);
            if (err > 0.0) worst_ratio = std::max(worst_ratio, err / tol);
            ok = err <= tol;
          }
          if (!ok) {
            if (bad < 3)
              std::printf("    mismatch at n%lld y%lld x%lld c%lld: got %.9g want %.9g\n",
                          (long long)n, (long long)y, (long long)x, (long long)c, g, e);
            ++bad;
          }
        }
      }
  const bool pass = bad == 0 && sentinel_bad == 0;
  if (!pass) ++g_failures;
  std::printf("%-4s %-58s max_abs_err %.3e  err/tol %.3f%s\n", pass ? "ok" : "FAIL", name.c_str(),
              max_abs, worst_ratio,
              sentinel_bad ? "  (wrote outside its channels!)" : "");
}

// ---- oracles ------------------------------------------------------------------------------------

double ref_neg_pow(double t, double beta) { return std::pow(t, -beta); }

Expected ref_spatial(const Image& x, int64_t kw, int64_t kh, double alpha, double beta,
                     double delta) {
  const ImageShape& s = x.v.shape;
  Expected out(s);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y)
      for (int64_t xx = 0; xx < s.w; ++xx)
        for (int64_t c = 0; c < s.c; ++c) {
          double sum = 0.0;
          for (int64_t q = y - kh / 2; q <= y + (kh - 1) / 2; ++q)
            for (int64_t r = xx - kw / 2; r <= xx + (kw - 1) / 2; ++r)
              if (q >= 0 && q < s.h && r >= 0 && r < s.w) {
                const double v = x.get(n, q, r, c);
                sum += v * v;
              }
          const double t = delta + alpha / double(kw * kh) * sum;
          out.at(n, y, xx, c) = x.get(n, y, xx, c) * ref_neg_pow(t, beta);
        }
  return out;
}

Expected ref_lcn(const Image& x, int64_t kw, int64_t kh, double alpha, double beta, double delta,
                 double pm, double ps, double p0) {
  const ImageShape& s = x.v.shape;
  Expected out(s);
  const double nw = double(kw * kh);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y)
      for (int64_t xx = 0; xx < s.w; ++xx)
        for (int64_t c = 0; c < s.c; ++c) {
          auto tap = [&](int64_t q, int64_t r) {
            return (q >= 0 && q < s.h && r >= 0 && r < s.w) ? x.get(n, q, r, c) : 0.0;
          };
          double mean = 0.0;
          for (int64_t q = y - kh / 2; q <= y + (kh - 1) / 2; ++q)
            for (int64_t r = xx - kw / 2; r <= xx + (kw - 1) / 2; ++r) mean += tap(q, r);
          mean /= nw;
          double var = 0.0;  // two-pass, zero taps counted
          for (int64_t q = y - kh / 2; q <= y + (kh - 1) / 2; ++q)
            for (int64_t r = xx - kw / 2; r <= xx + (kw - 1) / 2; ++r)
              var += (tap(q, r) - mean) * (tap(q, r) - mean);
          var /= nw;
          const double t = delta + alpha * var;
          out.at(n, y, xx, c) = pm + ps * (x.get(n, y, xx, c) - p0 * mean) * ref_neg_pow(t, beta);
        }
  return out;
}

Expected ref_l2_pool(const Image& x, const ImageShape& d, const WindowAxis& wy,
                     const WindowAxis& wx) {
  const ImageShape& s = x.v.shape;
  Expected out(d);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t i = 0; i < d.h; ++i)
      for (int64_t j = 0; j < d.w; ++j)
        for (int64_t c = 0; c < d.c; ++c) {
          double sum = 0.0;
          for (int64_t p = 0; p < wy.kernel; ++p)
            for (int64_t q = 0; q < wx.kernel; ++q) {
              const int64_t sy = i * wy.stride - wy.pad_before + p * wy.dilation;
              const int64_t sx = j * wx.stride - wx.pad_before + q * wx.dilation;
              if (sy < 0 || sy >= s.h || sx < 0 || sx >= s.w) continue;
              const double v = x.get(n, sy, sx, c);
              sum += v * v;
            }
          out.at(n, i, j, c) = std::sqrt(sum);
        }
  return out;
}

Expected ref_bilinear(const Image& x, const ImageShape& d, const ScaleTransform& t) {
  const ImageShape& s = x.v.shape;
  Expected out(d);
  auto axis = [](int64_t o, double scale, double tr, int64_t size, int64_t& i0, int64_t& i1,
                 double& lam) {
    const double u = (o + 0.5 - tr) / scale - 0.5;
    const double k0 = std::floor(u);
    lam = u - k0;
    i0 = std::min<int64_t>(std::max<int64_t>(int64_t(k0), 0), size - 1);
    i1 = std::min<int64_t>(std::max<int64_t>(int64_t(k0) + 1, 0), size - 1);
  };
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t i = 0; i < d.h; ++i)
      for (int64_t j = 0; j < d.w; ++j) {
        int64_t y0, y1, x0, x1;
        double ly, lx;
        axis(i, t.scale_y, t.translate_y, s.h, y0, y1, ly);
        axis(j, t.scale_x, t.translate_x, s.w, x0, x1, lx);
        for (int64_t c = 0; c < d.c; ++c)
          out.at(n, i, j, c) = (1 - ly) * ((1 - lx) * x.get(n, y0, x0, c) + lx * x.get(n, y0, x1, c)) +
                               ly * ((1 - lx) * x.get(n, y1, x0, c) + lx * x.get(n, y1, x1, c));
      }
  return out;
}

// Dense (D, S) Lanczos-3 weight matrix of nodes.md 10.4.
std::vector<double> lanczos_matrix(int64_t D, int64_t S, double s, double t) {
  std::vector<double> m(static_cast<size_t>(D * S), 0.0);
  const double pi = 3.14159265358979323846;
  auto sinc = [&](double v) { return v == 0.0 ? 1.0 : std::sin(pi * v) / (pi * v); };
  const double F = std::max(1.0, 1.0 / s), rho = 3.0 * F;
  for (int64_t o = 0; o < D; ++o) {
    const double xi = (o + 0.5 - t) / s;
    const int64_t lo = std::max<int64_t>(int64_t(std::floor(xi - rho + 0.5)), 0);
    const int64_t hi = std::min<int64_t>(int64_t(std::floor(xi + rho + 0.5)), S);
    double tot = 0.0;
    for (int64_t k = lo; k < hi; ++k) {
      const double a = (k + 0.5 - xi) / F;
      const double w = std::fabs(a) < 3.0 ? sinc(a) * sinc(a / 3.0) : 0.0;
      m[o * S + k] = w;
      tot += w;
    }
    for (int64_t k = lo; k < hi; ++k) m[o * S + k] = tot != 0.0 ? m[o * S + k] / tot : 0.0;
  }
  return m;
}

Expected ref_lanczos(const Image& x, const ImageShape& d, const ScaleTransform& t) {
  const ImageShape& s = x.v.shape;
  const std::vector<double> my = lanczos_matrix(d.h, s.h, t.scale_y, t.translate_y);
  const std::vector<double> mx = lanczos_matrix(d.w, s.w, t.scale_x, t.translate_x);
  Expected out(d);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t i = 0; i < d.h; ++i)
      for (int64_t j = 0; j < d.w; ++j)
        for (int64_t c = 0; c < d.c; ++c) {
          double sum = 0.0;
          for (int64_t q = 0; q < s.h; ++q) {
            if (my[i * s.h + q] == 0.0) continue;
            for (int64_t r = 0; r < s.w; ++r)
              sum += my[i * s.h + q] * mx[j * s.w + r] * x.get(n, q, r, c);
          }
          out.at(n, i, j, c) = sum;
        }
  return out;
}

Expected ref_binary_conv(const Image& x, const ImageShape& d, const std::vector<uint32_t>& w,
                         const WindowAxis& wy, const WindowAxis& wx, const BinaryConvParams& p) {
  const ImageShape& s = x.v.shape;
  const int64_t cin = s.c, words = (cin + 31) / 32, kh = wy.kernel, kw = wx.kernel;
  auto xs = [&](int64_t n, int64_t y, int64_t xx, int64_t c) {
    return (x.get(n, y, xx, c) + (p.in_bias ? p.in_bias[c] : 0.0)) * (p.in_scale ? p.in_scale[c] : 1.0);
  };
  Expected out(d);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t i = 0; i < d.h; ++i)
      for (int64_t j = 0; j < d.w; ++j) {
        double beta = 1.0;
        if (p.beta_scaling) {
          double sum = 0.0;
          for (int64_t ky = 0; ky < kh; ++ky)
            for (int64_t kx = 0; kx < kw; ++kx) {
              const int64_t sy = i * wy.stride - wy.pad_before + ky * wy.dilation;
              const int64_t sx = j * wx.stride - wx.pad_before + kx * wx.dilation;
              if (sy < 0 || sy >= s.h || sx < 0 || sx >= s.w) continue;
              double a = 0.0;
              for (int64_t c = 0; c < cin; ++c) a += std::fabs(xs(n, sy, sx, c));
              sum += a / double(cin);
            }
          beta = sum / double(kh * kw);
        }
        for (int64_t o = 0; o < d.c; ++o) {
          double acc = 0.0;
          for (int64_t ky = 0; ky < kh; ++ky)
            for (int64_t kx = 0; kx < kw; ++kx) {
              const int64_t sy = i * wy.stride - wy.pad_before + ky * wy.dilation;
              const int64_t sx = j * wx.stride - wx.pad_before + kx * wx.dilation;
              if (sy < 0 || sy >= s.h || sx < 0 || sx >= s.w) continue;
              for (int64_t c = 0; c < cin; ++c) {
                const uint32_t word = w[((o * kh + ky) * kw + kx) * words + c / 32];
                const bool bit = (word >> (c % 32)) & 1u;
                const double v = xs(n, sy, sx, c);
                switch (p.type) {
                  case BinaryConvType::binary_weights: acc += v * (bit ? 1.0 : -1.0); break;
                  case BinaryConvType::xnor: acc += (v < 0 ? -1.0 : 1.0) * (bit ? 1.0 : -1.0); break;
                  case BinaryConvType::and_: acc += (v >= 0 && bit) ? 1.0 : 0.0; break;
                }
              }
            }
          out.at(n, i, j, o) =
              acc * (p.out_scale ? p.out_scale[o] : 1.0) * beta + (p.out_bias ? p.out_bias[o] : 0.0);
        }
      }
  return out;
}

double ref_arith(ArithmeticOp op, double a, double b, const ArithmeticParams& p) {
  const double av = double(p.primary_scale) * a, bv = double(p.secondary_scale) * b;
  double r = 0.0;
  switch (op) {
    case ArithmeticOp::add: r = av + bv; break;
    case ArithmeticOp::subtract: r = av - bv; break;
    case ArithmeticOp::multiply: r = av * bv; break;
    case ArithmeticOp::divide: r = av / bv; break;
  }
  r += p.bias;
  if (std::isnan(r)) return r;
  return std::min(std::max(r, double(p.minimum)), double(p.maximum));
}

Expected ref_binary_arith(const Image& a, const Image& b, const ImageShape& d,
                          const ArithmeticParams& p) {
  Expected out(d);
  auto read = [](const Image& v, const int* st, int64_t n, int64_t y, int64_t x, int64_t c) {
    return v.get(v.v.shape.n == 1 ? 0 : n, y * st[1], x * st[2], c * st[0]);
  };
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t y = 0; y < d.h; ++y)
      for (int64_t x = 0; x < d.w; ++x)
        for (int64_t c = 0; c < d.c; ++c)
          out.at(n, y, x, c) = ref_arith(p.op, read(a, p.primary_stride, n, y, x, c),
                                         read(b, p.secondary_stride, n, y, x, c), p);
  return out;
}

// ---- test cases ---------------------------------------------------------------------------------

const char* beta_name(float b) {
  static char buf[32];
  std::snprintf(buf, sizeof buf, "%g", b);
  return buf;
}

void test_normalizations() {
  struct Case {
    ImageShape s;
    int64_t kw, kh, src_extra, dst_extra;
  };
  const Case cases[] = {
      {{2, 13, 11, 3}, 5, 5, 0, 0},  {{3, 9, 17, 7}, 4, 3, 2, 5},   {{1, 31, 29, 5}, 3, 6, 0, 3},
      {{2, 7, 6, 18}, 1, 1, 1, 0},   {{1, 4, 5, 2}, 9, 7, 3, 1},    {{2, 40, 33, 9}, 5, 5, 0, 0},
      {{1, 1, 1, 1}, 5, 5, 0, 0},    {{2, 25, 3, 13}, 2, 11, 0, 2},
  };
  for (const Case& k : cases)
    for (float beta : {5.0f, 0.75f, 0.5f, 2.0f}) {
      Image x(k.s, k.src_extra);
      x.fill(-2.0f, 2.0f);
      Image y(k.s, k.dst_extra);
      const float alpha = 1.3f, delta = 0.9f;
      spatial_normalization(x.v, y.v, k.kw, k.kh, alpha, beta, delta);
      Expected e = ref_spatial(x, k.kw, k.kh, alpha, beta, delta);
      check("spatial_norm " + shape_str(k.s, y.v.pixel_stride) + " k" + std::to_string(k.kw) + "x" +
                std::to_string(k.kh) + " beta " + beta_name(beta),
            y, e, 1e-6, 2e-5);
    }
  for (const Case& k : cases)
    for (float beta : {0.5f, 0.8f, 3.0f}) {
      Image x(k.s, k.src_extra);
      x.fill(-1.0f, 3.0f);  // non-zero mean
      Image y(k.s, k.dst_extra);
      const float alpha = 1.0f, delta = 1.0f / 1024, pm = 0.25f, ps = 1.5f, p0 = 0.9f;
      local_contrast_normalization(x.v, y.v, k.kw, k.kh, alpha, beta, delta, pm, ps, p0);
      Expected e = ref_lcn(x, k.kw, k.kh, alpha, beta, delta, pm, ps, p0);
      check("local_contrast_norm " + shape_str(k.s, y.v.pixel_stride) + " k" +
                std::to_string(k.kw) + "x" + std::to_string(k.kh) + " beta " + beta_name(beta),
            y, e, 2e-5, 2e-5);
    }
  // NaN and infinity stay inside the windows that contain them (no smearing by running sums).
  for (float beta : {5.0f, 0.75f}) {
    const ImageShape s{2, 40, 13, 3};
    Image x(s, 1);
    x.fill(-2.0f, 2.0f);
    x.at(0, 3, 4, 1) = std::numeric_limits<float>::quiet_NaN();
    x.at(1, 30, 0, 2) = std::numeric_limits<float>::infinity();
    Image y(s, 0), z(s, 2);
    spatial_normalization(x.v, y.v, 5, 3, 1.0f, beta, 1.0f);
    Expected e = ref_spatial(x, 5, 3, 1.0, beta, 1.0);
    check(std::string("spatial_norm NaN/inf input beta ") + beta_name(beta), y, e, 1e-6, 2e-5);
    local_contrast_normalization(x.v, z.v, 3, 5, 1.0f, beta, 1.0f / 1024, 0.0f, 1.0f, 1.0f);
    Expected ez = ref_lcn(x, 3, 5, 1.0, beta, 1.0 / 1024, 0.0, 1.0, 1.0);
    check(std::string("local_contrast_norm NaN/inf input beta ") + beta_name(beta), z, ez, 2e-5, 2e-5);
  }
  // T^-1/2 at IEEE edges: a 1x1 window has V = 0, so T = delta.
  for (float delta : {0.0f, -1.0f, std::numeric_limits<float>::infinity(),
                      std::numeric_limits<float>::quiet_NaN(), 3e-39f, 1e30f}) {
    const ImageShape s{1, 3, 4, 5};
    Image x(s, 0);
    x.fill(-2.0f, 2.0f, 0.1f);
    Image y(s, 0);
    local_contrast_normalization(x.v, y.v, 1, 1, 1.0f, 0.5f, delta, 0.0f, 1.0f, 0.0f);
    Expected e = ref_lcn(x, 1, 1, 1.0, 0.5, delta, 0.0, 1.0, 0.0);
    char name[64];
    std::snprintf(name, sizeof name, "local_contrast_norm beta 0.5 delta %g", delta);
    check(name, y, e, 1e-6, 1e-6);
  }
  // Large offset: the one-pass variance must not cancel.
  {
    const ImageShape s{2, 19, 23, 5};
    Image x(s, 1);
    x.fill(999.0f, 1001.0f);
    Image y(s, 0);
    local_contrast_normalization(x.v, y.v, 5, 5, 1.0f, 0.5f, 1.0f / 1024, 0.0f, 1.0f, 1.0f);
    Expected e = ref_lcn(x, 5, 5, 1.0, 0.5, 1.0 / 1024, 0.0, 1.0, 1.0);
    check("local_contrast_norm offset 1000 " + shape_str(s, 5), y, e, 1e-4, 1e-4);
  }
}

void test_l2_pooling() {
  struct Case {
    ImageShape s;
    WindowAxis y, x;
    int64_t src_extra, dst_extra;
  };
  auto ax = [](int64_t k, int64_t s, int64_t d, int64_t p) { return WindowAxis{k, s, d, p, 0}; };
  const Case cases[] = {
      {{2, 13, 11, 3}, ax(2, 2, 1, 0), ax(2, 2, 1, 0), 0, 0},
      {{3, 9, 17, 7}, ax(3, 1, 1, 1), ax(3, 2, 1, 1), 2, 1},
      {{1, 15, 14, 5}, ax(3, 2, 2, 2), ax(2, 3, 3, 0), 3, 0},
      {{2, 8, 8, 18}, ax(5, 1, 1, 3), ax(4, 1, 1, 2), 0, 2},
      {{2, 5, 7, 1}, ax(7, 3, 1, 4), ax(1, 1, 1, 0), 1, 1},
  };
  for (const Case& k : cases) {
    const int64_t dh = (k.s.h + k.y.stride - 1) / k.y.stride;
    const int64_t dw = (k.s.w + k.x.stride - 1) / k.x.stride;
    const ImageShape d{k.s.n, dh, dw, k.s.c};
    Image x(k.s, k.src_extra);
    x.fill(-2.0f, 2.0f);
    Image y(d, k.dst_extra);
    l2_pooling(x.v, y.v, k.y, k.x);
    Expected e = ref_l2_pool(x, d, k.y, k.x);
    check("l2_pooling " + shape_str(k.s, x.v.pixel_stride) + " -> " + shape_str(d, y.v.pixel_stride),
          y, e, 1e-6, 1e-6);
  }
}

void test_scale() {
  struct Case {
    ImageShape s;
    int64_t oh, ow;
    bool default_transform;
    ScaleTransform t;
    int64_t src_extra, dst_extra;
  };
  const Case cases[] = {
      {{2, 13, 11, 3}, 29, 23, true, {}, 0, 0},                // upscale
      {{3, 37, 41, 7}, 9, 13, true, {}, 2, 1},                 // downscale (widened Lanczos)
      {{1, 17, 19, 5}, 17, 19, true, {}, 0, 3},                // identity
      {{2, 16, 15, 6}, 20, 12, false, {1.7, 0.45, -3.2, 2.5}, 1, 0},  // translated
      {{2, 9, 10, 2}, 14, 8, false, {0.3, 2.2, 4.0, -7.0}, 0, 2},     // partly outside
      {{1, 6, 64, 33}, 11, 7, true, {}, 0, 0},
  };
  for (const Case& k : cases) {
    const ImageShape d{k.s.n, k.oh, k.ow, k.s.c};
    const ScaleTransform t = k.default_transform
                                 ? ScaleTransform{double(k.ow) / k.s.w, double(k.oh) / k.s.h, 0, 0}
                                 : k.t;
    Image x(k.s, k.src_extra);
    x.fill(-1.0f, 1.0f);
    Image y(d, k.dst_extra);
    bilinear_scale(x.v, y.v, t);
    Expected e = ref_bilinear(x, d, t);
    check("bilinear_scale " + shape_str(k.s, x.v.pixel_stride) + " -> " +
              shape_str(d, y.v.pixel_stride),
          y, e, 1e-6, 1e-6);
    Image z(d, k.dst_extra);
    lanczos_scale(x.v, z.v, t);
    Expected ez = ref_lanczos(x, d, t);
    check("lanczos_scale " + shape_str(k.s, x.v.pixel_stride) + " -> " +
              shape_str(d, z.v.pixel_stride),
          z, ez, 3e-6, 1e-5);
  }
}

void test_binary_conv() {
  struct Case {
    ImageShape s;
    int64_t cout;
    WindowAxis y, x;
    int64_t src_extra, dst_extra;
  };
  auto ax = [](int64_t k, int64_t s, int64_t d, int64_t p) { return WindowAxis{k, s, d, p, 0}; };
  const Case cases[] = {
      {{2, 9, 11, 5}, 7, ax(3, 1, 1, 0), ax(3, 1, 1, 0), 0, 0},      // valid
      {{2, 10, 9, 37}, 21, ax(3, 1, 1, 1), ax(3, 2, 1, 1), 3, 1},    // padded, 2 words
      {{1, 8, 13, 70}, 45, ax(2, 2, 2, 1), ax(3, 1, 2, 2), 0, 3},    // dilated, 3 words
      {{3, 7, 7, 3}, 33, ax(7, 1, 1, 0), ax(7, 1, 1, 0), 1, 0},      // fully connected
      {{2, 12, 19, 64}, 40, ax(1, 1, 1, 0), ax(1, 1, 1, 0), 0, 0},   // 1x1
      {{1, 15, 17, 16}, 64, ax(3, 2, 1, 1), ax(5, 1, 1, 2), 0, 0},
      {{2, 4, 5, 40}, 9, ax(3, 1, 1, 0), ax(3, 1, 1, 1), 2, 1},     // few output pixels
      {{1, 6, 9, 300}, 50, ax(3, 1, 1, 1), ax(3, 1, 2, 1), 0, 0},    // many channel blocks
      {{2, 9, 10, 3}, 20, ax(3, 1, 1, 1), ax(3, 1, 1, 1), 0, 0},     // window of 27 bits, padded
      {{1, 11, 12, 7}, 70, ax(3, 2, 1, 1), ax(3, 1, 2, 2), 1, 0},    // 63 bits, strided, dilated
      {{2, 8, 8, 2}, 5, ax(5, 1, 1, 2), ax(5, 1, 1, 3), 0, 2},       // 50 bits, wide border
  };
  std::uniform_int_distribution<uint32_t> bits;
  std::uniform_real_distribution<float> pos(0.5f, 1.5f), sym(-0.3f, 0.3f);
  for (const Case& k : cases) {
    const int64_t dh = (k.s.h + 2 * k.y.pad_before - k.y.extent()) / k.y.stride + 1;
    const int64_t dw = (k.s.w + 2 * k.x.pad_before - k.x.extent()) / k.x.stride + 1;
    const ImageShape d{k.s.n, dh, dw, k.cout};
    const int64_t words = (k.s.c + 31) / 32;
    std::vector<uint32_t> w(static_cast<size_t>(k.cout * k.y.kernel * k.x.kernel * words));
    for (uint32_t& v : w) v = bits(g_rng);  // also sets the ignored bits >= Cin
    std::vector<float> os(k.cout), ob(k.cout), is(k.s.c), ib(k.s.c);
    for (float& v : os) v = pos(g_rng);
    for (float& v : ob) v = sym(g_rng);
    for (float& v : is) v = pos(g_rng);
    for (float& v : ib) v = sym(g_rng);
    Image x(k.s, k.src_extra);
    x.fill(-1.0f, 1.0f, 0.35f);  // |X| >= 0.35 keeps X' = (X + ib)*is away from 0
    for (BinaryConvType type :
         {BinaryConvType::binary_weights, BinaryConvType::xnor, BinaryConvType::and_})
      for (int variant = 0; variant < 3; ++variant) {
        BinaryConvParams p{type, variant == 2, nullptr, nullptr, nullptr, nullptr};
        if (variant >= 1) p = {type, variant == 2, os.data(), ob.data(), is.data(), ib.data()};
        Image y(d, k.dst_extra);
        binary_convolution(x.v, y.v, w.data(), k.y, k.x, p);
        Expected e = ref_binary_conv(x, d, w, k.y, k.x, p);
        const char* tn = type == BinaryConvType::binary_weights ? "binary_weights"
                         : type == BinaryConvType::xnor         ? "xnor"
                                                                : "and";
        const double taps = double(k.y.kernel * k.x.kernel * k.s.c);
        check(std::string("binary_conv ") + tn + (variant == 2 ? "+beta " : variant ? "+terms " : " ") +
                  shape_str(k.s, x.v.pixel_stride) + " -> " + shape_str(d, y.v.pixel_stride),
              y, e, 1e-5 * std::sqrt(taps), 1e-4);  // nodes.md 0.2 / STYLE.md "reduction" row
      }
  }
}

void test_instance_norm() {
  struct Case {
    ImageShape s;
    int64_t src_extra, dst_extra;
    float offset;
  };
  const Case cases[] = {{{2, 7, 9, 5}, 0, 0, 0.5f},   {{1, 33, 31, 3}, 2, 1, 0.0f},
                        {{3, 1, 1, 6}, 0, 0, 1.0f},   {{1, 20, 18, 70}, 0, 3, 1000.0f},
                        {{8, 6, 5, 16}, 1, 0, -2.0f}};
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  for (const Case& k : cases) {
    Image x(k.s, k.src_extra);
    x.fill(k.offset - 2.0f, k.offset + 2.0f);
    if (k.s.c > 2)  // a constant channel: Y = beta exactly
      for (int64_t y = 0; y < k.s.h; ++y)
        for (int64_t xx = 0; xx < k.s.w; ++xx) x.at(0, y, xx, 2) = 0.3f + k.offset;
    std::vector<float> gamma(k.s.c), beta(k.s.c);
    for (float& v : gamma) v = u(g_rng);
    for (float& v : beta) v = u(g_rng);
    const double eps = 1e-5;
    Expected e(k.s);
    for (int64_t n = 0; n < k.s.n; ++n)
      for (int64_t c = 0; c < k.s.c; ++c) {
        double mean = 0.0, var = 0.0;
        const double m = double(k.s.h * k.s.w);
        for (int64_t y = 0; y < k.s.h; ++y)
          for (int64_t xx = 0; xx < k.s.w; ++xx) mean += x.get(n, y, xx, c) / m;
        for (int64_t y = 0; y < k.s.h; ++y)
          for (int64_t xx = 0; xx < k.s.w; ++xx) var += std::pow(x.get(n, y, xx, c) - mean, 2) / m;
        for (int64_t y = 0; y < k.s.h; ++y)
          for (int64_t xx = 0; xx < k.s.w; ++xx)
            e.at(n, y, xx, c) =
                gamma[c] * (x.get(n, y, xx, c) - mean) / std::sqrt(var + eps) + beta[c];
      }
    Image y(k.s, k.dst_extra);
    instance_normalization(x.v, y.v, gamma.data(), beta.data(), eps);
    check("instance_norm " + shape_str(k.s, x.v.pixel_stride) + " offset " +
              std::to_string(int(k.offset)),
          y, e, 2e-5, 2e-5);
    if (k.s.c > 2) {  // exactly beta, not beta +- rounding
      bool exact = true;
      for (int64_t yy = 0; yy < k.s.h; ++yy)
        for (int64_t xx = 0; xx < k.s.w; ++xx) exact = exact && y.get(0, yy, xx, 2) == beta[2];
      if (!exact) ++g_failures;
      std::printf("%-4s instance_norm constant channel gives beta exactly\n",
                  exact ? "ok" : "FAIL");
    }
    if (k.src_extra == k.dst_extra) {  // in place
      Image z(k.s, k.src_extra);
      z.data = x.data;
      instance_normalization(z.v, z.v, gamma.data(), beta.data(), eps);
      check("instance_norm in place " + shape_str(k.s, z.v.pixel_stride), z, e, 2e-5, 2e-5);
    }
  }
}

void test_prelu() {
  for (int64_t extra : {0, 3})
    for (int64_t c : {1, 3, 5, 64})
      for (bool shared : {false, true}) {
        const ImageShape s{2, 5, 7, c};
        Image x(s, extra), y(s, extra);
        x.fill(-2.0f, 2.0f);
        x.at(0, 0, 0, 0) = std::numeric_limits<float>::quiet_NaN();
        x.at(1, 4, 6, c - 1) = -std::numeric_limits<float>::infinity();
        std::vector<float> a(shared ? 1 : c);
        for (size_t i = 0; i < a.size(); ++i) a[i] = 0.1f + 0.05f * float(i);
        prelu(x.v, y.v, a.data(), static_cast<int64_t>(a.size()));
        Expected e(s);
        for (int64_t n = 0; n < s.n; ++n)
          for (int64_t yy = 0; yy < s.h; ++yy)
            for (int64_t xx = 0; xx < s.w; ++xx)
              for (int64_t k = 0; k < c; ++k) {
                const double u = x.get(n, yy, xx, k);
                e.at(n, yy, xx, k) = u >= 0 ? u : double(a[shared ? 0 : k]) * u;
              }
        const std::string name = std::string(shared ? "shared " : "") + shape_str(s, s.c + extra);
        check("prelu " + name, y, e, 1e-7, 1e-6);
        prelu(x.v, x.v, a.data(), static_cast<int64_t>(a.size()));  // in place
        check("prelu in place " + name, x, e, 1e-7, 1e-6);
      }
}

void test_soft_sign() {
  for (int64_t extra : {0, 3}) {
    const ImageShape s{3, 7, 9, 5};
    Image x(s, extra);
    x.fill(-20.0f, 20.0f);
    x.at(0, 0, 0, 0) = std::numeric_limits<float>::quiet_NaN();
    x.at(1, 2, 3, 4) = 0.0f;
    Expected e(s);
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t xx = 0; xx < s.w; ++xx)
          for (int64_t c = 0; c < s.c; ++c) {
            const double u = x.get(n, y, xx, c);
            e.at(n, y, xx, c) = u / (1.0 + std::fabs(u));
          }
    Image y(s, extra == 0 ? 2 : 0);
    soft_sign(x.v, y.v);
    check("soft_sign " + shape_str(s, x.v.pixel_stride) + " -> ps" + std::to_string(y.v.pixel_stride),
          y, e, 0.0, 2e-7);
    soft_sign(x.v, x.v);  // in place
    check("soft_sign in place " + shape_str(s, x.v.pixel_stride), x, e, 0.0, 2e-7);
  }
  {  // large dense tensor (parallel blocked path)
    const ImageShape s{2, 130, 131, 7};
    Image x(s, 0);
    x.fill(-5.0f, 5.0f);
    Expected e(s);
    for (size_t i = 0; i < e.d.size(); ++i) e.d[i] = double(x.data[i]) / (1.0 + std::fabs(x.data[i]));
    soft_sign(x.v, x.v);
    check("soft_sign in place " + shape_str(s, s.c), x, e, 0.0, 2e-7);
  }
}

void test_binary_arithmetic() {
  const float kNaN = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    const char* name;
    ImageShape a, b, d;
    int sa[3], sb[3];
    int64_t a_extra, b_extra, d_extra;
  };
  const Case cases[] = {
      {"same shape dense", {2, 7, 9, 5}, {2, 7, 9, 5}, {2, 7, 9, 5}, {1, 1, 1}, {1, 1, 1}, 0, 0, 0},
      {"same shape strided", {2, 7, 9, 5}, {2, 7, 9, 5}, {2, 7, 9, 5}, {1, 1, 1}, {1, 1, 1}, 2, 1, 3},
      {"B scalar", {2, 7, 9, 6}, {2, 1, 1, 1}, {2, 7, 9, 6}, {1, 1, 1}, {0, 0, 0}, 0, 0, 0},
      {"A scalar (primary stride 0)", {1, 3, 4, 3}, {2, 6, 5, 7}, {2, 6, 5, 7}, {0, 0, 0}, {1, 1, 1}, 1, 1, 0},
      {"A channel broadcast", {2, 6, 5, 1}, {2, 6, 5, 7}, {2, 6, 5, 7}, {0, 1, 1}, {1, 1, 1}, 2, 0, 1},
      {"A row vector (y broadcast)", {2, 1, 5, 7}, {2, 6, 5, 7}, {2, 6, 5, 7}, {1, 0, 1}, {1, 1, 1}, 0, 0, 0},
      {"A column (x broadcast)", {2, 6, 3, 7}, {2, 6, 5, 7}, {2, 6, 5, 7}, {1, 1, 0}, {1, 1, 1}, 0, 1, 0},
      {"B per-channel vector", {2, 6, 5, 7}, {1, 2, 2, 7}, {2, 6, 5, 7}, {1, 1, 1}, {1, 0, 0}, 0, 0, 2},
      {"both broadcast, batch 1 operand", {1, 6, 1, 3}, {2, 1, 5, 1}, {2, 6, 5, 1}, {0, 1, 0}, {0, 0, 1}, 0, 0, 0},
      {"large dense", {2, 61, 67, 9}, {2, 61, 67, 9}, {2, 61, 67, 9}, {1, 1, 1}, {1, 1, 1}, 0, 0, 0},
  };
  const ArithmeticOp ops[] = {ArithmeticOp::add, ArithmeticOp::subtract, ArithmeticOp::multiply,
                              ArithmeticOp::divide};
  const char* op_names[] = {"add", "subtract", "multiply", "divide"};
  for (const Case& k : cases)
    for (int oi = 0; oi < 4; ++oi)
      for (int clamp = 0; clamp < 2; ++clamp) {
        Image a(k.a, k.a_extra), b(k.b, k.b_extra);
        a.fill(-3.0f, 3.0f);
        b.fill(-3.0f, 3.0f, 0.05f);
        // specials: NaN, inf, division by zero
        a.at(k.a.n - 1, k.a.h - 1, k.a.w - 1, k.a.c - 1) = kNaN;
        if (k.b.w > 1) b.at(0, 0, 1, 0) = 0.0f;
        if (k.a.h > 1) a.at(0, 1, 0, 0) = std::numeric_limits<float>::infinity();
        ArithmeticParams p;
        p.op = ops[oi];
        p.primary_scale = 1.5f;
        p.secondary_scale = -0.75f;
        p.bias = 0.25f;
        if (clamp) {
          p.minimum = -1.0f;
          p.maximum = 2.0f;
        }
        for (int i = 0; i < 3; ++i) {
          p.primary_stride[i] = k.sa[i];
          p.secondary_stride[i] = k.sb[i];
        }
        Image y(k.d, k.d_extra);
        binary_arithmetic(a.v, b.v, y.v, p);
        Expected e = ref_binary_arith(a, b, k.d, p);
        check(std::string("arith ") + op_names[oi] + (clamp ? " clamp " : " ") + k.name, y, e, 4e-6,
              2e-6);
      }
  {  // in place on the primary and on the secondary operand
    const ImageShape s{2, 9, 7, 5};
    for (int which = 0; which < 2; ++which) {
      Image a(s, 1), b(s, 1);
      a.fill(-3.0f, 3.0f);
      b.fill(-3.0f, 3.0f, 0.05f);
      ArithmeticParams p;
      p.op = ArithmeticOp::multiply;
      p.bias = 1.0f;
      p.maximum = 1.5f;
      Expected e = ref_binary_arith(a, b, s, p);
      Image& out = which == 0 ? a : b;
      binary_arithmetic(a.v, b.v, out.v, p);
      check(std::string("arith in place on ") + (which == 0 ? "primary" : "secondary"), out, e, 4e-6,
            2e-6);
    }
  }
}

// Concatenates sources of `counts` channels (source k with `extra[k]` unused channels per pixel)
// into a destination of dst_c channels with dst_extra unused ones, against the slot rule.
void check_concatenate(const std::vector<int64_t>& counts, const std::vector<int64_t>& extra,
                       int64_t dst_c, int64_t dst_extra) {
  const int64_t n = 2, h = 5, w = 9;
  std::vector<int64_t> offs(counts.size());
  for (size_t k = 1; k < counts.size(); ++k) offs[k] = offs[k - 1] + (counts[k - 1] + 3) / 4 * 4;
  std::vector<Image> srcs;
  std::vector<TensorView> views;
  std::string name = "concatenate";
  for (size_t k = 0; k < counts.size(); ++k) {
    srcs.emplace_back(ImageShape{n, h, w, counts[k]}, extra[k]);
    srcs.back().fill(-1.0f, 1.0f);
    name += (k ? "+" : " ") + std::to_string(counts[k]);
  }
  for (const Image& im : srcs) views.push_back(im.v);
  const ImageShape d{n, h, w, dst_c};
  Image y(d, dst_extra);
  y.fill_value(-7.0f);  // stale data that the gaps must overwrite
  concatenate(views.data(), static_cast<int64_t>(views.size()), y.v);
  Expected e(d);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t yy = 0; yy < h; ++yy)
      for (int64_t x = 0; x < w; ++x) {
        for (int64_t c = 0; c < d.c; ++c) e.at(i, yy, x, c) = 0.0;
        for (size_t k = 0; k < counts.size(); ++k)
          for (int64_t c = 0; c < counts[k]; ++c)
            e.at(i, yy, x, offs[k] + c) = srcs[k].get(i, yy, x, c);
      }
  check(name + " -> " + shape_str(d, y.v.pixel_stride), y, e, 0.0, 0.0);
}

void test_concat() {
  // Wide sources (slots 0, 8, 16, 20 for 5, 7, 4, 3 channels), dense and strided, and a
  // destination wider than the last slot (its trailing channels are 0).
  for (int64_t dst_c : {23, 26})
    for (int64_t extra : {0, 3}) check_concatenate({5, 7, 4, 3}, {0, extra, 0, extra}, dst_c, extra);
  check_concatenate({64, 32}, {0, 0}, 96, 0);
  // Thin concatenations (at most 4 sources of at most 4 channels, at most 16 channels out).
  check_concatenate({3, 3, 3}, {0, 0, 0}, 11, 0);
  check_concatenate({3, 3, 3}, {1, 0, 2}, 11, 2);
  check_concatenate({1, 2, 4, 4}, {0, 0, 0, 0}, 16, 0);
  check_concatenate({2}, {1}, 2, 0);
  check_concatenate({4, 1}, {0, 0}, 7, 1);
  check_concatenate({3, 3, 3, 3, 3}, {0, 0, 0, 0, 0}, 19, 0);  // five sources: the general path
}

}  // namespace

int main() {
  test_normalizations();
  test_l2_pooling();
  test_scale();
  test_binary_conv();
  test_instance_norm();
  test_prelu();
  test_soft_sign();
  test_binary_arithmetic();
  test_concat();
  if (g_failures) {
    std::printf("%d case(s) FAILED\n", g_failures);
    return 1;
  }
  std::printf("all cases passed\n");
  return 0;
}
