// Binary convolution and binary fully connected (nodes.md §4.5) with our own kernel
// (own_binary_conv.cpp): oneDNN has no bit-packed convolution.
#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/own_kernels.h"
#include "backends/cpu/register.h"

namespace mpsnn::cpu {

namespace {

class BinaryConvolutionKernel final : public Kernel {
 public:
  explicit BinaryConvolutionKernel(const KernelSpec& spec)
      : params_(spec.conv), y_(spec.geom.y), x_(spec.geom.x), tail_(spec.post_ops) {
    const auto& a = spec.node->attrs_as<BinaryConvolutionAttrs>();
    const int64_t cout = params_->desc.output_feature_channels;
    if (a.scale_value) {  // chosen definition: output biases come from the data source
      out_scale_.assign(size_t(cout), *a.scale_value);
      out_bias_ = params_->bias;
    } else {
      out_scale_ = a.output_scale_terms;
      out_bias_ = a.output_bias_terms;
    }
    in_scale_ = a.input_scale_terms;
    in_bias_ = a.input_bias_terms;
    p_.type = own::BinaryConvType(int(a.type));
    p_.beta_scaling = (a.flags & 1) != 0;
    auto ptr = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
    p_.out_scale = ptr(out_scale_);
    p_.out_bias = ptr(out_bias_);
    p_.in_scale = ptr(in_scale_);
    p_.in_bias = ptr(in_bias_);
  }
  void run(const KernelArgs& a, KernelState*) const override {
    own::binary_convolution(a.inputs[0], a.output, params_->binary_weights.data(), y_, x_, p_);
    apply_tail(tail_, a.output);
  }

 private:
  std::shared_ptr<const ConvolutionParams> params_;
  WindowAxis y_, x_;
  std::vector<PostOp> tail_;
  std::vector<float> out_scale_, out_bias_, in_scale_, in_bias_;
  own::BinaryConvParams p_{};
};

}  // namespace

std::unique_ptr<Kernel> make_binary_convolution(const KernelSpec& spec) {
  return std::make_unique<BinaryConvolutionKernel>(spec);
}

}  // namespace mpsnn::cpu
