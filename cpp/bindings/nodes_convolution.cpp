// Convolution family nodes (nodes.md §4).
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {

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
}

}  // namespace mpsnn::bindings
