// Binary convolution and binary fully connected (nodes.md §4.5) with our own kernel
// (own_binary_conv.cpp): oneDNN has no bit-packed convolution.
#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/own_kernels.h"
#include "backends/cpu/register.h"

namespace MPSNN_ISA_NAMESPACE {

namespace {

// own_kernels.h mirrors the graph's enum (own kernels compile without the graph layer).
static_assert(int(own::BinaryConvType::binary_weights) == int(BinaryConvolutionType::binary_weights) &&
                  int(own::BinaryConvType::xnor) == int(BinaryConvolutionType::xnor) &&
                  int(own::BinaryConvType::and_) == int(BinaryConvolutionType::and_),
              "own::BinaryConvType must mirror BinaryConvolutionType");

// The per-channel terms of nodes.md 4.5 as the node defines them.
own::BinaryConvParams binary_params(const BinaryConvolutionAttrs& a, const ConvolutionParams& conv, int64_t channels,
                                    std::vector<float>& out_scale) {
  auto ptr = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
  own::BinaryConvParams p{};
  p.type = own::BinaryConvType(int(a.type));
  p.beta_scaling = (a.flags & 1) != 0;
  if (a.scale_value) {  // chosen definition: output biases come from the data source
    out_scale.assign(size_t(channels), *a.scale_value);
    p.out_scale = out_scale.data();
    p.out_bias = ptr(conv.bias);
  } else {
    p.out_scale = ptr(a.output_scale_terms);
    p.out_bias = ptr(a.output_bias_terms);
  }
  p.in_scale = ptr(a.input_scale_terms);
  p.in_bias = ptr(a.input_bias_terms);
  return p;
}

// The weights are rearranged for the kernel when the plan is made and again when a run brings a
// newer parameter version.
class BinaryConvolutionKernel final : public Kernel {
 public:
  explicit BinaryConvolutionKernel(const KernelSpec& spec)
      : in_(spec.input(0)), out_(spec.output()), y_(spec.geom.y), x_(spec.geom.x), attrs_(spec.attrs_as<BinaryConvolutionAttrs>()),
        tail_(spec.post_ops) {
    prepare(*spec.params.conv);
    version_.set(spec.params_version);
  }
  void run(const KernelArgs& a, KernelState*) const override {
    const ParamSnapshot& p = a.params[0];
    version_.ensure(p.version, [&] { prepare(*p.values.conv); });
    conv_->run(a.inputs[0].f32(), a.outputs[0].f32());
    apply_tail(tail_, a.outputs[0].f32());
  }

 private:
  void prepare(const ConvolutionParams& p) const {
    std::vector<float> out_scale;  // copied by the kernel, like every term
    conv_ = std::make_unique<own::BinaryConvolution>(p.binary_weights.data(), in_, out_, y_, x_,
                                                     binary_params(attrs_, p, out_.c, out_scale));
  }
  ImageShape in_, out_;
  WindowAxis y_, x_;
  BinaryConvolutionAttrs attrs_;
  std::vector<PostOp> tail_;
  mutable std::unique_ptr<own::BinaryConvolution> conv_;
  VersionCache version_;
};

}  // namespace

std::unique_ptr<Kernel> make_binary_convolution(const KernelSpec& spec, Device&) {
  return std::make_unique<BinaryConvolutionKernel>(spec);
}

}  // namespace MPSNN_ISA_NAMESPACE
