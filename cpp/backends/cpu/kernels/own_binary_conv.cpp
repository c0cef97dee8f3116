// Binary convolution (nodes.md 4.5): binary-weight, XNOR and AND variants with input/output
// scale and bias terms and the optional XNOR-Net beta image.
// oneDNN 3.2 has no binarized convolution: it cannot take 1-bit weights, binarize its input, or
// skip out-of-image taps instead of reading a padded zero (which binarization would turn into
// +1). The weights are rearranged once, when the plan is made (BinaryConvolution): binary
// weights become lane indices for table lookups (AVX-512) or +-1 float blocks for FMA, or stay
// bits when there are only a few output pixels (fully connected); XNOR/AND weights become bit
// strips or window words, and each call binarizes its input once and counts bits with popcount.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "backends/cpu/kernels/own_kernels.h"

namespace MPSNN_ISA_NAMESPACE::own {
namespace {

using detail::TapRange;
using detail::in_image_taps;

struct Geometry {
  int64_t n, h, w, cin;     // source
  int64_t oh, ow, cout;     // result
  int64_t kh, kw, words32;  // weights: [cout][kh][kw][words32]
  WindowAxis y, x;
  std::vector<TapRange> cols;  // in-image x taps of every output column
};

// Inside this file out_scale and out_bias are never null (BinaryConvolution replaces missing
// ones by arrays of 1 / 0, keeping the output loops branch-free), and in_bias / in_scale are
// only read through InputTerms.

// in_bias and in_scale (0 / 1 when absent) repeated for every pixel of a row, so that X' of a
// run of pixels of a dense source is one flat vector loop however few channels there are.
struct InputTerms {
  std::vector<float> bias, scale;  // w * cin entries
};

// X' = (X + in_bias) * in_scale for pixels [x0, x0 + count) of row (n, y), written densely.
inline void scaled_run(const TensorView& src, const InputTerms& t, int64_t n, int64_t y, int64_t x0,
                       int64_t count, float* out) {
  const int64_t cin = src.shape.c;
  const float* ib = t.bias.data();
  const float* is = t.scale.data();
  if (src.dense()) {
    const float* in = src.pixel(n, y, x0);
#pragma omp simd
    for (int64_t i = 0; i < count * cin; ++i) out[i] = (in[i] + ib[i]) * is[i];
    return;
  }
  for (int64_t x = 0; x < count; ++x) {
    const float* in = src.pixel(n, y, x0 + x);
    float* o = out + x * cin;
#pragma omp simd
    for (int64_t c = 0; c < cin; ++c) o[c] = (in[c] + ib[c]) * is[c];
  }
}

// beta[n][i][j] = (1/(KH*KW)) * sum over in-image taps of A, A = mean_c |X'| (nodes.md 4.5).
// Separable: each source row first gets its sums over every output column's x taps (h_sum),
// then each output pixel adds up the rows of its y taps.
std::vector<float> beta_image(const TensorView& src, const Geometry& g, const InputTerms& in) {
  std::vector<float> h_sum(static_cast<size_t>(g.n * g.h * g.ow));
  const float inv_c = 1.0f / static_cast<float>(g.cin);
  detail::with_channel_count(g.cin, [&](auto kc) {
    constexpr int64_t K = decltype(kc)::value;
    const int64_t cin = K ? K : g.cin;
#pragma omp parallel if (g.n * g.h * g.w * g.cin > 4096)
    {
      std::vector<float> xs(static_cast<size_t>(g.w * g.cin)), a(static_cast<size_t>(g.w));
#pragma omp for collapse(2) schedule(static)
      for (int64_t n = 0; n < g.n; ++n)
        for (int64_t y = 0; y < g.h; ++y) {
          scaled_run(src, in, n, y, 0, g.w, xs.data());
          for (int64_t x = 0; x < g.w; ++x) {
            const float* px = xs.data() + x * cin;
            float sum = 0.0f;
            for (int64_t c = 0; c < cin; ++c) sum += std::fabs(px[c]);
            a[x] = sum * inv_c;
          }
          float* hr = h_sum.data() + (n * g.h + y) * g.ow;
          for (int64_t j = 0; j < g.ow; ++j) {
            const TapRange& rx = g.cols[j];
            float sum = 0.0f;
            for (int64_t kx = rx.lo; kx < rx.hi; ++kx) sum += a[rx.start + kx * g.x.dilation];
            hr[j] = sum;
          }
        }
    }
  });
  std::vector<float> beta(static_cast<size_t>(g.n * g.oh * g.ow));
  const float inv_taps = 1.0f / static_cast<float>(g.kh * g.kw);
#pragma omp parallel for collapse(2) schedule(static) if (g.n * g.oh * g.ow * g.kh > 4096)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t i = 0; i < g.oh; ++i) {
      const TapRange ry = in_image_taps(g.y, i, g.h);
      float* br = beta.data() + (n * g.oh + i) * g.ow;
      for (int64_t j = 0; j < g.ow; ++j) br[j] = 0.0f;
      for (int64_t ky = ry.lo; ky < ry.hi; ++ky) {
        const float* hr = h_sum.data() + (n * g.h + ry.start + ky * g.y.dilation) * g.ow;
#pragma omp simd
        for (int64_t j = 0; j < g.ow; ++j) br[j] += hr[j];
      }
#pragma omp simd
      for (int64_t j = 0; j < g.ow; ++j) br[j] *= inv_taps;
    }
  return beta;
}

// Y = S * out_scale * beta + out_bias for output channels [co0, co0 + len) of one pixel.
template <class T>
inline void write_output(float* pd, const T* s, int64_t co0, int64_t len, float beta,
                         const BinaryConvParams& p) {
  const float* os = p.out_scale;
  const float* ob = p.out_bias;
#pragma omp simd
  for (int64_t k = 0; k < len; ++k) {
    const int64_t co = co0 + k;
    pd[co] = static_cast<float>(s[k]) * os[co] * beta + ob[co];
  }
}

// Splits the output channels so that `tasks` (image, row) work items become enough parallel
// tasks (the fully connected variant has one output pixel per image). Chunks are multiples of
// `quantum`.
int64_t cout_chunk(int64_t tasks, int64_t cout, int64_t quantum) {
  const int64_t want = 4 * detail::max_threads();
  const int64_t chunks = tasks >= want ? 1 : (want + tasks - 1) / tasks;
  int64_t size = (cout + chunks - 1) / chunks;
  size = (size + quantum - 1) / quantum * quantum;
  return std::max(size, quantum);
}

constexpr int kVec = 16;               // floats per AVX-512 register
constexpr int kCo = 32;                // output channels per register block (popcount path)
constexpr int kFloatCo = 64;           // output channels per register block (binary weights)
constexpr int64_t kFloatMinPixels = 16;  // fewer output pixels: binary_weights_direct

// Splits `count` output pixels into blocks of at most `most`, as even as possible
// (28 = 4 x 7 rather than 3 x 8 + 4): calls f(first, size) for each block.
template <class F>
void even_blocks(int64_t first, int64_t count, int64_t most, F&& f) {
  if (count <= 0) return;
  const int64_t blocks = (count + most - 1) / most;
  const int64_t base = count / blocks, extra = count % blocks;
  for (int64_t b = 0, j = first; b < blocks; ++b) {
    const int64_t size = base + (b < extra ? 1 : 0);
    f(j, size);
    j += size;
  }
}

// ---- binary weights, many output pixels: register blocks over a zero-padded input ------------
// Two ways to compute a block of up to block_px(NV) output pixels x NV*16 output channels in
// registers: +-1 float weights and FMA (any CPU), or, with AVX-512, table lookups that add four
// input values with their signs at once (about twice as fast, below).

// Most pixels per block for NV accumulator vectors per pixel: 24 accumulators, at most 12 pixels.
constexpr int block_px(int nv) { return 24 / nv < 12 ? 24 / nv : 12; }

// X' with the window padding materialized as zeros: a zero times +-1 contributes nothing, which
// is exactly "out-of-image taps contribute nothing" for this variant. Dense (n, hp, wp, cin);
// padded row 0 is source row -pad_before.
struct PaddedInput {
  std::vector<float> x;
  int64_t hp, wp;
};

PaddedInput padded_input(const TensorView& src, const Geometry& g, const InputTerms& in) {
  PaddedInput xp;
  xp.hp = (g.oh - 1) * g.y.stride + (g.kh - 1) * g.y.dilation + 1;
  xp.wp = (g.ow - 1) * g.x.stride + (g.kw - 1) * g.x.dilation + 1;
  xp.x.resize(static_cast<size_t>(g.n * xp.hp * xp.wp * g.cin));
  const int64_t py = g.y.pad_before, px = g.x.pad_before, wp = xp.wp;
  // Padded column c holds source column c - px; [x0, x1) are the source columns present.
  const int64_t x0 = std::max<int64_t>(0, -px), x1 = std::min(g.w, wp - px);
#pragma omp parallel for collapse(2) schedule(static) if (xp.x.size() > 8192)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t r = 0; r < xp.hp; ++r) {
      float* row = xp.x.data() + (n * xp.hp + r) * wp * g.cin;
      const int64_t sy = r - py;
      if (sy < 0 || sy >= g.h || x1 <= x0) {
        std::fill(row, row + wp * g.cin, 0.0f);
        continue;
      }
      std::fill(row, row + (x0 + px) * g.cin, 0.0f);
      scaled_run(src, in, n, sy, x0, x1 - x0, row + (x0 + px) * g.cin);
      std::fill(row + (x1 + px) * g.cin, row + wp * g.cin, 0.0f);
    }
  return xp;
}

// The output loop shared by both ways: tasks of whole output rows and output channel chunks,
// blocks of pixels in registers, then Y per pixel. `block(nv, size, xs, co0, ci0, ci_n, acc)`
// computes output channels [co0, co0 + 16*nv) of `size` pixels from input channels
// [ci0, ci0 + ci_n) into acc (pixel stride kFloatCo), adding to it unless ci0 == 0; xs[q] points
// at pixel q's first tap, channel ci0. Input channels come in chunks of `ci_block`.
template <class Block>
void binary_weights_blocked(const TensorView& dst, const Geometry& g, const PaddedInput& xp,
                            int64_t ci_block, const BinaryConvParams& p, const float* beta,
                            const Block& block) {
  // Tasks are groups of whole output rows, so that small images still fill register blocks
  // (a 7-pixel row alone would leave them half empty): a group has at least 24 pixels.
  const int64_t rows_per_task = std::min(g.oh, (24 + g.ow - 1) / g.ow);
  const int64_t row_groups = (g.oh + rows_per_task - 1) / rows_per_task;
  const int64_t chunk = cout_chunk(g.n * row_groups, g.cout, kFloatCo);
  const int64_t n_chunks = (g.cout + chunk - 1) / chunk;
#pragma omp parallel if (g.n * g.oh * g.ow * g.cout > 4096)
  {
    std::vector<float> acc(static_cast<size_t>(rows_per_task * g.ow * kFloatCo));
#pragma omp for collapse(3) schedule(static)
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t rg = 0; rg < row_groups; ++rg)
        for (int64_t ch = 0; ch < n_chunks; ++ch) {
          const int64_t i0 = rg * rows_per_task;
          const int64_t pixels = (std::min(g.oh, i0 + rows_per_task) - i0) * g.ow;
          const int64_t co_end = std::min(g.cout, (ch + 1) * chunk);
          for (int64_t co0 = ch * chunk; co0 < co_end; co0 += kFloatCo) {
            const int64_t nco = std::min<int64_t>(kFloatCo, co_end - co0);
            for (int64_t ci0 = 0; ci0 < g.cin; ci0 += ci_block) {
              const int64_t ci_n = std::min(ci_block, g.cin - ci0);
              auto blocks = [&](auto nv) {
                constexpr int NV = decltype(nv)::value;
                even_blocks(0, pixels, block_px(NV), [&](int64_t q0, int64_t size) {
                  const float* xs[block_px(NV)];
                  int64_t i = i0 + q0 / g.ow, j = q0 % g.ow;
                  for (int64_t q = 0; q < size; ++q) {
                    xs[q] = xp.x.data() +
                            ((n * xp.hp + i * g.y.stride) * xp.wp + j * g.x.stride) * g.cin + ci0;
                    if (++j == g.ow) j = 0, ++i;
                  }
                  block(nv, size, xs, co0, ci0, ci_n, acc.data() + q0 * kFloatCo);
                });
              };
              switch ((nco + kVec - 1) / kVec) {
                case 4: blocks(std::integral_constant<int, 4>{}); break;
                case 3: blocks(std::integral_constant<int, 3>{}); break;
                case 2: blocks(std::integral_constant<int, 2>{}); break;
                default: blocks(std::integral_constant<int, 1>{}); break;
              }
            }
            for (int64_t q = 0, i = i0, j = 0; q < pixels; ++q) {
              const float b = beta ? beta[(n * g.oh + i) * g.ow + j] : 1.0f;
              write_output(dst.pixel(n, i, j), acc.data() + q * kFloatCo, co0, nco, b, p);
              if (++j == g.ow) j = 0, ++i;
            }
          }
        }
  }
}

// -- +-1 float weights and FMA --

struct FloatConv {
  int64_t wp, cin;
  int64_t kh, kw, dy, dx;
  bool merged;  // dx == 1 and one input channel chunk: (kx, ci) is one contiguous run
};

// Adds to acc (PX output pixels x NV*16 output channels, pixel stride kFloatCo; starting from 0
// when `first`) the products of the input channel block [ci0, ci0 + ci_n) over all taps.
// xs[p]: padded input of pixel p at (its first tap, ci0), for any pixels (they may span rows);
// w0: weights at (tap 0, ci0) of the output channel block. Accumulates in registers.
template <int PX, int NV>
void fma_block(const FloatConv& f, const float* const* xs, const float* w0, int64_t ci_n,
               bool first, float* acc) {
  constexpr int kW = NV * kVec;
  float a[PX][kW];
  for (int p = 0; p < PX; ++p)
    for (int v = 0; v < kW; ++v) a[p][v] = first ? 0.0f : acc[p * kFloatCo + v];
  int64_t off[PX];  // pixel p relative to pixel 0
  for (int p = 0; p < PX; ++p) off[p] = xs[p] - xs[0];
  const int64_t kx_n = f.merged ? 1 : f.kw;
  const int64_t inner = f.merged ? f.kw * f.cin : ci_n;
  for (int64_t ky = 0; ky < f.kh; ++ky)
    for (int64_t kx = 0; kx < kx_n; ++kx) {
      const float* xr = xs[0] + (ky * f.dy * f.wp + kx * f.dx) * f.cin;
      const float* wt = w0 + (ky * f.kw + kx) * f.cin * kFloatCo;
      for (int64_t r = 0; r < inner; ++r) {
        const float* w = wt + r * kFloatCo;
        for (int p = 0; p < PX; ++p) {
          const float xv = xr[off[p] + r];
#pragma omp simd
          for (int v = 0; v < kW; ++v) a[p][v] += xv * w[v];
        }
      }
    }
  for (int p = 0; p < PX; ++p)
    for (int v = 0; v < kW; ++v) acc[p * kFloatCo + v] = a[p][v];
}

template <int NV, int PX = block_px(NV)>
void fma_block_any(int64_t px, const FloatConv& f, const float* const* xs, const float* w0,
                   int64_t ci_n, bool first, float* acc) {
  if constexpr (PX > 1) {
    if (px < PX) return fma_block_any<NV, PX - 1>(px, f, xs, w0, ci_n, first, acc);
  }
  fma_block<PX, NV>(f, xs, w0, ci_n, first, acc);
}

// +-1 weights, blocked by kFloatCo output channels (innermost) so that one block's weights are
// one contiguous, sequentially read run (a plain [tap][ci][cout] layout strides by Cout and
// thrashes a few L1 sets): [cout / kFloatCo][kh][kw][cin][kFloatCo], padding channels 0.
// (With AVX-512 the table lookups below replace this way and the direct one; they stay compiled
// there so that they do not rot, and tests/cpp runs them in a build without AVX-512.)
[[maybe_unused]] std::vector<float> pack_float_weights(const uint32_t* weights,
                                                        const Geometry& g) {
  const int64_t taps = g.kh * g.kw;
  const int64_t co_blocks = (g.cout + kFloatCo - 1) / kFloatCo;
  const int64_t block_stride = taps * g.cin * kFloatCo;
  std::vector<float> wf(static_cast<size_t>(co_blocks * block_stride));
  for (int64_t ob = 0; ob < co_blocks; ++ob)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t w = 0; w < g.words32; ++w) {
        uint32_t words[kFloatCo];
        float valid[kFloatCo];
        for (int64_t k = 0; k < kFloatCo; ++k) {
          const int64_t co = ob * kFloatCo + k;
          valid[k] = co < g.cout ? 1.0f : 0.0f;
          words[k] = co < g.cout ? weights[(co * taps + t) * g.words32 + w] : 0u;
        }
        const int64_t nb = std::min<int64_t>(32, g.cin - 32 * w);
        for (int64_t b = 0; b < nb; ++b) {
          float* out = wf.data() + ob * block_stride + (t * g.cin + 32 * w + b) * kFloatCo;
          for (int64_t k = 0; k < kFloatCo; ++k)
            out[k] = valid[k] * (((words[k] >> b) & 1u) ? 1.0f : -1.0f);
        }
      }
  return wf;
}

// wf: pack_float_weights.
[[maybe_unused]] void binary_weights_fma(const TensorView& src, const TensorView& dst,
                                         const float* wf, const Geometry& g, const InputTerms& in,
                                         const BinaryConvParams& p, const float* beta) {
  const PaddedInput xp = padded_input(src, g, in);
  const int64_t taps = g.kh * g.kw;
  const int64_t block_stride = taps * g.cin * kFloatCo;
  // Long inner loops matter more than L1 residency (measured: blocking the input channels to
  // keep a block's weights in L1 cost 15 %), so input channels are split only when one output
  // channel block's weights (all taps) would not fit the 1 MiB L2 they stream from.
  const int64_t l2_channels = std::max<int64_t>(1, (int64_t{1} << 20) / (taps * kFloatCo * 4));
  const int64_t cb = l2_channels >= g.cin ? g.cin : std::max<int64_t>(8, l2_channels / 8 * 8);
  const FloatConv f{xp.wp, g.cin, g.kh, g.kw, g.y.dilation, g.x.dilation,
                    cb == g.cin && g.x.dilation == 1};
  binary_weights_blocked(
      dst, g, xp, cb, p, beta,
      [&](auto nv, int64_t size, const float* const* xs, int64_t co0, int64_t ci0, int64_t ci_n,
          float* acc) {
        const float* w0 = wf + (co0 / kFloatCo) * block_stride + ci0 * kFloatCo;
        fma_block_any<decltype(nv)::value>(size, f, xs, w0, ci_n, ci0 == 0, acc);
      });
}

#ifdef __AVX512F__
// -- table lookups (AVX-512) --
// The window's K = KH*KW*Cin inputs, in weight order, form groups of four. For one pixel and
// one group (x0..x3), the 16 lanes of a register hold every signed sum: lane b = sum over q of
// (bit q of b ? +x_q : -x_q), made with four FMAs. The group's contribution to 16 output
// channels is then one permute (lane k picks the lane that output channel k's four weight bits
// name) and one add: two instructions for 64 multiply-adds where FMA needs four, and they run
// on other ports than the FMAs that build the table.

// Lane b of kSigns[q]: +1 if bit q of b is set, else -1.
struct SignTable {
  alignas(64) float v[4][16];
  constexpr SignTable() : v{} {
    for (int q = 0; q < 4; ++q)
      for (int b = 0; b < 16; ++b) v[q][b] = ((b >> q) & 1) ? 1.0f : -1.0f;
  }
};
constexpr SignTable kSigns;

// The signed sums of group members x[o[0]] .. x[o[M-1]] (M < 4: the last, partial group).
template <int M>
inline __m512 signed_sums(const float* x, const int64_t* o) {
  __m512 t = _mm512_mul_ps(_mm512_set1_ps(x[o[0]]), _mm512_load_ps(kSigns.v[0]));
  if constexpr (M > 1) t = _mm512_fmadd_ps(_mm512_set1_ps(x[o[1]]), _mm512_load_ps(kSigns.v[1]), t);
  if constexpr (M > 2) t = _mm512_fmadd_ps(_mm512_set1_ps(x[o[2]]), _mm512_load_ps(kSigns.v[2]), t);
  if constexpr (M > 3) t = _mm512_fmadd_ps(_mm512_set1_ps(x[o[3]]), _mm512_load_ps(kSigns.v[3]), t);
  return t;
}

// a[p][v] += the contribution of one group of M members (offsets o from each pixel's first
// tap) to output channels 16v .. 16v+15 of pixel p; wi: the group's lane indices, 16 per v.
template <int PX, int NV, int M>
inline void lookup_group(const float* const* xs, const int64_t* o, const int32_t* wi,
                         __m512 (&a)[PX][NV]) {
  __m512i idx[NV];
  for (int v = 0; v < NV; ++v) idx[v] = _mm512_loadu_si512(wi + v * kVec);
  for (int p = 0; p < PX; ++p) {
    const __m512 t = signed_sums<M>(xs[p], o);
    // maskz with all lanes: the same instruction as _mm512_permutexvar_ps, without GCC 12's
    // false "may be used uninitialized" warning about that intrinsic's undefined source.
    for (int v = 0; v < NV; ++v)
      a[p][v] = _mm512_add_ps(a[p][v], _mm512_maskz_permutexvar_ps(0xFFFF, idx[v], t));
  }
}

struct LookupConv {
  const int64_t* off;  // K member offsets from a pixel's first tap, in weight order
  int64_t groups;      // ceil(K / 4)
  int64_t rem;         // members of the last group when it is partial (K % 4), else 0
};

// acc (PX pixels x NV*16 output channels, pixel stride kFloatCo) = the whole window's sums.
// wi: lane indices of the output channel block, [groups][4][16].
template <int PX, int NV>
void lookup_block(const LookupConv& c, const float* const* xs, const int32_t* wi, float* acc) {
  __m512 a[PX][NV];
  for (int p = 0; p < PX; ++p)
    for (int v = 0; v < NV; ++v) a[p][v] = _mm512_setzero_ps();
  const int64_t full = c.rem ? c.groups - 1 : c.groups;
  const int64_t* o = c.off;
  for (int64_t k = 0; k < full; ++k, o += 4, wi += 4 * kVec)
    lookup_group<PX, NV, 4>(xs, o, wi, a);
  switch (c.rem) {
    case 3: lookup_group<PX, NV, 3>(xs, o, wi, a); break;
    case 2: lookup_group<PX, NV, 2>(xs, o, wi, a); break;
    case 1: lookup_group<PX, NV, 1>(xs, o, wi, a); break;
    default: break;
  }
  for (int p = 0; p < PX; ++p)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(acc + p * kFloatCo + v * kVec, a[p][v]);
}

template <int NV, int PX = block_px(NV)>
void lookup_block_any(int64_t px, const LookupConv& c, const float* const* xs, const int32_t* wi,
                      float* acc) {
  if constexpr (PX > 1) {
    if (px < PX) return lookup_block_any<NV, PX - 1>(px, c, xs, wi, acc);
  }
  lookup_block<PX, NV>(c, xs, wi, acc);
}

// Lane indices: for output channel co and group k, the four weight bits of its members
// (member q at bit q), as [cout / kFloatCo][groups][kFloatCo] int32; padding channels 0.
std::vector<int32_t> pack_lookup_weights(const uint32_t* weights, const Geometry& g) {
  const int64_t taps = g.kh * g.kw, k_total = taps * g.cin, groups = (k_total + 3) / 4;
  const int64_t co_blocks = (g.cout + kFloatCo - 1) / kFloatCo;
  std::vector<int32_t> wi(static_cast<size_t>(co_blocks * groups * kFloatCo), 0);
  auto bit = [&](int64_t co, int64_t k) {  // weight bit of input k (tap k / Cin) of channel co
    const int64_t t = k / g.cin, c = k % g.cin;
    return static_cast<int32_t>((weights[(co * taps + t) * g.words32 + c / 32] >> (c % 32)) & 1u);
  };
#pragma omp parallel for collapse(2) schedule(static) if (wi.size() > 65536)
  for (int64_t cb = 0; cb < co_blocks; ++cb)
    for (int64_t k4 = 0; k4 < groups; ++k4) {
      int32_t* out = wi.data() + (cb * groups + k4) * kFloatCo;
      const int64_t members = std::min<int64_t>(4, k_total - 4 * k4);
      for (int64_t lane = 0; lane < kFloatCo && cb * kFloatCo + lane < g.cout; ++lane)
        for (int64_t q = 0; q < members; ++q)
          out[lane] |= bit(cb * kFloatCo + lane, 4 * k4 + q) << q;
    }
  return wi;
}

// wi: pack_lookup_weights.
void binary_weights_lookup(const TensorView& src, const TensorView& dst, const int32_t* wi,
                           const Geometry& g, const InputTerms& in, const BinaryConvParams& p,
                           const float* beta) {
  const PaddedInput xp = padded_input(src, g, in);
  const int64_t k_total = g.kh * g.kw * g.cin, groups = (k_total + 3) / 4;
  std::vector<int64_t> off(static_cast<size_t>(k_total));
  for (int64_t k = 0; k < k_total; ++k) {
    const int64_t t = k / g.cin, ky = t / g.kw, kx = t % g.kw;
    off[static_cast<size_t>(k)] =
        (ky * g.y.dilation * xp.wp + kx * g.x.dilation) * g.cin + k % g.cin;
  }
  const LookupConv c{off.data(), groups, k_total % 4};
  binary_weights_blocked(
      dst, g, xp, g.cin, p, beta,
      [&](auto nv, int64_t size, const float* const* xs, int64_t co0, int64_t, int64_t,
          float* acc) {
        const int32_t* w0 = wi + (co0 / kFloatCo) * groups * kFloatCo;
        lookup_block_any<decltype(nv)::value>(size, c, xs, w0, acc);
      });
}
#endif

// ---- binary weights, few output pixels, no AVX-512: straight from the bits --------------------
// With one output pixel per image (the fully connected variant) every weight is used once, so
// expanding them to floats would cost more than the convolution; instead each 32-bit word
// selects the channels it adds: sum_c X'*w = 2 * sum_{bit set} X' - sum_c X'.

[[maybe_unused]] void binary_weights_direct(const TensorView& src, const TensorView& dst,
                                            const uint32_t* weights, const Geometry& g,
                                            const InputTerms& in, const BinaryConvParams& p,
                                            const float* beta) {
  const int64_t cpad = g.words32 * 32;
  std::vector<float> xs(static_cast<size_t>(g.n * g.h * g.w * cpad), 0.0f);  // X', channels padded
  std::vector<float> psum(static_cast<size_t>(g.n * g.h * g.w));                // sum_c X'
#pragma omp parallel for collapse(2) schedule(static) if (xs.size() > 32768)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t y = 0; y < g.h; ++y)
      for (int64_t x = 0; x < g.w; ++x) {
        const int64_t pix = (n * g.h + y) * g.w + x;
        float* out = xs.data() + pix * cpad;
        scaled_run(src, in, n, y, x, 1, out);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t c = 0; c < g.cin; ++c) sum += out[c];
        psum[pix] = sum;
      }

  const int64_t chunk = cout_chunk(g.n * g.oh, g.cout, 1);
  const int64_t n_chunks = (g.cout + chunk - 1) / chunk;
#pragma omp parallel if (g.n * g.oh * g.ow * g.cout * g.kh * g.kw * g.cin > 32768)
  {
    std::vector<float> s(static_cast<size_t>(chunk));
#pragma omp for collapse(3) schedule(static)
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t i = 0; i < g.oh; ++i)
        for (int64_t ch = 0; ch < n_chunks; ++ch) {
          const TapRange ry = in_image_taps(g.y, i, g.h);
          const int64_t co0 = ch * chunk, nco = std::min(g.cout, co0 + chunk) - co0;
          for (int64_t j = 0; j < g.ow; ++j) {
            const TapRange& rx = g.cols[j];
            double tap_sum = 0.0;
            for (int64_t ky = ry.lo; ky < ry.hi; ++ky)
              for (int64_t kx = rx.lo; kx < rx.hi; ++kx)
                tap_sum += psum[(n * g.h + ry.start + ky * g.y.dilation) * g.w + rx.start +
                                kx * g.x.dilation];
            for (int64_t k = 0; k < nco; ++k) {
              const int64_t co = co0 + k;
              float lanes[32] = {};
              for (int64_t ky = ry.lo; ky < ry.hi; ++ky)
                for (int64_t kx = rx.lo; kx < rx.hi; ++kx) {
                  const int64_t pix = (n * g.h + ry.start + ky * g.y.dilation) * g.w + rx.start +
                                      kx * g.x.dilation;
                  const float* xv = xs.data() + pix * cpad;
                  const uint32_t* wv = weights + ((co * g.kh + ky) * g.kw + kx) * g.words32;
                  for (int64_t w = 0; w < g.words32; ++w) {
                    const uint32_t word = wv[w];
                    const float* xw = xv + 32 * w;
#pragma omp simd
                    for (int b = 0; b < 32; ++b) lanes[b] += ((word >> b) & 1u) ? xw[b] : 0.0f;
                  }
                }
              float selected = 0.0f;
              for (int b = 0; b < 32; ++b) selected += lanes[b];
              s[k] = static_cast<float>(2.0 * selected - tap_sum);
            }
            const float b = beta ? beta[(n * g.oh + i) * g.ow + j] : 1.0f;
            write_output(dst.pixel(n, i, j), s.data(), co0, nco, b, p);
          }
        }
  }
}

// ---- XNOR / AND: packed bits and popcount ----------------------------------------------------
// The input is binarized once per call into "strips": for every source row y and output column
// j, the bits of the KW taps of that column's window (tap kx's Cin bits at [kx*Cin, (kx+1)*Cin)),
// in the order of the weights. One window row then costs ceil(KW*Cin/64) words per output
// channel, so thin inputs (Cin = 3) do not pay a word per tap, and strips are shared by the KH
// output rows that read them. Out-of-image taps hold 0 bits, which is all AND needs; XNOR also
// masks them out of the mismatch count in border columns (rows outside the image are skipped).
// When the whole window has at most 64 bits (KH*KW*Cin <= 64: 3x3 windows of up to 7 channels),
// the KH strips of an output pixel are joined into one window word and each output channel
// costs one popcount (window_conv); otherwise popcount_conv counts strip by strip.

constexpr int kPopPx = 4;  // output pixels per register block (4 x 32 uint64 = 16 registers)

// ORs the low `nbits` bits of `v` (higher bits 0) into a bit string at bit offset `pos`.
inline void put_bits(uint64_t* dst, uint64_t pos, uint64_t v, uint64_t nbits) {
  const uint64_t word = pos >> 6, shift = pos & 63;
  dst[word] |= v << shift;
  if (shift != 0 && shift + nbits > 64) dst[word + 1] |= v >> (64 - shift);
}

inline int64_t strip_words(const Geometry& g) { return (g.kw * g.cin + 63) / 64; }

// The weight bits of output channel co, window row ky, in strip order (channels >= Cin dropped):
// strip_words(g) words at out, which must be zero.
void weight_strip(const uint32_t* weights, const Geometry& g, int64_t co, int64_t ky,
                  uint64_t* out) {
  const uint32_t* wsrc = weights + (co * g.kh * g.kw + ky * g.kw) * g.words32;
  if (g.cin % 32 == 0) {  // the source words land on 32-bit boundaries: pair them up
    const int64_t n32 = g.kw * g.words32;
    for (int64_t h = 0; 2 * h + 1 < n32; ++h)
      out[h] = wsrc[2 * h] | (static_cast<uint64_t>(wsrc[2 * h + 1]) << 32);
    if (n32 % 2) out[n32 / 2] = wsrc[n32 - 1];
    return;
  }
  for (int64_t kx = 0; kx < g.kw; ++kx)
    for (int64_t w = 0; w < g.words32; ++w) {
      const int64_t valid = std::min<int64_t>(32, g.cin - 32 * w);
      put_bits(out, static_cast<uint64_t>(kx * g.cin + 32 * w),
               wsrc[kx * g.words32 + w] & ((uint64_t{1} << valid) - 1),
               static_cast<uint64_t>(valid));
    }
}

// Weight strips blocked by kCo output channels (innermost) so that a block is read
// sequentially: [cout / kCo][kh][words][kCo], padding output channels 0.
std::vector<uint64_t> pack_strip_weights(const uint32_t* weights, const Geometry& g) {
  const int64_t words = strip_words(g);
  const int64_t co_blocks = (g.cout + kCo - 1) / kCo;
  std::vector<uint64_t> wb(static_cast<size_t>(co_blocks * g.kh * words * kCo), 0);
  std::vector<uint64_t> strip(static_cast<size_t>(words));
  for (int64_t co = 0; co < g.cout; ++co)
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      std::fill(strip.begin(), strip.end(), uint64_t{0});
      weight_strip(weights, g, co, ky, strip.data());
      for (int64_t w = 0; w < words; ++w)
        wb[static_cast<size_t>((((co / kCo) * g.kh + ky) * words + w) * kCo + co % kCo)] =
            strip[w];
    }
  return wb;
}

// One word of KH*KW*Cin <= 64 bits per output channel: window row ky at bits [ky*KW*Cin, ...).
template <class T>
std::vector<T> pack_window_weights(const uint32_t* weights, const Geometry& g) {
  std::vector<T> ww(static_cast<size_t>(g.cout));
  for (int64_t co = 0; co < g.cout; ++co) {
    uint64_t word = 0;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      uint64_t row = 0;
      weight_strip(weights, g, co, ky, &row);
      word |= row << (ky * g.kw * g.cin);
    }
    ww[static_cast<size_t>(co)] = static_cast<T>(word);
  }
  return ww;
}

// XNOR bookkeeping of the left and right borders: the in-image bits of each column's window row
// (strip_words(g) words per column), and the run [j_in, j_out) of columns whose window row lies
// inside the image and needs no mask.
struct ColumnMasks {
  std::vector<uint64_t> bits;
  int64_t j_in = 0, j_out = 0;
};

ColumnMasks column_masks(const Geometry& g) {
  const int64_t words = strip_words(g), in_words = (g.cin + 63) / 64;
  ColumnMasks m;
  m.bits.assign(static_cast<size_t>(g.ow * words), 0);
  m.j_in = m.j_out = g.ow;
  for (int64_t j = 0; j < g.ow; ++j) {
    const TapRange& rx = g.cols[j];
    if (rx.lo == 0 && rx.hi == g.kw) {
      if (m.j_in == g.ow) m.j_in = j;
      m.j_out = j + 1;
    }
    for (int64_t kx = rx.lo; kx < rx.hi; ++kx)
      for (int64_t w = 0; w < in_words; ++w) {
        const int64_t nb = std::min<int64_t>(64, g.cin - 64 * w);
        put_bits(m.bits.data() + j * words, static_cast<uint64_t>(kx * g.cin + 64 * w),
                 nb == 64 ? ~uint64_t{0} : (uint64_t{1} << nb) - 1, static_cast<uint64_t>(nb));
      }
  }
  return m;
}

// The strips of the source, (n, h, ow, strip_words(g)) words: binarize each source row (1 where
// X' >= 0 for AND, where X' is not negative for XNOR: x^ = +1 unless X' < 0; the two differ only
// for NaN), then gather the window row of every output column. Channels >= Cin and out-of-image
// taps stay 0.
template <bool kXnor>
std::vector<uint64_t> binarized_strips(const TensorView& src, const Geometry& g,
                                       const InputTerms& in) {
  const int64_t words = strip_words(g), in_words = (g.cin + 63) / 64;
  std::vector<uint64_t> strips(static_cast<size_t>(g.n * g.h * g.ow * words));
  auto input_bit = [](float u) -> uint64_t { return kXnor ? !(u < 0.0f) : (u >= 0.0f); };
  detail::with_channel_count(g.cin, [&](auto kc) {
    constexpr int64_t K = decltype(kc)::value;
#pragma omp parallel if (g.n * g.h * g.w * g.cin > 4096)
    {
      std::vector<float> xs(static_cast<size_t>(g.w * g.cin));
      std::vector<uint64_t> row_bits(static_cast<size_t>(g.w * in_words));
#pragma omp for collapse(2) schedule(static)
      for (int64_t n = 0; n < g.n; ++n)
        for (int64_t y = 0; y < g.h; ++y) {
          scaled_run(src, in, n, y, 0, g.w, xs.data());
          for (int64_t x = 0; x < g.w; ++x) {
            const float* px = xs.data() + x * g.cin;
            uint64_t* out = row_bits.data() + x * in_words;
            if constexpr (K > 0) {  // one word, straight code
              uint64_t v = 0;
              for (int64_t b = 0; b < K; ++b) v |= input_bit(px[b]) << b;
              out[0] = v;
              continue;
            }
            for (int64_t w = 0; w < in_words; ++w) {
              const float* xw = px + 64 * w;
              const int64_t valid = std::min<int64_t>(64, g.cin - 64 * w);
              uint64_t v = 0;
#pragma omp simd reduction(| : v)
              for (int64_t b = 0; b < valid; ++b) v |= input_bit(xw[b]) << b;
              out[w] = v;
            }
          }
          uint64_t* strip_row = strips.data() + (n * g.h + y) * g.ow * words;
          if (words == 1) {  // the whole window row fits one word (KW*Cin <= 64)
            for (int64_t j = 0; j < g.ow; ++j) {
              const TapRange& rx = g.cols[j];
              uint64_t v = 0;
              for (int64_t kx = rx.lo; kx < rx.hi; ++kx)
                v |= row_bits[rx.start + kx * g.x.dilation] << (kx * g.cin);
              strip_row[j] = v;
            }
            continue;
          }
          for (int64_t j = 0; j < g.ow; ++j) {
            const TapRange& rx = g.cols[j];
            uint64_t* out = strip_row + j * words;
            std::fill(out, out + words, uint64_t{0});
            for (int64_t kx = rx.lo; kx < rx.hi; ++kx) {
              const uint64_t* px = row_bits.data() + (rx.start + kx * g.x.dilation) * in_words;
              if (g.cin % 64 == 0) {  // whole words
                std::copy(px, px + in_words, out + kx * in_words);
                continue;
              }
              for (int64_t w = 0; w < in_words; ++w)
                put_bits(out, static_cast<uint64_t>(kx * g.cin + 64 * w), px[w],
                         static_cast<uint64_t>(std::min<int64_t>(64, g.cin - 64 * w)));
            }
          }
        }
    }
  });
  return strips;
}

struct PopConv {
  const uint64_t* strips;  // (n, h, ow, words)
  const uint64_t* masks;   // (ow, words): in-image bits of each column's window row (XNOR)
  const uint64_t* wb;      // weight bits [cout / kCo][kh][words][kCo]
  int64_t h, ow, words, dy;
  int64_t kh_words;        // words per output channel of wb
};

// Bit counts of output pixels j0 .. j0+PX-1 of one row (window rows ky in ry) against output
// channels [co0, co0 + kCo): mismatches (XNOR, within the mask when MASKED) or AND matches.
template <bool kXnor, bool kMasked, int PX>
void pop_block(const PopConv& c, int64_t n, const TapRange& ry, int64_t j0, int64_t co0,
               int64_t (&out)[kPopPx][kCo]) {
  uint64_t a[PX][kCo] = {};
  const int64_t words = c.words;
  const uint64_t* mw = kMasked ? c.masks + j0 * words : nullptr;
  for (int64_t ky = ry.lo; ky < ry.hi; ++ky) {
    const uint64_t* xw = c.strips + ((n * c.h + ry.start + ky * c.dy) * c.ow + j0) * words;
    const uint64_t* wk = c.wb + ((co0 / kCo) * c.kh_words + ky * words) * kCo;
    for (int64_t w = 0; w < words; ++w) {
      const uint64_t* wv = wk + w * kCo;
      for (int p = 0; p < PX; ++p) {
        const uint64_t xv = xw[p * words + w];
        const uint64_t m = kMasked ? mw[p * words + w] : ~uint64_t{0};
#pragma omp simd
        for (int k = 0; k < kCo; ++k) {
          const uint64_t bits = kXnor ? ((xv ^ wv[k]) & m) : (xv & wv[k]);
          a[p][k] += static_cast<uint64_t>(__builtin_popcountll(bits));
        }
      }
    }
  }
  for (int p = 0; p < PX; ++p)
    for (int k = 0; k < kCo; ++k) out[p][k] = static_cast<int64_t>(a[p][k]);
}

template <bool kXnor, bool kMasked>
void pop_block_any(int64_t px, const PopConv& c, int64_t n, const TapRange& ry, int64_t j0,
                   int64_t co0, int64_t (&out)[kPopPx][kCo]) {
  switch (px) {
    case 4: return pop_block<kXnor, kMasked, 4>(c, n, ry, j0, co0, out);
    case 3: return pop_block<kXnor, kMasked, 3>(c, n, ry, j0, co0, out);
    case 2: return pop_block<kXnor, kMasked, 2>(c, n, ry, j0, co0, out);
    default: return pop_block<kXnor, kMasked, 1>(c, n, ry, j0, co0, out);
  }
}

// wb: pack_strip_weights; masks: column_masks.
template <bool kXnor>
void popcount_conv(const TensorView& src, const TensorView& dst, const uint64_t* wb,
                   const ColumnMasks& masks, const Geometry& g, const InputTerms& in,
                   const BinaryConvParams& p, const float* beta) {
  const std::vector<uint64_t> strips = binarized_strips<kXnor>(src, g, in);
  PopConv c{};
  c.strips = strips.data();
  c.masks = masks.bits.data();
  c.wb = wb;
  c.h = g.h;
  c.ow = g.ow;
  c.words = strip_words(g);
  c.dy = g.y.dilation;
  c.kh_words = g.kh * c.words;
  const int64_t j_in = masks.j_in, j_out = masks.j_out;

  const int64_t chunk = cout_chunk(g.n * g.oh, g.cout, kCo);
  const int64_t n_chunks = (g.cout + chunk - 1) / chunk;
#pragma omp parallel for collapse(3) schedule(static) if (g.n * g.oh * g.ow * g.cout > 4096)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t i = 0; i < g.oh; ++i)
      for (int64_t ch = 0; ch < n_chunks; ++ch) {
        const TapRange ry = in_image_taps(g.y, i, g.h);
        const int64_t co_end = std::min(g.cout, (ch + 1) * chunk);
        int64_t counts[kPopPx][kCo];
        for (int64_t co0 = ch * chunk; co0 < co_end; co0 += kCo) {
          const int64_t nco = std::min<int64_t>(kCo, co_end - co0);
          // Output pixels [j0, j0 + size) of this row: bit counts, then the outputs.
          auto run = [&](int64_t j0, int64_t size, bool masked) {
            if (kXnor && masked) pop_block_any<kXnor, true>(size, c, n, ry, j0, co0, counts);
            else pop_block_any<kXnor, false>(size, c, n, ry, j0, co0, counts);
            for (int64_t q = 0; q < size; ++q) {
              int64_t* s = counts[q];
              if (kXnor) {  // sum of x^*w^ over the valid bits = valid - 2 * mismatches
                const TapRange& rx = g.cols[j0 + q];
                const int64_t total = (ry.hi - ry.lo) * (rx.hi - rx.lo) * g.cin;
                for (int64_t k = 0; k < nco; ++k) s[k] = total - 2 * s[k];
              }
              const float b = beta ? beta[(n * g.oh + i) * g.ow + j0 + q] : 1.0f;
              write_output(dst.pixel(n, i, j0 + q), s, co0, nco, b, p);
            }
          };
          even_blocks(0, j_in, kPopPx, [&](int64_t j0, int64_t size) { run(j0, size, true); });
          even_blocks(j_in, j_out - j_in, kPopPx,
                      [&](int64_t j0, int64_t size) { run(j0, size, false); });
          even_blocks(j_out, g.ow - j_out, kPopPx,
                      [&](int64_t j0, int64_t size) { run(j0, size, true); });
        }
      }
}

// Windows of at most 64 bits (T: uint32_t up to 32 bits, else uint64_t): per output pixel the KH
// strips and (XNOR) column masks of the in-image window rows are joined into one word each, and
// every output channel is one popcount, vectorized across the output channels.
// ww: pack_window_weights<T>; masks: column_masks.
template <bool kXnor, class T>
void window_conv(const TensorView& src, const TensorView& dst, const T* ww,
                 const ColumnMasks& masks, const Geometry& g, const InputTerms& in,
                 const BinaryConvParams& p, const float* beta) {
  const std::vector<uint64_t> strips = binarized_strips<kXnor>(src, g, in);
  const int64_t row_bits = g.kw * g.cin;
  const float* os = p.out_scale;
  const float* ob = p.out_bias;
#pragma omp parallel for collapse(2) schedule(static) if (g.n * g.oh * g.ow * g.cout > 4096)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t i = 0; i < g.oh; ++i) {
      const TapRange ry = in_image_taps(g.y, i, g.h);
      for (int64_t j = 0; j < g.ow; ++j) {
        uint64_t xw = 0, mw = 0;
        for (int64_t ky = ry.lo; ky < ry.hi; ++ky) {
          xw |= strips[static_cast<size_t>((n * g.h + ry.start + ky * g.y.dilation) * g.ow + j)]
                << (ky * row_bits);
          if (kXnor) mw |= masks.bits[static_cast<size_t>(j)] << (ky * row_bits);
        }
        const T x = static_cast<T>(xw), m = static_cast<T>(mw);
        // XNOR: sum of x^*w^ over the in-image bits = in-image bits - 2 * mismatches.
        const int32_t valid = kXnor ? __builtin_popcountll(mw) : 0;
        const float b = beta ? beta[(n * g.oh + i) * g.ow + j] : 1.0f;
        float* pd = dst.pixel(n, i, j);
#pragma omp simd
        for (int64_t co = 0; co < g.cout; ++co) {
          const T bits = kXnor ? static_cast<T>((x ^ ww[co]) & m) : static_cast<T>(x & ww[co]);
          const int32_t ones = sizeof(T) == 4 ? __builtin_popcount(static_cast<uint32_t>(bits))
                                              : __builtin_popcountll(bits);
          const int32_t s = kXnor ? valid - 2 * ones : ones;
          pd[co] = static_cast<float>(s) * os[co] * b + ob[co];
        }
      }
    }
}

}  // namespace

// ---- BinaryConvolution ----------------------------------------------------------------------

struct BinaryConvolution::Impl {
  enum class Path { fma, lookup, direct, strips, window32, window64 };
  Geometry g;
  InputTerms in;
  std::vector<float> out_scale, out_bias, in_scale, in_bias;  // explicit 1 / 0 where absent
  BinaryConvParams p{};  // pointing at the vectors above
  Path path = Path::fma;
  // The weights rearranged for `path` (one of these is filled).
  std::vector<float> float_weights;        // fma
  std::vector<int32_t> lookup_weights;     // lookup
  std::vector<uint32_t> words;             // direct: the original layout
  std::vector<uint64_t> strip_weights;     // strips
  std::vector<uint32_t> window32_weights;  // window32
  std::vector<uint64_t> window64_weights;  // window64
  ColumnMasks masks;                       // strips and window paths with XNOR
};

BinaryConvolution::BinaryConvolution(const uint32_t* weights, const ImageShape& src,
                                     const ImageShape& dst, const WindowAxis& y,
                                     const WindowAxis& x, const BinaryConvParams& p)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  Geometry& g = m.g;
  g.n = src.n;
  g.h = src.h;
  g.w = src.w;
  g.cin = src.c;
  g.oh = dst.h;
  g.ow = dst.w;
  g.cout = dst.c;
  g.kh = y.kernel;
  g.kw = x.kernel;
  g.words32 = (g.cin + 31) / 32;
  g.y = y;
  g.x = x;
  g.cols.resize(g.ow);
  for (int64_t j = 0; j < g.ow; ++j) g.cols[j] = in_image_taps(x, j, g.w);

  auto terms = [](const float* v, int64_t count, float absent) {
    return v ? std::vector<float>(v, v + count) : std::vector<float>(count, absent);
  };
  m.out_scale = terms(p.out_scale, g.cout, 1.0f);
  m.out_bias = terms(p.out_bias, g.cout, 0.0f);
  m.in_scale = terms(p.in_scale, g.cin, 1.0f);
  m.in_bias = terms(p.in_bias, g.cin, 0.0f);
  m.p = {p.type, p.beta_scaling, m.out_scale.data(), m.out_bias.data(), m.in_scale.data(),
         m.in_bias.data()};
  m.in.bias.resize(static_cast<size_t>(g.w * g.cin));
  m.in.scale.resize(m.in.bias.size());
  for (size_t i = 0; i < m.in.bias.size(); ++i) {
    m.in.bias[i] = m.in_bias[i % static_cast<size_t>(g.cin)];
    m.in.scale[i] = m.in_scale[i % static_cast<size_t>(g.cin)];
  }

  using Path = Impl::Path;
  const int64_t window_bits = g.kh * g.kw * g.cin;
  if (p.type == BinaryConvType::binary_weights) {
#ifdef __AVX512F__
    // Faster than both others at any size, also with one output pixel (measured 3x the direct
    // way for a 4096 -> 4096 binary fully connected layer).
    m.path = Path::lookup;
    m.lookup_weights = pack_lookup_weights(weights, g);
#else
    // Expanding the weights to floats pays off once they are reused over enough pixels.
    if (g.n * g.oh * g.ow >= kFloatMinPixels) {
      m.path = Path::fma;
      m.float_weights = pack_float_weights(weights, g);
    } else {
      m.path = Path::direct;
      m.words.assign(weights, weights + g.cout * g.kh * g.kw * g.words32);
    }
#endif
    return;
  }
  if (p.type == BinaryConvType::xnor) m.masks = column_masks(g);
  if (window_bits <= 32) {
    m.path = Path::window32;
    m.window32_weights = pack_window_weights<uint32_t>(weights, g);
  } else if (window_bits <= 64) {
    m.path = Path::window64;
    m.window64_weights = pack_window_weights<uint64_t>(weights, g);
  } else {
    m.path = Path::strips;
    m.strip_weights = pack_strip_weights(weights, g);
  }
}

BinaryConvolution::~BinaryConvolution() = default;
BinaryConvolution::BinaryConvolution(BinaryConvolution&&) noexcept = default;
BinaryConvolution& BinaryConvolution::operator=(BinaryConvolution&&) noexcept = default;

void BinaryConvolution::run(const TensorView& src, const TensorView& dst) const {
  const Impl& m = *impl_;
  const Geometry& g = m.g;
  std::vector<float> beta;
  if (m.p.beta_scaling) beta = beta_image(src, g, m.in);
  const float* bp = m.p.beta_scaling ? beta.data() : nullptr;
  const bool xnor = m.p.type == BinaryConvType::xnor;
  using Path = Impl::Path;
  switch (m.path) {
    case Path::fma:
      return binary_weights_fma(src, dst, m.float_weights.data(), g, m.in, m.p, bp);
    case Path::lookup:
#ifdef __AVX512F__
      return binary_weights_lookup(src, dst, m.lookup_weights.data(), g, m.in, m.p, bp);
#else
      break;  // not chosen without AVX-512
#endif
    case Path::direct: return binary_weights_direct(src, dst, m.words.data(), g, m.in, m.p, bp);
    case Path::strips: {
      const uint64_t* wb = m.strip_weights.data();
      if (xnor) return popcount_conv<true>(src, dst, wb, m.masks, g, m.in, m.p, bp);
      return popcount_conv<false>(src, dst, wb, m.masks, g, m.in, m.p, bp);
    }
    case Path::window32: {
      const uint32_t* ww = m.window32_weights.data();
      if (xnor) return window_conv<true>(src, dst, ww, m.masks, g, m.in, m.p, bp);
      return window_conv<false>(src, dst, ww, m.masks, g, m.in, m.p, bp);
    }
    case Path::window64: {
      const uint64_t* ww = m.window64_weights.data();
      if (xnor) return window_conv<true>(src, dst, ww, m.masks, g, m.in, m.p, bp);
      return window_conv<false>(src, dst, ww, m.masks, g, m.in, m.p, bp);
    }
  }
}

void binary_convolution(const TensorView& src, const TensorView& dst, const uint32_t* weights,
                        const WindowAxis& y, const WindowAxis& x, const BinaryConvParams& p) {
  BinaryConvolution(weights, src.shape, dst.shape, y, x, p).run(src, dst);
}

}  // namespace MPSNN_ISA_NAMESPACE::own
