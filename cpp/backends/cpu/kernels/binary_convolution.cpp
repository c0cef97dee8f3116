// Binary convolution and binary fully connected (nodes.md §4.5) with our own kernel
// (own_binary_conv.cpp): oneDNN has no bit-packed convolution.
#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/own_kernels.h"
#include "backends/cpu/register.h"

namespace mpsnn::cpu {

namespace {

// The per-channel terms of nodes.md 4.5 as the node defines them.
own::BinaryConvParams binary_params(const KernelSpec& spec, std::vector<float>& out_scale) {
  const auto& a = spec.node->attrs_as<BinaryConvolutionAttrs>();
  auto ptr = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
  own::BinaryConvParams p{};
  p.type = own::BinaryConvType(int(a.type));
  p.beta_scaling = (a.flags & 1) != 0;
  if (a.scale_value) {  // chosen definition: output biases come from the data source
    out_scale.assign(size_t(spec.output.c), *a.scale_value);
    p.out_scale = out_scale.data();
    p.out_bias = ptr(spec.conv->bias);
  } else {
    p.out_scale = ptr(a.output_scale_terms);
    p.out_bias = ptr(a.output_bias_terms);
  }
  p.in_scale = ptr(a.input_scale_terms);
  p.in_bias = ptr(a.input_bias_terms);
  return p;
}

class BinaryConvolutionKernel final : public Kernel {
 public:
  BinaryConvolutionKernel(const KernelSpec& spec, const own::BinaryConvParams& p)
      : conv_(spec.conv->binary_weights.data(), spec.inputs[0], spec.output, spec.geom.y, spec.geom.x, p),
        tail_(spec.post_ops) {}
  void run(const KernelArgs& a, KernelState*) const override {
    conv_.run(a.inputs[0], a.output);
    apply_tail(tail_, a.output);
  }

 private:
  own::BinaryConvolution conv_;  // the weights, rearranged once for the kernel
  std::vector<PostOp> tail_;
};

}  // namespace

std::unique_ptr<Kernel> make_binary_convolution(const KernelSpec& spec) {
  std::vector<float> out_scale;  // copied by the kernel, like every term
  return std::make_unique<BinaryConvolutionKernel>(spec, binary_params(spec, out_scale));
}

}  // namespace mpsnn::cpu
