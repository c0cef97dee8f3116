// Convolution family on oneDNN: convolution (regular, grouped, depthwise, sub-pixel), inner
// product (fully connected) and deconvolution (transposed convolution). Activations stay NHWC;
// weights are reordered into the layout oneDNN picks (format_tag::any) when the plan is made, and
// again in place when a run brings a newer parameter version (a reload or, later, an optimizer
// step). A fused residual sum (oneDNN's sum post-op accumulates into the destination) reads the
// addend, the step's last input, from the output: the kernel copies it there first.
// Edge clamp (nodes.md §1.4) and a source channel window (a custom policy's
// source_feature_channel_offset) stage the source first: the rows and columns the windows cover,
// edge-replicated, and only the channels read, as a dense image in scratch that the primitive
// reads without padding. Zero edges over the whole source stay the direct path.
#include <algorithm>
#include <cstring>
#include <optional>

#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/convolution_common.h"
#include "backends/cpu/register.h"

namespace mpsnn::cpu {

namespace {

void fill_bias(const ConvolutionParams& p, memory& b) {
  float* dst = static_cast<float*>(b.get_data_handle());
  if (p.bias.empty()) std::fill(dst, dst + p.desc.output_feature_channels, 0.0f);
  else std::copy(p.bias.begin(), p.bias.end(), dst);
}

// Shared by the three primitives: refresh the weights, copy a residual addend, bind
// src/dst/scratch, execute, apply the post-op tail.
class ConvolutionKernelBase : public Kernel {
 public:
  // The output may take over the residual addend's memory (the sum accumulates into it anyway).
  int in_place_input() const override { return sum_ ? num_inputs_ - 1 : -1; }
  size_t scratch_bytes() const override { return scratch_bytes_ + extra_scratch_; }
  std::unique_ptr<KernelState> make_state() const override {
    auto s = std::make_unique<PrimitiveState>();
    s->args[DNNL_ARG_SRC] = memory(src_md_, engine(), DNNL_MEMORY_NONE);
    s->args[DNNL_ARG_DST] = memory(dst_md_, engine(), DNNL_MEMORY_NONE);
    s->args[DNNL_ARG_WEIGHTS] = weights_.mem();
    s->args[DNNL_ARG_BIAS] = bias_;
    s->args[DNNL_ARG_SCRATCHPAD] = memory(scratchpad_md_, engine(), DNNL_MEMORY_NONE);
    return s;
  }

 protected:
  // Runs the primitive writing to `dst` (the output, or scratch for kernels that post-process).
  void execute(const KernelArgs& a, KernelState* state, float* dst, const float* staged = nullptr) const {
    const ParamSnapshot& p = a.params[0];
    weights_version_.ensure(p.version, [&] { load_parameters(p.values.conv); });
    if (sum_) {  // the addend is the last input; oneDNN accumulates into dst
      const TensorRef& addend = a.inputs[a.num_inputs - 1];
      if (addend.data != dst) std::memcpy(dst, addend.data, addend.dense_bytes());
    }
    auto* s = static_cast<PrimitiveState*>(state);
    s->args[DNNL_ARG_SRC].set_data_handle(staged ? const_cast<float*>(staged) : a.inputs[0].as<float>() + src_offset_);
    s->args[DNNL_ARG_DST].set_data_handle(dst);
    s->args[DNNL_ARG_SCRATCHPAD].set_data_handle(static_cast<char*>(a.scratch) + extra_scratch_);
    primitive_.execute(s->stream, s->args);
    s->stream.wait();
  }
  void finish_setup(const dnnl::primitive_desc_base& pd, const KernelSpec& spec, bool fully_connected, bool flip) {
    src_md_ = pd.src_desc();
    dst_md_ = pd.dst_desc();
    scratchpad_md_ = pd.scratchpad_desc();
    scratch_bytes_ = scratchpad_md_.get_size();
    fully_connected_ = fully_connected;
    flip_ = flip;
    weights_ = PrimitiveWeights(pd.weights_desc(), spec.params.conv->desc, fully_connected, flip);
    bias_ = memory({{spec.params.conv->desc.output_feature_channels}, dt::f32, tag::a}, engine());
    for (const auto& op : spec.post_ops) sum_ = sum_ || op.kind == PostOp::Kind::sum;
    num_inputs_ = int(spec.inputs.size());
    load_parameters(spec.params.conv);
    weights_version_.set(spec.params_version);
  }
  // Rewrites the primitive's weights and bias in place (their memory is bound in every state).
  void load_parameters(const std::shared_ptr<const ConvolutionParams>& p) const {
    weights_.load(p);
    fill_bias(*p, bias_);
  }
  static dnnl::primitive_attr attr_for(const PostOpPlan& plan) {
    dnnl::primitive_attr attr = scratchpad_attr();
    attr.set_post_ops(plan.ops);
    return attr;
  }

  dnnl::primitive primitive_;
  memory::desc src_md_, dst_md_, scratchpad_md_;
  PrimitiveWeights weights_;
  mutable memory bias_;
  VersionCache weights_version_;
  bool fully_connected_ = false, flip_ = false, sum_ = false;
  // Stages the source into scratch (at stage_offset_) when the kernel needs it; null otherwise.
  const float* stage_source(const KernelArgs& a) const {
    if (!stage_) return nullptr;
    float* staged = reinterpret_cast<float*>(static_cast<char*>(a.scratch) + stage_offset_);
    stage_->run(a.inputs[0].f32(), staged);
    return staged;
  }

  int num_inputs_ = 1;
  int64_t src_offset_ = 0;
  std::optional<SourceStage> stage_;
  size_t stage_offset_ = 0;
  size_t scratch_bytes_ = 0, extra_scratch_ = 0;
  std::vector<PostOp> tail_;
};

class ConvolutionKernel final : public ConvolutionKernelBase {
 public:
  explicit ConvolutionKernel(const KernelSpec& spec) : r_(spec.params.conv->desc.sub_pixel_scale_factor) {
    const auto& d = spec.params.conv->desc;
    const ImageShape& src = spec.input(0);
    ImageShape out = spec.output();
    if (r_ > 1) {  // the convolution runs on the coarse grid, then channels become r x r blocks
      grid_ = ImageShape{out.n, out.h / r_, out.w / r_, d.output_feature_channels};
      out = grid_;
      extra_scratch_ = (size_t(grid_.numel()) * 4 + 63) / 64 * 64;
    }
    const ConvolutionWindow win = convolution_window(src, out, spec.geom, d.input_feature_channels);
    if (win.stage) {  // exactly the pixels the windows cover, then a convolution without padding
      stage_offset_ = extra_scratch_;
      extra_scratch_ += aligned_bytes(win.stage->shape);
      stage_ = win.stage;
    }
    src_offset_ = win.src_offset;
    const memory::desc& src_md = win.src_md;
    const memory::dims& pad_l = win.pad_l;
    const memory::dims& pad_r = win.pad_r;
    PostOpPlan post = plan_post_ops(spec.post_ops, spec.context);
    tail_ = post.tail;
    const memory::desc wmd(weights_dims(d), dt::f32, tag::any);
    const memory::desc bmd({d.output_feature_channels}, dt::f32, tag::a);
    auto pd = MPSNN_CHECK_DNNL(
        dnnl::convolution_forward::primitive_desc(
            engine(), dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md, wmd, bmd,
            nhwc_desc(out), {d.stride_y, d.stride_x}, {d.dilation_y - 1, d.dilation_x - 1}, pad_l, pad_r,
            attr_for(post)),
        spec.context);
    primitive_ = dnnl::convolution_forward(pd);
    finish_setup(pd, spec, false, false);
  }

  void run(const KernelArgs& a, KernelState* state) const override {
    const float* staged = stage_source(a);
    if (r_ == 1) {
      execute(a, state, a.outputs[0].as<float>(), staged);
      apply_tail(tail_, a.outputs[0].f32());
      return;
    }
    float* io = static_cast<float*>(a.scratch);
    execute(a, state, io, staged);
    apply_tail(tail_, dense_view(io, grid_));
    // nodes.md §4.2: Y[c, i, j] = Io[(N/r²)·(r·(i mod r) + (j mod r)) + c, i/r, j/r].
    const TensorView out = a.outputs[0].f32();
    const ImageShape& o = out.shape;
    const int64_t cpb = o.c, r = r_;
#pragma omp parallel for collapse(2)
    for (int64_t n = 0; n < o.n; ++n)
      for (int64_t i = 0; i < o.h; ++i)
        for (int64_t j = 0; j < o.w; ++j) {
          const float* s = io + ((n * grid_.h + i / r) * grid_.w + j / r) * grid_.c + cpb * (r * (i % r) + (j % r));
          std::memcpy(out.pixel(n, i, j), s, size_t(cpb) * 4);
        }
  }

 private:
  int64_t r_;
  ImageShape grid_;
};

class FullyConnectedKernel final : public ConvolutionKernelBase {
 public:
  explicit FullyConnectedKernel(const KernelSpec& spec) {
    const auto& d = spec.params.conv->desc;
    const ImageShape& src = spec.input(0);
    PostOpPlan post = plan_post_ops(spec.post_ops, spec.context);
    tail_ = post.tail;
    const memory::desc wmd({d.output_feature_channels, src.c, src.h, src.w}, dt::f32, tag::any);
    const memory::desc bmd({d.output_feature_channels}, dt::f32, tag::a);
    const memory::desc dmd({src.n, d.output_feature_channels}, dt::f32, tag::nc);
    auto pd = MPSNN_CHECK_DNNL(
        dnnl::inner_product_forward::primitive_desc(engine(), dnnl::prop_kind::forward_inference, nhwc_desc(src), wmd,
                                                    bmd, dmd, attr_for(post)),
        spec.context);
    primitive_ = dnnl::inner_product_forward(pd);
    finish_setup(pd, spec, true, false);
  }
  void run(const KernelArgs& a, KernelState* state) const override {
    execute(a, state, a.outputs[0].as<float>());
    apply_tail(tail_, a.outputs[0].f32());
  }
};

// Transposed convolution (nodes.md §4.3) as oneDNN's deconvolution with 180°-rotated weights:
// pad_before = Ke-1-Pz. Where that pad (or the one after) is negative the primitive writes a
// larger image into scratch and the wanted window is copied out; rows no input reaches hold the
// bias and get the post-ops.
class TransposeKernel final : public ConvolutionKernelBase {
 public:
  explicit TransposeKernel(const KernelSpec& spec) {
    const auto& d = spec.params.conv->desc;
    const ImageShape& src = spec.input(0);
    const ImageShape& out = spec.output();
    const TransposeWindow t = transpose_window(src, out, spec.geom, d.input_feature_channels);
    full_ = t.full;
    shift_y_ = t.shift_y;
    shift_x_ = t.shift_x;
    cropped_ = t.cropped;
    std::vector<PostOp> post_ops = spec.post_ops;
    if (cropped_) {
      tail_ = post_ops;  // applied after cropping so bias-only rows get them too
      post_ops.clear();
      extra_scratch_ = aligned_bytes(full_);
    }
    const ImageShape& read = t.read;
    if (t.stage) {  // a channel window: stage those channels densely
      stage_offset_ = extra_scratch_;
      extra_scratch_ += aligned_bytes(t.stage->shape);
      stage_ = t.stage;
    }
    PostOpPlan post = plan_post_ops(post_ops, spec.context);
    if (!cropped_) tail_ = post.tail;
    const memory::desc wmd(weights_dims(d), dt::f32, tag::any);
    const memory::desc bmd({d.output_feature_channels}, dt::f32, tag::a);
    auto pd = MPSNN_CHECK_DNNL(
        dnnl::deconvolution_forward::primitive_desc(
            engine(), dnnl::prop_kind::forward_inference, dnnl::algorithm::deconvolution_direct, nhwc_desc(read), wmd,
            bmd, nhwc_desc(full_), {d.stride_y, d.stride_x}, {d.dilation_y - 1, d.dilation_x - 1}, t.lo, t.hi,
            attr_for(post)),
        spec.context);
    primitive_ = dnnl::deconvolution_forward(pd);
    finish_setup(pd, spec, false, true);
  }

  void run(const KernelArgs& a, KernelState* state) const override {
    const float* staged = stage_source(a);
    if (!cropped_) {
      execute(a, state, a.outputs[0].as<float>(), staged);
      apply_tail(tail_, a.outputs[0].f32());
      return;
    }
    float* full = static_cast<float*>(a.scratch);
    execute(a, state, full, staged);
    const TensorView out = a.outputs[0].f32();
    const ImageShape& o = out.shape;
    const float* bias = static_cast<const float*>(bias_.get_data_handle());  // zeros without a bias
#pragma omp parallel for collapse(2)
    for (int64_t n = 0; n < o.n; ++n)
      for (int64_t i = 0; i < o.h; ++i)
        for (int64_t j = 0; j < o.w; ++j) {
          const int64_t fi = i + shift_y_, fj = j + shift_x_;
          float* dst = out.pixel(n, i, j);
          if (fi >= 0 && fi < full_.h && fj >= 0 && fj < full_.w)
            std::memcpy(dst, full + ((n * full_.h + fi) * full_.w + fj) * o.c, size_t(o.c) * 4);
          else
            std::memcpy(dst, bias, size_t(o.c) * 4);
        }
    apply_tail(tail_, a.outputs[0].f32());
  }

 private:
  ImageShape full_;
  int64_t shift_y_ = 0, shift_x_ = 0;
  bool cropped_ = false;
};

}  // namespace

std::unique_ptr<Kernel> make_convolution(const KernelSpec& spec, Device&) {
  switch (spec.attrs_as<ConvolutionAttrs>().variant) {
    case ConvolutionVariant::fully_connected: return std::make_unique<FullyConnectedKernel>(spec);
    case ConvolutionVariant::transpose: return std::make_unique<TransposeKernel>(spec);
    default: return std::make_unique<ConvolutionKernel>(spec);
  }
}

}  // namespace mpsnn::cpu
