// Binary convolution (nodes.md 4.5): binary-weight, XNOR and AND variants with input/output
// scale and bias terms and the optional XNOR-Net beta image.
// oneDNN 3.2 has no binarized convolution: it cannot take 1-bit weights, binarize its input, or
// skip out-of-image taps instead of reading a padded zero (which binarization would turn into
// +1). The weights are rearranged once, when the plan is made (BinaryConvolution): binary
// weights become +-1 float blocks for register-blocked FMA, or stay bits when there are only a
// few output pixels (fully connected); XNOR/AND weights become bit strips, and each call
// binarizes its input once and counts bits with popcount.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "backends/cpu/kernels/own_kernels.h"

namespace mpsnn::cpu::own {
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
constexpr int kFmaCo = 64;             // output channels per register block (float path)
constexpr int64_t kFmaMinPixels = 16;  // fewer output pixels: binary_weights_direct

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

// ---- binary weights, many output pixels: +-1 float weights and FMA ---------------------------

struct FloatConv {
  const float* xp;  // zero-padded X', dense (n, hp, wp, cin); padded row 0 = source row -pad
  int64_t hp, wp, cin;
  const float* wf;  // +-1 weights [cout / kFmaCo][kh][kw][cin][kFmaCo]
  int64_t block_stride;  // floats per output channel block of wf
  int64_t kh, kw, sx, dy, dx;
  bool merged;      // dx == 1 and one channel block: (kx, ci) is one contiguous run
};

// Adds to acc (PX output pixels x NV*16 output channels, pixel stride kFmaCo; starting from 0
// when `first`) the products of the input channel block [ci0, ci0 + ci_n) over all taps.
// xs[p]: padded input of pixel p at (its first tap, ci0), for any pixels (they may span rows);
// w0: weights at (tap 0, ci0) of the output channel block. Accumulates in registers.
template <int PX, int NV>
void fma_block(const FloatConv& f, const float* const* xs, const float* w0, int64_t ci_n,
               bool first, float* acc) {
  constexpr int kW = NV * kVec;
  float a[PX][kW];
  for (int p = 0; p < PX; ++p)
    for (int v = 0; v < kW; ++v) a[p][v] = first ? 0.0f : acc[p * kFmaCo + v];
  int64_t off[PX];  // pixel p relative to pixel 0
  for (int p = 0; p < PX; ++p) off[p] = xs[p] - xs[0];
  const int64_t kx_n = f.merged ? 1 : f.kw;
  const int64_t inner = f.merged ? f.kw * f.cin : ci_n;
  for (int64_t ky = 0; ky < f.kh; ++ky)
    for (int64_t kx = 0; kx < kx_n; ++kx) {
      const float* xr = xs[0] + (ky * f.dy * f.wp + kx * f.dx) * f.cin;
      const float* wt = w0 + (ky * f.kw + kx) * f.cin * kFmaCo;
      for (int64_t r = 0; r < inner; ++r) {
        const float* w = wt + r * kFmaCo;
        for (int p = 0; p < PX; ++p) {
          const float xv = xr[off[p] + r];
#pragma omp simd
          for (int v = 0; v < kW; ++v) a[p][v] += xv * w[v];
        }
      }
    }
  for (int p = 0; p < PX; ++p)
    for (int v = 0; v < kW; ++v) acc[p * kFmaCo + v] = a[p][v];
}

// Most pixels per block for NV accumulator vectors per pixel: 24 accumulators, at most 12 pixels.
constexpr int fma_max_px(int nv) { return 24 / nv < 12 ? 24 / nv : 12; }

template <int NV, int PX = fma_max_px(NV)>
void fma_block_any(int64_t px, const FloatConv& f, const float* const* xs, const float* w0,
                   int64_t ci_n, bool first, float* acc) {
  if constexpr (PX > 1) {
    if (px < PX) return fma_block_any<NV, PX - 1>(px, f, xs, w0, ci_n, first, acc);
  }
  fma_block<PX, NV>(f, xs, w0, ci_n, first, acc);
}

// +-1 weights, blocked by kFmaCo output channels (innermost) so that one block's weights are one
// contiguous, sequentially read run (a plain [tap][ci][cout] layout strides by Cout and thrashes a
// few L1 sets): [cout / kFmaCo][kh][kw][cin][kFmaCo]. Padding channels of the last block are 0.
std::vector<float> pack_float_weights(const uint32_t* weights, const Geometry& g) {
  const int64_t taps = g.kh * g.kw;
  const int64_t co_blocks = (g.cout + kFmaCo - 1) / kFmaCo;
  const int64_t block_stride = taps * g.cin * kFmaCo;
  std::vector<float> wf(static_cast<size_t>(co_blocks * block_stride));
#pragma omp parallel for collapse(2) schedule(static) if (wf.size() > 32768)
  for (int64_t ob = 0; ob < co_blocks; ++ob)
    for (int64_t t = 0; t < taps; ++t) {
      uint32_t words[kFmaCo];
      float valid[kFmaCo];
      for (int64_t w = 0; w < g.words32; ++w) {
        for (int64_t k = 0; k < kFmaCo; ++k) {
          const int64_t co = ob * kFmaCo + k;
          valid[k] = co < g.cout ? 1.0f : 0.0f;
          words[k] = co < g.cout ? weights[(co * taps + t) * g.words32 + w] : 0u;
        }
        const int64_t nb = std::min<int64_t>(32, g.cin - 32 * w);
        for (int64_t b = 0; b < nb; ++b) {
          float* out = wf.data() + ob * block_stride + (t * g.cin + 32 * w + b) * kFmaCo;
#pragma omp simd
          for (int64_t k = 0; k < kFmaCo; ++k)
            out[k] = valid[k] * (((words[k] >> b) & 1u) ? 1.0f : -1.0f);
        }
      }
    }
  return wf;
}

// wf: pack_float_weights.
void binary_weights_fma(const TensorView& src, const TensorView& dst, const float* wf,
                        const Geometry& g, const InputTerms& in, const BinaryConvParams& p,
                        const float* beta) {
  FloatConv f{};
  f.cin = g.cin;
  f.kh = g.kh;
  f.kw = g.kw;
  f.sx = g.x.stride;
  f.dy = g.y.dilation;
  f.dx = g.x.dilation;
  f.hp = (g.oh - 1) * g.y.stride + (g.kh - 1) * f.dy + 1;
  f.wp = (g.ow - 1) * f.sx + (g.kw - 1) * f.dx + 1;
  const int64_t taps = g.kh * g.kw;
  f.block_stride = taps * g.cin * kFmaCo;

  // Long inner loops matter more than L1 residency (measured: blocking the input channels to
  // keep a block's weights in L1 cost 15 %), so input channels are split only when one output
  // channel block's weights (all taps) would not fit the 1 MiB L2 they stream from.
  const int64_t l2_channels = std::max<int64_t>(1, (int64_t{1} << 20) / (taps * kFmaCo * 4));
  const int64_t cb = l2_channels >= g.cin ? g.cin : std::max<int64_t>(8, l2_channels / 8 * 8);
  f.merged = cb == g.cin && f.dx == 1;
  f.wf = wf;

  // X' with the window padding materialized as zeros: a zero times +-1 contributes nothing,
  // which is exactly "out-of-image taps contribute nothing" for this variant.
  std::vector<float> xp(static_cast<size_t>(g.n * f.hp * f.wp * g.cin));
  const int64_t py = g.y.pad_before, px = g.x.pad_before;
#pragma omp parallel for collapse(2) schedule(static) if (xp.size() > 8192)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t r = 0; r < f.hp; ++r) {
      float* row = xp.data() + (n * f.hp + r) * f.wp * g.cin;
      const int64_t sy = r - py;
      // Padded column c holds source column c - px; [x0, x1) are the source columns present.
      const int64_t x0 = std::max<int64_t>(0, -px), x1 = std::min(g.w, f.wp - px);
      if (sy < 0 || sy >= g.h || x1 <= x0) {
        std::fill(row, row + f.wp * g.cin, 0.0f);
        continue;
      }
      std::fill(row, row + (x0 + px) * g.cin, 0.0f);
      scaled_run(src, in, n, sy, x0, x1 - x0, row + (x0 + px) * g.cin);
      std::fill(row + (x1 + px) * g.cin, row + f.wp * g.cin, 0.0f);
    }
  f.xp = xp.data();

  // Tasks are groups of whole output rows, so that small images still fill register blocks
  // (a 7-pixel row alone would leave them half empty): a group has at least 24 pixels.
  const int64_t rows_per_task = std::min(g.oh, (24 + g.ow - 1) / g.ow);
  const int64_t row_groups = (g.oh + rows_per_task - 1) / rows_per_task;
  const int64_t chunk = cout_chunk(g.n * row_groups, g.cout, kFmaCo);
  const int64_t n_chunks = (g.cout + chunk - 1) / chunk;
#pragma omp parallel if (g.n * g.oh * g.ow * g.cout > 4096)
  {
    std::vector<float> acc(static_cast<size_t>(rows_per_task * g.ow * kFmaCo));
#pragma omp for collapse(3) schedule(static)
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t rg = 0; rg < row_groups; ++rg)
        for (int64_t ch = 0; ch < n_chunks; ++ch) {
          const int64_t i0 = rg * rows_per_task;
          const int64_t pixels = (std::min(g.oh, i0 + rows_per_task) - i0) * g.ow;
          const int64_t co_end = std::min(g.cout, (ch + 1) * chunk);
          for (int64_t co0 = ch * chunk; co0 < co_end; co0 += kFmaCo) {
            const int64_t nco = std::min<int64_t>(kFmaCo, co_end - co0);
            for (int64_t ci0 = 0; ci0 < g.cin; ci0 += cb) {
              const int64_t ci_n = std::min(cb, g.cin - ci0);
              const float* w0 = f.wf + (co0 / kFmaCo) * f.block_stride + ci0 * kFmaCo;
              auto blocks = [&](auto nv) {
                constexpr int NV = decltype(nv)::value;
                even_blocks(0, pixels, fma_max_px(NV), [&](int64_t q0, int64_t size) {
                  const float* xs[fma_max_px(NV)];
                  int64_t i = i0 + q0 / g.ow, j = q0 % g.ow;
                  for (int64_t q = 0; q < size; ++q) {
                    xs[q] = f.xp + ((n * f.hp + i * g.y.stride) * f.wp + j * f.sx) * g.cin + ci0;
                    if (++j == g.ow) j = 0, ++i;
                  }
                  fma_block_any<NV>(size, f, xs, w0, ci_n, ci0 == 0, acc.data() + q0 * kFmaCo);
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
              write_output(dst.pixel(n, i, j), acc.data() + q * kFmaCo, co0, nco, b, p);
              if (++j == g.ow) j = 0, ++i;
            }
          }
        }
  }
}

// ---- binary weights, few output pixels: straight from the bits -------------------------------
// With one output pixel per image (the fully connected variant) every weight is used once, so
// expanding them to floats would cost more than the convolution; instead each 32-bit word
// selects the channels it adds: sum_c X'*w = 2 * sum_{bit set} X' - sum_c X'.

void binary_weights_direct(const TensorView& src, const TensorView& dst, const uint32_t* weights,
                           const Geometry& g, const InputTerms& in, const BinaryConvParams& p,
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
  enum class Path { fma, direct, strips, window32, window64 };
  Geometry g;
  InputTerms in;
  std::vector<float> out_scale, out_bias, in_scale, in_bias;  // explicit 1 / 0 where absent
  BinaryConvParams p{};  // pointing at the vectors above
  Path path = Path::fma;
  // The weights rearranged for `path` (one of these is filled).
  std::vector<float> float_weights;        // fma
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
    // Expanding the weights to floats pays off once they are reused over enough pixels.
    if (g.n * g.oh * g.ow >= kFmaMinPixels) {
      m.path = Path::fma;
      m.float_weights = pack_float_weights(weights, g);
    } else {
      m.path = Path::direct;
      m.words.assign(weights, weights + g.cout * g.kh * g.kw * g.words32);
    }
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

}  // namespace mpsnn::cpu::own
