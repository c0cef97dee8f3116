// Pooling on oneDNN (max, dilated max, average) and our own L2-norm pooling.
// MPS edge modes map onto oneDNN algorithms: clamp max = pooling_max (padding never wins);
// clamp average = avg_exclude_padding (divide by in-image taps); zero-edge average and
// excludeEdges = avg_include_padding (divide by the window size, every tap lies in the padded
// area by construction). Zero-edge max, where padded zeros can win, and clamp average with a
// zero-pad border pool over an explicitly zero-padded copy of the source.
// oneDNN refuses (average) or mis-handles (max: -FLT_MAX) windows without an in-image tap, which
// padding policies such as sizeFull | alignTopLeft produce (a pad at least the dilated kernel
// extent), and dilated windows whose taps step over a small image; those rare geometries run
// DirectPoolingKernel, a plain loop over each window's taps. oneDNN's max also starts from -FLT_MAX and skips NaN: a source holding NaN or
// -inf is max-pooled by DirectPoolingKernel too (MaxPoolingKernel), so that the maximum is the
// same NaN-propagating one as the indexed kernel's (nodes.md §5.3; §3.1 for the project's min/max).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/own_gradients.h"
#include "backends/cpu/kernels/own_kernels.h"
#include "backends/cpu/register.h"

namespace MPSNN_ISA_NAMESPACE {

namespace {

class PoolingKernel final : public PrimitiveKernel {
 public:
  explicit PoolingKernel(const KernelSpec& spec) {
    const auto& a = spec.attrs_as<PoolingAttrs>();
    const ImageShape& src = spec.input(0);
    WindowAxis y = spec.geom.y, x = spec.geom.x;
    dnnl::algorithm alg;
    int64_t border_y = 0, border_x = 0;  // explicit zero border around the copied source
    const bool is_max = a.mode == PoolingMode::max || a.mode == PoolingMode::dilated_max;
    if (is_max) {
      alg = dnnl::algorithm::pooling_max;
      if (spec.geom.edge_mode == EdgeMode::zero) {
        border_y = std::max<int64_t>({y.pad_before, y.pad_after, 0});
        border_x = std::max<int64_t>({x.pad_before, x.pad_after, 0});
      }
    } else if (spec.geom.edge_mode == EdgeMode::zero || spec.geom.exclude_edges) {
      alg = dnnl::algorithm::pooling_avg_include_padding;
    } else {
      alg = dnnl::algorithm::pooling_avg_exclude_padding;
      border_y = std::min(a.zero_pad_size_y, std::max<int64_t>({y.pad_before, y.pad_after, 0}));
      border_x = std::min(a.zero_pad_size_x, std::max<int64_t>({x.pad_before, x.pad_after, 0}));
    }
    ImageShape pooled_src = src;
    if (border_y || border_x) {
      padded_ = ImageShape{src.n, src.h + 2 * border_y, src.w + 2 * border_x, src.c};
      border_y_ = border_y;
      border_x_ = border_x;
      y.pad_before -= border_y;
      y.pad_after -= border_y;
      x.pad_before -= border_x;
      x.pad_after -= border_x;
      pooled_src = padded_;
      copy_bytes_ = (size_t(padded_.numel()) * 4 + 63) / 64 * 64;
    }
    const SourceWindow w = source_window(pooled_src, spec.output(), y, x);
    src_offset_ = w.offset;
    runner_ = PrimitiveRunner(
        MPSNN_CHECK_DNNL(dnnl::pooling_forward::primitive_desc(
                             engine(), dnnl::prop_kind::forward_inference, alg, w.md, nhwc_desc(spec.output()),
                             {y.stride, x.stride}, {y.kernel, x.kernel}, {y.dilation - 1, x.dilation - 1},
                             {w.y.pad_l, w.x.pad_l}, {w.y.pad_r, w.x.pad_r}, scratchpad_attr()),
                         spec.context),
        copy_bytes_);
  }
  void run(const KernelArgs& a, KernelState* state) const override {
    float* src = a.inputs[0].as<float>();
    if (copy_bytes_) {
      float* p = static_cast<float*>(a.scratch);
      std::memset(p, 0, size_t(padded_.numel()) * 4);
      const ImageShape& in = a.inputs[0].shape;
#pragma omp parallel for collapse(2)
      for (int64_t n = 0; n < in.n; ++n)
        for (int64_t i = 0; i < in.h; ++i)
          std::memcpy(p + ((n * padded_.h + i + border_y_) * padded_.w + border_x_) * in.c, a.inputs[0].f32().pixel(n, i, 0),
                      size_t(in.w * in.c) * 4);
      src = p;
    }
    runner_.run(state, src + src_offset_, a.outputs[0].as<float>(), a.scratch);
  }

 private:
  int64_t src_offset_ = 0;
  ImageShape padded_;
  int64_t border_y_ = 0, border_x_ = 0;
  size_t copy_bytes_ = 0;
};

// Pools each window tap by tap (nodes.md §5.2, §5.3 with §1.4, §5.5). Used only when some
// window has no in-image tap; vectorized over channels, threaded over rows.
class DirectPoolingKernel final : public Kernel {
 public:
  explicit DirectPoolingKernel(const KernelSpec& spec) : y_(spec.geom.y), x_(spec.geom.x) {
    const auto& a = spec.attrs_as<PoolingAttrs>();
    max_ = a.mode == PoolingMode::max || a.mode == PoolingMode::dilated_max;
    zero_edge_ = spec.geom.edge_mode == EdgeMode::zero;
    // The divisor counts the taps inside [-before, S + after) per axis (§5.2): the whole window
    // for zero edges, the padded area with excludeEdges, the image plus zero_pad_size for clamp.
    if (spec.geom.exclude_edges) {
      count_y_ = {y_.pad_before, y_.pad_after};
      count_x_ = {x_.pad_before, x_.pad_after};
    } else if (zero_edge_) {
      count_y_ = count_x_ = {INT64_MAX / 4, INT64_MAX / 4};
    } else {
      count_y_ = {a.zero_pad_size_y, a.zero_pad_size_y};
      count_x_ = {a.zero_pad_size_x, a.zero_pad_size_x};
    }
  }

  // Whether oneDNN cannot pool this geometry: some window has no in-image tap. It lies entirely
  // in the padding, or, dilated, its taps step over the image (kernel 2, dilation 4 on a
  // 3-pixel axis).
  static bool needed(const WindowAxis& y, const WindowAxis& x, const ImageShape& src, const ImageShape& dst) {
    auto has_empty_window = [](const WindowAxis& a, int64_t D, int64_t S) {
      for (int64_t o = 0; o < D; ++o) {
        const auto r = own::detail::in_image_taps(a, o, S);
        if (r.hi == r.lo) return true;
      }
      return false;
    };
    return has_empty_window(y, dst.h, src.h) || has_empty_window(x, dst.w, src.w);
  }

  void run(const KernelArgs& a, KernelState*) const override {
    const TensorView& src = a.inputs[0].f32();
    const TensorView& dst = a.outputs[0].f32();
    const ImageShape& s = src.shape;
    const ImageShape& d = dst.shape;
    const int64_t C = d.c;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t i = 0; i < d.h; ++i) {
        const auto rows = own::detail::in_image_taps(y_, i, s.h);
        const int64_t ny = count_taps(y_, rows.start, s.h, count_y_);
        for (int64_t j = 0; j < d.w; ++j) {
          const auto cols = own::detail::in_image_taps(x_, j, s.w);
          float* out = dst.pixel(n, i, j);
          if (max_) {
            // Clamp edges with no in-image tap replicate the nearest pixels (§1.4); zero edges
            // let the zeros of out-of-image taps compete.
            const bool empty = rows.hi == rows.lo || cols.hi == cols.lo;
            const bool replicate = empty && !zero_edge_;
            const int64_t y0 = replicate ? 0 : rows.lo, y1 = replicate ? y_.kernel : rows.hi;
            const int64_t x0 = replicate ? 0 : cols.lo, x1 = replicate ? x_.kernel : cols.hi;
            const bool reads_zero = zero_edge_ && (rows.hi - rows.lo) * (cols.hi - cols.lo) < y_.kernel * x_.kernel;
            const float init = reads_zero ? 0.0f : -INFINITY;  // a window of -inf has maximum -inf
            for (int64_t c = 0; c < C; ++c) out[c] = init;
            for (int64_t ky = y0; ky < y1; ++ky)
              for (int64_t kx = x0; kx < x1; ++kx) {
                const float* p = src.pixel(n, std::clamp<int64_t>(rows.start + ky * y_.dilation, 0, s.h - 1),
                                           std::clamp<int64_t>(cols.start + kx * x_.dilation, 0, s.w - 1));
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) out[c] = p[c] > out[c] || p[c] != p[c] ? p[c] : out[c];
              }
          } else {
            const int64_t count = ny * count_taps(x_, cols.start, s.w, count_x_);
            for (int64_t c = 0; c < C; ++c) out[c] = 0.0f;
            for (int64_t ky = rows.lo; ky < rows.hi; ++ky)
              for (int64_t kx = cols.lo; kx < cols.hi; ++kx) {
                const float* p = src.pixel(n, rows.start + ky * y_.dilation, cols.start + kx * x_.dilation);
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) out[c] += p[c];
              }
            const float inv = count > 0 ? 1.0f / float(count) : 0.0f;  // Y = 0 when N = 0
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) out[c] *= inv;
          }
        }
      }
  }

 private:
  struct Margin {
    int64_t before, after;
  };
  // The taps of a window starting at `start` that land in [-m.before, size + m.after).
  static int64_t count_taps(const WindowAxis& w, int64_t start, int64_t size, Margin m) {
    int64_t k = 0;
    for (int64_t t = 0; t < w.kernel; ++t) {
      const int64_t p = start + t * w.dilation;
      k += p >= -m.before && p < size + m.after;
    }
    return k;
  }

  WindowAxis y_, x_;
  bool max_ = false, zero_edge_ = false;
  Margin count_y_{}, count_x_{};
};

// Whether every value of `v` is a number above -inf (oneDNN's max pooling is exact then).
bool above_minus_infinity(const TensorView& v) {
  const ImageShape& s = v.shape;
  bool ok = true;
#pragma omp parallel for collapse(2) reduction(&& : ok) schedule(static) if (s.numel() > (1 << 16))
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t i = 0; i < s.h; ++i) {
      bool row_ok = true;
      for (int64_t j = 0; j < s.w; ++j) {
        const float* p = v.pixel(n, i, j);
#pragma omp simd reduction(&& : row_ok)
        for (int64_t c = 0; c < s.c; ++c) row_ok = row_ok && p[c] >= -FLT_MAX;  // false for NaN and -inf
      }
      ok = ok && row_ok;
    }
  return ok;
}

// Max pooling on oneDNN, or tap by tap when the source holds NaN or -inf (see the top of the file).
class MaxPoolingKernel final : public Kernel {
 public:
  explicit MaxPoolingKernel(const KernelSpec& spec) : fast_(spec), exact_(spec) {}
  size_t scratch_bytes() const override { return fast_.scratch_bytes(); }
  std::unique_ptr<KernelState> make_state() const override { return fast_.make_state(); }
  void run(const KernelArgs& a, KernelState* state) const override {
    if (above_minus_infinity(a.inputs[0].f32()))
      fast_.run(a, state);
    else
      exact_.run(a, nullptr);
  }

 private:
  PoolingKernel fast_;
  DirectPoolingKernel exact_;
};

class L2PoolingKernel final : public Kernel {
 public:
  explicit L2PoolingKernel(const KernelSpec& spec) : y_(spec.geom.y), x_(spec.geom.x) {}
  void run(const KernelArgs& a, KernelState*) const override { own::l2_pooling(a.inputs[0].f32(), a.outputs[0].f32(), y_, x_); }

 private:
  WindowAxis y_, x_;
};

// Max pooling whose gradient state is consumed: the result and, per output element, the winning
// source pixel (own::max_pooling_with_indices, the same function as the other max kernels).
class IndexedMaxPoolingKernel final : public Kernel {
 public:
  explicit IndexedMaxPoolingKernel(const KernelSpec& spec)
      : y_(spec.geom.y), x_(spec.geom.x), zero_edge_(spec.geom.edge_mode == EdgeMode::zero) {}
  void run(const KernelArgs& a, KernelState*) const override {
    own::max_pooling_with_indices(a.inputs[0].f32(), a.outputs[0].f32(), a.outputs[1].as<int32_t>(), y_, x_, zero_edge_);
  }

 private:
  WindowAxis y_, x_;
  bool zero_edge_;
};

}  // namespace

std::unique_ptr<Kernel> make_pooling(const KernelSpec& spec, Device&) {
  const PoolingMode mode = spec.attrs_as<PoolingAttrs>().mode;
  if (spec.outputs.size() > 1) {  // the state is consumed: only max pooling has buffers
    MPSNN_CHECK(mode == PoolingMode::max || mode == PoolingMode::dilated_max, BackendError, spec.context,
                " internal error: a state buffer for a pooling mode that records none");
    return std::make_unique<IndexedMaxPoolingKernel>(spec);
  }
  if (mode == PoolingMode::l2_norm) return std::make_unique<L2PoolingKernel>(spec);
  if (DirectPoolingKernel::needed(spec.geom.y, spec.geom.x, spec.input(0), spec.output()))
    return std::make_unique<DirectPoolingKernel>(spec);
  if (mode == PoolingMode::max || mode == PoolingMode::dilated_max) return std::make_unique<MaxPoolingKernel>(spec);
  return std::make_unique<PoolingKernel>(spec);
}

}  // namespace MPSNN_ISA_NAMESPACE
