// L2-norm pooling (nodes.md 5.4): Y = sqrt(sum of X^2 over the window's in-image taps).
// oneDNN 3.2 pooling offers only max and average algorithms; emulating L2 pooling with
// square + average pool + scale + sqrt primitives would take four passes over memory, so the sum
// of squares is taken here directly, in one pass.
#include <cmath>
#include <vector>

#include "backends/cpu/kernels/own_kernels.h"

namespace mpsnn::cpu::own {

using detail::TapRange;

void l2_pooling(const TensorView& src, const TensorView& dst, const WindowAxis& y,
                const WindowAxis& x) {
  const ImageShape& s = src.shape;
  const ImageShape& d = dst.shape;
  std::vector<TapRange> cols(d.w);
  for (int64_t j = 0; j < d.w; ++j) cols[j] = detail::in_image_taps(x, j, s.w);
  const int64_t src_ps = src.pixel_stride;

  detail::with_channel_count(d.c, [&](auto kc) {
    constexpr int64_t K = decltype(kc)::value;
    const int64_t c_n = K ? K : d.c;
#pragma omp parallel for collapse(2) schedule(static) if (d.numel() > 4096)
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t i = 0; i < d.h; ++i) {
        const TapRange rows = detail::in_image_taps(y, i, s.h);
        for (int64_t j = 0; j < d.w; ++j) {
          const TapRange& cj = cols[j];
          float* pd = dst.pixel(n, i, j);
          if constexpr (K > 0) {  // few channels: accumulate in registers
            float acc[K] = {};
            for (int64_t ky = rows.lo; ky < rows.hi; ++ky) {
              const float* rs = src.pixel(n, rows.start + ky * y.dilation, 0);
              for (int64_t kx = cj.lo; kx < cj.hi; ++kx) {
                const float* ps = rs + (cj.start + kx * x.dilation) * src_ps;
                for (int64_t c = 0; c < K; ++c) acc[c] += ps[c] * ps[c];
              }
            }
            for (int64_t c = 0; c < K; ++c) pd[c] = std::sqrt(acc[c]);
          } else {  // accumulate in the destination pixel (in L1), vectorized over channels
#pragma omp simd
            for (int64_t c = 0; c < c_n; ++c) pd[c] = 0.0f;
            for (int64_t ky = rows.lo; ky < rows.hi; ++ky) {
              const float* rs = src.pixel(n, rows.start + ky * y.dilation, 0);
              for (int64_t kx = cj.lo; kx < cj.hi; ++kx) {
                const float* ps = rs + (cj.start + kx * x.dilation) * src_ps;
#pragma omp simd
                for (int64_t c = 0; c < c_n; ++c) pd[c] += ps[c] * ps[c];
              }
            }
#pragma omp simd
            for (int64_t c = 0; c < c_n; ++c) pd[c] = std::sqrt(pd[c]);
          }
        }
      }
  });
}

}  // namespace mpsnn::cpu::own
