// Normalizations. Batch normalization and cross-channel LRN (odd windows) run on oneDNN.
// Our own loops: instance normalization (oneDNN has no per-image-and-channel statistics
// primitive in 3.2), cross-channel LRN with even windows (oneDNN centres even windows one
// channel differently from MPS), and spatial / local-contrast normalization (own_kernels).
#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/own_kernels.h"
#include "backends/cpu/register.h"

namespace mpsnn::cpu {

namespace {

class BatchNormalizationKernel final : public PrimitiveKernel {
 public:
  explicit BatchNormalizationKernel(const KernelSpec& spec) : stats_(spec.batch_statistics) {
    const NormalizationParams& p = *spec.norm;
    const memory::desc md = nhwc_desc(spec.output);
    auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    if (!stats_) flags = flags | dnnl::normalization_flags::use_global_stats;
    runner_ = PrimitiveRunner(MPSNN_CHECK_DNNL(
        dnnl::batch_normalization_forward::primitive_desc(
            engine(), stats_ ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference, md, md,
            p.epsilon, flags, scratchpad_attr()),
        spec.context));
    vec_md_ = memory::desc({p.channels}, dt::f32, tag::a);
    auto fill = [&](const std::vector<float>& v) {
      memory m(vec_md_, engine());
      std::copy(v.begin(), v.end(), static_cast<float*>(m.get_data_handle()));
      return m;
    };
    scale_ = fill(p.gamma);
    shift_ = fill(p.beta);
    if (!stats_) {
      mean_ = fill(p.mean);
      variance_ = fill(p.variance);
    }
  }
  bool in_place_ok() const override { return true; }
  std::unique_ptr<KernelState> make_state() const override {
    auto s = runner_.make_state();
    s->args[DNNL_ARG_SCALE] = scale_;
    s->args[DNNL_ARG_SHIFT] = shift_;
    // Batch statistics are written per run, so each context owns its mean/variance.
    s->args[DNNL_ARG_MEAN] = stats_ ? memory(vec_md_, engine()) : mean_;
    s->args[DNNL_ARG_VARIANCE] = stats_ ? memory(vec_md_, engine()) : variance_;
    return s;
  }

 private:
  bool stats_;
  memory::desc vec_md_;
  memory scale_, shift_, mean_, variance_;
};

// nodes.md §8.6 with our own kernel (own_normalization.cpp): oneDNN 3.2 has no per-image
// statistics primitive.
class InstanceNormalizationKernel final : public Kernel {
 public:
  explicit InstanceNormalizationKernel(const KernelSpec& spec) : p_(spec.norm) {}
  bool in_place_ok() const override { return true; }
  void run(const KernelArgs& a, KernelState*) const override {
    own::instance_normalization(a.inputs[0], a.output, p_->gamma.data(), p_->beta.data(), p_->epsilon);
  }

 private:
  std::shared_ptr<const NormalizationParams> p_;
};

class CrossChannelKernel final : public Kernel {
 public:
  explicit CrossChannelKernel(const KernelSpec& spec) : a_(spec.node->attrs_as<NormalizationAttrs>()) {
    const int64_t n = a_.kernel_width;
    if (n % 2 == 1) {
      const memory::desc md = nhwc_desc(spec.output);
      runner_ = PrimitiveRunner(MPSNN_CHECK_DNNL(
          dnnl::lrn_forward::primitive_desc(engine(), dnnl::prop_kind::forward_inference,
                                            dnnl::algorithm::lrn_across_channels, md, md, n, a_.alpha, a_.beta,
                                            a_.delta, scratchpad_attr()),
          spec.context));
      use_dnnl_ = true;
    }
  }
  size_t scratch_bytes() const override { return use_dnnl_ ? runner_.scratch_bytes() : 0; }
  std::unique_ptr<KernelState> make_state() const override { return use_dnnl_ ? runner_.make_state() : nullptr; }
  void run(const KernelArgs& a, KernelState* state) const override {
    if (use_dnnl_) {
      runner_.run(state, a.inputs[0].data, a.output.data, a.scratch);
      return;
    }
    // nodes.md §8.2 window [k - N/2, k + (N-1)/2], divisor N.
    const ImageShape& s = a.inputs[0].shape;
    const int64_t pixels = s.n * s.h * s.w, c = s.c, N = a_.kernel_width;
    const float alpha = a_.alpha / float(N), beta = a_.beta, delta = a_.delta;
#pragma omp parallel for
    for (int64_t p = 0; p < pixels; ++p) {
      const float* x = a.inputs[0].data + p * c;
      float* y = a.output.data + p * c;
      for (int64_t k = 0; k < c; ++k) {
        const int64_t lo = std::max<int64_t>(0, k - N / 2), hi = std::min<int64_t>(c - 1, k + (N - 1) / 2);
        float sum = 0;
        for (int64_t q = lo; q <= hi; ++q) sum += x[q] * x[q];
        y[k] = x[k] * std::exp(-beta * std::log(delta + alpha * sum));
      }
    }
  }

 private:
  NormalizationAttrs a_;
  bool use_dnnl_ = false;
  PrimitiveRunner runner_;
};

class OwnNormalizationKernel final : public Kernel {
 public:
  explicit OwnNormalizationKernel(const KernelSpec& spec) : a_(spec.node->attrs_as<NormalizationAttrs>()) {}
  void run(const KernelArgs& a, KernelState*) const override {
    if (a_.mode == NormalizationMode::spatial)
      own::spatial_normalization(a.inputs[0], a.output, a_.kernel_width, a_.kernel_height, a_.alpha, a_.beta, a_.delta);
    else
      own::local_contrast_normalization(a.inputs[0], a.output, a_.kernel_width, a_.kernel_height, a_.alpha, a_.beta,
                                        a_.delta, a_.pm, a_.ps, a_.p0);
  }

 private:
  NormalizationAttrs a_;
};

}  // namespace

std::unique_ptr<Kernel> make_batch_normalization(const KernelSpec& spec) {
  return std::make_unique<BatchNormalizationKernel>(spec);
}
std::unique_ptr<Kernel> make_instance_normalization(const KernelSpec& spec) {
  return std::make_unique<InstanceNormalizationKernel>(spec);
}
std::unique_ptr<Kernel> make_normalization(const KernelSpec& spec) {
  if (spec.node->attrs_as<NormalizationAttrs>().mode == NormalizationMode::cross_channel)
    return std::make_unique<CrossChannelKernel>(spec);
  return std::make_unique<OwnNormalizationKernel>(spec);
}

}  // namespace mpsnn::cpu
