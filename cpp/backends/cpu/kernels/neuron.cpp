// Neurons: a chain of oneDNN eltwise primitives where oneDNN computes the MPS function exactly
// (NaN included), our own loop otherwise (see eltwise_chain in dnnl_utils.h for which and why).
#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/register.h"

namespace mpsnn::cpu {

namespace {

struct ChainState : KernelState {
  dnnl::stream stream{engine()};
  memory src, dst;
};

class NeuronKernel final : public Kernel {
 public:
  explicit NeuronKernel(const KernelSpec& spec) : neuron_(spec.attrs_as<NeuronAttrs>().neuron) {
    md_ = nhwc_desc(spec.output());
    if (auto chain = eltwise_chain(neuron_, EltwiseUse::node)) {
      for (const auto& e : *chain) {
        auto pd = MPSNN_CHECK_DNNL(dnnl::eltwise_forward::primitive_desc(engine(), dnnl::prop_kind::forward_inference,
                                                                         e.alg, md_, md_, e.alpha, e.beta),
                                   spec.context);
        chain_.push_back(dnnl::eltwise_forward(pd));
      }
      own_ = false;
    }
  }
  int in_place_input() const override { return 0; }
  std::unique_ptr<KernelState> make_state() const override {
    auto s = std::make_unique<ChainState>();
    s->src = memory(md_, engine(), DNNL_MEMORY_NONE);
    s->dst = memory(md_, engine(), DNNL_MEMORY_NONE);
    return s;
  }
  void run(const KernelArgs& a, KernelState* state) const override {
    if (own_) {
      apply_neuron(neuron_, a.inputs[0].f32(), a.outputs[0].f32());
      return;
    }
    if (chain_.empty()) {  // type none: a copy
      if (a.inputs[0].as<float>() != a.outputs[0].as<float>()) copy_view(a.inputs[0].f32(), a.outputs[0].f32());
      return;
    }
    auto* s = static_cast<ChainState*>(state);
    s->dst.set_data_handle(a.outputs[0].as<float>());
    for (size_t i = 0; i < chain_.size(); ++i) {
      s->src.set_data_handle(i == 0 ? a.inputs[0].as<float>() : a.outputs[0].as<float>());
      chain_[i].execute(s->stream, {{DNNL_ARG_SRC, s->src}, {DNNL_ARG_DST, s->dst}});
    }
    s->stream.wait();
  }

 private:
  NeuronDescriptor neuron_;
  memory::desc md_;
  std::vector<dnnl::eltwise_forward> chain_;
  bool own_ = true;
};

class SoftMaxKernel final : public PrimitiveKernel {
 public:
  explicit SoftMaxKernel(const KernelSpec& spec) {
    const bool log = spec.attrs_as<SoftMaxAttrs>().log;
    const memory::desc md = nhwc_desc(spec.output());
    runner_ = PrimitiveRunner(MPSNN_CHECK_DNNL(
        dnnl::softmax_forward::primitive_desc(engine(), dnnl::prop_kind::forward_inference,
                                              log ? dnnl::algorithm::softmax_log : dnnl::algorithm::softmax_accurate,
                                              md, md, 1, scratchpad_attr()),
        spec.context));
  }
  int in_place_input() const override { return 0; }
};

}  // namespace

std::unique_ptr<Kernel> make_neuron(const KernelSpec& spec, Device&) { return std::make_unique<NeuronKernel>(spec); }
std::unique_ptr<Kernel> make_softmax(const KernelSpec& spec, Device&) { return std::make_unique<SoftMaxKernel>(spec); }

}  // namespace mpsnn::cpu
