// Upsampling and scale nodes. Nearest upsampling runs on oneDNN's resampling primitive; bilinear
// upsampling (both align-corners modes) and the bilinear / Lanczos scale nodes use our own
// kernels (own_scale.cpp): oneDNN 3.2 has no align-corners mode, no arbitrary translation and
// no Lanczos filter.
#include <cstring>

#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/own_kernels.h"
#include "backends/cpu/register.h"

namespace MPSNN_ISA_NAMESPACE {

namespace {

class NearestKernel final : public PrimitiveKernel {
 public:
  explicit NearestKernel(const KernelSpec& spec) {
    runner_ = PrimitiveRunner(MPSNN_CHECK_DNNL(
        dnnl::resampling_forward::primitive_desc(engine(), dnnl::prop_kind::forward_inference,
                                                 dnnl::algorithm::resampling_nearest, nhwc_desc(spec.input(0)),
                                                 nhwc_desc(spec.output()), scratchpad_attr()),
        spec.context));
  }
};

// nodes.md §9.2 with align_corners: u = o·(S−1)/(D−1), separable weights.
void align_corners_bilinear(const TensorView& src, const TensorView& dst) {
  const ImageShape& s = src.shape;
  const ImageShape& d = dst.shape;
  auto coord = [](int64_t o, int64_t S, int64_t D, int64_t& k0, int64_t& k1, float& l) {
    const double u = D == 1 ? 0.0 : double(o) * double(S - 1) / double(D - 1);
    k0 = int64_t(u);
    k1 = std::min(k0 + 1, S - 1);
    l = float(u - double(k0));
  };
#pragma omp parallel for collapse(2)
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t i = 0; i < d.h; ++i) {
      int64_t y0, y1;
      float ly;
      coord(i, s.h, d.h, y0, y1, ly);
      for (int64_t j = 0; j < d.w; ++j) {
        int64_t x0, x1;
        float lx;
        coord(j, s.w, d.w, x0, x1, lx);
        const float *a = src.pixel(n, y0, x0), *b = src.pixel(n, y0, x1), *c = src.pixel(n, y1, x0),
                    *e = src.pixel(n, y1, x1);
        float* o = dst.pixel(n, i, j);
#pragma omp simd
        for (int64_t k = 0; k < s.c; ++k)
          o[k] = (1 - ly) * ((1 - lx) * a[k] + lx * b[k]) + ly * ((1 - lx) * c[k] + lx * e[k]);
      }
    }
}

class ScaleKernel final : public Kernel {
 public:
  ScaleKernel(bool lanczos, bool align_corners, const ScaleTransform& t)
      : lanczos_(lanczos), align_corners_(align_corners), t_{t.scale_x, t.scale_y, t.translate_x, t.translate_y} {}
  void run(const KernelArgs& a, KernelState*) const override {
    if (align_corners_) align_corners_bilinear(a.inputs[0].f32(), a.outputs[0].f32());
    else if (lanczos_) own::lanczos_scale(a.inputs[0].f32(), a.outputs[0].f32(), t_);
    else own::bilinear_scale(a.inputs[0].f32(), a.outputs[0].f32(), t_);
  }

 private:
  bool lanczos_, align_corners_;
  own::ScaleTransform t_;
};

}  // namespace

std::unique_ptr<Kernel> make_upsampling(const KernelSpec& spec, Device&) {
  const auto& a = spec.attrs_as<UpsamplingAttrs>();
  if (a.mode == UpsamplingMode::nearest) return std::make_unique<NearestKernel>(spec);
  // Non-aligned bilinear upsampling is the bilinear scale with scale = factor, no translation.
  const ScaleTransform t{double(a.scale_factor_x), double(a.scale_factor_y), 0, 0};
  return std::make_unique<ScaleKernel>(false, a.align_corners, t);
}

std::unique_ptr<Kernel> make_scale(const KernelSpec& spec, Device&) {
  const auto& a = spec.attrs_as<ScaleAttrs>();
  return std::make_unique<ScaleKernel>(a.mode == ScaleMode::lanczos, false, spec.geom.transform);
}

}  // namespace MPSNN_ISA_NAMESPACE
