// Binary arithmetic and concatenation with our own kernels (kernels/own_elementwise.cpp):
// oneDNN's binary primitive cannot broadcast the primary operand with stride-0 semantics nor
// apply MPS's NaN-propagating clamp; its concat cannot leave zero-filled gaps between slots.
#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/own_kernels.h"
#include "backends/cpu/register.h"

namespace mpsnn::cpu {

namespace {

class ArithmeticKernel final : public Kernel {
 public:
  explicit ArithmeticKernel(const KernelSpec& spec) {
    const auto& a = spec.node->attrs_as<ArithmeticAttrs>();
    p_.op = own::ArithmeticOp(int(a.op));
    p_.primary_scale = a.primary_scale;
    p_.secondary_scale = a.secondary_scale;
    p_.bias = a.bias;
    p_.minimum = a.minimum_value;
    p_.maximum = a.maximum_value;
    for (int i = 0; i < 3; ++i) {
      p_.primary_stride[i] = a.primary_strides[size_t(i)];
      p_.secondary_stride[i] = a.secondary_strides[size_t(i)];
    }
    in_place_ = spec.inputs[0] == spec.output && a.primary_strides == std::array<int, 3>{1, 1, 1};
  }
  bool in_place_ok() const override { return in_place_; }
  void run(const KernelArgs& a, KernelState*) const override {
    own::binary_arithmetic(a.inputs[0], a.inputs[1], a.output, p_);
  }

 private:
  own::ArithmeticParams p_;
  bool in_place_ = false;
};

class ConcatenationKernel final : public Kernel {
 public:
  void run(const KernelArgs& a, KernelState*) const override {
    own::concatenate(a.inputs, a.num_inputs, a.output);
  }
};

}  // namespace

std::unique_ptr<Kernel> make_arithmetic(const KernelSpec& spec) { return std::make_unique<ArithmeticKernel>(spec); }
std::unique_ptr<Kernel> make_concatenation(const KernelSpec&) { return std::make_unique<ConcatenationKernel>(); }

}  // namespace mpsnn::cpu
