#include "backends/cpu/kernels/convolution_common.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace mpsnn::cpu {

void SourceStage::run(const TensorView& src, float* dst) const {
  const ImageShape& s = src.shape;
  const int64_t c = shape.c;
#pragma omp parallel for collapse(2)
  for (int64_t n = 0; n < shape.n; ++n)
    for (int64_t i = 0; i < shape.h; ++i) {
      int64_t sy = y0 + i;
      const bool row_in = sy >= 0 && sy < s.h;
      sy = std::clamp<int64_t>(sy, 0, s.h - 1);
      float* out = dst + (n * shape.h + i) * shape.w * c;
      for (int64_t j = 0; j < shape.w; ++j, out += c) {
        const int64_t sx = x0 + j;
        if (!clamp && !(row_in && sx >= 0 && sx < s.w)) {
          std::fill(out, out + c, 0.0f);
          continue;
        }
        std::memcpy(out, src.pixel(n, sy, std::clamp<int64_t>(sx, 0, s.w - 1)) + c0, size_t(c) * 4);
      }
    }
}

void SourceStage::fold(const float* staged, const TensorView& dx) const {
  const ImageShape& s = dx.shape;
  const int64_t c = shape.c;
  // Staged index range [lo, hi) read from source index `v` along an axis of `size` (origin `o`,
  // `count` staged entries).
  auto range = [this](int64_t v, int64_t size, int64_t o, int64_t count, int64_t& lo, int64_t& hi) {
    lo = v - o;
    hi = lo + 1;
    if (clamp) {
      if (v == 0) lo = 0;
      if (v == size - 1) hi = count;
    }
    lo = std::max<int64_t>(lo, 0);
    hi = std::min(hi, count);
  };
#pragma omp parallel for collapse(2)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t y = 0; y < s.h; ++y) {
      for (int64_t x = 0; x < s.w; ++x) std::fill(dx.pixel(n, y, x), dx.pixel(n, y, x) + s.c, 0.0f);
      int64_t i0, i1;
      range(y, s.h, y0, shape.h, i0, i1);
      for (int64_t i = i0; i < i1; ++i) {
        const float* row = staged + (n * shape.h + i) * shape.w * c;
        for (int64_t x = 0; x < s.w; ++x) {
          int64_t j0, j1;
          range(x, s.w, x0, shape.w, j0, j1);
          float* d = dx.pixel(n, y, x) + c0;
          for (int64_t j = j0; j < j1; ++j) {
            const float* g = row + j * c;
#pragma omp simd
            for (int64_t k = 0; k < c; ++k) d[k] += g[k];
          }
        }
      }
    }
}

size_t aligned_bytes(const ImageShape& s) { return (size_t(s.numel()) * 4 + 63) / 64 * 64; }

memory::dims weights_dims(const ConvolutionDescriptor& d) {
  const int64_t g = d.depthwise ? d.input_feature_channels : d.groups;
  if (g == 1) return {d.output_feature_channels, d.input_feature_channels, d.kernel_height, d.kernel_width};
  return {g, d.output_feature_channels / g, d.depthwise ? 1 : d.input_feature_channels / g, d.kernel_height,
          d.kernel_width};
}

memory::desc user_weights_desc(const ConvolutionDescriptor& d, bool fully_connected) {
  const int64_t g = d.depthwise ? d.input_feature_channels : d.groups;
  if (fully_connected || g == 1)
    return memory::desc({d.output_feature_channels, d.input_feature_channels, d.kernel_height, d.kernel_width}, dt::f32,
                        tag::ohwi);
  return memory::desc(weights_dims(d), dt::f32, tag::gohwi);
}

void flip_ohwi(float* w, int64_t o, int64_t kh, int64_t kw, int64_t i) {
  const int64_t taps = kh * kw;
  for (int64_t k = 0; k < o; ++k) {
    float* base = w + k * taps * i;
    for (int64_t t = 0; t < taps / 2; ++t)
      std::swap_ranges(base + t * i, base + (t + 1) * i, base + (taps - 1 - t) * i);
  }
}

PrimitiveWeights::PrimitiveWeights(const memory::desc& primitive_md, const ConvolutionDescriptor& d,
                                   bool fully_connected, bool flip)
    : fully_connected_(fully_connected), flip_(flip) {
  direct_ = !flip && primitive_md == user_weights_desc(d, fully_connected);
  mem_ = direct_ ? memory(primitive_md, engine(), DNNL_MEMORY_NONE) : memory(primitive_md, engine());
}

void PrimitiveWeights::load(const std::shared_ptr<const ConvolutionParams>& p) const {
  if (direct_) {
    mem_.set_data_handle(const_cast<float*>(p->weights.data()));
    held_ = p;
    return;
  }
  const auto& d = p->desc;
  // The reorder only reads its source: the parameters are used in place unless they are rotated.
  std::vector<float> flipped;
  float* w = const_cast<float*>(p->weights.data());
  if (flip_) {
    flipped = p->weights;
    const int64_t g = d.depthwise ? d.input_feature_channels : d.groups;
    flip_ohwi(flipped.data(), d.output_feature_channels, d.kernel_height, d.kernel_width,
              d.depthwise ? 1 : d.input_feature_channels / g);
    w = flipped.data();
  }
  memory src(user_weights_desc(d, fully_connected_), engine(), w);
  dnnl::stream s(engine());
  dnnl::reorder(src, mem_).execute(s, src, mem_);
  s.wait();
}

ConvolutionWindow convolution_window(const ImageShape& src, const ImageShape& out, const NodeGeometry& g,
                                     int64_t cin) {
  ConvolutionWindow w;
  if (g.edge_mode == EdgeMode::clamp || g.source_channel_count != 0) {
    SourceStage st;
    st.shape = ImageShape{src.n, (out.h - 1) * g.y.stride + g.y.extent(), (out.w - 1) * g.x.stride + g.x.extent(), cin};
    st.y0 = -g.y.pad_before;
    st.x0 = -g.x.pad_before;
    st.c0 = g.source_channel_offset;
    st.clamp = g.edge_mode == EdgeMode::clamp;
    w.src_md = nhwc_desc(st.shape);
    w.stage = st;
    return w;
  }
  const SourceWindow sw = source_window(src, out, g.y, g.x);
  w.src_offset = sw.offset;
  w.src_md = sw.md;
  w.pad_l = {sw.y.pad_l, sw.x.pad_l};
  w.pad_r = {sw.y.pad_r, sw.x.pad_r};
  w.cropped = sw.y.crop_before > 0 || sw.x.crop_before > 0 || sw.y.source < src.h || sw.x.source < src.w;
  return w;
}

TransposeWindow transpose_window(const ImageShape& src, const ImageShape& out, const NodeGeometry& g, int64_t cin) {
  TransposeWindow t;
  auto axis = [](int64_t S, int64_t D, const WindowAxis& w, int64_t& lo, int64_t& hi, int64_t& full, int64_t& shift) {
    const int64_t pl = w.extent() - 1 - w.pad_before;
    const int64_t pr = (S - 1) * w.stride + w.extent() - pl - D;
    lo = std::max<int64_t>(pl, 0);
    hi = std::max<int64_t>(pr, 0);
    // A window so far beside the source that the computed image would be empty (a transpose
    // paired with a convolution that read mostly padding, e.g. a 1x4 kernel on a 1x1 source):
    // compute one row next to it; every wanted row then falls outside and holds the bias.
    const int64_t span = (S - 1) * w.stride + w.extent();
    lo = std::min(lo, span - 1);
    hi = std::min(hi, span - 1 - lo);
    full = span - lo - hi;
    shift = pl - lo;  // wanted index o maps to computed index o + shift
  };
  axis(src.h, out.h, g.y, t.lo[0], t.hi[0], t.full.h, t.shift_y);
  axis(src.w, out.w, g.x, t.lo[1], t.hi[1], t.full.w, t.shift_x);
  t.full.n = out.n;
  t.full.c = out.c;
  t.cropped = !(t.full.h == out.h && t.full.w == out.w && t.shift_y == 0 && t.shift_x == 0);
  t.read = src;
  if (g.source_channel_count != 0) {
    SourceStage st;
    st.shape = ImageShape{src.n, src.h, src.w, cin};
    st.c0 = g.source_channel_offset;
    t.stage = st;
    t.read = st.shape;
  }
  return t;
}

}  // namespace mpsnn::cpu
