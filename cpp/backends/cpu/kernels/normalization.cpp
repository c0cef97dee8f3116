// Normalizations. Batch normalization and cross-channel LRN (odd windows) run on oneDNN.
// Our own loops: instance normalization (oneDNN has no per-image-and-channel statistics
// primitive in 3.2), cross-channel LRN with even windows (oneDNN centres even windows one
// channel differently from MPS), and spatial / local-contrast normalization (own_kernels).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/own_kernels.h"
#include "backends/cpu/register.h"

namespace MPSNN_ISA_NAMESPACE {

namespace {

class BatchNormalizationKernel final : public PrimitiveKernel {
 public:
  explicit BatchNormalizationKernel(const KernelSpec& spec) : stats_(spec.batch_statistics) {
    const NormalizationParams& p = *spec.params.norm;
    const memory::desc md = nhwc_desc(spec.output());
    auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    if (!stats_) flags = flags | dnnl::normalization_flags::use_global_stats;
    runner_ = PrimitiveRunner(MPSNN_CHECK_DNNL(
        dnnl::batch_normalization_forward::primitive_desc(
            engine(), stats_ ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference, md, md,
            p.epsilon, flags, scratchpad_attr()),
        spec.context));
    vec_md_ = memory::desc({p.channels}, dt::f32, tag::a);
    scale_ = memory(vec_md_, engine());
    shift_ = memory(vec_md_, engine());
    if (!stats_) {
      mean_ = memory(vec_md_, engine());
      variance_ = memory(vec_md_, engine());
    }
    load_parameters(p);
    version_.set(spec.params_version);
  }
  int in_place_input() const override { return 0; }
  // With a consumed or exported state (outputs 1, 2) the statistics normalized with go there: the
  // batch's are written by the primitive, the data source's copied.
  void run(const KernelArgs& a, KernelState* state) const override {
    const ParamSnapshot& p = a.params[0];
    version_.ensure(p.version, [&] { load_parameters(*p.values.norm); });
    const bool to_state = a.num_outputs >= 3;
    if (stats_ && to_state) {
      auto* s = static_cast<PrimitiveState*>(state);
      s->args[DNNL_ARG_MEAN].set_data_handle(a.outputs[1].data);
      s->args[DNNL_ARG_VARIANCE].set_data_handle(a.outputs[2].data);
    }
    PrimitiveKernel::run(a, state);
    if (!stats_ && to_state) {
      std::memcpy(a.outputs[1].data, mean_.get_data_handle(), a.outputs[1].dense_bytes());
      std::memcpy(a.outputs[2].data, variance_.get_data_handle(), a.outputs[2].dense_bytes());
    }
  }
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
  // Rewrites gamma/beta (and the running statistics) in place: every state binds these memories.
  void load_parameters(const NormalizationParams& p) const {
    auto fill = [](const std::vector<float>& v, const memory& m) {
      std::copy(v.begin(), v.end(), static_cast<float*>(m.get_data_handle()));
    };
    fill(p.gamma, scale_);
    fill(p.beta, shift_);
    if (!stats_) {
      fill(p.mean, mean_);
      fill(p.variance, variance_);
    }
  }

  bool stats_;
  memory::desc vec_md_;
  memory scale_, shift_, mean_, variance_;
  VersionCache version_;
};

// nodes.md §8.6 with our own kernel (own_normalization.cpp): oneDNN 3.2 has no per-image
// statistics primitive.
class InstanceNormalizationKernel final : public Kernel {
 public:
  int in_place_input() const override { return 0; }
  void run(const KernelArgs& a, KernelState*) const override {
    const NormalizationParams& p = *a.params[0].values.norm;  // read per run: no derived layout
    own::instance_normalization(a.inputs[0].f32(), a.outputs[0].f32(), p.gamma.data(), p.beta.data(), p.epsilon);
  }
};

class CrossChannelKernel final : public Kernel {
 public:
  explicit CrossChannelKernel(const KernelSpec& spec) : a_(spec.attrs_as<NormalizationAttrs>()) {
    const int64_t n = a_.kernel_width;
    if (n % 2 == 1) {
      const memory::desc md = nhwc_desc(spec.output());
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
      runner_.run(state, a.inputs[0].as<float>(), a.outputs[0].as<float>(), a.scratch);
      return;
    }
    // nodes.md §8.2 window [k - N/2, k + (N-1)/2], divisor N.
    const ImageShape& s = a.inputs[0].shape;
    const int64_t pixels = s.n * s.h * s.w, c = s.c, N = a_.kernel_width;
    const float alpha = a_.alpha / float(N), beta = a_.beta, delta = a_.delta;
#pragma omp parallel for
    for (int64_t p = 0; p < pixels; ++p) {
      const float* x = a.inputs[0].as<float>() + p * c;  // dense: the compiler binds dense values
      float* y = a.outputs[0].as<float>() + p * c;
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
  explicit OwnNormalizationKernel(const KernelSpec& spec) : a_(spec.attrs_as<NormalizationAttrs>()) {}
  void run(const KernelArgs& a, KernelState*) const override {
    if (a_.mode == NormalizationMode::spatial)
      own::spatial_normalization(a.inputs[0].f32(), a.outputs[0].f32(), a_.kernel_width, a_.kernel_height, a_.alpha, a_.beta, a_.delta);
    else
      own::local_contrast_normalization(a.inputs[0].f32(), a.outputs[0].f32(), a_.kernel_width, a_.kernel_height, a_.alpha, a_.beta,
                                        a_.delta, a_.pm, a_.ps, a_.p0);
  }

 private:
  NormalizationAttrs a_;
};

}  // namespace

std::unique_ptr<Kernel> make_batch_normalization(const KernelSpec& spec, Device&) {
  return std::make_unique<BatchNormalizationKernel>(spec);
}
std::unique_ptr<Kernel> make_instance_normalization(const KernelSpec&, Device&) {
  return std::make_unique<InstanceNormalizationKernel>();
}
std::unique_ptr<Kernel> make_normalization(const KernelSpec& spec, Device&) {
  if (spec.attrs_as<NormalizationAttrs>().mode == NormalizationMode::cross_channel)
    return std::make_unique<CrossChannelKernel>(spec);
  return std::make_unique<OwnNormalizationKernel>(spec);
}

}  // namespace MPSNN_ISA_NAMESPACE
