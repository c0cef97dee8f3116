// Bilinear and Lanczos scale nodes (nodes.md 10.3, 10.4) with arbitrary scale and translation.
// oneDNN 3.2's resampling primitive only maps whole images onto whole images (no translation,
// no independent output size/scale pair) and has no Lanczos filter, so both resamplers are
// written here; each precomputes its per-axis tap tables once per call.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/kernels/own_kernels.h"

namespace MPSNN_ISA_NAMESPACE::own {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Continuous pixel-edge source coordinate of the centre of output pixel o (nodes.md 10.2).
double source_centre(int64_t o, double scale, double translate) {
  return (static_cast<double>(o) + 0.5 - translate) / scale;
}

// ---- bilinear ---------------------------------------------------------------------------------

struct LinearTap {
  int64_t i0, i1;  // clamped source indices
  float lambda;    // weight of i1
};

std::vector<LinearTap> linear_taps(int64_t d, int64_t s, double scale, double translate) {
  std::vector<LinearTap> taps(d);
  const double hi = static_cast<double>(s - 1);
  for (int64_t o = 0; o < d; ++o) {
    double u = source_centre(o, scale, translate) - 0.5;
    // Clamping u to [0, S-1] is the same as clamping both indices (edge replication).
    u = std::min(std::max(u, 0.0), hi);
    const int64_t k0 = static_cast<int64_t>(std::floor(u));
    taps[o] = {k0, std::min(k0 + 1, s - 1), static_cast<float>(u - static_cast<double>(k0))};
  }
  return taps;
}

// ---- Lanczos ----------------------------------------------------------------------------------

double sinc(double x) {
  if (x == 0.0) return 1.0;
  const double px = kPi * x;
  return std::sin(px) / px;
}

double lanczos3(double x) { return std::fabs(x) < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0; }

// Normalized taps of every output position along one axis: output o reads source positions
// first[o] .. first[o] + count[o] - 1 with weights w[o * stride + k].
struct FilterTaps {
  std::vector<int64_t> first;
  std::vector<int64_t> count;
  std::vector<float> w;
  int64_t stride = 0;
};

FilterTaps lanczos_taps(int64_t d, int64_t s, double scale, double translate) {
  const double filter_scale = std::max(1.0, 1.0 / scale);
  const double support = 3.0 * filter_scale;
  FilterTaps f;
  f.stride = static_cast<int64_t>(std::ceil(2.0 * support)) + 2;
  f.first.assign(d, 0);
  f.count.assign(d, 0);
  f.w.assign(d * f.stride, 0.0f);
  std::vector<double> wd(f.stride);
  const double size = static_cast<double>(s);
  for (int64_t o = 0; o < d; ++o) {
    const double xi = source_centre(o, scale, translate);
    // Clamp in double first so that far-away centres cannot overflow the integer conversion.
    const double lo = std::max(std::floor(xi - support + 0.5), 0.0);
    const double hi = std::min(std::floor(xi + support + 0.5), size);
    if (!(hi > lo)) continue;
    const int64_t k_lo = static_cast<int64_t>(lo);
    const int64_t n = std::min(static_cast<int64_t>(hi) - k_lo, f.stride);
    double total = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      wd[k] = lanczos3((static_cast<double>(k_lo + k) + 0.5 - xi) / filter_scale);
      total += wd[k];
    }
    if (total == 0.0) continue;
    f.first[o] = k_lo;
    f.count[o] = n;
    for (int64_t k = 0; k < n; ++k) f.w[o * f.stride + k] = static_cast<float>(wd[k] / total);
  }
  return f;
}

// dst[0, len) = sum_k w[k] * runs[k][0, len) over `count` contiguous runs; count 0 writes zeros.
inline void weighted_runs(float* dst, int64_t len, const float* const* runs, const float* w,
                          int64_t count) {
  if (count == 0) {
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) dst[i] = 0.0f;
    return;
  }
  const float* r0 = runs[0];
  const float w0 = w[0];
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) dst[i] = w0 * r0[i];
  for (int64_t k = 1; k < count; ++k) {
    const float* rk = runs[k];
    const float wk = w[k];
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) dst[i] += wk * rk[i];
  }
}

}  // namespace

void bilinear_scale(const TensorView& src, const TensorView& dst, const ScaleTransform& t) {
  const ImageShape& s = src.shape;
  const ImageShape& d = dst.shape;
  const std::vector<LinearTap> ty = linear_taps(d.h, s.h, t.scale_y, t.translate_y);
  std::vector<LinearTap> tx = linear_taps(d.w, s.w, t.scale_x, t.translate_x);
  for (LinearTap& k : tx) {  // to element offsets within a row
    k.i0 *= src.pixel_stride;
    k.i1 *= src.pixel_stride;
  }
  detail::with_channel_count(d.c, [&](auto kc) {
    constexpr int64_t K = decltype(kc)::value;  // channels, when few
    const int64_t c_n = K ? K : d.c;
#pragma omp parallel for collapse(2) schedule(static) if (d.numel() > 4096)
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t i = 0; i < d.h; ++i) {
        const LinearTap& ky = ty[i];
        const float* r0 = src.pixel(n, ky.i0, 0);
        const float* r1 = src.pixel(n, ky.i1, 0);
        const float wy = ky.lambda;
        float* rd = dst.pixel(n, i, 0);
        for (int64_t j = 0; j < d.w; ++j) {
          const LinearTap& kx = tx[j];
          const float* p00 = r0 + kx.i0;
          const float* p01 = r0 + kx.i1;
          const float* p10 = r1 + kx.i0;
          const float* p11 = r1 + kx.i1;
          const float wx = kx.lambda;
          float* pd = rd + j * dst.pixel_stride;
#pragma omp simd
          for (int64_t c = 0; c < c_n; ++c) {
            const float top = p00[c] + wx * (p01[c] - p00[c]);
            const float bottom = p10[c] + wx * (p11[c] - p10[c]);
            pd[c] = top + wy * (bottom - top);
          }
        }
      }
  });
}

void lanczos_scale(const TensorView& src, const TensorView& dst, const ScaleTransform& t) {
  const ImageShape& s = src.shape;
  const ImageShape& d = dst.shape;
  const FilterTaps fx = lanczos_taps(d.w, s.w, t.scale_x, t.translate_x);
  const FilterTaps fy = lanczos_taps(d.h, s.h, t.scale_y, t.translate_y);
  const int64_t c_n = d.c;

  // Source rows that some output row reads; only those go through the x pass.
  int64_t row_lo = s.h, row_hi = 0;
  for (int64_t i = 0; i < d.h; ++i)
    if (fy.count[i] > 0) {
      row_lo = std::min(row_lo, fy.first[i]);
      row_hi = std::max(row_hi, fy.first[i] + fy.count[i]);
    }
  const int64_t rows = std::max<int64_t>(0, row_hi - row_lo);

  // x pass: src rows [row_lo, row_hi) -> tmp, dense (n, rows, d.w, c).
  const int64_t tmp_row = d.w * c_n;
  std::vector<float> tmp(static_cast<size_t>(s.n * rows * tmp_row));
  const int64_t src_ps = src.pixel_stride;
  detail::with_channel_count(c_n, [&](auto kc) {
    constexpr int64_t K = decltype(kc)::value;
#pragma omp parallel for collapse(2) schedule(static) if (s.n * rows * tmp_row > 4096)
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t r = 0; r < rows; ++r) {
        const float* rs = src.pixel(n, row_lo + r, 0);
        float* rt = tmp.data() + (n * rows + r) * tmp_row;
        for (int64_t j = 0; j < d.w; ++j) {
          const int64_t cnt = fx.count[j];
          const float* base = rs + fx.first[j] * src_ps;
          const float* wj = fx.w.data() + j * fx.stride;
          float* out = rt + j * c_n;
          if constexpr (K > 0) {  // few channels: accumulate in registers
            float acc[K] = {};
            for (int64_t k = 0; k < cnt; ++k)
              for (int64_t c = 0; c < K; ++c) acc[c] += wj[k] * base[k * src_ps + c];
            for (int64_t c = 0; c < K; ++c) out[c] = acc[c];
          } else {
#pragma omp simd
            for (int64_t c = 0; c < c_n; ++c) out[c] = 0.0f;
            for (int64_t k = 0; k < cnt; ++k) {
              const float wk = wj[k];
              const float* pk = base + k * src_ps;
#pragma omp simd
              for (int64_t c = 0; c < c_n; ++c) out[c] += wk * pk[c];
            }
          }
        }
      }
  });

#pragma omp parallel if (d.n * d.h * tmp_row > 4096)
  {
    std::vector<const float*> runs(fy.stride);
    std::vector<float> row_buf(dst.dense() ? 0 : tmp_row);

    // y pass: weighted sums of whole tmp rows (contiguous d.w * c values).
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t i = 0; i < d.h; ++i) {
        const int64_t cnt = fy.count[i];
        for (int64_t k = 0; k < cnt; ++k)
          runs[k] = tmp.data() + (n * rows + fy.first[i] + k - row_lo) * tmp_row;
        float* rd = dst.dense() ? dst.pixel(n, i, 0) : row_buf.data();
        weighted_runs(rd, tmp_row, runs.data(), fy.w.data() + i * fy.stride, cnt);
        if (dst.dense()) continue;
        for (int64_t j = 0; j < d.w; ++j) {
          float* pd = dst.pixel(n, i, j);
          const float* pb = row_buf.data() + j * c_n;
#pragma omp simd
          for (int64_t c = 0; c < c_n; ++c) pd[c] = pb[c];
        }
      }
  }
}

}  // namespace MPSNN_ISA_NAMESPACE::own
