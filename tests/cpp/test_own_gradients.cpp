// Standalone test of the hand-written gradient kernels (cpp/backends/cpu/kernels/
// own_gradients.cpp, and the upsampling gradient of own_other_gradients.cpp) against naive
// float64 loops written from nodes.md 5.2-5.6, 6.2-6.3 and 9.1-9.2.
// Every case runs with 1, 2, 3 and 4 OpenMP threads; each run must match the reference within
// tolerance and be bit-identical to the 1-thread run (the kernels promise determinism). Inputs
// and outputs are both dense and channel slices of wider images (pixel_stride > c): channels
// beyond c must stay untouched, and every element of channels [0, c) must be written (outputs
// start filled with garbage). Prints "ok <case>" per passing case, then "all cases passed";
// exits 1 on any failure. Build it with -march=native and without to cover both code paths.
#include <omp.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/kernels/own_gradients.h"
#include "backends/cpu/kernels/own_other_gradients.h"

using namespace mpsnn;
using namespace MPSNN_ISA_NAMESPACE::own;

namespace {

constexpr float kSentinel = 12345.0f;  // channels beyond c in strided views
constexpr float kGarbage = -7777.0f;   // channels [0, c) of outputs before a kernel runs
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int kMaxThreads = 4;
int g_failures = 0;
std::mt19937 g_rng(20240611);

// A float32 NHWC image with `extra` unused channels per pixel (pixel_stride = c + extra).
struct Image {
  std::vector<float> data;
  TensorView v;
  Image(const ImageShape& s, int64_t extra) {
    data.assign(static_cast<size_t>(s.numel() / s.c * (s.c + extra)), kSentinel);
    v = TensorView{data.data(), s, s.c + extra};
  }
  Image(const Image& o) : data(o.data), v{data.data(), o.v.shape, o.v.pixel_stride} {}
  Image& operator=(const Image&) = delete;
  const ImageShape& shape() const { return v.shape; }
  float& at(int64_t n, int64_t y, int64_t x, int64_t c) { return v.pixel(n, y, x)[c]; }
  double get(int64_t n, int64_t y, int64_t x, int64_t c) const { return v.pixel(n, y, x)[c]; }
  template <class F>
  void for_each(F f) {
    const ImageShape& s = v.shape;
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t x = 0; x < s.w; ++x)
          for (int64_t c = 0; c < s.c; ++c) f(at(n, y, x, c));
  }
  void fill(float lo, float hi) {
    std::uniform_real_distribution<float> dist(lo, hi);
    for_each([&](float& e) { e = dist(g_rng); });
  }
  // Integers in [lo, hi]: many ties.
  void fill_int(int lo, int hi) {
    std::uniform_int_distribution<int> dist(lo, hi);
    for_each([&](float& e) { e = float(dist(g_rng)); });
  }
  void fill_value(float value) {
    for_each([&](float& e) { e = value; });
  }
};

// Dense float64 expected values, NHWC.
struct Expected {
  ImageShape s;
  std::vector<double> d;
  explicit Expected(const ImageShape& shape, double init = 0.0)
      : s(shape), d(static_cast<size_t>(shape.numel()), init) {}
  double& at(int64_t n, int64_t y, int64_t x, int64_t c) {
    return d[((n * s.h + y) * s.w + x) * s.c + c];
  }
  double at(int64_t n, int64_t y, int64_t x, int64_t c) const {
    return d[((n * s.h + y) * s.w + x) * s.c + c];
  }
};

std::string shape_str(const ImageShape& s) {
  char b[80];
  std::snprintf(b, sizeof b, "%lldx%lldx%lldx%lld", (long long)s.n, (long long)s.h,
                (long long)s.w, (long long)s.c);
  return b;
}

std::string axis_str(const WindowAxis& a) {
  char b[80];
  std::snprintf(b, sizeof b, "k%lld s%lld d%lld p%lld/%lld", (long long)a.kernel,
                (long long)a.stride, (long long)a.dilation, (long long)a.pad_before,
                (long long)a.pad_after);
  return b;
}

// Outcome of comparing one kernel result with its reference.
struct Comparison {
  double max_abs = 0.0, worst_ratio = 0.0;  // worst |got - want| and its share of the tolerance
  int64_t bad = 0, sentinel_bad = 0;
  std::string first_bad;
};

// |g - e| <= atol + rtol*|e|; NaN must meet NaN; an expectation whose float32 rounding is
// infinite must be met exactly (a float kernel cannot do better than float(e)).
Comparison compare(const Image& got, const Expected& want, double atol, double rtol) {
  const ImageShape& s = got.shape();
  assert(s == want.s);
  Comparison r;
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y)
      for (int64_t x = 0; x < s.w; ++x) {
        const float* px = got.v.pixel(n, y, x);
        for (int64_t c = s.c; c < got.v.pixel_stride; ++c) r.sentinel_bad += px[c] != kSentinel;
        for (int64_t c = 0; c < s.c; ++c) {
          const double g = px[c], e = want.at(n, y, x, c);
          const double ef = static_cast<float>(e);
          bool ok;
          if (std::isnan(e) || std::isnan(g)) {
            ok = std::isnan(e) && std::isnan(g);
          } else if (std::isinf(ef) || std::isinf(g)) {
            ok = g == ef;
          } else {
            const double err = std::fabs(g - e), tol = atol + rtol * std::fabs(e);
            r.max_abs = std::max(r.max_abs, err);
            if (err > 0.0) r.worst_ratio = std::max(r.worst_ratio, err / tol);
            ok = err <= tol;
          }
          if (!ok && r.bad++ == 0) {
            char b[160];
            std::snprintf(b, sizeof b, "at n%lld y%lld x%lld c%lld: got %.9g want %.9g",
                          (long long)n, (long long)y, (long long)x, (long long)c, g, e);
            r.first_bad = b;
          }
        }
      }
  return r;
}

// Whether channels [0, c) of a and b hold the same bits.
bool same_bits(const Image& a, const Image& b) {
  const ImageShape& s = a.shape();
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y)
      for (int64_t x = 0; x < s.w; ++x)
        if (std::memcmp(a.v.pixel(n, y, x), b.v.pixel(n, y, x), size_t(s.c) * 4) != 0) return false;
  return true;
}

void report(const std::string& name, bool pass, const std::string& detail) {
  if (!pass) ++g_failures;
  std::printf("%s %s%s%s\n", pass ? "ok" : "FAIL", name.c_str(), detail.empty() ? "" : "  ",
              detail.c_str());
}

// Runs `run(out)` with 1..kMaxThreads threads on `out` (refilled with garbage first), checking
// each result against `want` and against the 1-thread result bit for bit.
void check_threads(const std::string& name, Image& out, const Expected& want, double atol,
                   double rtol, const std::function<void(Image&)>& run) {
  Comparison worst;
  bool deterministic = true;
  std::vector<float> first;
  for (int t = 1; t <= kMaxThreads; ++t) {
    omp_set_num_threads(t);
    out.fill_value(kGarbage);
    run(out);
    const Comparison c = compare(out, want, atol, rtol);
    if (c.bad && !worst.bad) worst.first_bad = "threads " + std::to_string(t) + " " + c.first_bad;
    worst.bad += c.bad;
    worst.sentinel_bad += c.sentinel_bad;
    worst.max_abs = std::max(worst.max_abs, c.max_abs);
    worst.worst_ratio = std::max(worst.worst_ratio, c.worst_ratio);
    if (t == 1) {
      first = out.data;
    } else {
      Image ref1(out);
      ref1.data = first;
      ref1.v.data = ref1.data.data();
      deterministic = deterministic && same_bits(out, ref1);
    }
  }
  omp_set_num_threads(kMaxThreads);
  char b[320];
  std::snprintf(b, sizeof b, "max_abs_err %.3e err/tol %.3f%s%s%s%s", worst.max_abs,
                worst.worst_ratio, worst.bad ? "  mismatches " : "",
                worst.bad ? (std::to_string(worst.bad) + ", first " + worst.first_bad).c_str() : "",
                worst.sentinel_bad ? "  wrote outside its channels!" : "",
                deterministic ? "" : "  results depend on the thread count!");
  report(name, worst.bad == 0 && worst.sentinel_bad == 0 && deterministic, b);
}

// ---- pooling geometry ---------------------------------------------------------------------

struct Geometry {
  const char* what;
  ImageShape s;
  WindowAxis y, x;
};

WindowAxis ax(int64_t k, int64_t s, int64_t d, int64_t before, int64_t after) {
  return WindowAxis{k, s, d, before, after};
}

// The windows that fit in the padded source [-before, S + after).
int64_t out_size(int64_t S, const WindowAxis& a) {
  const int64_t span = S + a.pad_before + a.pad_after - a.extent();
  assert(span >= 0);
  return span / a.stride + 1;
}

ImageShape out_shape(const Geometry& g) {
  return {g.s.n, out_size(g.s.h, g.y), out_size(g.s.w, g.x), g.s.c};
}

const std::vector<Geometry>& geometries() {
  static const std::vector<Geometry> g = {
      {"3x3 s2 pad 1", {1, 5, 7, 3}, ax(3, 2, 1, 1, 1), ax(3, 2, 1, 1, 1)},
      {"stride > kernel", {2, 7, 6, 5}, ax(2, 3, 1, 0, 0), ax(2, 3, 1, 0, 1)},
      {"dilated", {3, 6, 5, 1}, ax(3, 1, 2, 2, 2), ax(2, 2, 3, 1, 2)},
      {"37 channels", {2, 9, 8, 37}, ax(3, 2, 1, 1, 1), ax(2, 1, 1, 0, 1)},
      {"negative pads", {2, 9, 8, 6}, ax(2, 2, 1, -1, -2), ax(3, 1, 1, -2, 0)},
      {"pads >= extent", {2, 4, 5, 7}, ax(2, 1, 1, 3, 4), ax(3, 2, 1, 4, 5)},
      {"dilated, stride > kernel, pads >= extent", {3, 6, 5, 2}, ax(2, 4, 3, 5, 5), ax(3, 3, 2, 2, 6)},
      // Rows entirely in the padding while the dilated columns straddle the edge: clamp-edge max
      // replicates along both axes, so column -1 reads column 0, which is not a tap.
      {"empty rows, dilated columns", {2, 4, 5, 3}, ax(2, 1, 1, 3, 3), ax(2, 1, 3, 1, 1)},
      {"empty columns, dilated rows", {2, 5, 4, 3}, ax(2, 1, 3, 1, 1), ax(2, 1, 1, 3, 3)},
      {"global", {2, 7, 6, 5}, ax(7, 1, 1, 0, 0), ax(6, 1, 1, 0, 0)},
      {"1x1", {2, 9, 8, 37}, ax(1, 1, 1, 0, 0), ax(1, 1, 1, 0, 0)},
      {"5x4 s1 overlapping", {1, 9, 8, 4}, ax(5, 1, 1, 2, 2), ax(4, 1, 1, 2, 1)},
      {"large 3x3 s2", {2, 23, 29, 20}, ax(3, 2, 1, 1, 1), ax(3, 2, 1, 1, 1)},
      {"2x2 s2 64 channels", {3, 12, 10, 64}, ax(2, 2, 1, 0, 0), ax(2, 2, 1, 0, 0)},
  };
  return g;
}

// (source / gradient extra channels, destination extra channels) per geometry.
const std::pair<int64_t, int64_t> kLayouts[] = {{0, 0}, {3, 2}};

// ---- max pooling ----------------------------------------------------------------------------

// nodes.md 5.3 / 5.5 forward with arg-max: taps in row-major order, strictly greater (or the
// first NaN) wins; clamp skips out-of-image taps unless the window has none in the image, then
// clamps every tap's coordinates; zero edge reads 0 (index -1) outside.
void ref_max_pool(const Image& x, const ImageShape& d, const WindowAxis& wy, const WindowAxis& wx,
                  bool zero_edge, Expected& val, std::vector<int32_t>& idx) {
  const ImageShape& s = x.shape();
  idx.assign(size_t(d.numel()), -2);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t i = 0; i < d.h; ++i)
      for (int64_t j = 0; j < d.w; ++j) {
        bool any_in = false;
        for (int64_t p = 0; p < wy.kernel; ++p)
          for (int64_t q = 0; q < wx.kernel; ++q) {
            const int64_t sy = i * wy.stride - wy.pad_before + p * wy.dilation;
            const int64_t sx = j * wx.stride - wx.pad_before + q * wx.dilation;
            any_in = any_in || (sy >= 0 && sy < s.h && sx >= 0 && sx < s.w);
          }
        for (int64_t c = 0; c < d.c; ++c) {
          bool have = false;
          double best = 0.0;
          int32_t arg = -2;
          for (int64_t p = 0; p < wy.kernel; ++p)
            for (int64_t q = 0; q < wx.kernel; ++q) {
              int64_t sy = i * wy.stride - wy.pad_before + p * wy.dilation;
              int64_t sx = j * wx.stride - wx.pad_before + q * wx.dilation;
              const bool in = sy >= 0 && sy < s.h && sx >= 0 && sx < s.w;
              double v;
              int32_t k;
              if (in) {
                v = x.get(n, sy, sx, c);
                k = int32_t(sy * s.w + sx);
              } else if (zero_edge) {
                v = 0.0;
                k = -1;
              } else if (!any_in) {
                sy = std::clamp<int64_t>(sy, 0, s.h - 1);
                sx = std::clamp<int64_t>(sx, 0, s.w - 1);
                v = x.get(n, sy, sx, c);
                k = int32_t(sy * s.w + sx);
              } else {
                continue;
              }
              if (!have || v > best || (std::isnan(v) && !std::isnan(best))) {
                have = true;
                best = v;
                arg = k;
              }
            }
          val.at(n, i, j, c) = best;
          idx[size_t(((n * d.h + i) * d.w + j) * d.c + c)] = arg;
        }
      }
}

void test_max_pooling() {
  for (const Geometry& geo : geometries())
    for (auto [src_extra, dst_extra] : kLayouts)
      for (bool zero_edge : {false, true})
        for (int data = 0; data < 3; ++data) {  // continuous, ties (integers), NaNs and infinities
          const ImageShape d = out_shape(geo);
          Image x(geo.s, src_extra);
          if (data == 1) {
            x.fill_int(-2, 2);
          } else {
            x.fill(-3.0f, 3.0f);
          }
          if (data == 2) {
            x.at(0, 0, 0, 0) = kNaN;
            x.at(geo.s.n - 1, geo.s.h / 2, geo.s.w / 2, geo.s.c - 1) = kNaN;
            x.at(0, geo.s.h - 1, geo.s.w - 1, 0) = kInf;
            x.at(geo.s.n - 1, 0, geo.s.w - 1, geo.s.c / 2) = -kInf;
            if (geo.s.h * geo.s.w > 1) x.at(0, 0, 1 % geo.s.w, 0) = kNaN;  // two NaNs in a window
          }
          Expected want(d);
          std::vector<int32_t> want_idx;
          ref_max_pool(x, d, geo.y, geo.x, zero_edge, want, want_idx);
          const char* data_name[] = {"", " ties", " NaN/inf"};
          const std::string name = std::string(zero_edge ? "zero" : "clamp") + " edge " + geo.what +
                                   data_name[data] + " " + shape_str(geo.s) + " ps" +
                                   std::to_string(x.v.pixel_stride) + " y " + axis_str(geo.y) +
                                   " x " + axis_str(geo.x);

          // Forward: values exactly, indices exactly, for every thread count.
          Image y(d, dst_extra);
          std::vector<int32_t> idx(size_t(d.numel()));
          bool idx_ok = true, idx_same = true;
          std::vector<int32_t> idx1;
          check_threads("max_pooling_with_indices " + name, y, want, 0.0, 0.0, [&](Image& out) {
            std::fill(idx.begin(), idx.end(), -9);
            max_pooling_with_indices(x.v, out.v, idx.data(), geo.y, geo.x, zero_edge);
            idx_ok = idx_ok && idx == want_idx;
            if (idx1.empty()) idx1 = idx;
            idx_same = idx_same && idx == idx1;
          });
          if (!idx_ok || !idx_same) {
            size_t k = 0;
            while (k < idx.size() && idx[k] == want_idx[k]) ++k;
            char b[96] = "";
            if (k < idx.size())
              std::snprintf(b, sizeof b, "first wrong index at %zu: got %d want %d", k, idx[k],
                            want_idx[k]);
            report("max_pooling_with_indices indices " + name, false, b);
          }

          // Gradient from the kernel's own indices, against a float64 scatter of the reference
          // indices. Channels of G beyond c hold the sentinel: reading them would show.
          Image g(d, src_extra);
          g.fill(-1.0f, 1.0f);
          if (data == 2) g.at(0, 0, 0, d.c - 1) = kInf;
          Expected want_dx(geo.s);
          for (int64_t n = 0; n < d.n; ++n)
            for (int64_t i = 0; i < d.h; ++i)
              for (int64_t j = 0; j < d.w; ++j)
                for (int64_t c = 0; c < d.c; ++c) {
                  const int32_t k = want_idx[size_t(((n * d.h + i) * d.w + j) * d.c + c)];
                  if (k >= 0) want_dx.at(n, k / geo.s.w, k % geo.s.w, c) += g.get(n, i, j, c);
                }
          Image dx(geo.s, dst_extra);
          check_threads("max_pooling_gradient " + name, dx, want_dx, 1e-6, 1e-5,
                        [&](Image& out) { max_pooling_gradient(g.v, idx.data(), out.v); });
        }
}

// ---- average pooling --------------------------------------------------------------------------

struct Divisor {
  AverageDivisor kind;
  int64_t zero_pad;
  const char* name;
};

// Taps of window o inside [lo, hi) along one axis.
int64_t ref_count(const WindowAxis& a, int64_t o, int64_t lo, int64_t hi) {
  int64_t k = 0;
  for (int64_t t = 0; t < a.kernel; ++t) {
    const int64_t p = o * a.stride - a.pad_before + t * a.dilation;
    k += p >= lo && p < hi;
  }
  return k;
}

Expected ref_average_gradient(const Image& g, const ImageShape& s, const WindowAxis& wy,
                              const WindowAxis& wx, const Divisor& dv) {
  const ImageShape& d = g.shape();
  Expected out(s);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t i = 0; i < d.h; ++i)
      for (int64_t j = 0; j < d.w; ++j) {
        double count = double(wy.kernel * wx.kernel);
        if (dv.kind == AverageDivisor::clamp)
          count = double(ref_count(wy, i, -dv.zero_pad, s.h + dv.zero_pad) *
                         ref_count(wx, j, -dv.zero_pad, s.w + dv.zero_pad));
        else if (dv.kind == AverageDivisor::padded_area)
          count = double(ref_count(wy, i, -wy.pad_before, s.h + wy.pad_after) *
                         ref_count(wx, j, -wx.pad_before, s.w + wx.pad_after));
        if (count == 0.0) continue;
        for (int64_t p = 0; p < wy.kernel; ++p)
          for (int64_t q = 0; q < wx.kernel; ++q) {
            const int64_t sy = i * wy.stride - wy.pad_before + p * wy.dilation;
            const int64_t sx = j * wx.stride - wx.pad_before + q * wx.dilation;
            if (sy < 0 || sy >= s.h || sx < 0 || sx >= s.w) continue;
            for (int64_t c = 0; c < d.c; ++c) out.at(n, sy, sx, c) += g.get(n, i, j, c) / count;
          }
      }
  return out;
}

void test_average_pooling() {
  const Divisor divisors[] = {{AverageDivisor::window, 0, "window"},
                              {AverageDivisor::clamp, 0, "clamp"},
                              {AverageDivisor::clamp, 1, "clamp zero_pad 1"},
                              {AverageDivisor::clamp, 3, "clamp zero_pad 3"},
                              {AverageDivisor::padded_area, 0, "padded_area"}};
  for (const Geometry& geo : geometries())
    for (auto [src_extra, dst_extra] : kLayouts)
      for (const Divisor& dv : divisors) {
        const ImageShape d = out_shape(geo);
        Image g(d, src_extra);
        g.fill(-1.0f, 1.0f);
        Expected want = ref_average_gradient(g, geo.s, geo.y, geo.x, dv);
        Image dx(geo.s, dst_extra);
        check_threads("average_pooling_gradient " + std::string(dv.name) + " " + geo.what + " " +
                          shape_str(geo.s) + " ps" + std::to_string(dx.v.pixel_stride) + " y " +
                          axis_str(geo.y) + " x " + axis_str(geo.x),
                      dx, want, 1e-6, 1e-5, [&](Image& out) {
                        average_pooling_gradient(g.v, out.v, geo.y, geo.x, dv.kind, dv.zero_pad,
                                                 dv.zero_pad);
                      });
      }
  // A NaN or infinite gradient of a window without in-image taps (or with N = 0) reaches no
  // pixel: (0,0) lies entirely in the padding of "pads >= extent".
  const Geometry& geo = geometries()[5];  // "pads >= extent"
  for (const Divisor& dv : divisors) {
    Image g(out_shape(geo), 0);
    g.fill(-1.0f, 1.0f);
    g.at(0, 0, 0, 0) = kNaN;
    g.at(1, 0, 0, 1) = kInf;
    Expected want = ref_average_gradient(g, geo.s, geo.y, geo.x, dv);
    Image dx(geo.s, 1);
    check_threads("average_pooling_gradient " + std::string(dv.name) +
                      " NaN/inf gradient of windows outside the image",
                  dx, want, 1e-6, 1e-5, [&](Image& out) {
                    average_pooling_gradient(g.v, out.v, geo.y, geo.x, dv.kind, dv.zero_pad, dv.zero_pad);
                  });
  }
}

// ---- L2 pooling ----------------------------------------------------------------------------------

Expected ref_l2_gradient(const Image& x, const Image& g, const WindowAxis& wy, const WindowAxis& wx) {
  const ImageShape& s = x.shape();
  const ImageShape& d = g.shape();
  Expected out(s);
  auto tap = [&](int64_t i, int64_t j, int64_t p, int64_t q, int64_t& sy, int64_t& sx) {
    sy = i * wy.stride - wy.pad_before + p * wy.dilation;
    sx = j * wx.stride - wx.pad_before + q * wx.dilation;
    return sy >= 0 && sy < s.h && sx >= 0 && sx < s.w;
  };
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t i = 0; i < d.h; ++i)
      for (int64_t j = 0; j < d.w; ++j)
        for (int64_t c = 0; c < d.c; ++c) {
          double sum = 0.0;
          int64_t sy, sx;
          for (int64_t p = 0; p < wy.kernel; ++p)
            for (int64_t q = 0; q < wx.kernel; ++q)
              if (tap(i, j, p, q, sy, sx)) sum += x.get(n, sy, sx, c) * x.get(n, sy, sx, c);
          const double yv = std::sqrt(sum);
          if (yv == 0.0) continue;  // chosen definition: such windows contribute 0
          for (int64_t p = 0; p < wy.kernel; ++p)
            for (int64_t q = 0; q < wx.kernel; ++q)
              if (tap(i, j, p, q, sy, sx)) out.at(n, sy, sx, c) += g.get(n, i, j, c) * x.get(n, sy, sx, c) / yv;
        }
  return out;
}

void test_l2_pooling() {
  for (const Geometry& geo : geometries())
    for (auto [src_extra, dst_extra] : kLayouts)
      for (int data = 0; data < 2; ++data) {  // random; with an all-zero band (windows of Y = 0)
        const ImageShape d = out_shape(geo);
        Image x(geo.s, src_extra);
        x.fill(-2.0f, 2.0f);
        if (data == 1)
          for (int64_t yy = 0; yy < std::min<int64_t>(3, geo.s.h); ++yy)
            for (int64_t xx = 0; xx < geo.s.w; ++xx)
              for (int64_t c = 0; c < geo.s.c; ++c) x.at(0, yy, xx, c) = 0.0f;
        Image g(d, dst_extra);
        g.fill(-1.0f, 1.0f);
        Expected want = ref_l2_gradient(x, g, geo.y, geo.x);
        Image dx(geo.s, dst_extra);
        check_threads(std::string("l2_pooling_gradient ") + geo.what + (data ? " zero rows " : " ") +
                          shape_str(geo.s) + " ps" + std::to_string(x.v.pixel_stride) + " y " +
                          axis_str(geo.y) + " x " + axis_str(geo.x),
                      dx, want, 2e-6, 1e-5,
                      [&](Image& out) { l2_pooling_gradient(x.v, g.v, out.v, geo.y, geo.x); });
      }
  // Extreme magnitudes: squares below float's range (Y must be summed wider), NaN and inf.
  {
    const Geometry& geo = geometries()[0];  // "3x3 s2 pad 1"
    Image x(geo.s, 0), g(out_shape(geo), 0);
    x.fill(-2.0f, 2.0f);
    g.fill(-1.0f, 1.0f);
    for (int64_t c = 0; c < geo.s.c; ++c) x.at(0, 0, 0, c) *= 1e-25f;
    x.at(0, 0, 1, 0) *= 1e-25f;
    x.at(0, 1, 0, 0) *= 1e-25f;
    x.at(0, 1, 1, 0) *= 1e-25f;
    x.at(0, 4, 6, 1) = kInf;
    x.at(0, 2, 3, 2) = kNaN;
    Expected want = ref_l2_gradient(x, g, geo.y, geo.x);
    Image dx(geo.s, 0);
    check_threads("l2_pooling_gradient tiny/NaN/inf source", dx, want, 2e-6, 1e-5,
                  [&](Image& out) { l2_pooling_gradient(x.v, g.v, out.v, geo.y, geo.x); });
  }
}

// ---- neurons --------------------------------------------------------------------------------------

double ref_sigmoid(double t) {
  if (t >= 0) return 1.0 / (1.0 + std::exp(-t));
  const double e = std::exp(t);
  return e / (1.0 + e);
}

// f'(u) of nodes.md 6.2, in double.
double ref_slope(NeuronKind k, double u, double a, double b, double c, double slope) {
  switch (k) {
    case NeuronKind::none: return 1.0;
    case NeuronKind::relu: return u >= 0 ? 1.0 : a;
    case NeuronKind::linear: return a;
    case NeuronKind::sigmoid: return ref_sigmoid(u) * ref_sigmoid(-u);
    case NeuronKind::hard_sigmoid: {
      const double t = a * u + b;
      return t > 0 && t < 1 ? a : 0.0;
    }
    case NeuronKind::tanh: return a * b / std::pow(std::cosh(b * u), 2);
    case NeuronKind::absolute: return std::isnan(u) ? u : u > 0 ? 1.0 : u < 0 ? -1.0 : 0.0;
    case NeuronKind::soft_plus: return a * b * ref_sigmoid(b * u);
    case NeuronKind::soft_sign: return 1.0 / std::pow(1.0 + std::fabs(u), 2);
    case NeuronKind::elu: return u >= 0 ? 1.0 : a * std::exp(u);
    case NeuronKind::prelu: return u >= 0 ? 1.0 : slope;
    case NeuronKind::relu_n: {
      const double r = u >= 0 ? u : a * u;
      return (u >= 0 ? 1.0 : a) * (r < b ? 1.0 : 0.0);
    }
    case NeuronKind::power: return a * c * std::pow(a * u + b, c - 1);
    case NeuronKind::exponential:
      return c == -1 ? a * std::exp(a * u + b) : a * std::log(c) * std::pow(c, a * u + b);
    case NeuronKind::logarithm:
      return c == -1 ? a / (a * u + b) : a / (std::log(c) * (a * u + b));
  }
  return kNaN;
}

struct NeuronCase {
  const char* name;
  NeuronKind kind;
  float a, b, c;
};

void test_neurons() {
  const NeuronCase cases[] = {
      {"none", NeuronKind::none, 0, 0, 0},
      {"relu", NeuronKind::relu, 0, 0, 0},
      {"leaky relu", NeuronKind::relu, 0.1f, 0, 0},
      {"linear", NeuronKind::linear, -1.5f, 0.25f, 0},
      {"sigmoid", NeuronKind::sigmoid, 0, 0, 0},
      {"hard_sigmoid", NeuronKind::hard_sigmoid, 0.25f, 0.5f, 0},
      {"tanh", NeuronKind::tanh, 1.0f, 1.0f, 0},
      {"tanh a b", NeuronKind::tanh, 1.7f, 0.66f, 0},
      {"absolute", NeuronKind::absolute, 0, 0, 0},
      {"soft_plus", NeuronKind::soft_plus, 1.0f, 1.0f, 0},
      {"soft_plus a b", NeuronKind::soft_plus, 0.5f, 2.0f, 0},
      {"soft_sign", NeuronKind::soft_sign, 0, 0, 0},
      {"elu", NeuronKind::elu, 1.0f, 0, 0},
      {"elu a", NeuronKind::elu, 0.3f, 0, 0},
      {"prelu", NeuronKind::prelu, 0, 0, 0},
      {"prelu shared", NeuronKind::prelu, 0, 0, 0},
      {"relu_n", NeuronKind::relu_n, 1.0f, 6.0f, 0},
      {"relu6", NeuronKind::relu_n, 0.0f, 6.0f, 0},
      {"relu_n leaky b 2", NeuronKind::relu_n, 0.2f, 2.0f, 0},
      {"relu_n a -0.5 b 1", NeuronKind::relu_n, -0.5f, 1.0f, 0},  // clamps negative inputs too
      {"relu_n a 2 b -1", NeuronKind::relu_n, 2.0f, -1.0f, 0},
      {"relu_n a -inf", NeuronKind::relu_n, -kInf, 2.0f, 0},  // u < 0: r = inf, f' = -inf * 0 = NaN
      {"power 2.5", NeuronKind::power, 0.5f, 2.5f, 2.5f},
      {"power 0.5", NeuronKind::power, 0.5f, 2.5f, 0.5f},
      {"power 3", NeuronKind::power, 0.5f, 2.5f, 3.0f},
      {"power 1", NeuronKind::power, 0.5f, 2.5f, 1.0f},
      {"exponential e", NeuronKind::exponential, 0.7f, -0.3f, -1.0f},
      {"exponential 2", NeuronKind::exponential, 0.7f, -0.3f, 2.0f},
      {"exponential 0.5", NeuronKind::exponential, 0.7f, -0.3f, 0.5f},
      {"exponential 1", NeuronKind::exponential, 0.7f, -0.3f, 1.0f},
      {"exponential 0", NeuronKind::exponential, 0.7f, -0.3f, 0.0f},
      {"exponential -2", NeuronKind::exponential, 0.7f, -0.3f, -2.0f},
      {"logarithm e", NeuronKind::logarithm, 0.5f, 2.5f, -1.0f},
      {"logarithm 10", NeuronKind::logarithm, 0.5f, 2.5f, 10.0f},
      {"logarithm 1", NeuronKind::logarithm, 0.5f, 2.5f, 1.0f},
  };
  // Inputs the formulas treat specially: zeros, kinks (hard_sigmoid 0.25u+0.5 in {0, 1} at -2, 2;
  // relu_n r = b at 6 and 2; power/log base 0.5u+2.5 at 0 for u = -5, negative for u = -6),
  // saturation of sigmoid/tanh/softplus, NaN and infinities.
  const float specials[] = {0.0f, -0.0f, -2.0f, 2.0f, 6.0f, -5.0f, -6.0f, 10.0f, -10.0f, 30.0f,
                            -30.0f, 95.0f, -95.0f, 1e-30f, -1e-30f, kNaN, kInf, -kInf};
  struct Layout {
    ImageShape s;
    int64_t src_extra, grad_extra, dst_extra;
    int in_place;  // 0: separate dst, 1: dst = grad, 2: dst = src
  };
  const Layout layouts[] = {
      {{2, 17, 19, 5}, 0, 0, 0, 0},   // dense, flat loop
      {{2, 64, 65, 9}, 0, 0, 0, 0},   // dense, large enough for threads
      {{3, 7, 9, 6}, 1, 2, 3, 0},     // strided everything
      {{2, 40, 37, 13}, 0, 3, 0, 0},  // one strided operand, threaded per-pixel loop
      {{1, 5, 6, 3}, 2, 2, 2, 1},     // in place on the gradient
      {{2, 9, 8, 7}, 0, 0, 0, 2},     // in place on the source, dense
  };
  std::vector<float> slopes(64);
  for (size_t i = 0; i < slopes.size(); ++i) slopes[i] = 0.05f + 0.1f * float(i % 7) - 0.2f * float(i % 2);
  for (const NeuronCase& nc : cases)
    for (const Layout& l : layouts) {
      const ImageShape& s = l.s;
      Image u(s, l.src_extra), g(s, l.grad_extra);
      u.fill(-4.0f, 4.0f);
      g.fill(-2.0f, 2.0f);
      size_t k = 0;  // element 7m + 3 gets special value m
      u.for_each([&](float& e) {
        if (k % 7 == 3 && k / 7 < std::size(specials)) e = specials[k / 7];
        ++k;
      });
      g.at(0, 0, 0, 0) = kInf;
      g.at(s.n - 1, s.h - 1, s.w - 1, s.c - 1) = kNaN;
      g.at(0, s.h - 1, 0, s.c - 1) = 0.0f;
      const bool shared = std::string(nc.name) == "prelu shared";
      const NeuronParams p{int(nc.kind), nc.a, nc.b, nc.c, slopes.data(), shared ? 1 : int64_t(s.c)};
      Expected want(s);
      for (int64_t n = 0; n < s.n; ++n)
        for (int64_t y = 0; y < s.h; ++y)
          for (int64_t x = 0; x < s.w; ++x)
            for (int64_t c = 0; c < s.c; ++c)
              want.at(n, y, x, c) =
                  g.get(n, y, x, c) * ref_slope(nc.kind, u.get(n, y, x, c), nc.a, nc.b, nc.c,
                                                slopes[shared ? 0 : c]);
      const char* mode[] = {"", " in place on G", " in place on X"};
      const std::string name = std::string("neuron_gradient ") + nc.name + " " + shape_str(s) +
                               " ps" + std::to_string(u.v.pixel_stride) + "/" +
                               std::to_string(g.v.pixel_stride) + mode[l.in_place];
      Image out(s, l.in_place == 1 ? l.grad_extra : l.in_place == 2 ? l.src_extra : l.dst_extra);
      bool returned = true;
      // Relative tolerance only (the atol just admits denormal results): slopes that are tiny
      // because of saturation (sigmoid, tanh at |u| >= 10) must still carry 5 good digits.
      check_threads(name, out, want, 1e-37, 1e-5, [&](Image& o) {
        if (l.in_place == 0) {
          returned = neuron_gradient(p, u.v, g.v, o.v) && returned;
          return;
        }
        Image& operand = l.in_place == 1 ? g : u;  // run on a copy of the operand, then move it
        Image work(operand);
        const TensorView& src = l.in_place == 1 ? u.v : work.v;
        const TensorView& grad = l.in_place == 1 ? work.v : g.v;
        returned = neuron_gradient(p, src, grad, work.v) && returned;
        std::copy(work.data.begin(), work.data.end(), o.data.begin());
      });
      if (!returned) report(name + " returned false", false, "");
    }
  // Unknown types and PReLU without enough slopes: false, dst untouched.
  {
    const ImageShape s{1, 3, 4, 5};
    Image u(s, 1), g(s, 0);
    u.fill(-1.0f, 1.0f);
    g.fill(-1.0f, 1.0f);
    const NeuronParams bad[] = {{-1, 1, 1, 1, nullptr, 0},
                                {15, 1, 1, 1, nullptr, 0},
                                {99, 1, 1, 1, nullptr, 0},
                                {int(NeuronKind::prelu), 0, 0, 0, nullptr, 0},
                                {int(NeuronKind::prelu), 0, 0, 0, slopes.data(), 0},
                                {int(NeuronKind::prelu), 0, 0, 0, slopes.data(), 4}};
    for (const NeuronParams& p : bad) {
      Image out(s, 2);
      out.fill_value(kGarbage);
      const Image before(out);
      const bool r = neuron_gradient(p, u.v, g.v, out.v);
      char b[96];
      std::snprintf(b, sizeof b, "neuron_gradient rejects type %d (%lld slopes)", p.type,
                    (long long)p.data_count);
      report(b, !r && out.data == before.data, r ? "returned true" : "");
    }
  }
}

// ---- upsampling gradient (nodes.md 9.1, 9.2) ------------------------------------------------

enum class Upsampling { nearest, half_pixel, align_corners };

// The forward's taps of result index o of an axis (source S, result D = f S): (k, w) pairs.
std::vector<std::pair<int64_t, double>> forward_taps(Upsampling m, int64_t o, int64_t S, int64_t f) {
  const int64_t D = f * S;
  if (m == Upsampling::nearest) return {{o / f, 1.0}};
  double u = m == Upsampling::align_corners ? (D == 1 ? 0.0 : double(o) * double(S - 1) / double(D - 1))
                                            : std::max(0.0, (double(o) + 0.5) / double(f) - 0.5);
  u = std::min(u, double(S - 1));
  const int64_t k0 = int64_t(u), k1 = std::min(k0 + 1, S - 1);
  const double l = double(float(u - double(k0)));
  return {{k0, 1.0 - l}, {k1, l}};
}

// The kernel's CSR table: per source index k its result indices o (ascending) and weights.
struct AxisTable {
  std::vector<int64_t> offsets{0}, index;
  std::vector<float> weight;
  AxisTable(Upsampling m, int64_t S, int64_t f) {
    for (int64_t k = 0; k < S; ++k) {
      for (int64_t o = 0; o < f * S; ++o)
        for (const auto& [kk, w] : forward_taps(m, o, S, f))
          if (kk == k) {
            index.push_back(o);
            weight.push_back(float(w));
          }
      offsets.push_back(int64_t(index.size()));
    }
  }
  AxisAdjoint view() const { return {offsets.data(), index.data(), weight.data()}; }
};

void test_upsampling_gradient() {
  struct Case {
    ImageShape x;
    int64_t fy, fx;
  };
  // odd sizes, factor 1, unequal factors, 1 / 3 / 37 channels; the last two above the
  // kernel's threading threshold (16384 gradient elements)
  const Case cases[] = {{{1, 1, 1, 1}, 1, 1}, {{2, 5, 3, 3}, 2, 3}, {{1, 4, 6, 1}, 5, 2},
                        {{3, 4, 7, 37}, 3, 2}, {{2, 9, 11, 37}, 2, 2}};
  const char* names[] = {"nearest", "half-pixel", "align-corners"};
  for (Upsampling m : {Upsampling::nearest, Upsampling::half_pixel, Upsampling::align_corners})
    for (const Case& k : cases)
      for (int64_t extra : {0, 3}) {
        const ImageShape xs = k.x;
        const ImageShape gs{xs.n, xs.h * k.fy, xs.w * k.fx, xs.c};
        Image g(gs, extra);
        g.fill(-1.0f, 1.0f);
        Expected want(xs);
        for (int64_t n = 0; n < gs.n; ++n)
          for (int64_t i = 0; i < gs.h; ++i)
            for (int64_t j = 0; j < gs.w; ++j)
              for (const auto& [ky, wy] : forward_taps(m, i, xs.h, k.fy))
                for (const auto& [kx, wx] : forward_taps(m, j, xs.w, k.fx))
                  for (int64_t c = 0; c < xs.c; ++c) want.at(n, ky, kx, c) += wy * wx * g.get(n, i, j, c);
        const AxisTable ty(m, xs.h, k.fy), tx(m, xs.w, k.fx);
        Image out(xs, extra == 0 ? 2 : 0);
        const std::string name = std::string("upsampling_gradient ") + names[int(m)] + " " + shape_str(gs) + " -> " +
                                 shape_str(xs) + (extra ? " strided" : "");
        check_threads(name, out, want, 1e-5, 1e-5,
                      [&](Image& o) { upsampling_gradient(g.v, o.v, ty.view(), tx.view()); });
      }
}

}  // namespace

int main() {
  test_max_pooling();
  test_average_pooling();
  test_l2_pooling();
  test_neurons();
  test_upsampling_gradient();
  if (g_failures) {
    std::printf("%d case(s) FAILED\n", g_failures);
    return 1;
  }
  std::printf("all cases passed\n");
  return 0;
}
