// Gradient kernels of the pooling and neuron families (nodes.md §5.6, §6.3) on our own loops
// (own_gradients.cpp). oneDNN's pooling backward needs its own forward workspace and knows only
// its padding model, not MPS's clamp edges, zero-pad sizes or excludeEdges divisors; its eltwise
// backward lacks most MPS neuron types. Max pooling reads the arg-max its forward step recorded
// in the gradient state (the state buffer the step gets as its third input).
#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/own_gradients.h"
#include "backends/cpu/register.h"

namespace MPSNN_ISA_NAMESPACE {

namespace {

// The raw values own::NeuronKind mirrors (own kernels compile without the graph layer).
static_assert(int(own::NeuronKind::logarithm) == int(NeuronType::logarithm) &&
                  int(own::NeuronKind::relu) == int(NeuronType::relu) &&
                  int(own::NeuronKind::prelu) == int(NeuronType::prelu),
              "own::NeuronKind must mirror MPSCNNNeuronType");

class PoolingGradientKernel final : public Kernel {
 public:
  explicit PoolingGradientKernel(const KernelSpec& spec) : y_(spec.geom.y), x_(spec.geom.x) {
    const auto& a = spec.attrs_as<PoolingAttrs>();
    mode_ = a.mode;
    zero_pad_y_ = spec.geom.zero_pad_y;  // the forward node's, like the rest of the geometry
    zero_pad_x_ = spec.geom.zero_pad_x;
    if (spec.geom.exclude_edges) divisor_ = own::AverageDivisor::padded_area;
    else if (spec.geom.edge_mode == EdgeMode::zero) divisor_ = own::AverageDivisor::window;
    else divisor_ = own::AverageDivisor::clamp;
    if (is_max()) {
      MPSNN_CHECK(spec.inputs.size() == 3 && spec.inputs[2].dtype == DType::i32, BackendError, spec.context,
                  " internal error: max pooling gradient without the arg-max of its forward step");
    }
  }
  void run(const KernelArgs& a, KernelState*) const override {
    const TensorView g = a.inputs[0].f32(), dst = a.outputs[0].f32();
    if (is_max()) own::max_pooling_gradient(g, a.inputs[2].as<int32_t>(), dst);
    else if (mode_ == PoolingMode::average) own::average_pooling_gradient(g, dst, y_, x_, divisor_, zero_pad_y_, zero_pad_x_);
    else own::l2_pooling_gradient(a.inputs[1].f32(), g, dst, y_, x_);
  }

 private:
  bool is_max() const { return mode_ == PoolingMode::max || mode_ == PoolingMode::dilated_max; }
  WindowAxis y_, x_;
  PoolingMode mode_ = PoolingMode::max;
  own::AverageDivisor divisor_ = own::AverageDivisor::window;
  int64_t zero_pad_y_ = 0, zero_pad_x_ = 0;
};

class NeuronGradientKernel final : public Kernel {
 public:
  explicit NeuronGradientKernel(const KernelSpec& spec) : neuron_(spec.attrs_as<NeuronAttrs>().neuron), context_(spec.context) {}
  // dX may overwrite G (each element reads only its own G and X).
  int in_place_input() const override { return 0; }
  void run(const KernelArgs& a, KernelState*) const override {
    const own::NeuronParams p{int(neuron_.type), neuron_.a, neuron_.b, neuron_.c,
                              neuron_.data.empty() ? nullptr : neuron_.data.data(), int64_t(neuron_.data.size())};
    MPSNN_CHECK(own::neuron_gradient(p, a.inputs[1].f32(), a.inputs[0].f32(), a.outputs[0].f32()), UnsupportedError,
                context_, " neuron type ", int(neuron_.type), " has no gradient on the CPU");
  }

 private:
  NeuronDescriptor neuron_;
  std::string context_;
};

}  // namespace

std::unique_ptr<Kernel> make_pooling_gradient(const KernelSpec& spec, Device&) {
  return std::make_unique<PoolingGradientKernel>(spec);
}
std::unique_ptr<Kernel> make_neuron_gradient(const KernelSpec& spec, Device&) {
  return std::make_unique<NeuronGradientKernel>(spec);
}

}  // namespace MPSNN_ISA_NAMESPACE
