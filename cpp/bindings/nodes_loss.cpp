// Loss nodes, their descriptors and labels (nodes.md §13, graph.md §5.2).
#include "bindings/common.h"
#include "core/loss_labels.h"

namespace mpsnn::bindings {

namespace {
struct PyLossNode : FilterNode {
  using FilterNode::FilterNode;
};
struct PyYOLOLossNode : FilterNode {
  using FilterNode::FilterNode;
};

// Float32 data of a descriptor: a float32 NumPy array, float32 bytes (NSData), or a sequence of
// numbers. Other array dtypes are refused rather than converted.
std::vector<float> float32_data(const py::object& o, const char* what) {
  py::module_ np = py::module_::import("numpy");
  if (py::isinstance<py::bytes>(o) || py::isinstance<py::bytearray>(o) || py::isinstance<py::memoryview>(o)) {
    const size_t n = size_t(py::len(np.attr("frombuffer")(o, "dtype"_a = "uint8")));
    MPSNN_CHECK(n % 4 == 0, DTypeError, "[", what, "] data has ", n, " bytes; expected float32 values (4 bytes each)");
    return np.attr("frombuffer")(o, "dtype"_a = "float32").cast<std::vector<float>>();
  }
  if (py::isinstance<py::array>(o)) {
    py::array a = o.cast<py::array>();
    MPSNN_CHECK(a.dtype().is(py::dtype::of<float>()), DTypeError, "[", what, "] data is a ",
                std::string(py::str(a.dtype())), " array; expected float32 (MPS copies float data)");
  }
  return np.attr("asarray")(o, "dtype"_a = "float32").attr("ravel")().cast<std::vector<float>>();
}

std::array<int64_t, 3> size3(const py::object& o, const char* what) {
  if (py::hasattr(o, "width"))
    return {o.attr("width").cast<int64_t>(), o.attr("height").cast<int64_t>(),
            py::hasattr(o, "depth") ? o.attr("depth").cast<int64_t>() : 1};
  auto t = o.cast<std::vector<int64_t>>();
  MPSNN_CHECK(t.size() == 3, ShapeError, "[", what, "] size must be an MTLSize or (width, height, depth)");
  return {t[0], t[1], t[2]};
}

LossDataDescriptor data_descriptor(const py::object& data, DataLayout layout, const py::object& size) {
  LossDataDescriptor d;
  d.data = float32_data(data, "MPSCNNLossDataDescriptor");
  d.layout = layout;
  const auto s = size3(size, "MPSCNNLossDataDescriptor");
  d.width = s[0];
  d.height = s[1];
  d.feature_channels = s[2];
  d.image_count("MPSCNNLossDataDescriptor");  // checks the size against the data now
  return d;
}

LossDescriptor loss_descriptor(LossType type, ReductionType reduction) {
  LossDescriptor d;
  d.type = type;
  d.reduction = reduction;
  return d;
}

LossLabelsPtr make_labels(const DevicePtr& device, const std::optional<LossDataDescriptor>& labels_descriptor,
                          const py::object& loss_image_size, const std::optional<LossDataDescriptor>& weights_descriptor,
                          const ImagePtr& labels_image, const ImagePtr& weights_image) {
  MPSNN_CHECK(device != nullptr, GraphError, "[MPSCNNLossLabels] device is None");
  MPSNN_CHECK(labels_descriptor.has_value() != (labels_image != nullptr), GraphError,
              "[MPSCNNLossLabels] pass labels_descriptor or labels_image (exactly one)");
  MPSNN_CHECK(!(weights_descriptor && labels_image) && !(weights_image && labels_descriptor), GraphError,
              "[MPSCNNLossLabels] weights go with labels of the same kind: weights_descriptor with labels_descriptor, "
              "weights_image with labels_image");
  ImagePtr labels = labels_image, weights = weights_image;
  if (labels_descriptor) labels = labels_descriptor->to_image(device, "MPSCNNLossLabels labels_descriptor");
  if (weights_descriptor) weights = weights_descriptor->to_image(device, "MPSCNNLossLabels weights_descriptor");
  std::array<int64_t, 3> loss{1, 1, 1};
  if (!loss_image_size.is_none()) loss = size3(loss_image_size, "MPSCNNLossLabels loss_image_size");
  return std::make_shared<LossLabels>(device, labels, weights, loss[0], loss[1], loss[2]);
}

StateNodePtr labels_of(const FilterNode& n) { return n.source_states().at(0); }

template <typename Cls>
void descriptor_fields(Cls& c) {
  c.def_readwrite("loss_type", &LossDescriptor::type)
      .def_readwrite("reduction_type", &LossDescriptor::reduction)
      .def_readwrite("weight", &LossDescriptor::weight, "Scalar weight of every element when the labels have no weights.")
      .def_readwrite("label_smoothing", &LossDescriptor::label_smoothing,
                     "Softmax / sigmoid cross entropy: t' = t (1 - ls) + ls / K (K = number_of_classes, 2 for sigmoid).")
      .def_readwrite("number_of_classes", &LossDescriptor::number_of_classes,
                     "K of softmax cross-entropy label smoothing (set it to the channel count).")
      .def_readwrite("epsilon", &LossDescriptor::epsilon, "Log loss epsilon.")
      .def_readwrite("delta", &LossDescriptor::delta, "Huber delta.");
}
}  // namespace

void bind_nodes_loss(py::module_& m) {
  py::native_enum<LossType>(m, "MPSCNNLossType", "enum.IntEnum", "Loss functions of MPSCNNLossNode (nodes.md §13.2).")
      .value("mean_absolute_error", LossType::mean_absolute_error)
      .value("mean_squared_error", LossType::mean_squared_error)
      .value("soft_max_cross_entropy", LossType::softmax_cross_entropy)
      .value("sigmoid_cross_entropy", LossType::sigmoid_cross_entropy)
      .value("categorical_cross_entropy", LossType::categorical_cross_entropy)
      .value("hinge", LossType::hinge)
      .value("huber", LossType::huber)
      .value("cosine_distance", LossType::cosine_distance)
      .value("log", LossType::log)
      .value("kullback_leibler_divergence", LossType::kullback_leibler_divergence)
      .value("softmax_cross_entropy", LossType::softmax_cross_entropy)  // alias
      .finalize();
  py::native_enum<ReductionType>(m, "MPSCNNReductionType", "enum.IntEnum", "How a loss is reduced per image.")
      .value("none", ReductionType::none)
      .value("sum", ReductionType::sum)
      .value("mean", ReductionType::mean)
      .value("sum_by_non_zero_weights", ReductionType::sum_by_non_zero_weights)
      .finalize();

  auto desc = py::class_<LossDescriptor>(m, "MPSCNNLossDescriptor",
                                         "Loss type, reduction and parameters of MPSCNNLossNode (nodes.md §13.2).");
  desc.def(py::init(&loss_descriptor), "loss_type"_a, "reduction_type"_a)
      .def_static("cnn_loss_descriptor", &loss_descriptor, "loss_type"_a, "reduction_type"_a);
  descriptor_fields(desc);

  py::class_<LossDataDescriptor>(
      m, "MPSCNNLossDataDescriptor",
      "Float32 labels or weights data with its layout and size (width, height, feature channels). The data may hold "
      "several images one after the other (mpsnn: one labels object for a whole batch); bytes_per_row and "
      "bytes_per_image (0: dense) are the strides of write_bytes.")
      .def(py::init(&data_descriptor), "data"_a, "layout"_a, "size"_a)
      .def_static("cnn_loss_data_descriptor", &data_descriptor, "data"_a, "layout"_a, "size"_a)
      .def_readonly("layout", &LossDataDescriptor::layout)
      .def_property_readonly("size", [](const LossDataDescriptor& d) {
        return py::module_::import("mpsnn._types").attr("MTLSize")(d.width, d.height, d.feature_channels);
      })
      .def_property("bytes_per_row", [](const LossDataDescriptor& d) { return d.bytes_per_row > 0 ? d.bytes_per_row : d.dense_bytes_per_row(); },
                    [](LossDataDescriptor& d, int64_t v) { d.bytes_per_row = v; })
      .def_property("bytes_per_image", [](const LossDataDescriptor& d) { return d.bytes_per_image > 0 ? d.bytes_per_image : d.dense_bytes_per_image(); },
                    [](LossDataDescriptor& d, int64_t v) { d.bytes_per_image = v; });

  py::class_<LossLabels, State, std::shared_ptr<LossLabels>>(
      m, "MPSCNNLossLabels",
      "Labels of a loss node, optional per-element weights, and the loss image the node writes (graph.md §5.2). "
      "Pass one per image in source_states (encode_batch: an MPSStateBatch, i.e. a list), or one whose data holds "
      "all N images. The loss image is 1x1x1 per image (reductions sum, mean, sumByNonZeroWeights) unless "
      "loss_image_size says otherwise (reduction none: the source's size).")
      .def(py::init(&make_labels), "device"_a, "labels_descriptor"_a = py::none(), py::kw_only(),
           "loss_image_size"_a = py::none(), "weights_descriptor"_a = py::none(), "labels_image"_a = nullptr,
           "weights_image"_a = nullptr)
      .def("loss_image", &LossLabels::loss_image,
           "The float32 loss image (1 image per labels image); valid once the command buffer completed.")
      .def("labels_image", &LossLabels::labels_image)
      .def("weights_image", &LossLabels::weights_image);

  auto loss = py::class_<PyLossNode, FilterNode, std::shared_ptr<PyLossNode>>(
      m, "MPSCNNLossNode",
      "A loss (nodes.md §13.2). Its own gradient: the result image is dL/d(source), same shape as the source; the loss "
      "value goes to the loss image of the MPSCNNLossLabels bound to input_labels. gradient_filter is unavailable.");
  def_init(loss, [](const ImageNodePtr& s, const LossDescriptor& d) {
             return make_node<PyLossNode>(OpKind::Loss, LossAttrs{d}, {s}, {std::make_shared<LabelsNode>()});
           },
           "source"_a, "loss_descriptor"_a);
  loss.def_property_readonly("input_labels", &labels_of, "The MPSNNLabelsNode of this loss (a source state of the graph).");

  auto ydesc = py::class_<YOLOLossAttrs>(m, "MPSCNNYOLOLossDescriptor", "The YOLO loss (nodes.md §13.3).");
  ydesc.def_static(
      "cnn_loss_descriptor",
      [](LossType xy, LossType wh, LossType conf, LossType classes, ReductionType reduction, const py::object& anchors,
         int64_t count) {
        YOLOLossAttrs a;
        a.xy = loss_descriptor(xy, ReductionType::sum);
        a.wh = loss_descriptor(wh, ReductionType::sum);
        a.confidence = loss_descriptor(conf, ReductionType::sum);
        a.classes = loss_descriptor(classes, ReductionType::sum);
        a.reduction = reduction;
        a.anchor_boxes = float32_data(anchors, "MPSCNNYOLOLossDescriptor anchor_boxes");
        a.number_of_anchor_boxes = count;
        return a;
      },
      "xy_loss_type"_a, "wh_loss_type"_a, "confidence_loss_type"_a, "classes_loss_type"_a, "reduction_type"_a,
      "anchor_boxes"_a, "number_of_anchor_boxes"_a,
      "anchor_boxes: (width, height) float32 pairs in grid-cell units, one per anchor box.");
  ydesc.def_readwrite("xy_loss_descriptor", &YOLOLossAttrs::xy)
      .def_readwrite("wh_loss_descriptor", &YOLOLossAttrs::wh)
      .def_readwrite("confidence_loss_descriptor", &YOLOLossAttrs::confidence)
      .def_readwrite("classes_loss_descriptor", &YOLOLossAttrs::classes)
      .def_readwrite("reduction_type", &YOLOLossAttrs::reduction)
      .def_readwrite("rescore", &YOLOLossAttrs::rescore)
      .def_readwrite("scale_xy", &YOLOLossAttrs::scale_xy)
      .def_readwrite("scale_wh", &YOLOLossAttrs::scale_wh)
      .def_readwrite("scale_no_object", &YOLOLossAttrs::scale_no_object)
      .def_readwrite("scale_object", &YOLOLossAttrs::scale_object)
      .def_readwrite("scale_class", &YOLOLossAttrs::scale_class)
      .def_readwrite("min_iou_for_object_presence", &YOLOLossAttrs::min_iou_for_object_presence)
      .def_readwrite("max_iou_for_object_absence", &YOLOLossAttrs::max_iou_for_object_absence)
      .def_readwrite("number_of_anchor_boxes", &YOLOLossAttrs::number_of_anchor_boxes)
      .def_property("anchor_boxes", [](const YOLOLossAttrs& a) { return a.anchor_boxes; },
                    [](YOLOLossAttrs& a, const py::object& o) { a.anchor_boxes = float32_data(o, "MPSCNNYOLOLossDescriptor anchor_boxes"); });

  auto yolo = py::class_<PyYOLOLossNode, FilterNode, std::shared_ptr<PyYOLOLossNode>>(
      m, "MPSCNNYOLOLossNode",
      "The YOLO detection loss (nodes.md §13.3): per grid cell A blocks of [x, y, w, h, confidence, K classes]. Its own "
      "gradient, like MPSCNNLossNode; the labels use the source's layout (a weights image of the labels is not used: "
      "the sub-descriptors' scalar weights apply).");
  def_init(yolo, [](const ImageNodePtr& s, const YOLOLossAttrs& d) {
             return make_node<PyYOLOLossNode>(OpKind::YOLOLoss, d, {s}, {std::make_shared<LabelsNode>()});
           },
           "source"_a, "loss_descriptor"_a);
  yolo.def_property_readonly("input_labels", &labels_of, "The MPSNNLabelsNode of this loss (a source state of the graph).");
  set_node_factory(OpKind::Loss, node_factory<PyLossNode>);
  set_node_factory(OpKind::YOLOLoss, node_factory<PyYOLOLossNode>);
}

}  // namespace mpsnn::bindings
