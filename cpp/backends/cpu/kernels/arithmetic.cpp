// Binary arithmetic and concatenation with our own kernels (kernels/own_elementwise.cpp):
// oneDNN's binary primitive cannot broadcast the primary operand with stride-0 semantics nor
// apply MPS's NaN-propagating clamp; its concat cannot leave zero-filled gaps between slots.
#include <cmath>

#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/own_kernels.h"
#include "backends/cpu/kernels/own_other_gradients.h"
#include "backends/cpu/register.h"

namespace MPSNN_ISA_NAMESPACE {

namespace {

// own_kernels.h mirrors the graph's enum (own kernels compile without the graph layer).
static_assert(int(own::ArithmeticOp::add) == int(ArithmeticOp::add) &&
                  int(own::ArithmeticOp::subtract) == int(ArithmeticOp::subtract) &&
                  int(own::ArithmeticOp::multiply) == int(ArithmeticOp::multiply) &&
                  int(own::ArithmeticOp::divide) == int(ArithmeticOp::divide),
              "own::ArithmeticOp must mirror ArithmeticOp");

class ArithmeticKernel final : public Kernel {
 public:
  explicit ArithmeticKernel(const KernelSpec& spec) {
    const auto& a = spec.attrs_as<ArithmeticAttrs>();
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
    in_place_ = spec.input(0) == spec.output() && a.primary_strides == std::array<int, 3>{1, 1, 1};
    // With the gradient state consumed: the unclamped result, then the clamp and its mask.
    mask_ = spec.outputs.size() > 1;
    unclamped_ = p_;
    unclamped_.minimum = -INFINITY;
    unclamped_.maximum = INFINITY;
  }
  int in_place_input() const override { return in_place_ ? 0 : -1; }
  void run(const KernelArgs& a, KernelState*) const override {
    if (!mask_) {
      own::binary_arithmetic(a.inputs[0].f32(), a.inputs[1].f32(), a.outputs[0].f32(), p_);
      return;
    }
    own::binary_arithmetic(a.inputs[0].f32(), a.inputs[1].f32(), a.outputs[0].f32(), unclamped_);
    own::clamp_with_mask(a.outputs[0].f32(), a.outputs[1].as<uint8_t>(), p_.minimum, p_.maximum);
  }

 private:
  own::ArithmeticParams p_, unclamped_;
  bool mask_ = false;
  bool in_place_ = false;
};

// The sources as the own kernel's views, per run (preallocated in the state).
struct ViewsState : KernelState {
  std::vector<TensorView> views;
};

class ConcatenationKernel final : public Kernel {
 public:
  explicit ConcatenationKernel(size_t sources) : sources_(sources) {}
  std::unique_ptr<KernelState> make_state() const override {
    auto s = std::make_unique<ViewsState>();
    s->views.resize(sources_);
    return s;
  }
  void run(const KernelArgs& a, KernelState* state) const override {
    auto& views = static_cast<ViewsState*>(state)->views;
    for (int i = 0; i < a.num_inputs; ++i) views[size_t(i)] = a.inputs[i].f32();
    own::concatenate(views.data(), a.num_inputs, a.outputs[0].f32());
  }

 private:
  size_t sources_;
};

}  // namespace

std::unique_ptr<Kernel> make_arithmetic(const KernelSpec& spec, Device&) { return std::make_unique<ArithmeticKernel>(spec); }
std::unique_ptr<Kernel> make_concatenation(const KernelSpec& spec, Device&) {
  return std::make_unique<ConcatenationKernel>(spec.inputs.size());
}

}  // namespace MPSNN_ISA_NAMESPACE
