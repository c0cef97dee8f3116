// Batch and instance normalization gradients (nodes.md §8.5, §8.6).
//  * Batch normalization: oneDNN's batch normalization backward, with the mean and variance the
//    forward step normalized with (its state buffers): the full statistics gradient when the
//    forward used the batch's statistics, use_global_stats (dX = γ·G/σ) when it used the data
//    source's. dγ and dβ come from the same primitive.
//  * Instance normalization: our own kernel, as oneDNN 3.2 has no instance normalization (a batch
//    normalization per image would be one primitive call per image). Statistics are recomputed from
//    the forward source in double, as the forward kernel computes them; one task per image and
//    block of 16 channels, each summing its pixels in order, and the per-image parts of dγ, dβ added
//    in image order: deterministic for any thread count.
// The result states also carry gamma and beta as used (and batch normalization's the statistics).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/register.h"

namespace MPSNN_ISA_NAMESPACE {

namespace {

void copy_vector(const float* src, const TensorRef& dst) { std::memcpy(dst.data, src, dst.dense_bytes()); }

class BatchNormalizationGradientKernel final : public Kernel {
 public:
  explicit BatchNormalizationGradientKernel(const KernelSpec& spec)
      : statistics_(spec.batch_statistics), result_needed_(spec.result_needed), context_(spec.context) {
    const NormalizationParams& p = *spec.params.norm;
    MPSNN_CHECK(spec.inputs.size() == 4, BackendError, spec.context,
                " internal error: batch normalization gradient without the statistics of its forward step");
    // The result state's buffers exist only when the state is read or exported (nodes.md §2.1):
    // outputs are dX alone, or dX, mean, variance, gamma, beta[, dγ, dβ].
    has_state_ = spec.outputs.size() > 1;
    weights_grad_ = spec.outputs.size() == 7;
    channels_ = p.channels;
    const memory::desc md = nhwc_desc(spec.output());
    auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    if (!statistics_) flags = flags | dnnl::normalization_flags::use_global_stats;
    auto hint = MPSNN_CHECK_DNNL(dnnl::batch_normalization_forward::primitive_desc(
                                     engine(), dnnl::prop_kind::forward_training, md, md, p.epsilon, flags),
                                 spec.context);
    auto pd = MPSNN_CHECK_DNNL(
        dnnl::batch_normalization_backward::primitive_desc(
            engine(), dnnl::prop_kind::backward, md, md, md, p.epsilon, flags, hint, scratchpad_attr()),
        spec.context);
    primitive_ = dnnl::batch_normalization_backward(pd);
    md_ = md;
    vec_md_ = memory::desc({p.channels}, dt::f32, tag::a);
    pad_md_ = pd.scratchpad_desc();
    // What nobody reads goes to scratch after the scratchpad: dX without a reader, dγ and dβ without
    // parameter gradients (the primitive computes them anyway; its backward_data form is not used).
    scratch_ = (pad_md_.get_size() + 63) / 64 * 64;
    vectors_offset_ = scratch_;
    scratch_ += 2 * size_t(p.channels) * 4;
    dx_offset_ = (scratch_ + 63) / 64 * 64;
    if (!result_needed_) scratch_ = dx_offset_ + size_t(spec.output().numel()) * 4;
    scale_ = memory(vec_md_, engine());
    load_parameters(p);
    version_.set(spec.params_version);
  }

  size_t scratch_bytes() const override { return scratch_; }

  std::unique_ptr<KernelState> make_state() const override {
    auto s = std::make_unique<PrimitiveState>();
    for (int arg : {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC})
      s->args[arg] = memory(md_, engine(), DNNL_MEMORY_NONE);
    for (int arg : {DNNL_ARG_MEAN, DNNL_ARG_VARIANCE}) s->args[arg] = memory(vec_md_, engine(), DNNL_MEMORY_NONE);
    for (int arg : {DNNL_ARG_DIFF_SCALE, DNNL_ARG_DIFF_SHIFT}) s->args[arg] = memory(vec_md_, engine(), DNNL_MEMORY_NONE);
    s->args[DNNL_ARG_SCALE] = scale_;
    s->args[DNNL_ARG_SCRATCHPAD] = memory(pad_md_, engine(), DNNL_MEMORY_NONE);
    return s;
  }

  // inputs: G, X, mean, variance; outputs: dX, mean, variance, gamma, beta[, dγ, dβ].
  void run(const KernelArgs& a, KernelState* state) const override {
    const ParamSnapshot& p = a.params[0];
    version_.ensure(p.version, [&] { load_parameters(*p.values.norm); });
    auto* s = static_cast<PrimitiveState*>(state);
    char* scratch = static_cast<char*>(a.scratch);
    s->args[DNNL_ARG_DIFF_DST].set_data_handle(a.inputs[0].data);
    s->args[DNNL_ARG_SRC].set_data_handle(a.inputs[1].data);
    s->args[DNNL_ARG_MEAN].set_data_handle(a.inputs[2].data);
    s->args[DNNL_ARG_VARIANCE].set_data_handle(a.inputs[3].data);
    s->args[DNNL_ARG_DIFF_SRC].set_data_handle(result_needed_ ? a.outputs[0].data : scratch + dx_offset_);
    float* vectors = reinterpret_cast<float*>(scratch + vectors_offset_);
    s->args[DNNL_ARG_DIFF_SCALE].set_data_handle(weights_grad_ ? a.outputs[5].data : vectors);
    s->args[DNNL_ARG_DIFF_SHIFT].set_data_handle(weights_grad_ ? a.outputs[6].data : vectors + channels_);
    s->args[DNNL_ARG_SCRATCHPAD].set_data_handle(scratch);
    MPSNN_CHECK_DNNL(primitive_.execute(s->stream, s->args), context_);
    s->stream.wait();
    if (!has_state_) return;
    copy_vector(a.inputs[2].as<float>(), a.outputs[1]);
    copy_vector(a.inputs[3].as<float>(), a.outputs[2]);
    copy_vector(p.values.norm->gamma.data(), a.outputs[3]);
    copy_vector(p.values.norm->beta.data(), a.outputs[4]);
  }

 private:
  void load_parameters(const NormalizationParams& p) const {
    std::copy(p.gamma.begin(), p.gamma.end(), static_cast<float*>(scale_.get_data_handle()));
  }

  bool statistics_, result_needed_, has_state_ = false, weights_grad_ = false;
  int64_t channels_ = 0;
  std::string context_;
  dnnl::primitive primitive_;
  memory::desc md_, vec_md_, pad_md_;
  mutable memory scale_;
  VersionCache version_;
  size_t scratch_ = 0, vectors_offset_ = 0, dx_offset_ = 0;
};

// inputs: G, X; outputs: dX, then (when the result state is read or exported) gamma, beta[, dγ, dβ].
class InstanceNormalizationGradientKernel final : public Kernel {
 public:
  explicit InstanceNormalizationGradientKernel(const KernelSpec& spec)
      : result_needed_(spec.result_needed), has_state_(spec.outputs.size() > 1), weights_grad_(spec.outputs.size() == 5) {
    const ImageShape& s = spec.output();
    parts_ = size_t(s.n * s.c);
  }
  // The per-image sums of G and G·x̂ (2 x N x C doubles).
  size_t scratch_bytes() const override { return 2 * parts_ * sizeof(double); }

  void run(const KernelArgs& a, KernelState*) const override {
    const NormalizationParams& p = *a.params[0].values.norm;  // read per run: no derived layout
    const TensorView g = a.inputs[0].f32(), x = a.inputs[1].f32();
    const ImageShape& s = x.shape;
    const int64_t c_n = s.c, blocks = (c_n + kBlock - 1) / kBlock, pixels = s.h * s.w;
    const double m = double(pixels), eps = p.epsilon;
    double* part_g = static_cast<double*>(a.scratch);
    double* part_gx = part_g + parts_;
    float* dx = result_needed_ ? a.outputs[0].as<float>() : nullptr;
#pragma omp parallel for collapse(2) schedule(static) if (s.numel() > 4096)
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t c0 = b * kBlock, nc = std::min(kBlock, c_n - c0);
        const float* xs = x.pixel(n, 0, 0) + c0;
        const float* gs = g.pixel(n, 0, 0) + c0;
        double mean[kBlock] = {}, var[kBlock] = {}, sg[kBlock] = {}, sgx[kBlock] = {}, inv[kBlock];
        for (int64_t q = 0; q < pixels; ++q)
          for (int64_t k = 0; k < nc; ++k) mean[k] += xs[q * x.pixel_stride + k];
        for (int64_t k = 0; k < nc; ++k) mean[k] /= m;
        for (int64_t q = 0; q < pixels; ++q)
          for (int64_t k = 0; k < nc; ++k) {
            const double d = xs[q * x.pixel_stride + k] - mean[k];
            var[k] += d * d;
          }
        for (int64_t k = 0; k < nc; ++k) inv[k] = 1.0 / std::sqrt(var[k] / m + eps);
        for (int64_t q = 0; q < pixels; ++q)
          for (int64_t k = 0; k < nc; ++k) {
            const double gv = gs[q * g.pixel_stride + k];
            sg[k] += gv;
            sgx[k] += gv * (xs[q * x.pixel_stride + k] - mean[k]) * inv[k];
          }
        for (int64_t k = 0; k < nc; ++k) {
          part_g[size_t(n * c_n + c0 + k)] = sg[k];
          part_gx[size_t(n * c_n + c0 + k)] = sgx[k];
        }
        if (!dx) continue;
        float* ds = dx + n * pixels * c_n + c0;
        for (int64_t q = 0; q < pixels; ++q)
          for (int64_t k = 0; k < nc; ++k) {
            const double xh = (xs[q * x.pixel_stride + k] - mean[k]) * inv[k];
            const double gv = gs[q * g.pixel_stride + k];
            ds[q * c_n + k] = float(p.gamma[size_t(c0 + k)] * inv[k] * (gv - sg[k] / m - xh * sgx[k] / m));
          }
      }
    if (!has_state_) return;
    copy_vector(p.gamma.data(), a.outputs[1]);
    copy_vector(p.beta.data(), a.outputs[2]);
    if (!weights_grad_) return;
    float* dgamma = a.outputs[3].as<float>();
    float* dbeta = a.outputs[4].as<float>();
    for (int64_t c = 0; c < c_n; ++c) {
      double sum_g = 0, sum_gx = 0;
      for (int64_t n = 0; n < s.n; ++n) {
        sum_g += part_g[size_t(n * c_n + c)];
        sum_gx += part_gx[size_t(n * c_n + c)];
      }
      dgamma[c] = float(sum_gx);
      dbeta[c] = float(sum_g);
    }
  }

 private:
  static constexpr int64_t kBlock = 16;
  bool result_needed_, has_state_, weights_grad_;
  size_t parts_ = 0;
};

}  // namespace

std::unique_ptr<Kernel> make_batch_normalization_gradient(const KernelSpec& spec, Device&) {
  return std::make_unique<BatchNormalizationGradientKernel>(spec);
}
std::unique_ptr<Kernel> make_instance_normalization_gradient(const KernelSpec& spec, Device&) {
  return std::make_unique<InstanceNormalizationGradientKernel>(spec);
}

}  // namespace MPSNN_ISA_NAMESPACE
