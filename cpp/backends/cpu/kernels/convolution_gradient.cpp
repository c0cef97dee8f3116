// Convolution family gradients on oneDNN (nodes.md §4.3, §4.4, §4.6): convolution backward data
// and backward weights (regular, grouped, depthwise, dilated, strided), inner product backward
// (fully connected) and deconvolution backward (transposed convolution), each over the window
// mapping of its forward kernel (convolution_common.h), so the gradient differentiates exactly what
// the forward step computed. Primitives, their layouts and the reorder of the weight gradient into
// the state's OHWI buffer are made when the plan is compiled; the backward-data weights are
// reordered then and again when a run brings a newer parameter version.
//  * The forward reads a staged source (edge clamp, a source channel window): the weight gradient
//    reads the same staged source, and the data gradient of the staged image is folded back onto
//    the source pixels it was read from (SourceStage::fold; clamped edges accumulate).
//  * The forward crops the source (negative pads): the skipped pixels get a zero gradient.
//  * A transposed convolution whose wanted result is a window of what oneDNN computes: G is
//    embedded into that computed image (zero elsewhere); result pixels outside it hold only the
//    bias, so db is summed over G directly.
// The data gradient is skipped when nothing reads it (KernelSpec::result_needed), the weight
// gradients when the step has no state buffers (training style updateDeviceNone).
#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/convolution_common.h"
#include "backends/cpu/register.h"

namespace mpsnn::cpu {

namespace {

struct GradientState : KernelState {
  dnnl::stream stream{engine()};
  std::unordered_map<int, memory> data_args, weights_args, reorder_args;
};

class ConvolutionGradientKernel final : public Kernel {
 public:
  explicit ConvolutionGradientKernel(const KernelSpec& spec) : context_(spec.context) {
    const ConvolutionParams& p = *spec.params.conv;
    const ConvolutionDescriptor& d = p.desc;
    variant_ = spec.attrs_as<ConvolutionAttrs>().variant;
    data_ = spec.result_needed;
    weights_grad_ = spec.outputs.size() >= 3;
    dst_ = spec.input(0);
    src_ = spec.output();
    const memory::desc bmd({d.output_feature_channels}, dt::f32, tag::a);
    const memory::dims strides{d.stride_y, d.stride_x}, dil{d.dilation_y - 1, d.dilation_x - 1};
    std::optional<dnnl::primitive_desc> data_pd, weights_pd;
    switch (variant_) {
      case ConvolutionVariant::regular: {
        const ConvolutionWindow w = convolution_window(src_, dst_, spec.geom, d.input_feature_channels);
        stage_ = w.stage;
        src_offset_ = w.src_offset;
        cropped_ = w.cropped;
        const memory::desc wmd(weights_dims(d), dt::f32, tag::any), dmd = nhwc_desc(dst_);
        const auto alg = dnnl::algorithm::convolution_direct;
        auto hint = MPSNN_CHECK_DNNL(dnnl::convolution_forward::primitive_desc(
                                         engine(), dnnl::prop_kind::forward_training, alg, w.src_md, wmd, bmd, dmd,
                                         strides, dil, w.pad_l, w.pad_r),
                                     context_);
        if (data_)
          data_pd = MPSNN_CHECK_DNNL(dnnl::convolution_backward_data::primitive_desc(
                                         engine(), alg, w.src_md, wmd, dmd, strides, dil, w.pad_l, w.pad_r, hint,
                                         scratchpad_attr()),
                                     context_);
        if (weights_grad_)
          weights_pd = MPSNN_CHECK_DNNL(dnnl::convolution_backward_weights::primitive_desc(
                                            engine(), alg, w.src_md, wmd, bmd, dmd, strides, dil, w.pad_l, w.pad_r,
                                            hint, scratchpad_attr()),
                                        context_);
        break;
      }
      case ConvolutionVariant::fully_connected: {
        fully_connected_ = true;
        const memory::desc smd = nhwc_desc(src_);
        const memory::desc wmd({d.output_feature_channels, src_.c, src_.h, src_.w}, dt::f32, tag::any);
        const memory::desc dmd({dst_.n, d.output_feature_channels}, dt::f32, tag::nc);
        auto hint = MPSNN_CHECK_DNNL(dnnl::inner_product_forward::primitive_desc(
                                         engine(), dnnl::prop_kind::forward_training, smd, wmd, bmd, dmd),
                                     context_);
        if (data_)
          data_pd = MPSNN_CHECK_DNNL(
              dnnl::inner_product_backward_data::primitive_desc(engine(), smd, wmd, dmd, hint, scratchpad_attr()),
              context_);
        if (weights_grad_)
          weights_pd = MPSNN_CHECK_DNNL(dnnl::inner_product_backward_weights::primitive_desc(
                                            engine(), smd, wmd, bmd, dmd, hint, scratchpad_attr()),
                                        context_);
        break;
      }
      case ConvolutionVariant::transpose: {
        flip_ = true;
        const TransposeWindow t = transpose_window(src_, dst_, spec.geom, d.input_feature_channels);
        stage_ = t.stage;
        cropped_ = t.cropped;
        full_ = t.full;
        shift_y_ = t.shift_y;
        shift_x_ = t.shift_x;
        if (cropped_) full_offset_ = reserve(aligned_bytes(full_));
        const memory::desc wmd(weights_dims(d), dt::f32, tag::any), smd = nhwc_desc(t.read), dmd = nhwc_desc(full_);
        const auto alg = dnnl::algorithm::deconvolution_direct;
        auto hint = MPSNN_CHECK_DNNL(
            cropped_ ? dnnl::deconvolution_forward::primitive_desc(engine(), dnnl::prop_kind::forward_training, alg, smd,
                                                                   wmd, dmd, strides, dil, t.lo, t.hi)
                     : dnnl::deconvolution_forward::primitive_desc(engine(), dnnl::prop_kind::forward_training, alg, smd,
                                                                   wmd, bmd, dmd, strides, dil, t.lo, t.hi),
            context_);
        if (data_)
          data_pd = MPSNN_CHECK_DNNL(dnnl::deconvolution_backward_data::primitive_desc(
                                         engine(), alg, smd, wmd, dmd, strides, dil, t.lo, t.hi, hint, scratchpad_attr()),
                                     context_);
        if (weights_grad_)
          weights_pd = MPSNN_CHECK_DNNL(
              cropped_ ? dnnl::deconvolution_backward_weights::primitive_desc(engine(), alg, smd, wmd, dmd, strides, dil,
                                                                              t.lo, t.hi, hint, scratchpad_attr())
                       : dnnl::deconvolution_backward_weights::primitive_desc(engine(), alg, smd, wmd, bmd, dmd, strides,
                                                                              dil, t.lo, t.hi, hint, scratchpad_attr()),
              context_);
        break;
      }
    }
    if (stage_) {
      stage_offset_ = reserve(aligned_bytes(stage_->shape));
      if (data_) staged_gradient_offset_ = reserve(aligned_bytes(stage_->shape));
    }
    size_t scratchpad = 0;
    if (data_pd) {
      bwd_data_ = dnnl::primitive(*data_pd);
      diff_src_md_ = data_pd->diff_src_desc();
      data_diff_dst_md_ = data_pd->diff_dst_desc();
      data_pad_md_ = data_pd->scratchpad_desc();
      scratchpad = std::max(scratchpad, data_pad_md_.get_size());
      weights_ = PrimitiveWeights(data_pd->weights_desc(), d, fully_connected_, flip_);
      weights_.load(spec.params.conv);
      version_.set(spec.params_version);
    }
    if (weights_pd) {
      bwd_weights_ = dnnl::primitive(*weights_pd);
      src_md_ = weights_pd->src_desc();
      weights_diff_dst_md_ = weights_pd->diff_dst_desc();
      diff_weights_md_ = weights_pd->diff_weights_desc();
      weights_pad_md_ = weights_pd->scratchpad_desc();
      scratchpad = std::max(scratchpad, weights_pad_md_.get_size());
      user_weights_md_ = user_weights_desc(d, fully_connected_);
      // oneDNN's weight gradient in the user layout already (fully connected): written straight
      // into the result state, no reorder.
      direct_diff_weights_ = !flip_ && diff_weights_md_ == user_weights_md_;
      if (!direct_diff_weights_) diff_weights_offset_ = reserve(diff_weights_md_.get_size());
      own_bias_ = variant_ == ConvolutionVariant::transpose && cropped_;
      if (!own_bias_) bias_md_ = bmd;
      else bias_sum_offset_ = reserve(size_t(d.output_feature_channels) * sizeof(double));
      auto rpd = MPSNN_CHECK_DNNL(
          dnnl::reorder::primitive_desc(engine(), diff_weights_md_, engine(), user_weights_md_, scratchpad_attr()),
          context_);
      reorder_ = dnnl::reorder(rpd);
      reorder_pad_md_ = rpd.scratchpad_desc();
      scratchpad = std::max(scratchpad, reorder_pad_md_.get_size());
      weights_shape_ = ImageShape{d.output_feature_channels, d.kernel_height, d.kernel_width,
                                  d.depthwise ? 1 : d.input_feature_channels / d.groups};
    }
    scratchpad_offset_ = reserve(scratchpad);
  }

  size_t scratch_bytes() const override { return scratch_; }

  std::unique_ptr<KernelState> make_state() const override {
    auto s = std::make_unique<GradientState>();
    auto none = [](const memory::desc& md) { return memory(md, engine(), DNNL_MEMORY_NONE); };
    if (data_) {
      s->data_args[DNNL_ARG_DIFF_DST] = none(data_diff_dst_md_);
      s->data_args[DNNL_ARG_WEIGHTS] = weights_.mem();
      s->data_args[DNNL_ARG_DIFF_SRC] = none(diff_src_md_);
      s->data_args[DNNL_ARG_SCRATCHPAD] = none(data_pad_md_);
    }
    if (weights_grad_) {
      s->weights_args[DNNL_ARG_SRC] = none(src_md_);
      s->weights_args[DNNL_ARG_DIFF_DST] = none(weights_diff_dst_md_);
      s->weights_args[DNNL_ARG_DIFF_WEIGHTS] = none(diff_weights_md_);
      if (!own_bias_) s->weights_args[DNNL_ARG_DIFF_BIAS] = none(bias_md_);
      s->weights_args[DNNL_ARG_SCRATCHPAD] = none(weights_pad_md_);
      s->reorder_args[DNNL_ARG_FROM] = none(diff_weights_md_);
      s->reorder_args[DNNL_ARG_TO] = none(user_weights_md_);
      s->reorder_args[DNNL_ARG_SCRATCHPAD] = none(reorder_pad_md_);
    }
    return s;
  }

  void run(const KernelArgs& a, KernelState* state) const override {
    auto* s = static_cast<GradientState*>(state);
    const TensorRef& g = a.inputs[0];
    float* x = a.inputs[1].as<float>() + src_offset_;
    if (stage_) {
      x = at(a, stage_offset_);
      stage_->run(a.inputs[1].f32(), x);
    }
    // The incoming gradient as the primitives see it (transpose: embedded in the computed image).
    float* diff_dst = g.as<float>();
    if (variant_ == ConvolutionVariant::transpose && cropped_) {
      diff_dst = at(a, full_offset_);
      embed_gradient(g.f32(), diff_dst);
    }
    void* pad = at(a, scratchpad_offset_);
    if (weights_grad_) {
      s->weights_args[DNNL_ARG_SRC].set_data_handle(x);
      s->weights_args[DNNL_ARG_DIFF_DST].set_data_handle(diff_dst);
      s->weights_args[DNNL_ARG_DIFF_WEIGHTS].set_data_handle(direct_diff_weights_ ? a.outputs[1].data
                                                                                  : at(a, diff_weights_offset_));
      if (!own_bias_) s->weights_args[DNNL_ARG_DIFF_BIAS].set_data_handle(a.outputs[2].data);
      s->weights_args[DNNL_ARG_SCRATCHPAD].set_data_handle(pad);
      MPSNN_CHECK_DNNL(bwd_weights_.execute(s->stream, s->weights_args), context_);
      if (!direct_diff_weights_) {
        s->reorder_args[DNNL_ARG_FROM].set_data_handle(at(a, diff_weights_offset_));
        s->reorder_args[DNNL_ARG_TO].set_data_handle(a.outputs[1].data);
        s->reorder_args[DNNL_ARG_SCRATCHPAD].set_data_handle(pad);
        MPSNN_CHECK_DNNL(reorder_.execute(s->stream, s->reorder_args), context_);
      }
      s->stream.wait();
      // The deconvolution ran on rotated weights (convolution.cpp): rotate its gradient back.
      if (flip_)
        flip_ohwi(a.outputs[1].as<float>(), weights_shape_.n, weights_shape_.h, weights_shape_.w, weights_shape_.c);
      if (own_bias_)
        sum_channels(g.f32(), reinterpret_cast<double*>(static_cast<char*>(a.scratch) + bias_sum_offset_),
                     a.outputs[2].as<float>());
    }
    if (data_) {
      const ParamSnapshot& p = a.params[0];
      version_.ensure(p.version, [&] { weights_.load(p.values.conv); });
      float* dx = a.outputs[0].as<float>();
      float* diff_src = stage_ ? at(a, staged_gradient_offset_) : dx + src_offset_;
      if (!stage_ && cropped_ && variant_ == ConvolutionVariant::regular)
        std::memset(dx, 0, a.outputs[0].dense_bytes());  // pixels no window reads
      s->data_args[DNNL_ARG_DIFF_DST].set_data_handle(diff_dst);
      s->data_args[DNNL_ARG_DIFF_SRC].set_data_handle(diff_src);
      s->data_args[DNNL_ARG_SCRATCHPAD].set_data_handle(pad);
      MPSNN_CHECK_DNNL(bwd_data_.execute(s->stream, s->data_args), context_);
      s->stream.wait();
      if (stage_) stage_->fold(diff_src, a.outputs[0].f32());
    }
  }

 private:
  size_t reserve(size_t bytes) {
    const size_t at = scratch_;
    scratch_ += (bytes + 63) / 64 * 64;
    return at;
  }
  static float* at(const KernelArgs& a, size_t offset) {
    return reinterpret_cast<float*>(static_cast<char*>(a.scratch) + offset);
  }

  // G (the wanted result window) into the image oneDNN's deconvolution computes; zero elsewhere.
  void embed_gradient(const TensorView& g, float* full) const {
    const ImageShape& o = g.shape;
    const int64_t c = o.c;
#pragma omp parallel for collapse(2)
    for (int64_t n = 0; n < full_.n; ++n)
      for (int64_t fi = 0; fi < full_.h; ++fi) {
        float* row = full + (n * full_.h + fi) * full_.w * c;
        std::fill(row, row + full_.w * c, 0.0f);
        const int64_t i = fi - shift_y_;
        if (i < 0 || i >= o.h) continue;
        for (int64_t j = 0; j < o.w; ++j) {
          const int64_t fj = j + shift_x_;
          if (fj >= 0 && fj < full_.w) std::memcpy(row + fj * c, g.pixel(n, i, j), size_t(c) * 4);
        }
      }
  }

  // db[o] = sum of G[..., o] over every image and pixel (in double, in pixel order; `acc`: C doubles).
  static void sum_channels(const TensorView& g, double* acc, float* db) {
    const ImageShape& s = g.shape;
    std::fill(acc, acc + s.c, 0.0);
    const int64_t pixels = s.n * s.h * s.w;
    for (int64_t p = 0; p < pixels; ++p) {
      const float* v = g.data + p * g.pixel_stride;
      for (int64_t c = 0; c < s.c; ++c) acc[c] += v[c];
    }
    for (int64_t c = 0; c < s.c; ++c) db[c] = float(acc[c]);
  }

  std::string context_;
  ConvolutionVariant variant_ = ConvolutionVariant::regular;
  bool data_ = false, weights_grad_ = false, fully_connected_ = false, flip_ = false;
  bool cropped_ = false, own_bias_ = false, direct_diff_weights_ = false;
  ImageShape src_, dst_, full_, weights_shape_;
  int64_t src_offset_ = 0, shift_y_ = 0, shift_x_ = 0;
  std::optional<SourceStage> stage_;
  size_t scratch_ = 0, stage_offset_ = 0, staged_gradient_offset_ = 0, full_offset_ = 0, diff_weights_offset_ = 0,
         scratchpad_offset_ = 0, bias_sum_offset_ = 0;
  dnnl::primitive bwd_data_, bwd_weights_, reorder_;
  memory::desc diff_src_md_, data_diff_dst_md_, data_pad_md_, src_md_, weights_diff_dst_md_, diff_weights_md_,
      weights_pad_md_, bias_md_, user_weights_md_, reorder_pad_md_;
  PrimitiveWeights weights_;
  VersionCache version_;
};

}  // namespace

std::unique_ptr<Kernel> make_convolution_gradient(const KernelSpec& spec, Device&) {
  return std::make_unique<ConvolutionGradientKernel>(spec);
}

}  // namespace mpsnn::cpu
