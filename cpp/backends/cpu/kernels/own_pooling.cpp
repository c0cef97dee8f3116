// L2-norm pooling (nodes.md 5.4): Y = sqrt(sum of X^2 over the window's in-image taps).
// oneDNN 3.2 pooling offers only max and average algorithms; emulating L2 pooling with
// square + average pool + scale + sqrt primitives would take four passes over memory, so the sum
// of squares is taken here directly, in one pass.
#include <cmath>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "backends/cpu/kernels/own_kernels.h"

namespace MPSNN_ISA_NAMESPACE::own {

using detail::TapRange;

namespace {

// p[i] = sqrt(p[i]) for i < n. A loop calling std::sqrt does not vectorize (it may set errno),
// so with AVX-512 the instruction itself (measured 2-3x faster for 64 channels). The maskz form
// is the same instruction as _mm512_sqrt_ps without GCC 12's false "may be used uninitialized"
// warning about that intrinsic's undefined source.
inline void sqrt_span(float* p, int64_t n) {
  int64_t i = 0;
#ifdef __AVX512F__
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(p + i, _mm512_maskz_sqrt_ps(0xFFFF, _mm512_loadu_ps(p + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(p + i, m, _mm512_maskz_sqrt_ps(m, _mm512_maskz_loadu_ps(m, p + i)));
  }
#else
  for (; i < n; ++i) p[i] = std::sqrt(p[i]);
#endif
}

}  // namespace

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
            sqrt_span(pd, c_n);
          }
        }
      }
  });
}

}  // namespace MPSNN_ISA_NAMESPACE::own
