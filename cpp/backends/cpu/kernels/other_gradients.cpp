// Gradient kernels of the arithmetic, concatenation, softmax, normalization, upsampling and
// dropout families, and the training-mode dropout forward (the mask it samples for its state).
// oneDNN backward primitives where oneDNN has the operation with MPS's definition: softmax and
// log-softmax, cross-channel LRN with odd windows. Upsampling gradients are our own gather
// (oneDNN's resampling backward is slower than it, and has no align-corners mode).
// Every primitive (and the forward primitive whose descriptor the backward one needs) is made
// when the plan is compiled. The rest are our own loops (own_other_gradients.h says why).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/own_other_gradients.h"
#include "backends/cpu/register.h"

namespace MPSNN_ISA_NAMESPACE {

namespace {

size_t round_up(size_t bytes) { return (bytes + 63) / 64 * 64; }

// Per-run memory objects of the primitives of one kernel: one argument map per primitive.
struct PrimitivesState : KernelState {
  dnnl::stream stream{engine()};
  std::vector<std::unordered_map<int, memory>> slots;
};

// One oneDNN primitive with any set of memory arguments, each bound to a pointer per run.
class BoundPrimitive {
 public:
  BoundPrimitive() = default;
  BoundPrimitive(const dnnl::primitive_desc& pd, std::vector<std::pair<int, memory::desc>> args)
      : primitive_(pd), args_(std::move(args)) {
    args_.emplace_back(DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc());
  }
  explicit operator bool() const { return bool(primitive_); }
  size_t scratchpad_bytes() const { return args_.empty() ? 0 : args_.back().second.get_size(); }
  void add_to(PrimitivesState& s, size_t slot) const {
    if (s.slots.size() <= slot) s.slots.resize(slot + 1);
    for (const auto& [id, md] : args_) s.slots[slot][id] = memory(md, engine(), DNNL_MEMORY_NONE);
  }
  // `ptrs` in the order of the constructor's args; the scratchpad last.
  void run(PrimitivesState& s, size_t slot, std::initializer_list<const void*> ptrs, void* scratchpad) const {
    auto& args = s.slots[slot];
    size_t i = 0;
    for (const void* p : ptrs) args[args_[i++].first].set_data_handle(const_cast<void*>(p));
    args[DNNL_ARG_SCRATCHPAD].set_data_handle(scratchpad);
    primitive_.execute(s.stream, args);
    s.stream.wait();
  }

 private:
  dnnl::primitive primitive_;
  std::vector<std::pair<int, memory::desc>> args_;
};

// ---- arithmetic ---------------------------------------------------------------------------------

class ArithmeticGradientKernel final : public Kernel {
 public:
  explicit ArithmeticGradientKernel(const KernelSpec& spec) {
    const auto& a = spec.attrs_as<ArithmeticAttrs>();
    p_.op = a.op == ArithmeticOp::add        ? own::ArithmeticGradientOp::add
            : a.op == ArithmeticOp::subtract ? own::ArithmeticGradientOp::subtract
                                             : own::ArithmeticGradientOp::multiply;
    p_.secondary = a.is_secondary_source_filter;
    p_.primary_scale = a.primary_scale;
    p_.secondary_scale = a.secondary_scale;
    const auto& diff = p_.secondary ? a.secondary_strides : a.primary_strides;
    const auto& other = p_.secondary ? a.primary_strides : a.secondary_strides;
    for (int i = 0; i < 3; ++i) {
      p_.diff_stride[i] = diff[size_t(i)];
      p_.other_stride[i] = other[size_t(i)];
    }
    MPSNN_CHECK(spec.inputs.size() == 3 && spec.inputs[2].dtype == DType::u8, BackendError, spec.context,
                " internal error: arithmetic gradient without the clamp mask of its forward step");
    in_place_ = diff == std::array<int, 3>{1, 1, 1};
  }
  int in_place_input() const override { return in_place_ ? 0 : -1; }
  void run(const KernelArgs& a, KernelState*) const override {
    const TensorView other = a.inputs[1].f32();
    own::arithmetic_gradient(a.inputs[0].f32(), a.inputs[2].as<uint8_t>(),
                             p_.op == own::ArithmeticGradientOp::multiply ? &other : nullptr, a.outputs[0].f32(), p_);
  }

 private:
  own::ArithmeticGradientParams p_{};
  bool in_place_ = false;
};

// A slice of G: channels [offset, offset + count) (strided per-pixel copies).
class ConcatenationGradientKernel final : public Kernel {
 public:
  explicit ConcatenationGradientKernel(const KernelSpec& spec)
      : offset_(spec.geom.source_channel_offset), count_(spec.geom.source_channel_count) {}
  void run(const KernelArgs& a, KernelState*) const override {
    const TensorView g = a.inputs[0].f32(), d = a.outputs[0].f32();
    const ImageShape& s = d.shape;
#pragma omp parallel for collapse(2) schedule(static) if (s.numel() > (1 << 15))
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t x = 0; x < s.w; ++x) std::memcpy(d.pixel(n, y, x), g.pixel(n, y, x) + offset_, size_t(count_) * 4);
  }

 private:
  int64_t offset_, count_;
};

// The oneDNN states of a gradient step: its backward primitive (slot 0) and, when it recomputes
// or needs a workspace, the forward primitive it runs first (slot 1).
std::unique_ptr<KernelState> primitive_states(const BoundPrimitive& backward, const BoundPrimitive& forward) {
  auto s = std::make_unique<PrimitivesState>();
  backward.add_to(*s, 0);
  if (forward) forward.add_to(*s, 1);
  return s;
}

// ---- softmax --------------------------------------------------------------------------------------

// oneDNN softmax backward from the forward result Y; a hand-built node given the forward source X
// recomputes Y into scratch first (nodes.md §7.2).
class SoftMaxGradientKernel final : public Kernel {
 public:
  explicit SoftMaxGradientKernel(const KernelSpec& spec) : recompute_(spec.attrs_as<SoftMaxAttrs>().gradient_reads_source) {
    const memory::desc md = nhwc_desc(spec.output());
    const auto alg = spec.attrs_as<SoftMaxAttrs>().log ? dnnl::algorithm::softmax_log : dnnl::algorithm::softmax_accurate;
    const auto fwd = MPSNN_CHECK_DNNL(dnnl::softmax_forward::primitive_desc(engine(), dnnl::prop_kind::forward_training,
                                                                            alg, md, md, 1, scratchpad_attr()),
                                      spec.context);
    const auto bwd = MPSNN_CHECK_DNNL(
        dnnl::softmax_backward::primitive_desc(engine(), alg, md, md, md, 1, fwd, scratchpad_attr()), spec.context);
    backward_ = BoundPrimitive(bwd, {{DNNL_ARG_DIFF_DST, md}, {DNNL_ARG_DST, md}, {DNNL_ARG_DIFF_SRC, md}});
    if (recompute_) {
      forward_ = BoundPrimitive(fwd, {{DNNL_ARG_SRC, md}, {DNNL_ARG_DST, md}});
      y_bytes_ = round_up(md.get_size());
    }
  }
  size_t scratch_bytes() const override {
    return y_bytes_ + std::max(backward_.scratchpad_bytes(), forward_ ? forward_.scratchpad_bytes() : 0);
  }
  std::unique_ptr<KernelState> make_state() const override { return primitive_states(backward_, forward_); }
  void run(const KernelArgs& a, KernelState* state) const override {
    auto& s = *static_cast<PrimitivesState*>(state);
    char* scratch = static_cast<char*>(a.scratch);
    const void* y = a.inputs[1].data;
    if (recompute_) {
      forward_.run(s, 1, {a.inputs[1].data, scratch}, scratch + y_bytes_);
      y = scratch;
    }
    backward_.run(s, 0, {a.inputs[0].data, y, a.outputs[0].data}, scratch + y_bytes_);
  }

 private:
  bool recompute_;
  BoundPrimitive forward_, backward_;
  size_t y_bytes_ = 0;
};

// ---- normalization --------------------------------------------------------------------------------

// Cross-channel LRN with an odd window on oneDNN (its definition equals nodes.md §8.2 then). The
// forward training primitive is run first when oneDNN's backward wants its workspace.
class LrnGradientKernel final : public Kernel {
 public:
  explicit LrnGradientKernel(const KernelSpec& spec) {
    const auto& a = spec.attrs_as<NormalizationAttrs>();
    const memory::desc md = nhwc_desc(spec.output());
    const auto alg = dnnl::algorithm::lrn_across_channels;
    const auto fwd = MPSNN_CHECK_DNNL(
        dnnl::lrn_forward::primitive_desc(engine(), dnnl::prop_kind::forward_training, alg, md, md, a.kernel_width,
                                          a.alpha, a.beta, a.delta, scratchpad_attr()),
        spec.context);
    const auto bwd = MPSNN_CHECK_DNNL(dnnl::lrn_backward::primitive_desc(engine(), alg, md, md, md, a.kernel_width,
                                                                         a.alpha, a.beta, a.delta, fwd,
                                                                         scratchpad_attr()),
                                      spec.context);
    const memory::desc ws = fwd.workspace_desc();
    if (ws.get_size() > 0) {
      forward_ = BoundPrimitive(fwd, {{DNNL_ARG_SRC, md}, {DNNL_ARG_DST, md}, {DNNL_ARG_WORKSPACE, ws}});
      y_bytes_ = round_up(md.get_size());
      ws_bytes_ = round_up(ws.get_size());
      backward_ = BoundPrimitive(bwd, {{DNNL_ARG_SRC, md}, {DNNL_ARG_DIFF_DST, md}, {DNNL_ARG_WORKSPACE, ws},
                                       {DNNL_ARG_DIFF_SRC, md}});
    } else {
      backward_ = BoundPrimitive(bwd, {{DNNL_ARG_SRC, md}, {DNNL_ARG_DIFF_DST, md}, {DNNL_ARG_DIFF_SRC, md}});
    }
  }
  size_t scratch_bytes() const override {
    return y_bytes_ + ws_bytes_ + std::max(backward_.scratchpad_bytes(), forward_ ? forward_.scratchpad_bytes() : 0);
  }
  std::unique_ptr<KernelState> make_state() const override { return primitive_states(backward_, forward_); }
  void run(const KernelArgs& a, KernelState* state) const override {
    auto& s = *static_cast<PrimitivesState*>(state);
    char* scratch = static_cast<char*>(a.scratch);
    char* pad = scratch + y_bytes_ + ws_bytes_;
    const void *x = a.inputs[1].data, *g = a.inputs[0].data;
    if (forward_) {
      forward_.run(s, 1, {x, scratch, scratch + y_bytes_}, pad);
      backward_.run(s, 0, {x, g, scratch + y_bytes_, a.outputs[0].data}, pad);
    } else {
      backward_.run(s, 0, {x, g, a.outputs[0].data}, pad);
    }
  }

 private:
  BoundPrimitive forward_, backward_;
  size_t y_bytes_ = 0, ws_bytes_ = 0;
};

class OwnNormalizationGradientKernel final : public Kernel {
 public:
  explicit OwnNormalizationGradientKernel(const KernelSpec& spec) : a_(spec.attrs_as<NormalizationAttrs>()) {
    const ImageShape& s = spec.output();
    if (a_.mode == NormalizationMode::spatial) scratch_ = size_t(own::spatial_normalization_gradient_scratch(s)) * 4;
    if (a_.mode == NormalizationMode::local_contrast)
      scratch_ = size_t(own::local_contrast_normalization_gradient_scratch(s)) * 4;
  }
  size_t scratch_bytes() const override { return scratch_; }
  void run(const KernelArgs& a, KernelState*) const override {
    const TensorView g = a.inputs[0].f32(), x = a.inputs[1].f32(), d = a.outputs[0].f32();
    float* scratch = static_cast<float*>(a.scratch);
    switch (a_.mode) {
      case NormalizationMode::cross_channel:
        own::cross_channel_normalization_gradient(x, g, d, a_.kernel_width, a_.alpha, a_.beta, a_.delta);
        break;
      case NormalizationMode::spatial:
        own::spatial_normalization_gradient(x, g, d, a_.kernel_width, a_.kernel_height, a_.alpha, a_.beta, a_.delta,
                                            scratch);
        break;
      case NormalizationMode::local_contrast:
        own::local_contrast_normalization_gradient(x, g, d, a_.kernel_width, a_.kernel_height, a_.alpha, a_.beta,
                                                   a_.delta, a_.p0, a_.ps, scratch);
        break;
    }
  }

 private:
  NormalizationAttrs a_;
  size_t scratch_ = 0;
};

// ---- upsampling ------------------------------------------------------------------------------------

// Our own gather (own::upsampling_gradient) for every mode: the adjoint of the forward's
// per-axis taps, computed here as the forward kernels compute them (resample.cpp, own_scale.cpp).
// oneDNN's resampling backward (linear, NHWC) ran 2.4x slower than PyTorch's upsample backward
// (benchmarks/README.md) and has no align-corners mode.
class UpsamplingGradientKernel final : public Kernel {
 public:
  explicit UpsamplingGradientKernel(const KernelSpec& spec) {
    const auto& a = spec.attrs_as<UpsamplingAttrs>();
    const ImageShape& g = spec.input(0);
    const ImageShape& d = spec.output();
    build(a, d.h, g.h, a.scale_factor_y, y_);
    build(a, d.w, g.w, a.scale_factor_x, x_);
  }
  void run(const KernelArgs& a, KernelState*) const override {
    own::upsampling_gradient(a.inputs[0].f32(), a.outputs[0].f32(), view(y_), view(x_));
  }

 private:
  struct Axis {
    std::vector<int64_t> offsets, index;
    std::vector<float> weight;
  };
  // Source size S, result size D = f S: every result index o's taps (k, w), listed per k.
  static void build(const UpsamplingAttrs& a, int64_t S, int64_t D, int64_t f, Axis& ax) {
    std::vector<std::vector<std::pair<int64_t, float>>> per(static_cast<size_t>(S));
    for (int64_t o = 0; o < D; ++o) {
      if (a.mode == UpsamplingMode::nearest) {  // nodes.md 9.1: the block sum
        per[size_t(std::min(o / f, S - 1))].emplace_back(o, 1.0f);
        continue;
      }
      double u;  // nodes.md 9.2
      if (a.align_corners) {
        u = D == 1 ? 0.0 : double(o) * double(S - 1) / double(D - 1);
      } else {  // half-pixel, clamped as own::bilinear_scale's taps (scale f, no translation)
        u = (double(o) + 0.5) / double(f) - 0.5;
        u = std::min(std::max(u, 0.0), double(S - 1));
      }
      const int64_t k0 = int64_t(std::floor(u)), k1 = std::min(k0 + 1, S - 1);
      const float l = float(u - double(k0));
      per[size_t(k0)].emplace_back(o, 1.0f - l);  // zero weights kept: the matrix adjoint (0 * inf = NaN)
      per[size_t(k1)].emplace_back(o, l);
    }
    ax.offsets.assign(1, 0);
    for (const auto& list : per) {
      for (const auto& [o, w] : list) {
        ax.index.push_back(o);
        ax.weight.push_back(w);
      }
      ax.offsets.push_back(int64_t(ax.index.size()));
    }
  }
  static own::AxisAdjoint view(const Axis& a) { return {a.offsets.data(), a.index.data(), a.weight.data()}; }
  Axis y_, x_;
};

// ---- dropout -------------------------------------------------------------------------------------

// Training-mode forward (its state is consumed): samples the keep mask into the state buffer
// (own::dropout_mask documents the generator) and writes Y = X M / p. Each run draws the next mask
// of the step's sequence (runs of one plan from several threads take distinct draws).
class DropoutKernel final : public Kernel {
 public:
  explicit DropoutKernel(const KernelSpec& spec) : a_(spec.attrs_as<DropoutAttrs>()) {
    MPSNN_CHECK(spec.outputs.size() == 2 && spec.outputs[1].dtype == DType::u8, BackendError, spec.context,
                " internal error: a dropout step without its mask (inference dropout is aliased away)");
    mask_shape_ = spec.outputs[1].shape;
  }
  int in_place_input() const override { return 0; }
  void run(const KernelArgs& a, KernelState*) const override {
    uint8_t* mask = a.outputs[1].as<uint8_t>();
    const auto draw = uint32_t(draws_.fetch_add(1, std::memory_order_relaxed));
    own::dropout_mask(mask, mask_shape_, a_.keep_probability, a_.seed, draw);
    own::apply_dropout_mask(a.inputs[0].f32(), mask, mask_shape_, a_.keep_probability, a.outputs[0].f32());
  }

 private:
  DropoutAttrs a_;
  ImageShape mask_shape_;
  mutable std::atomic<uint64_t> draws_{0};
};

class DropoutGradientKernel final : public Kernel {
 public:
  explicit DropoutGradientKernel(const KernelSpec& spec) : p_(spec.attrs_as<DropoutAttrs>().keep_probability) {
    MPSNN_CHECK(spec.inputs.size() == 3 && spec.inputs[2].dtype == DType::u8, BackendError, spec.context,
                " internal error: dropout gradient without the mask of its forward step");
    mask_shape_ = spec.inputs[2].shape;
  }
  int in_place_input() const override { return 0; }
  void run(const KernelArgs& a, KernelState*) const override {
    own::apply_dropout_mask(a.inputs[0].f32(), a.inputs[2].as<uint8_t>(), mask_shape_, p_, a.outputs[0].f32());
  }

 private:
  float p_;
  ImageShape mask_shape_;
};

}  // namespace

std::unique_ptr<Kernel> make_arithmetic_gradient(const KernelSpec& spec, Device&) {
  return std::make_unique<ArithmeticGradientKernel>(spec);
}
std::unique_ptr<Kernel> make_concatenation_gradient(const KernelSpec& spec, Device&) {
  return std::make_unique<ConcatenationGradientKernel>(spec);
}
std::unique_ptr<Kernel> make_softmax_gradient(const KernelSpec& spec, Device&) {
  return std::make_unique<SoftMaxGradientKernel>(spec);
}
std::unique_ptr<Kernel> make_normalization_gradient(const KernelSpec& spec, Device&) {
  const auto& a = spec.attrs_as<NormalizationAttrs>();
  // oneDNN 3.2's avx512 nhwc LRN backward crashes while generating its code for local size 1
  // (every channel count tried); that window, like the even ones, runs our own loop.
  if (a.mode == NormalizationMode::cross_channel && a.kernel_width % 2 == 1 && a.kernel_width > 1)
    return std::make_unique<LrnGradientKernel>(spec);
  return std::make_unique<OwnNormalizationGradientKernel>(spec);
}
std::unique_ptr<Kernel> make_upsampling_gradient(const KernelSpec& spec, Device&) {
  return std::make_unique<UpsamplingGradientKernel>(spec);
}
std::unique_ptr<Kernel> make_dropout(const KernelSpec& spec, Device&) { return std::make_unique<DropoutKernel>(spec); }
std::unique_ptr<Kernel> make_dropout_gradient(const KernelSpec& spec, Device&) {
  return std::make_unique<DropoutGradientKernel>(spec);
}

}  // namespace MPSNN_ISA_NAMESPACE
