// Neuron nodes (nodes.md §6): one C++ kind, one Python class per MPS neuron type.
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {

template <NeuronType T>
std::shared_ptr<PyNeuron<T>> neuron_node(const ImageNodePtr& s, const NeuronDescriptor& d) {
  return make_node<PyNeuron<T>>(OpKind::Neuron, NeuronAttrs{d}, {s});
}

// Creates the subclass matching the descriptor's type (MPSCNNNeuronNode.node(source, descriptor)).
std::shared_ptr<FilterNode> node_for(const ImageNodePtr& s, const NeuronDescriptor& d) {
  switch (d.type) {
#define MPSNN_CASE(T) \
  case NeuronType::T: return neuron_node<NeuronType::T>(s, d);
    MPSNN_CASE(none)
    MPSNN_CASE(relu)
    MPSNN_CASE(linear)
    MPSNN_CASE(sigmoid)
    MPSNN_CASE(hard_sigmoid)
    MPSNN_CASE(tanh)
    MPSNN_CASE(absolute)
    MPSNN_CASE(soft_plus)
    MPSNN_CASE(soft_sign)
    MPSNN_CASE(elu)
    MPSNN_CASE(prelu)
    MPSNN_CASE(relu_n)
    MPSNN_CASE(power)
    MPSNN_CASE(exponential)
    MPSNN_CASE(logarithm)
#undef MPSNN_CASE
    default: MPSNN_THROW(UnsupportedError, "[neuron] neuron type ", int(d.type), " is not supported");
  }
}

// A neuron class taking `nparams` of (a, b, c) as keywords with the type's defaults.
template <NeuronType T>
void neuron_class(py::module_& m, const char* name, int nparams, const char* doc) {
  auto c = py::class_<PyNeuron<T>, PyNeuronNode, std::shared_ptr<PyNeuron<T>>>(m, name, doc);
  const NeuronDescriptor d0 = make_neuron(T);
  auto make = [](const ImageNodePtr& s, std::optional<float> a, std::optional<float> b, std::optional<float> cc) {
    return neuron_node<T>(s, make_neuron(T, a, b, cc));
  };
  if (nparams == 0)
    def_init(c, [make](const ImageNodePtr& s) { return make(s, {}, {}, {}); }, "source"_a);
  else if (nparams == 1)
    def_init(c, [make](const ImageNodePtr& s, float a) { return make(s, a, {}, {}); }, "source"_a, "a"_a = d0.a);
  else if (nparams == 2)
    def_init(c, [make](const ImageNodePtr& s, float a, float b) { return make(s, a, b, {}); }, "source"_a,
             "a"_a = d0.a, "b"_a = d0.b);
  else
    def_init(c, [make](const ImageNodePtr& s, float a, float b, float cc) { return make(s, a, b, cc); }, "source"_a,
             "a"_a = d0.a, "b"_a = d0.b, "c"_a = d0.c);
}

}  // namespace

void bind_nodes_neuron(py::module_& m) {
  py::class_<PyNeuronNode, FilterNode, std::shared_ptr<PyNeuronNode>>(
      m, "MPSCNNNeuronNode", "Base of the neuron (activation) nodes; elementwise, shape preserved.")
      .def_static("node", &node_for, "source"_a, "descriptor"_a,
                  "The neuron node subclass matching descriptor.neuron_type.")
      .def_property_readonly("a", [](const FilterNode& n) { return n.attrs_as<NeuronAttrs>().neuron.a; })
      .def_property_readonly("b", [](const FilterNode& n) { return n.attrs_as<NeuronAttrs>().neuron.b; })
      .def_property_readonly("c", [](const FilterNode& n) { return n.attrs_as<NeuronAttrs>().neuron.c; })
      .def_property_readonly("descriptor", [](const FilterNode& n) { return n.attrs_as<NeuronAttrs>().neuron; });
  neuron_class<NeuronType::none>(m, "_MPSCNNNeuronNoneNode", 0, "Identity neuron (type none).");
  neuron_class<NeuronType::relu>(m, "MPSCNNNeuronReLUNode", 1, "f(u) = u if u >= 0 else a*u (a = 0: ReLU).");
  neuron_class<NeuronType::linear>(m, "MPSCNNNeuronLinearNode", 2, "f(u) = a*u + b.");
  neuron_class<NeuronType::sigmoid>(m, "MPSCNNNeuronSigmoidNode", 0, "f(u) = 1 / (1 + e^-u).");
  neuron_class<NeuronType::hard_sigmoid>(m, "MPSCNNNeuronHardSigmoidNode", 2, "f(u) = clamp(a*u + b, 0, 1).");
  neuron_class<NeuronType::tanh>(m, "MPSCNNNeuronTanHNode", 2, "f(u) = a * tanh(b*u).");
  neuron_class<NeuronType::absolute>(m, "MPSCNNNeuronAbsoluteNode", 0, "f(u) = |u|.");
  neuron_class<NeuronType::soft_plus>(m, "MPSCNNNeuronSoftPlusNode", 2, "f(u) = a * ln(1 + e^(b*u)).");
  neuron_class<NeuronType::soft_sign>(m, "MPSCNNNeuronSoftSignNode", 0, "f(u) = u / (1 + |u|).");
  neuron_class<NeuronType::elu>(m, "MPSCNNNeuronELUNode", 1, "f(u) = u if u >= 0 else a*(e^u - 1).");
  neuron_class<NeuronType::relu_n>(m, "MPSCNNNeuronReLUNNode", 2, "f(u) = min(u if u >= 0 else a*u, b).");
  neuron_class<NeuronType::power>(m, "MPSCNNNeuronPowerNode", 3, "f(u) = (a*u + b)^c.");
  neuron_class<NeuronType::exponential>(m, "MPSCNNNeuronExponentialNode", 3, "f(u) = c^(a*u + b); base e when c = -1.");
  neuron_class<NeuronType::logarithm>(m, "MPSCNNNeuronLogarithmNode", 3, "f(u) = log_c(a*u + b); natural log when c = -1.");
  auto prelu = py::class_<PyNeuron<NeuronType::prelu>, PyNeuronNode, std::shared_ptr<PyNeuron<NeuronType::prelu>>>(
      m, "MPSCNNNeuronPReLUNode", "f(u) = u if u >= 0 else a[c]*u with one slope per feature channel (or one for all).");
  def_init(prelu, [](const ImageNodePtr& s, const std::vector<float>& a_data) {
             NeuronDescriptor d;
             d.type = NeuronType::prelu;
             d.data = a_data;
             return neuron_node<NeuronType::prelu>(s, d);
           },
           "source"_a, "a_data"_a);

  // nodes.md §6.3: one class for every neuron type; dX = G * f'(X) with X the forward input.
  auto ngrad = py::class_<PyNeuronGradientNode, PyGradientFilterNode, std::shared_ptr<PyNeuronGradientNode>>(
      m, "MPSCNNNeuronGradientNode", "Neuron gradient: dX = G * f'(X), X the forward node's source.");
  def_init(ngrad, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state, const NeuronDescriptor& d) {
             MPSNN_CHECK(state != nullptr, GraphError,
                         "[neuron gradient] gradient_state is None; pass the forward node's result_state");
             return make_node<PyNeuronGradientNode>(OpKind::NeuronGradient, NeuronAttrs{d}, {g, x}, {state});
           },
           "source_gradient"_a, "source_image"_a, "gradient_state"_a, "descriptor"_a);
  ngrad.def_property_readonly("descriptor", [](const FilterNode& n) { return n.attrs_as<NeuronAttrs>().neuron; });
  set_node_factory(OpKind::NeuronGradient, node_factory<PyNeuronGradientNode>);
  set_node_factory(OpKind::Neuron, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    switch (std::get<NeuronAttrs>(a).neuron.type) {
      case NeuronType::none: return FilterNodePtr(node_factory<PyNeuron<NeuronType::none>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::relu: return FilterNodePtr(node_factory<PyNeuron<NeuronType::relu>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::linear: return FilterNodePtr(node_factory<PyNeuron<NeuronType::linear>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::sigmoid: return FilterNodePtr(node_factory<PyNeuron<NeuronType::sigmoid>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::hard_sigmoid: return FilterNodePtr(node_factory<PyNeuron<NeuronType::hard_sigmoid>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::tanh: return FilterNodePtr(node_factory<PyNeuron<NeuronType::tanh>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::absolute: return FilterNodePtr(node_factory<PyNeuron<NeuronType::absolute>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::soft_plus: return FilterNodePtr(node_factory<PyNeuron<NeuronType::soft_plus>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::soft_sign: return FilterNodePtr(node_factory<PyNeuron<NeuronType::soft_sign>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::elu: return FilterNodePtr(node_factory<PyNeuron<NeuronType::elu>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::prelu: return FilterNodePtr(node_factory<PyNeuron<NeuronType::prelu>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::relu_n: return FilterNodePtr(node_factory<PyNeuron<NeuronType::relu_n>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::power: return FilterNodePtr(node_factory<PyNeuron<NeuronType::power>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::exponential: return FilterNodePtr(node_factory<PyNeuron<NeuronType::exponential>>(k, std::move(a), std::move(s), std::move(st)));
      case NeuronType::logarithm: return FilterNodePtr(node_factory<PyNeuron<NeuronType::logarithm>>(k, std::move(a), std::move(s), std::move(st)));
      default: break;
    }
    return FilterNodePtr(node_factory<PyNeuronNode>(k, std::move(a), std::move(s), std::move(st)));
  });
}

}  // namespace mpsnn::bindings
