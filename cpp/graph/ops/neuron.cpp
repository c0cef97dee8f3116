// Neurons (activations), nodes.md §6.
#include <cmath>

#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

NeuronDescriptor make_neuron(NeuronType type, std::optional<float> a, std::optional<float> b, std::optional<float> c) {
  float da = 0, db = 0, dc = 0;
  switch (type) {
    case NeuronType::elu: da = 1; break;
    case NeuronType::hard_sigmoid: da = 0.2f; db = 0.5f; break;
    case NeuronType::linear: da = 1; db = 0; break;
    case NeuronType::relu_n: da = 1; db = 6; break;
    case NeuronType::soft_plus:
    case NeuronType::tanh: da = 1; db = 1; break;
    case NeuronType::power: da = 1; db = 0; dc = 1; break;
    case NeuronType::exponential:
    case NeuronType::logarithm: da = 1; db = 0; dc = -1; break;
    default: break;
  }
  NeuronDescriptor d;
  d.type = type;
  d.a = a.value_or(da);
  d.b = b.value_or(db);
  d.c = c.value_or(dc);
  return d;
}

const char* neuron_name(NeuronType type) {
  switch (type) {
    case NeuronType::none: return "none";
    case NeuronType::relu: return "relu";
    case NeuronType::linear: return "linear";
    case NeuronType::sigmoid: return "sigmoid";
    case NeuronType::hard_sigmoid: return "hard_sigmoid";
    case NeuronType::tanh: return "tanh";
    case NeuronType::absolute: return "absolute";
    case NeuronType::soft_plus: return "soft_plus";
    case NeuronType::soft_sign: return "soft_sign";
    case NeuronType::elu: return "elu";
    case NeuronType::prelu: return "prelu";
    case NeuronType::relu_n: return "relu_n";
    case NeuronType::power: return "power";
    case NeuronType::exponential: return "exponential";
    case NeuronType::logarithm: return "logarithm";
    case NeuronType::gelu: return "gelu";
  }
  return "unknown";
}

// Checks a neuron against the channel count it will see (PReLU slopes; nodes.md §6.2).
void check_neuron_channels(const std::string& context, const NeuronDescriptor& n, int64_t channels) {
  if (n.type != NeuronType::prelu) return;
  MPSNN_CHECK(n.data.size() == 1 || int64_t(n.data.size()) >= channels, ShapeError, context, " PReLU has ",
              n.data.size(), " slope(s) for ", channels, " feature channels; expected 1 or at least ", channels);
}

void check_neuron_descriptor(const std::string& context, const NeuronDescriptor& n) {
  MPSNN_CHECK(int(n.type) >= 0 && int(n.type) <= int(NeuronType::logarithm), UnsupportedError, context,
              " neuron type ", int(n.type), " is not supported; expected a MPSCNNNeuronType from none (0) to logarithm (14)");
  MPSNN_CHECK(n.type != NeuronType::prelu || !n.data.empty(), ShapeError, context,
              " PReLU needs at least one slope in its data; got none");
}

const OpSchema& schema_Neuron() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::Neuron);
    o.result_states = {StateSpec{ResultStateKind::gradient, nullptr}};
    o.validate_attrs = [](const FilterNode& n, const Attrs& attrs) { check_neuron_descriptor(n.context(), std::get<NeuronAttrs>(attrs).neuron); };
    o.shape = [](const ShapeContext& ctx) {
      check_neuron_channels(ctx.context(), ctx.attrs_as<NeuronAttrs>().neuron, ctx.sources[0].c);
      return same_shape(ctx);
    };
    return o;
  }();
  return s;
}

// nodes.md §6.3: dX = G * f'(X), X the forward input; the state carries nothing.
const OpSchema& schema_NeuronGradient() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::NeuronGradient);
    o.min_sources = o.max_sources = 2;  // G, forward source X
    o.validate_attrs = [](const FilterNode& n, const Attrs& attrs) { check_neuron_descriptor(n.context(), std::get<NeuronAttrs>(attrs).neuron); };
    o.shape = [](const ShapeContext& ctx) {
      MPSNN_CHECK(ctx.sources[0] == ctx.sources[1], ShapeError, ctx.context(), " source gradient is ",
                  ctx.sources[0].w, "x", ctx.sources[0].h, "x", ctx.sources[0].c, " (", ctx.sources[0].n,
                  " images) but the forward source is ", ctx.sources[1].w, "x", ctx.sources[1].h, "x",
                  ctx.sources[1].c, " (", ctx.sources[1].n, " images); expected equal sizes");
      check_neuron_channels(ctx.context(), ctx.attrs_as<NeuronAttrs>().neuron, ctx.sources[1].c);
      return ShapeResult{ctx.sources[1], {}};
    };
    return o;
  }();
  return s;
}

// ops/softmax_dropout_gradient.cpp
std::vector<FilterNodePtr> softmax_gradients(FilterNode& forward, const std::vector<ImageNodePtr>& gradients);
std::vector<TensorDesc> dropout_state_buffers(const ShapeContext& ctx, const ShapeResult& r);

const OpSchema& schema_SoftMax() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::SoftMax);
    o.result_states = {StateSpec{ResultStateKind::gradient, nullptr}};
    o.gradient_rule = softmax_gradients;
    o.shape = [](const ShapeContext& ctx) { return same_shape(ctx); };
    return o;
  }();
  return s;
}

const OpSchema& schema_Dropout() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::Dropout);
    // The keep mask, sampled when the state is consumed (a training graph); otherwise the node
    // is the identity and the compiler aliases it away.
    o.result_states = {StateSpec{ResultStateKind::dropout_gradient, dropout_state_buffers}};
    o.validate_attrs = [](const FilterNode& n, const Attrs& attrs) {
      const auto& a = std::get<DropoutAttrs>(attrs);
      MPSNN_CHECK(a.keep_probability > 0.0f && a.keep_probability <= 1.0f, ShapeError, n.context(),
                  " keep_probability is ", a.keep_probability, "; expected a value in (0, 1]");
      for (auto m : a.mask_stride)
        MPSNN_CHECK(m == 0 || m == 1, ShapeError, n.context(), " mask_stride_in_pixels has a component ", m,
                    "; expected 0 or 1");
    };
    o.shape = [](const ShapeContext& ctx) { return same_shape(ctx); };
    return o;
  }();
  return s;
}

}  // namespace mpsnn
