// Loss kernels (nodes.md §13.2): our own loops, since oneDNN has no loss primitives. One step
// computes both the gradient image dL/dy (the loss node's result) and the loss image of the
// labels. Every loss value is reduced per image in float64 over fixed blocks of pixels, summed
// in block order, so results do not depend on the number of threads. Elementwise losses are one
// template per type (a vectorizable channel loop); softmax cross entropy and cosine distance work
// on whole pixels.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backends/cpu/register.h"

namespace MPSNN_ISA_NAMESPACE {

namespace {

constexpr int64_t kBlockPixels = 256;  // fixed reduction blocks: deterministic for any thread count
constexpr int64_t kParallelMin = 1 << 14;

// e^x for x <= 0 (a logit minus its pixel's maximum), float32, in a form the compiler vectorizes
// inside `omp simd` loops (glibc's expf is a scalar call there): x = n ln2 + r with |r| <= ln2/2
// (Cody-Waite split of ln 2), e^r by its degree-7 Taylor polynomial (truncation < 6e-9 relative),
// times 2^n built in the exponent bits. Below -87 (results under 1.7e-38, the smallest normal
// floats) it returns 0; -inf gives 0 and NaN gives NaN.
inline float exp_nonpositive(float x) {
  const float xc = x < -87.0f ? -87.0f : x;
  const float shift = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float nf = (xc * 1.44269504f + shift) - shift;
  const float r = (xc - nf * 0.693359375f) - nf * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n from its exponent bits (a bit cast, not memcpy: an addressed local stops the vectorizer)
  const float scale = __builtin_bit_cast(float, uint32_t(int32_t(nf) + 127) << 23);
  const float v = p * scale;
  return v * float(x >= -87.0f);  // branch-free: a conditional product would not be if-converted
}

// Softmax cross entropy of one pixel of C logits y (nodes.md §13.2): writes its gradient g
// (times inv, the reduction's 1/divisor) and, for reduction none, its per-channel loss terms lo;
// returns the pixel's weighted loss sum. Labels t are smoothed (t keep + add) when Smooth, the
// weights are w[c] when W, else `scalar`. Each loop is one vectorized pass over the channels.
template <bool W, bool Smooth, bool None>
double softmax_cross_entropy_pixel(const float* y, const float* t, const float* w, float scalar, float keep,
                                   float add, float inv, int64_t C, float* g, float* lo) {
  float m = y[0];
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < C; ++c) m = y[c] > m ? y[c] : m;
  double e = 0;  // sum of e^(y - m), the exponentials kept in g
#pragma omp simd reduction(+ : e)
  for (int64_t c = 0; c < C; ++c) {
    const float v = exp_nonpositive(y[c] - m);
    g[c] = v;
    e += double(v);
  }
  const float lse = m + float(std::log(e));
  // d/dy_k sum_c w_c l_c = p_k sum_c w_c t'_c - w_k t'_k (nodes.md §13.2, chosen general form)
  double swt = 0, pl = 0;
#pragma omp simd reduction(+ : swt, pl)
  for (int64_t c = 0; c < C; ++c) {
    const float tv = Smooth ? t[c] * keep + add : t[c];
    const float wv = W ? w[c] : scalar;
    swt += double(wv) * tv;
    const float l = -tv * (y[c] - lse);
    pl += double(wv) * l;
    if constexpr (None) lo[c] = wv * l;
  }
  const float sw = float(swt), rcp = float(1.0 / e);
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    const float tv = Smooth ? t[c] * keep + add : t[c];
    const float wv = W ? w[c] : scalar;
    g[c] = (g[c] * rcp * sw - wv * tv) * inv;
  }
  return pl;
}

using SoftmaxPixel = double (*)(const float*, const float*, const float*, float, float, float, float, int64_t,
                                float*, float*);
template <bool W, bool Smooth>
SoftmaxPixel softmax_pixel_for(bool none) {
  return none ? &softmax_cross_entropy_pixel<W, Smooth, true> : &softmax_cross_entropy_pixel<W, Smooth, false>;
}
template <bool W>
SoftmaxPixel softmax_pixel_for(bool smooth, bool none) {
  return smooth ? softmax_pixel_for<W, true>(none) : softmax_pixel_for<W, false>(none);
}

// ℓ and ℓ' of one element (nodes.md §13.2 table) for the elementwise types; `t` is already
// label-smoothed where the type smooths.
template <LossType T>
inline void element(float y, float t, const LossDescriptor& d, float& loss, float& dloss) {
  if constexpr (T == LossType::mean_absolute_error) {
    const float e = y - t;
    loss = std::fabs(e);
    dloss = e > 0.0f ? 1.0f : (e < 0.0f ? -1.0f : 0.0f);  // 0 at equality (chosen)
  } else if constexpr (T == LossType::mean_squared_error) {
    const float e = y - t;
    loss = e * e;
    dloss = 2.0f * e;
  } else if constexpr (T == LossType::sigmoid_cross_entropy) {
    const float a = std::fabs(y);
    const float z = std::exp(-a);  // stable: never log(sigmoid(y))
    loss = std::max(y, 0.0f) - y * t + std::log1p(z);
    const float sig = y >= 0.0f ? 1.0f / (1.0f + z) : z / (1.0f + z);
    dloss = sig - t;
  } else if constexpr (T == LossType::categorical_cross_entropy) {
    loss = t == 0.0f ? 0.0f : -t * std::log(y);  // t = 0 terms contribute 0 (chosen)
    dloss = t == 0.0f ? 0.0f : -t / y;
  } else if constexpr (T == LossType::hinge) {
    const float s = 2.0f * t - 1.0f;  // labels 0/1 mapped to -1/+1 (chosen)
    const float m = 1.0f - s * y;
    loss = std::max(m, 0.0f);
    dloss = m > 0.0f ? -s : 0.0f;
  } else if constexpr (T == LossType::huber) {
    const float e = y - t, a = std::fabs(e);
    if (a <= d.delta) {
      loss = 0.5f * e * e;
      dloss = e;
    } else {
      loss = d.delta * (a - 0.5f * d.delta);
      dloss = e > 0.0f ? d.delta : -d.delta;
    }
  } else if constexpr (T == LossType::log) {
    const float eps = d.epsilon;
    loss = -t * std::log(y + eps) - (1.0f - t) * std::log(1.0f - y + eps);
    dloss = -t / (y + eps) + (1.0f - t) / (1.0f - y + eps);
  } else if constexpr (T == LossType::kullback_leibler_divergence) {
    loss = t == 0.0f ? 0.0f : t * (std::log(t) - y);  // 0 ln 0 = 0; y are log-probabilities
    dloss = -t;                                         // chosen: derivative of the documented loss
  }
}

struct Images {
  TensorView y, t, g;
  const float* w = nullptr;  // weights image (labels' layout) or null: the scalar weight
  TensorRef loss;
  int64_t tc = 0;            // label (and weight) channels per pixel: C or C rounded up to 4
};

class LossKernel final : public Kernel {
 public:
  explicit LossKernel(const KernelSpec& spec) : d_(spec.attrs_as<LossAttrs>().loss) {
    const ImageShape& s = spec.input(0);
    blocks_ = (s.h * s.w + kBlockPixels - 1) / kBlockPixels;
    images_ = s.n;
    has_weights_ = spec.inputs.size() == 3;
  }
  // Per (image, block): a loss sum and a non-zero weight count; per image: the reduction's divisor.
  size_t scratch_bytes() const override {
    return size_t(images_ * blocks_) * (sizeof(double) + sizeof(int64_t)) + size_t(images_) * sizeof(double);
  }
  int in_place_input() const override { return -1; }

  void run(const KernelArgs& a, KernelState*) const override {
    Images im;
    im.y = a.inputs[0].f32();
    im.t = a.inputs[1].f32();
    im.w = has_weights_ ? a.inputs[2].as<const float>() : nullptr;
    im.g = a.outputs[0].f32();
    im.loss = a.outputs[1];
    im.tc = a.inputs[1].shape.c;
    switch (d_.type) {
#define MPSNN_LOSS_CASE(T) \
  case LossType::T: return run_elementwise<LossType::T>(im, a.scratch);
      MPSNN_LOSS_CASE(mean_absolute_error)
      MPSNN_LOSS_CASE(mean_squared_error)
      MPSNN_LOSS_CASE(sigmoid_cross_entropy)
      MPSNN_LOSS_CASE(categorical_cross_entropy)
      MPSNN_LOSS_CASE(hinge)
      MPSNN_LOSS_CASE(huber)
      MPSNN_LOSS_CASE(log)
      MPSNN_LOSS_CASE(kullback_leibler_divergence)
#undef MPSNN_LOSS_CASE
      case LossType::softmax_cross_entropy: return run_pixels<true>(im, a.scratch);
      case LossType::cosine_distance: return run_pixels<false>(im, a.scratch);
    }
  }

 private:
  // Runs body(n, p0, p1, block) over every (image, pixel block), in parallel when large.
  template <typename F>
  void for_blocks(const ImageShape& s, F&& body) const {
    const int64_t P = s.h * s.w;
    const int64_t total = images_ * blocks_;
#pragma omp parallel for schedule(static) if (s.numel() > kParallelMin)
    for (int64_t k = 0; k < total; ++k) {
      const int64_t n = k / blocks_, b = k % blocks_;
      body(n, b * kBlockPixels, std::min(P, (b + 1) * kBlockPixels), k);
    }
  }

  // The reduction's divisor per image (nodes.md §13.2): 1 for none and sum, the element (pixel,
  // for softmax cross entropy) count for mean, the count of non-zero weights (pixels with a
  // non-zero channel weight for softmax cross entropy) for sumByNonZeroWeights.
  void divisors(const Images& im, bool per_pixel, int64_t* counts, double* div) const;

  // Reduced loss per image from the block sums, written to the loss image (reductions other
  // than none; the per-element loss image of none is written by the element loops).
  void finish(const Images& im, const double* sums, const double* div) const {
    if (d_.reduction == ReductionType::none) return;
    float* out = im.loss.as<float>();
    for (int64_t n = 0; n < images_; ++n) {
      double total = 0;
      for (int64_t b = 0; b < blocks_; ++b) total += sums[n * blocks_ + b];
      out[n] = div[n] > 0 ? float(total / div[n]) : 0.0f;  // no non-zero weight: L = 0 (chosen)
    }
  }

  template <LossType T>
  void run_elementwise(const Images& im, void* scratch) const;
  template <bool Softmax>
  void run_pixels(const Images& im, void* scratch) const;

  LossDescriptor d_;
  int64_t blocks_ = 1, images_ = 1;
  bool has_weights_ = false;
};

void LossKernel::divisors(const Images& im, bool per_pixel, int64_t* counts, double* div) const {
  const ImageShape& s = im.y.shape;
  const int64_t C = s.c;
  const double count = double(per_pixel ? s.h * s.w : s.h * s.w * C);
  double all = 1.0;
  if (d_.reduction == ReductionType::mean) all = count;
  if (d_.reduction == ReductionType::sum_by_non_zero_weights && !im.w) all = d_.weight != 0.0f ? count : 0.0;
  std::fill(div, div + images_, all);
  if (d_.reduction != ReductionType::sum_by_non_zero_weights || !im.w) return;
  const int64_t P = s.h * s.w;
  for_blocks(s, [&](int64_t n, int64_t p0, int64_t p1, int64_t k) {
    int64_t count = 0;
    for (int64_t p = p0; p < p1; ++p) {
      const float* w = im.w + (n * P + p) * im.tc;
      int64_t nz = 0;
      for (int64_t c = 0; c < C; ++c) nz += w[c] != 0.0f;
      count += per_pixel ? (nz > 0) : nz;
    }
    counts[k] = count;
  });
  for (int64_t n = 0; n < images_; ++n) {
    int64_t total = 0;
    for (int64_t b = 0; b < blocks_; ++b) total += counts[n * blocks_ + b];
    div[n] = double(total);
  }
}

template <LossType T>
void LossKernel::run_elementwise(const Images& im, void* scratch) const {
  const ImageShape& s = im.y.shape;
  const int64_t C = s.c, P = s.h * s.w, tc = im.tc;
  double* sums = static_cast<double*>(scratch);
  int64_t* counts = reinterpret_cast<int64_t*>(sums + images_ * blocks_);
  double* div = reinterpret_cast<double*>(counts + images_ * blocks_);
  divisors(im, false, counts, div);
  const bool smooth = d_.label_smoothing > 0.0f && T == LossType::sigmoid_cross_entropy;
  const float keep = 1.0f - d_.label_smoothing, add = 0.5f * d_.label_smoothing;
  const bool none = d_.reduction == ReductionType::none;
  const int64_t lc = im.loss.shape.c;
  float* loss_out = im.loss.as<float>();
  const LossDescriptor d = d_;
  for_blocks(s, [&](int64_t n, int64_t p0, int64_t p1, int64_t k) {
    const float inv = div[n] > 0 ? float(1.0 / div[n]) : 0.0f;
    double acc = 0;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t yy = p / s.w, xx = p % s.w;
      const float* y = im.y.pixel(n, yy, xx);
      const float* t = im.t.pixel(n, yy, xx);
      const float* w = im.w ? im.w + (n * P + p) * tc : nullptr;
      float* g = im.g.pixel(n, yy, xx);
      float* lo = none ? loss_out + (n * P + p) * lc : nullptr;
      float psum = 0;
#pragma omp simd reduction(+ : psum)
      for (int64_t c = 0; c < C; ++c) {
        const float tv = smooth ? t[c] * keep + add : t[c];
        float l, dl;
        element<T>(y[c], tv, d, l, dl);
        const float wv = w ? w[c] : d.weight;
        g[c] = wv * dl * inv;
        psum += wv * l;
        if (lo) lo[c] = wv * l;
      }
      if (lo)
        for (int64_t c = C; c < lc; ++c) lo[c] = 0.0f;
      acc += double(psum);
    }
    sums[k] = acc;
  });
  finish(im, sums, div);
}

// Softmax cross entropy (per pixel over channels, with log-sum-exp) and cosine distance.
template <bool Softmax>
void LossKernel::run_pixels(const Images& im, void* scratch) const {
  const ImageShape& s = im.y.shape;
  const int64_t C = s.c, P = s.h * s.w, tc = im.tc;
  double* sums = static_cast<double*>(scratch);
  int64_t* counts = reinterpret_cast<int64_t*>(sums + images_ * blocks_);
  double* div = reinterpret_cast<double*>(counts + images_ * blocks_);
  divisors(im, true, counts, div);
  const bool smooth = Softmax && d_.label_smoothing > 0.0f;
  const float keep = 1.0f - d_.label_smoothing, add = d_.label_smoothing / float(d_.number_of_classes);
  const bool none = d_.reduction == ReductionType::none;
  const int64_t lc = im.loss.shape.c;
  float* loss_out = im.loss.as<float>();
  const float scalar = d_.weight;
  const SoftmaxPixel pixel =
      im.w ? softmax_pixel_for<true>(smooth, none) : softmax_pixel_for<false>(smooth, none);
  for_blocks(s, [&](int64_t n, int64_t p0, int64_t p1, int64_t k) {
    const float inv = div[n] > 0 ? float(1.0 / div[n]) : 0.0f;
    double acc = 0;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t yy = p / s.w, xx = p % s.w;
      const float* y = im.y.pixel(n, yy, xx);
      const float* t = im.t.pixel(n, yy, xx);
      const float* w = im.w ? im.w + (n * P + p) * tc : nullptr;
      float* g = im.g.pixel(n, yy, xx);
      float* lo = none ? loss_out + (n * P + p) * lc : nullptr;
      if constexpr (Softmax) {
        acc += pixel(y, t, w, scalar, keep, add, inv, C, g, lo);
      } else {
        // Per pixel 1 - sum_c y_c t_c, weighted by the scalar or the weights' channel 0 (chosen).
        const float wv = w ? w[0] : scalar;
        double dot = 0;
        for (int64_t c = 0; c < C; ++c) dot += double(y[c]) * t[c];
        acc += double(wv) * (1.0 - dot);
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) g[c] = -wv * t[c] * inv;
      }
      if (lo)
        for (int64_t c = C; c < lc; ++c) lo[c] = 0.0f;
    }
    sums[k] = acc;
  });
  finish(im, sums, div);
}

// ℓ and ℓ' of one element for a runtime loss type (the YOLO loss's sub-descriptors), with the
// sigmoid cross entropy's label smoothing applied.
void element_of(const LossDescriptor& d, float y, float t, float& l, float& dl) {
  switch (d.type) {
    case LossType::mean_absolute_error: return element<LossType::mean_absolute_error>(y, t, d, l, dl);
    case LossType::mean_squared_error: return element<LossType::mean_squared_error>(y, t, d, l, dl);
    case LossType::sigmoid_cross_entropy: {
      const float ts = d.label_smoothing > 0.0f ? t * (1.0f - d.label_smoothing) + 0.5f * d.label_smoothing : t;
      return element<LossType::sigmoid_cross_entropy>(y, ts, d, l, dl);
    }
    case LossType::categorical_cross_entropy: return element<LossType::categorical_cross_entropy>(y, t, d, l, dl);
    case LossType::hinge: return element<LossType::hinge>(y, t, d, l, dl);
    case LossType::huber: return element<LossType::huber>(y, t, d, l, dl);
    case LossType::log: return element<LossType::log>(y, t, d, l, dl);
    case LossType::kullback_leibler_divergence: return element<LossType::kullback_leibler_divergence>(y, t, d, l, dl);
    case LossType::softmax_cross_entropy:
    case LossType::cosine_distance: break;  // refused for elementwise terms by the schema
  }
  l = dl = 0.0f;
}

inline float sigmoid(float v) { return v >= 0.0f ? 1.0f / (1.0f + std::exp(-v)) : std::exp(v) / (1.0f + std::exp(v)); }

struct Box {
  double cx, cy, w, h;
};
double iou(const Box& a, const Box& b) {
  const double ix = std::max(0.0, std::min(a.cx + a.w / 2, b.cx + b.w / 2) - std::max(a.cx - a.w / 2, b.cx - b.w / 2));
  const double iy = std::max(0.0, std::min(a.cy + a.h / 2, b.cy + b.h / 2) - std::max(a.cy - a.h / 2, b.cy - b.h / 2));
  const double inter = ix * iy, uni = a.w * a.h + b.w * b.h - inter;
  return uni > 0 ? inter / uni : 0.0;
}

// The YOLO loss of nodes.md §13.3 (its chosen definition). Each image is one task (its IOU gates
// compare every prediction with every ground-truth box of the image), computed in a fixed order.
// The labels' weights image, if any, is not used: the sub-descriptors' scalar weights apply.
class YOLOLossKernel final : public Kernel {
 public:
  explicit YOLOLossKernel(const KernelSpec& spec)
      : a_(spec.attrs_as<YOLOLossAttrs>()), slots_(spec.input(0).h * spec.input(0).w * a_.number_of_anchor_boxes),
        images_(spec.input(0).n) {}
  // Room for every image's ground-truth boxes (at most one per cell and anchor).
  size_t scratch_bytes() const override { return size_t(images_ * slots_) * sizeof(Box); }

  void run(const KernelArgs& args, KernelState*) const override {
    const TensorView y = args.inputs[0].f32(), t = args.inputs[1].f32(), g = args.outputs[0].f32();
    const TensorRef& loss = args.outputs[1];
    const ImageShape& s = y.shape;
    const int64_t A = a_.number_of_anchor_boxes, B = s.c / A, K = B - 5;
    const bool none = a_.reduction == ReductionType::none;
    const double div = a_.reduction == ReductionType::mean ? double(s.h * s.w * A) : 1.0;
    const float inv = float(1.0 / div);
    float* lout = loss.as<float>();
    const int64_t lc = loss.shape.c;
#pragma omp parallel for schedule(static) if (s.n > 1 && s.numel() > kParallelMin)
    for (int64_t n = 0; n < s.n; ++n) {
      Box* truth = static_cast<Box*>(args.scratch) + n * slots_;
      int64_t count = 0;
      for (int64_t i = 0; i < s.h; ++i)
        for (int64_t j = 0; j < s.w; ++j)
          for (int64_t a = 0; a < A; ++a) {
            const float* q = t.pixel(n, i, j) + a * B;
            if (q[4] == 1.0f) truth[count++] = label_box(q, i, j, a);
          }
      double total = 0;
      for (int64_t i = 0; i < s.h; ++i)
        for (int64_t j = 0; j < s.w; ++j) {
          float* lo = none ? lout + ((n * s.h + i) * s.w + j) * lc : nullptr;
          if (lo)
            for (int64_t c = 0; c < lc; ++c) lo[c] = 0.0f;
          for (int64_t a = 0; a < A; ++a) {
            const float* p = y.pixel(n, i, j) + a * B;
            const float* q = t.pixel(n, i, j) + a * B;
            float* d = g.pixel(n, i, j) + a * B;
            float* l = lo ? lo + a * B : nullptr;
            total += cell(p, q, d, l, i, j, a, K, truth, count, inv);
          }
        }
      if (!none) lout[n] = float(total / div);
    }
  }

 private:
  Box label_box(const float* q, int64_t i, int64_t j, int64_t a) const {
    const double aw = a_.anchor_boxes[size_t(2 * a)], ah = a_.anchor_boxes[size_t(2 * a + 1)];
    return Box{double(j) + q[0], double(i) + q[1], aw * std::exp(double(q[2])), ah * std::exp(double(q[3]))};
  }

  // One (cell, anchor): writes the gradient of its B channels (scaled by `inv`), its terms into
  // `l` (reduction none) and returns their sum.
  double cell(const float* p, const float* q, float* d, float* l, int64_t i, int64_t j, int64_t a, int64_t K,
              const Box* truth, int64_t count, float inv) const {
    for (int64_t c = 0; c < 5 + K; ++c) d[c] = 0.0f;
    const double aw = a_.anchor_boxes[size_t(2 * a)], ah = a_.anchor_boxes[size_t(2 * a + 1)];
    const float sx = sigmoid(p[0]), sy = sigmoid(p[1]);
    const Box pred{double(j) + sx, double(i) + sy, aw * std::exp(double(p[2])), ah * std::exp(double(p[3]))};
    double sum = 0;
    // A term scale * w * ℓ(v, target) on channel c; `chain` is dv/dp[c].
    auto term = [&](const LossDescriptor& desc, float scale, int64_t c, float v, float target, float chain) {
      float lv, dl;
      element_of(desc, v, target, lv, dl);
      const float sw = scale * desc.weight;
      d[c] += sw * dl * chain * inv;
      sum += double(sw) * lv;
      if (l) l[c] += sw * lv;
    };
    if (q[4] == 1.0f) {
      term(a_.xy, a_.scale_xy, 0, sx, q[0], sx * (1.0f - sx));
      term(a_.xy, a_.scale_xy, 1, sy, q[1], sy * (1.0f - sy));
      term(a_.wh, a_.scale_wh, 2, p[2], q[2], 1.0f);
      term(a_.wh, a_.scale_wh, 3, p[3], q[3], 1.0f);
      const float tau = a_.rescore ? float(iou(pred, label_box(q, i, j, a))) : 1.0f;
      term(a_.confidence, a_.scale_object, 4, p[4], tau, 1.0f);
      classes(p + 5, q + 5, d + 5, l ? l + 5 : nullptr, K, inv, sum);
    } else {
      double best = 0;
      for (int64_t k = 0; k < count; ++k) best = std::max(best, iou(pred, truth[k]));
      if (best < a_.max_iou_for_object_absence) term(a_.confidence, a_.scale_no_object, 4, p[4], 0.0f, 1.0f);
      else if (best > a_.min_iou_for_object_presence)
        term(a_.confidence, a_.scale_object, 4, p[4], a_.rescore ? float(best) : 1.0f, 1.0f);
    }
    return sum;
  }

  // The class term over the K class channels (a vector loss for softmax cross entropy).
  void classes(const float* z, const float* qc, float* d, float* l, int64_t K, float inv, double& sum) const {
    const LossDescriptor& desc = a_.classes;
    const float sw = a_.scale_class * desc.weight;
    if (desc.type != LossType::softmax_cross_entropy) {
      for (int64_t c = 0; c < K; ++c) {
        float lv, dl;
        element_of(desc, z[c], qc[c], lv, dl);
        d[c] += sw * dl * inv;
        sum += double(sw) * lv;
        if (l) l[c] += sw * lv;
      }
      return;
    }
    const bool smooth = desc.label_smoothing > 0.0f;
    const float keep = 1.0f - desc.label_smoothing, add = desc.label_smoothing / float(desc.number_of_classes);
    float m = z[0];
    for (int64_t c = 1; c < K; ++c) m = std::max(m, z[c]);
    double e = 0;
    for (int64_t c = 0; c < K; ++c) e += std::exp(double(z[c] - m));
    const float lse = m + float(std::log(e));
    double st = 0;
    for (int64_t c = 0; c < K; ++c) {
      const float tv = smooth ? qc[c] * keep + add : qc[c];
      st += tv;
      const float lv = -tv * (z[c] - lse);
      sum += double(sw) * lv;
      if (l) l[c] += sw * lv;
    }
    for (int64_t c = 0; c < K; ++c) {
      const float tv = smooth ? qc[c] * keep + add : qc[c];
      d[c] += sw * (std::exp(z[c] - lse) * float(st) - tv) * inv;
    }
  }

  YOLOLossAttrs a_;
  int64_t slots_ = 1, images_ = 1;
};

}  // namespace

std::unique_ptr<Kernel> make_loss(const KernelSpec& spec, Device&) { return std::make_unique<LossKernel>(spec); }
std::unique_ptr<Kernel> make_yolo_loss(const KernelSpec& spec, Device&) { return std::make_unique<YOLOLossKernel>(spec); }

}  // namespace MPSNN_ISA_NAMESPACE
