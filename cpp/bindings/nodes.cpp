// The node model: image and state nodes, the filter-node base, padding policies, and the
// descriptor classes nodes are built from.
#include "bindings/common.h"
#include "graph/training_graph.h"

namespace mpsnn::bindings {

namespace {

// A convolution descriptor (or subclass) with the four constructor arguments MPS names.
template <typename D>
D descriptor(int64_t kernel_width, int64_t kernel_height, int64_t input_feature_channels,
             int64_t output_feature_channels) {
  D d;
  d.kernel_width = kernel_width;
  d.kernel_height = kernel_height;
  d.input_feature_channels = input_feature_channels;
  d.output_feature_channels = output_feature_channels;
  return d;
}
// Python-only subclasses of the convolution descriptor (MPS's class hierarchy).
struct DepthwiseDescriptor : ConvolutionDescriptor {};
struct SubPixelDescriptor : ConvolutionDescriptor {};

DepthwiseDescriptor depthwise_descriptor(int64_t kw, int64_t kh, int64_t cin, int64_t cout) {
  auto d = descriptor<DepthwiseDescriptor>(kw, kh, cin, cout);
  d.depthwise = true;
  return d;
}

// The initializer and the class factory of one descriptor class: the factory is the class's own
// (instancetype), not the base class's inherited one.
template <typename Class, typename F>
void descriptor_constructors(Class& cls, F make) {
  cls.def(py::init(make), "kernel_width"_a = 3, "kernel_height"_a = 3, "input_feature_channels"_a = 1,
          "output_feature_channels"_a = 1);
  cls.attr("cnn_convolution_descriptor") = py::none();  // no overload chain with the base class's factory
  cls.def_static("cnn_convolution_descriptor", make, "kernel_width"_a, "kernel_height"_a, "input_feature_channels"_a,
                 "output_feature_channels"_a, "A descriptor of this class (Apple's instancetype class factory).");
}

// Apple's deprecated neuron API of the convolution descriptor warns and maps onto fused_neuron_descriptor.
void deprecated(const char* what) {
  const std::string msg = std::string("MPSCNNConvolutionDescriptor.") + what +
                          " is deprecated (as in MPS); use fused_neuron_descriptor = MPSNNNeuronDescriptor.cnn_neuron_descriptor(...)";
  if (PyErr_WarnEx(PyExc_DeprecationWarning, msg.c_str(), 1) < 0) throw py::error_already_set();
}

// A deprecated descriptor property over one neuron parameter (neuron_parameter_a/b/c).
template <typename Class>
void deprecated_neuron_parameter(Class& cls, const char* name, float NeuronDescriptor::*field) {
  cls.def_property(
      name,
      [name, field](const ConvolutionDescriptor& d) {
        deprecated(name);
        return d.fused_neuron.*field;
      },
      [name, field](ConvolutionDescriptor& d, float v) {
        deprecated(name);
        d.fused_neuron.*field = v;
      });
}

std::vector<float> float_data(const py::object& o) {
  py::module_ np = py::module_::import("numpy");
  if (py::isinstance<py::bytes>(o) || py::isinstance<py::bytearray>(o) || py::isinstance<py::memoryview>(o))
    return np.attr("frombuffer")(o, "dtype"_a = "float32").cast<std::vector<float>>();  // NSData of floats
  return np.attr("asarray")(o, "dtype"_a = "float32").attr("ravel")().cast<std::vector<float>>();
}

// The incoming gradient(s) of gradient_filter(s): with_source or with_sources, exactly one.
std::vector<ImageNodePtr> incoming(const FilterNode& n, const std::optional<ImageNodePtr>& one,
                                   const std::optional<std::vector<ImageNodePtr>>& many) {
  MPSNN_CHECK(one.has_value() != many.has_value(), GraphError, n.context(),
              " pass with_source or with_sources (exactly one)");
  return one ? std::vector<ImageNodePtr>{*one} : *many;
}
}  // namespace

void bind_nodes(py::module_& m) {
  py::class_<ImageNode, std::shared_ptr<ImageNode>>(m, "MPSNNImageNode", "Placeholder for an image in a graph.")
      .def(py::init([](const py::object& handle) { return std::make_shared<ImageNode>(to_handle(handle)); }),
           "handle"_a = py::none())
      .def_static("node", [](const py::object& handle) { return std::make_shared<ImageNode>(to_handle(handle)); },
                  "handle"_a = py::none())
      .def_static("exported_node", [](const py::object& handle) {
                    auto n = std::make_shared<ImageNode>(to_handle(handle));
                    n->export_from_graph = true;
                    return n;
                  }, "handle"_a = py::none())
      .def_property("handle", [](const ImageNode& n) { return from_handle(n.handle); },
                    [](ImageNode& n, const py::object& h) { n.handle = to_handle(h); })
      .def_readwrite("format", &ImageNode::format)
      .def_property("image_allocator", [](const ImageNode& n) { return from_allocator(n.image_allocator); },
                    [](ImageNode& n, const py::object& a) { n.image_allocator = to_allocator(a); })
      .def_readwrite("export_from_graph", &ImageNode::export_from_graph)
      .def_readwrite("synchronize_resource", &ImageNode::synchronize_resource)
      .def_readwrite("stop_gradient", &ImageNode::stop_gradient)
      .def_property_readonly("parent", &ImageNode::parent, "The filter producing this image, or None for an input.");

  py::class_<StateNode, std::shared_ptr<StateNode>>(m, "MPSNNStateNode", "Placeholder for a state in a graph.")
      .def_property("handle", [](const StateNode& n) { return from_handle(n.handle); },
                    [](StateNode& n, const py::object& h) { n.handle = to_handle(h); })
      .def_readwrite("export_from_graph", &StateNode::export_from_graph)
      .def_readwrite("synchronize_resource", &StateNode::synchronize_resource);
  py::class_<GradientStateNode, StateNode, std::shared_ptr<GradientStateNode>>(m, "MPSNNGradientStateNode");
  py::class_<ConvolutionGradientStateNode, GradientStateNode, std::shared_ptr<ConvolutionGradientStateNode>>(
      m, "MPSCNNConvolutionGradientStateNode");
  py::class_<ConvolutionTransposeGradientStateNode, ConvolutionGradientStateNode,
             std::shared_ptr<ConvolutionTransposeGradientStateNode>>(m, "MPSCNNConvolutionTransposeGradientStateNode");
  py::class_<BinaryGradientStateNode, StateNode, std::shared_ptr<BinaryGradientStateNode>>(m, "MPSNNBinaryGradientStateNode");
  py::class_<ArithmeticGradientStateNode, BinaryGradientStateNode, std::shared_ptr<ArithmeticGradientStateNode>>(
      m, "MPSNNArithmeticGradientStateNode");
  py::class_<MultiaryGradientStateNode, StateNode, std::shared_ptr<MultiaryGradientStateNode>>(m, "MPSNNMultiaryGradientStateNode");
  py::class_<LabelsNode, StateNode, std::shared_ptr<LabelsNode>>(m, "MPSNNLabelsNode");

  py::class_<PaddingPolicy, std::shared_ptr<PaddingPolicy>>(m, "_NativePadding")
      .def("padding_method", &PaddingPolicy::padding_method)
      .def("label", &PaddingPolicy::label);
  py::class_<DefaultPadding, PaddingPolicy, std::shared_ptr<DefaultPadding>>(
      m, "MPSNNDefaultPadding", "Padding policy from an MPSNNPaddingMethod (graph.md §4.5).")
      .def_static("padding_with_method", [](int method) { return DefaultPadding::with_method(method); }, "method"_a)
      .def(py::init([](int method) { return DefaultPadding::with_method(method); }), "method"_a)
      .def_static("padding_for_tensorflow_average_pooling", [] { return DefaultPadding::tensorflow_average_pooling(false); },
                  "TensorFlow SAME average pooling: same size, odd pixel after, edge clamp (divide by valid pixels).")
      .def_static("padding_for_tensorflow_average_pooling_valid_only",
                  [] { return DefaultPadding::tensorflow_average_pooling(true); });

  py::class_<NeuronDescriptor>(m, "MPSNNNeuronDescriptor", "A neuron type with its a, b, c parameters (and PReLU data).")
      .def(py::init([](NeuronType t, std::optional<float> a, std::optional<float> b, std::optional<float> c) {
             return make_neuron(t, a, b, c);
           }),
           "neuron_type"_a = NeuronType::none, "a"_a = py::none(), "b"_a = py::none(), "c"_a = py::none())
      .def_static("cnn_neuron_descriptor", [](NeuronType t, std::optional<float> a, std::optional<float> b,
                                              std::optional<float> c) { return make_neuron(t, a, b, c); },
                  "neuron_type"_a, "a"_a = py::none(), "b"_a = py::none(), "c"_a = py::none(),
                  "Parameters not given take the per-type defaults of nodes.md §6.2.")
      .def_static("cnn_neuron_prelu_descriptor", [](const std::vector<float>& data, bool) {
                    NeuronDescriptor d;
                    d.type = NeuronType::prelu;
                    d.data = data;
                    return d;
                  }, "data"_a, "no_copy"_a = false)
      .def_readwrite("neuron_type", &NeuronDescriptor::type)
      .def_readwrite("a", &NeuronDescriptor::a)
      .def_readwrite("b", &NeuronDescriptor::b)
      .def_readwrite("c", &NeuronDescriptor::c)
      .def_readwrite("data", &NeuronDescriptor::data);

  auto desc = py::class_<ConvolutionDescriptor>(m, "MPSCNNConvolutionDescriptor",
                                                "Geometry of a convolution, read from its data source.");
  descriptor_constructors(desc, &descriptor<ConvolutionDescriptor>);
  desc.def_readwrite("kernel_width", &ConvolutionDescriptor::kernel_width)
      .def_readwrite("kernel_height", &ConvolutionDescriptor::kernel_height)
      .def_readwrite("input_feature_channels", &ConvolutionDescriptor::input_feature_channels)
      .def_readwrite("output_feature_channels", &ConvolutionDescriptor::output_feature_channels)
      .def_readwrite("stride_in_pixels_x", &ConvolutionDescriptor::stride_x)
      .def_readwrite("stride_in_pixels_y", &ConvolutionDescriptor::stride_y)
      .def_readwrite("dilation_rate_x", &ConvolutionDescriptor::dilation_x)
      .def_readwrite("dilation_rate_y", &ConvolutionDescriptor::dilation_y)
      .def_readwrite("groups", &ConvolutionDescriptor::groups)
      .def_property("fused_neuron_descriptor", [](const ConvolutionDescriptor& d) { return d.fused_neuron; },
                    [](ConvolutionDescriptor& d, const py::object& n) {
                      d.fused_neuron = n.is_none() ? NeuronDescriptor{} : n.cast<NeuronDescriptor>();
                    })
      .def("set_batch_normalization_parameters_for_inference",
           [](ConvolutionDescriptor& d, std::vector<float> mean, std::vector<float> variance, std::optional<std::vector<float>> gamma,
              std::optional<std::vector<float>> beta, float epsilon) {
             ConvolutionDescriptor::FoldedBatchNorm bn;
             const size_t n = mean.size();
             bn.mean = std::move(mean);
             bn.variance = std::move(variance);
             bn.gamma = gamma.value_or(std::vector<float>(n, 1.0f));
             bn.beta = beta.value_or(std::vector<float>(n, 0.0f));
             bn.epsilon = epsilon;
             d.batch_norm = std::move(bn);
           },
           "mean"_a, "variance"_a, "gamma"_a, "beta"_a, "epsilon"_a)
      // Deprecated in MPS (macOS 10.13.4): views of fused_neuron_descriptor.
      // (iOS 11 Swift code sets them as properties: desc.neuronType = .reLU; desc.neuronParameterA = 0.1.)
      .def_property(
          "neuron_type",
          [](const ConvolutionDescriptor& d) {
            deprecated("neuron_type");
            return d.fused_neuron.type;
          },
          [](ConvolutionDescriptor& d, NeuronType t) {
            deprecated("neuron_type");
            d.fused_neuron.type = t;  // keeps neuron_parameter_a/b/c, as MPS's separate properties do
            d.fused_neuron.data.clear();
          })
      .def(
          "set_neuron_type",
          [](ConvolutionDescriptor& d, NeuronType t, std::optional<float> a, std::optional<float> b) {
            deprecated("set_neuron_type");
            d.fused_neuron = make_neuron(t, a, b, std::nullopt);
          },
          "neuron_type"_a, "parameter_a"_a = py::none(), "parameter_b"_a = py::none(),
          "Deprecated: sets fused_neuron_descriptor to the neuron (parameters not given take the type's defaults).")
      .def(
          "set_neuron_to_prelu_with_parameters_a",
          [](ConvolutionDescriptor& d, const py::object& a) {
            deprecated("set_neuron_to_prelu_with_parameters_a");
            NeuronDescriptor n;
            n.type = NeuronType::prelu;
            n.data = float_data(a);
            MPSNN_CHECK(d.output_feature_channels <= 0 || int64_t(n.data.size()) == d.output_feature_channels,
                        ShapeError, "[MPSCNNConvolutionDescriptor] set_neuron_to_prelu_with_parameters_a got ",
                        n.data.size(), " values; expected one per output feature channel (", d.output_feature_channels, ")");
            d.fused_neuron = std::move(n);
          },
          "a"_a, "Deprecated: fused PReLU with one slope per output feature channel (floats, or bytes of float32).");
  deprecated_neuron_parameter(desc, "neuron_parameter_a", &NeuronDescriptor::a);
  deprecated_neuron_parameter(desc, "neuron_parameter_b", &NeuronDescriptor::b);
  deprecated_neuron_parameter(desc, "neuron_parameter_c", &NeuronDescriptor::c);
  auto depthwise = py::class_<DepthwiseDescriptor, ConvolutionDescriptor>(
      m, "MPSCNNDepthWiseConvolutionDescriptor", "Each input channel is convolved separately (multiplier 1).");
  descriptor_constructors(depthwise, &depthwise_descriptor);
  depthwise.def_property_readonly("channel_multiplier", [](const ConvolutionDescriptor& d) {
    return d.output_feature_channels / d.input_feature_channels;
  });
  auto sub_pixel = py::class_<SubPixelDescriptor, ConvolutionDescriptor>(m, "MPSCNNSubPixelConvolutionDescriptor",
                                                                         "Rearranges output channels into r x r pixel blocks.");
  descriptor_constructors(sub_pixel, &descriptor<SubPixelDescriptor>);
  sub_pixel.def_readwrite("sub_pixel_scale_factor", &ConvolutionDescriptor::sub_pixel_scale_factor);

  py::class_<FilterNode, std::shared_ptr<FilterNode>>(m, "MPSNNFilterNode", "Base of every operation node.")
      .def_property_readonly("result_image", &FilterNode::result_image)
      .def_property_readonly("result_state", &FilterNode::result_state)
      .def_property_readonly("result_states", &FilterNode::result_states)
      .def_property_readonly("source_images", &FilterNode::sources)
      .def_property("padding_policy", [](const FilterNode& n) { return from_padding(n.padding_policy()); },
                    [](FilterNode& n, const py::object& p) { n.set_padding_policy(to_padding(p)); })
      .def_readwrite("label", &FilterNode::label)
      .def_property_readonly(
          "data_source",
          [](const FilterNode& n) {
            if (n.convolution_source) return from_convolution_source(*n.convolution_source);
            if (n.normalization_source) return from_normalization_source(*n.normalization_source);
            return py::object(py::none());
          },
          "mpsnn extension: the data source of a convolution-family or normalization node (the object given as "
          "weights= / data_source=, or the Array data source a loaded graph made), e.g. to read trained weights "
          "back; None for other nodes.")
      .def(
          "gradient_filter",
          [](FilterNode& n, const std::optional<ImageNodePtr>& one, const std::optional<std::vector<ImageNodePtr>>& many) {
            return gradient_filter(n, incoming(n, one, many));
          },
          "with_source"_a = py::none(), "with_sources"_a = py::none(),
          "The gradient node of this node for the incoming gradient image (graph.md §1.8): its sources are the "
          "gradient and this node's sources, its gradient state this node's result_state.")
      .def(
          "gradient_filters",
          [](FilterNode& n, const std::optional<ImageNodePtr>& one, const std::optional<std::vector<ImageNodePtr>>& many) {
            return gradient_filters(n, incoming(n, one, many));
          },
          "with_source"_a = py::none(), "with_sources"_a = py::none(), "One gradient node per source of this node.")
      .def(
          "training_graph",
          [](FilterNode& n, const ImageNodePtr& with_source_gradient, const py::object& node_handler) -> py::object {
            GradientNodeHandler handler = copy_handle_handler;
            if (!node_handler.is_none())
              handler = [node_handler](const FilterNodePtr& g, const FilterNodePtr& f, const ImageNodePtr& src,
                                       const ImageNodePtr& grad) { node_handler(g, f, src, grad); };
            std::vector<FilterNodePtr> terminals = training_graph(n, with_source_gradient, handler);
            if (terminals.empty()) return py::none();
            return py::cast(terminals);
          },
          "with_source_gradient"_a = nullptr, "node_handler"_a = py::none(),
          "Build the backward graph of the graph ending at this node (graph.md §1.9) and return its terminal nodes "
          "(whose results no other new node reads) in creation order, or None when nothing was created.\n\n"
          "The seed is with_source_gradient, else this node's result image; a loss node seeds the gradient of its "
          "source with its own result. Forward nodes are visited in reverse topological order through image links "
          "(state links are not followed); an image read by several forward nodes gets the sum of their gradients "
          "from inserted MPSNNAdditionNodes, chained left to right in the order the gradients were created. "
          "Nothing propagates past an image with stop_gradient; a trainable node reading one still gets its gradient "
          "node (for its parameters). node_handler(gradient_node, inference_node, inference_source, gradient_source) "
          "is called for every created node (inference_node None for additions); setting "
          "inference_source.stop_gradient = True in it prunes the traversal there. Without a handler, "
          "inference_source.handle is copied to gradient_node.result_image.handle. Training styles are copied.")
      .def("__repr__", [](const FilterNode& n) { return "<" + n.context() + ">"; });
  py::class_<PyGradientFilterNode, FilterNode, std::shared_ptr<PyGradientFilterNode>>(
      m, "MPSNNGradientFilterNode",
      "Base of the gradient nodes: sources are the incoming gradient, then the forward node's source(s); the "
      "gradient state is the forward node's result_state. Gradients of gradients are not supported "
      "(gradient_filter raises NotImplementedError).");

  py::class_<ScaleTransform>(m, "MPSScaleTransform", "dest = source * scale + translate (pixel-edge coordinates).")
      .def(py::init([](double sx, double sy, double tx, double ty) { return ScaleTransform{sx, sy, tx, ty}; }),
           "scale_x"_a = 1.0, "scale_y"_a = 1.0, "translate_x"_a = 0.0, "translate_y"_a = 0.0)
      .def_readwrite("scale_x", &ScaleTransform::scale_x)
      .def_readwrite("scale_y", &ScaleTransform::scale_y)
      .def_readwrite("translate_x", &ScaleTransform::translate_x)
      .def_readwrite("translate_y", &ScaleTransform::translate_y);
}

}  // namespace mpsnn::bindings
