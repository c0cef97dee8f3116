// Convolution family nodes (nodes.md §4).
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {

// The gradient node classes (one C++ type per Python class, as in common.h).
struct PyConvolutionGradientNode : PyGradientFilterNode {
  using PyGradientFilterNode::PyGradientFilterNode;
};
struct PyFullyConnectedGradientNode : PyConvolutionGradientNode {
  using PyConvolutionGradientNode::PyConvolutionGradientNode;
};
struct PyConvolutionTransposeGradientNode : PyConvolutionGradientNode {
  using PyConvolutionGradientNode::PyConvolutionGradientNode;
};

// A convolution gradient node built by its initializer: sources G and X, the forward node's
// gradient state; attributes (training style) and, with weights=None, the data source are the
// forward node's.
template <typename T>
std::shared_ptr<T> conv_gradient(ConvolutionVariant v, const ImageNodePtr& g, const ImageNodePtr& x,
                                 const StateNodePtr& state, const py::object& weights, const char* keyword) {
  MPSNN_CHECK(state != nullptr, GraphError, "[convolution gradient] ", keyword,
              " is None; pass the forward node's convolution_gradient_state (its result_state)");
  const bool transpose_state = dynamic_cast<ConvolutionTransposeGradientStateNode*>(state.get()) != nullptr;
  MPSNN_CHECK(dynamic_cast<ConvolutionGradientStateNode*>(state.get()) != nullptr &&
                  transpose_state == (v == ConvolutionVariant::transpose),
              DTypeError, "[convolution gradient] ", keyword, " must be an ",
              v == ConvolutionVariant::transpose ? "MPSCNNConvolutionTransposeGradientStateNode"
                                                 : "MPSCNNConvolutionGradientStateNode",
              " (the result_state of the forward ",
              v == ConvolutionVariant::transpose ? "transposed convolution" : "convolution", " node)");
  ConvolutionAttrs a;
  auto fwd = state->producer();
  if (fwd && fwd->kind() == OpKind::Convolution) a = fwd->attrs_as<ConvolutionAttrs>();
  a.variant = v;
  auto n = make_node<T>(OpKind::ConvolutionGradient, a, {g, x}, {state});
  if (!weights.is_none()) n->set_data_source(to_convolution_source(weights));
  else if (fwd && fwd->convolution_source) n->set_data_source(fwd->convolution_source);
  if (fwd) n->set_padding_policy(fwd->padding_policy());
  return n;
}

template <typename T>
std::shared_ptr<T> conv_node(ConvolutionVariant v, const ImageNodePtr& source, const py::object& weights,
                             const StateNodePtr& state = nullptr) {
  ConvolutionAttrs a;
  a.variant = v;
  std::vector<StateNodePtr> states;
  if (state) states.push_back(state);
  auto n = make_node<T>(OpKind::Convolution, a, {source}, states);
  n->set_data_source(to_convolution_source(weights));
  return n;
}

template <typename T>
std::shared_ptr<T> binary_node(bool fc, const ImageNodePtr& source, const py::object& weights, BinaryConvolutionAttrs a) {
  a.fully_connected = fc;
  auto n = make_node<T>(OpKind::BinaryConvolution, a, {source});
  n->set_data_source(to_convolution_source(weights));
  return n;
}

BinaryConvolutionAttrs binary_attrs(std::optional<float> scale, BinaryConvolutionType type, int flags,
                                    std::optional<std::vector<float>> ob, std::optional<std::vector<float>> os,
                                    std::optional<std::vector<float>> ib, std::optional<std::vector<float>> is) {
  BinaryConvolutionAttrs a;
  a.scale_value = scale;
  a.type = type;
  a.flags = flags;
  a.output_bias_terms = ob.value_or(std::vector<float>{});
  a.output_scale_terms = os.value_or(std::vector<float>{});
  a.input_bias_terms = ib.value_or(std::vector<float>{});
  a.input_scale_terms = is.value_or(std::vector<float>{});
  return a;
}

template <typename T, typename Class>
void add_binary_inits(Class& c, bool fc) {
  def_init(c, [fc](const ImageNodePtr& s, const py::object& w, float scale_value, BinaryConvolutionType type, int flags) {
          return binary_node<T>(fc, s, w, binary_attrs(scale_value, type, flags, {}, {}, {}, {}));
        },
        "source"_a, "weights"_a, "scale_value"_a, "type"_a, "flags"_a);
  def_init(c, [fc](const ImageNodePtr& s, const py::object& w, std::optional<std::vector<float>> ob,
                         std::optional<std::vector<float>> os, std::optional<std::vector<float>> ib,
                         std::optional<std::vector<float>> is, BinaryConvolutionType type, int flags) {
             return binary_node<T>(fc, s, w, binary_attrs(std::nullopt, type, flags, ob, os, ib, is));
           },
           "source"_a, "weights"_a, "output_bias_terms"_a, "output_scale_terms"_a, "input_bias_terms"_a,
           "input_scale_terms"_a, "type"_a, "flags"_a);
}

}  // namespace

void bind_nodes_convolution(py::module_& m) {
  auto conv = py::class_<PyConvolutionNode, FilterNode, std::shared_ptr<PyConvolutionNode>>(
      m, "MPSCNNConvolutionNode",
      "Convolution (nodes.md §4.2). Weights come from an MPSCNNConvolutionDataSource, read when a graph is built.\n\n"
      "Args:\n    source: MPSNNImageNode (N, H, W, Cin).\n    weights: data source; weights OHWI (Cout, KH, KW, Cin/groups).");
  def_init(conv, [](const ImageNodePtr& s, const py::object& w) {
             return conv_node<PyConvolutionNode>(ConvolutionVariant::regular, s, w);
           },
           "source"_a, "weights"_a);
  conv.def_property_readonly("convolution_gradient_state", &FilterNode::result_state);
  attr_property(conv, "training_style", &ConvolutionAttrs::training_style, "MPSNNTrainingStyle (copied to gradients).");
  attr_property(conv, "accumulator_precision", &ConvolutionAttrs::accumulator_precision,
                "0 half, 1 float; the CPU always accumulates in float32.");

  auto fc = py::class_<PyFullyConnectedNode, PyConvolutionNode, std::shared_ptr<PyFullyConnectedNode>>(
      m, "MPSCNNFullyConnectedNode",
      "Fully connected layer: the kernel covers the whole source, result 1x1xCout; flatten order is row, column, channel.");
  def_init(fc, [](const ImageNodePtr& s, const py::object& w) {
             return conv_node<PyFullyConnectedNode>(ConvolutionVariant::fully_connected, s, w);
           },
           "source"_a, "weights"_a);

  auto transpose = py::class_<PyConvolutionTransposeNode, PyConvolutionNode, std::shared_ptr<PyConvolutionTransposeNode>>(
      m, "MPSCNNConvolutionTransposeNode",
      "Transposed convolution (nodes.md §4.3). With a convolution's gradient state the result takes that "
      "convolution's source size; weights are used as given (no rotation).");
  def_init(transpose, [](const ImageNodePtr& s, const StateNodePtr& state, const py::object& w) {
             if (state)
               MPSNN_CHECK(dynamic_cast<ConvolutionGradientStateNode*>(state.get()) != nullptr, DTypeError,
                           "[convolution] convolution_gradient_state must be an MPSCNNConvolutionGradientStateNode");
             return conv_node<PyConvolutionTransposeNode>(ConvolutionVariant::transpose, s, w, state);
           },
           "source"_a, "convolution_gradient_state"_a, "weights"_a);  // the state may be None, as nil in MPS

  // Gradient nodes (nodes.md §4.6, §4.3, §4.4).
  auto grad = py::class_<PyConvolutionGradientNode, PyGradientFilterNode, std::shared_ptr<PyConvolutionGradientNode>>(
      m, "MPSCNNConvolutionGradientNode",
      "Convolution gradient (nodes.md §4.6): the result is dL/dX with the forward source's size; the result state "
      "(an MPSCNNConvolutionGradientStateNode) delivers an MPSCNNConvolutionGradientState with dL/dW (OHWI, as "
      "the data source's weights) and dL/db, float32, summed over the batch. The forward geometry (padding, "
      "strides, dilation, groups, edge mode) comes from the forward node through its gradient state. Made by "
      "forward.gradient_filter(with_source=g) or by this initializer.\n\n"
      "Args:\n    source_gradient: dL/dY, the forward result's size (N, H', W', Cout).\n"
      "    source_image: the forward source X (N, H, W, Cin).\n"
      "    convolution_gradient_state: the forward node's convolution_gradient_state.\n"
      "    weights: a data source, or None for the forward node's.\n\n"
      "With training_style update_device_none only dL/dX is computed; dL/dX is skipped when nothing reads it.");
  def_init(grad, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state, const py::object& w) {
             return conv_gradient<PyConvolutionGradientNode>(ConvolutionVariant::regular, g, x, state, w,
                                                             "convolution_gradient_state");
           },
           "source_gradient"_a, "source_image"_a, "convolution_gradient_state"_a, "weights"_a = py::none());
  attr_property(grad, "training_style", &ConvolutionAttrs::training_style,
                "MPSNNTrainingStyle (copied from the forward node); update_device_none: no weight gradients.");
  auto fc_grad = py::class_<PyFullyConnectedGradientNode, PyConvolutionGradientNode,
                            std::shared_ptr<PyFullyConnectedGradientNode>>(
      m, "MPSCNNFullyConnectedGradientNode",
      "Fully connected gradient (nodes.md §4.4): dX[c,p,q] = sum_o W[o,p,q,c] G[o], dW = sum_n G X, db = sum_n G.");
  def_init(fc_grad, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state, const py::object& w) {
             return conv_gradient<PyFullyConnectedGradientNode>(ConvolutionVariant::fully_connected, g, x, state, w,
                                                                "convolution_gradient_state");
           },
           "source_gradient"_a, "source_image"_a, "convolution_gradient_state"_a, "weights"_a = py::none());
  auto t_grad = py::class_<PyConvolutionTransposeGradientNode, PyConvolutionGradientNode,
                           std::shared_ptr<PyConvolutionTransposeGradientNode>>(
      m, "MPSCNNConvolutionTransposeGradientNode",
      "Transposed convolution gradient (nodes.md §4.3), with the forward node's geometry (including sizing by a "
      "paired convolution's gradient state).");
  def_init(t_grad, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state, const py::object& w) {
             return conv_gradient<PyConvolutionTransposeGradientNode>(ConvolutionVariant::transpose, g, x, state, w,
                                                                      "convolution_transpose_gradient_state");
           },
           "source_gradient"_a, "source_image"_a, "convolution_transpose_gradient_state"_a, "weights"_a = py::none());
  set_node_factory(OpKind::ConvolutionGradient, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    switch (std::get<ConvolutionAttrs>(a).variant) {
      case ConvolutionVariant::fully_connected:
        return node_factory<PyFullyConnectedGradientNode>(k, std::move(a), std::move(s), std::move(st));
      case ConvolutionVariant::transpose:
        return node_factory<PyConvolutionTransposeGradientNode>(k, std::move(a), std::move(s), std::move(st));
      case ConvolutionVariant::regular: break;
    }
    return node_factory<PyConvolutionGradientNode>(k, std::move(a), std::move(s), std::move(st));
  });

  auto binary = py::class_<PyBinaryConvolutionNode, PyConvolutionNode, std::shared_ptr<PyBinaryConvolutionNode>>(
      m, "MPSCNNBinaryConvolutionNode",
      "Binary convolution (nodes.md §4.5): uint32 bit-packed weights [Cout][KH][KW][ceil(Cin/32)]; inference only.");
  add_binary_inits<PyBinaryConvolutionNode>(binary, false);
  // Inherited from MPSCNNConvolutionNode but stored with the binary attributes; binary nodes have
  // no gradient (graph.md §1.8), so there is no convolution gradient state either.
  attr_property(binary, "training_style", &BinaryConvolutionAttrs::training_style,
                "MPSNNTrainingStyle (formal only: binary convolutions have no gradient).");
  attr_property(binary, "accumulator_precision", &BinaryConvolutionAttrs::accumulator_precision,
                "0 half, 1 float; the CPU always accumulates in float32.");
  binary.def_property_readonly("convolution_gradient_state", [](const FilterNode& n) -> py::object {
    MPSNN_THROW(UnsupportedError, n.context(), " binary convolutions have no gradient state (they are not trainable)");
  });
  auto binary_fc = py::class_<PyBinaryFullyConnectedNode, PyBinaryConvolutionNode,
                              std::shared_ptr<PyBinaryFullyConnectedNode>>(m, "MPSCNNBinaryFullyConnectedNode",
                                                                          "Binary fully connected layer.");
  add_binary_inits<PyBinaryFullyConnectedNode>(binary_fc, true);
  // Forward kinds made in C++ (graph/serialize.cpp loaders) get their Python class too.
  set_node_factory(OpKind::Convolution, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    switch (std::get<ConvolutionAttrs>(a).variant) {
      case ConvolutionVariant::fully_connected: return FilterNodePtr(node_factory<PyFullyConnectedNode>(k, std::move(a), std::move(s), std::move(st)));
      case ConvolutionVariant::transpose: return FilterNodePtr(node_factory<PyConvolutionTransposeNode>(k, std::move(a), std::move(s), std::move(st)));
      case ConvolutionVariant::regular: break;
    }
    return FilterNodePtr(node_factory<PyConvolutionNode>(k, std::move(a), std::move(s), std::move(st)));
  });
  set_node_factory(OpKind::BinaryConvolution, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    if (std::get<BinaryConvolutionAttrs>(a).fully_connected) return FilterNodePtr(node_factory<PyBinaryFullyConnectedNode>(k, std::move(a), std::move(s), std::move(st)));
    return FilterNodePtr(node_factory<PyBinaryConvolutionNode>(k, std::move(a), std::move(s), std::move(st)));
  });
}

}  // namespace mpsnn::bindings
