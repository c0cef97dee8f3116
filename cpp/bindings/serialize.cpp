// Serialization bindings (graph/serialize.h): the Python objects a loader makes (LabelHandle,
// the Array*DataSource classes), and pickle / deepcopy of nodes. MPSNNGraph's own methods are in
// graph.cpp.
#include "bindings/common.h"
#include "backends/registry.h"
#include "graph/serialize.h"

namespace mpsnn::bindings {

namespace {

// The handle a loaded graph gives its nodes: the label the original handle reported.
struct LabelHandle {
  std::optional<std::string> text;
};

py::array_t<float> float_array(const std::vector<float>& v) {
  py::array_t<float> a(py::ssize_t(v.size()));
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(float));
  return a;
}

py::object optional_array(const std::vector<float>& v) { return v.empty() ? py::object(py::none()) : py::object(float_array(v)); }

py::object data_sources_module() { return py::module_::import("mpsnn.data_sources"); }

py::bytes to_py_bytes(const std::vector<uint8_t>& b) { return py::bytes(reinterpret_cast<const char*>(b.data()), b.size()); }

py::object node_from_bytes(const py::object& data) {
  MPSNN_CHECK(PyObject_CheckBuffer(data.ptr()), DTypeError, "[mpsnn nodes] data is a ",
              std::string(py::str(py::type::of(data).attr("__name__"))), "; expected bytes");
  py::buffer_info info = data.cast<py::buffer>().request();
  MPSNN_CHECK(info.ndim <= 1 && (info.ndim == 0 || info.strides[0] == info.itemsize), DTypeError,
              "[mpsnn nodes] data must be contiguous bytes");
  const NodeRoot root = nodes_from_bytes(static_cast<const uint8_t*>(info.ptr), size_t(info.size * info.itemsize),
                                         python_load_hooks(system_default_device()));
  if (root.filter) return py::cast(root.filter);
  if (root.image) return py::cast(root.image);
  return py::cast(root.state);
}

// What an Array data source reports of its training: None, or (optimizer, amsgrad, [(moment list
// name, [vectors])], statistics momentum or None) from its _training_record().
SourceTraining training_of(const py::object& source) {
  SourceTraining t;
  if (source.is_none() || !py::hasattr(source, "_training_record")) return t;
  const py::object r = source.attr("_training_record")();
  if (r.is_none()) return t;
  const auto record = r.cast<py::tuple>();
  OptimizerRecord o = OptimizerRecord::of(record[0].cast<const Optimizer&>());
  o.amsgrad = record[1].cast<bool>();
  for (const py::handle& list : record[2]) {
    const auto entry = list.cast<py::tuple>();
    std::vector<std::vector<float>> vectors;
    for (const py::handle& v : entry[1]) {
      const auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(v);
      vectors.emplace_back(a.data(), a.data() + a.size());
    }
    o.moments.emplace_back(entry[0].cast<std::string>(), std::move(vectors));
  }
  t.optimizer = std::move(o);
  if (!record[3].is_none()) t.statistics_momentum = record[3].cast<float>();
  return t;
}

// The keywords that make a loaded Array data source trainable, and its moments afterwards.
py::dict training_kwargs(const DevicePtr& device, const SourceTraining& t) {
  py::dict kw;
  if (!t.optimizer) return kw;
  kw["optimizer"] = make_python_optimizer(device, *t.optimizer);
  kw["amsgrad"] = t.optimizer->amsgrad;
  return kw;
}
void restore_moments(const py::object& source, const SourceTraining& t) {
  if (!t.optimizer) return;
  py::list lists;
  for (const auto& [name, vectors] : t.optimizer->moments) {
    py::list vs;
    for (const auto& v : vectors) vs.append(float_array(v));
    lists.append(py::make_tuple(name, vs));
  }
  source.attr("_restore_moments")(lists);
}

}  // namespace

SaveHooks python_save_hooks() {
  SaveHooks h;
  h.convolution = [](ConvolutionDataSource& s) { return training_of(from_convolution_source(s)); };
  h.normalization = [](NormalizationDataSource& s) { return training_of(from_normalization_source(s)); };
  return h;
}

LoadHooks python_load_hooks(const DevicePtr& device) {
  LoadHooks h;
  h.handle = [](const std::optional<std::string>& label) { return to_handle(py::cast(LabelHandle{label})); };
  h.convolution_source = [device](const ConvolutionParams& p, bool binary, const SourceTraining& t) {
    py::object weights;
    if (binary) {
      py::array_t<uint32_t> a(py::ssize_t(p.binary_weights.size()));
      if (!p.binary_weights.empty()) std::memcpy(a.mutable_data(), p.binary_weights.data(), p.binary_weights.size() * 4);
      weights = a;
    } else {
      weights = float_array(p.weights);
    }
    // OHWI (every form's layout, data_sources.py), as the original source's weights() most likely was.
    weights = weights.attr("reshape")(p.desc.output_feature_channels, p.desc.kernel_height, p.desc.kernel_width, -1);
    py::object src = data_sources_module().attr("ArrayConvolutionDataSource")(
        p.desc, weights, optional_array(p.bias), p.label ? py::object(py::str(*p.label)) : py::object(py::none()),
        **training_kwargs(device, t));
    restore_moments(src, t);
    return to_convolution_source(src);
  };
  h.normalization_source = [device](const NormalizationParams& p, bool instance, const SourceTraining& t) {
    py::object label = p.label ? py::object(py::str(*p.label)) : py::object(py::none());
    py::dict kw = training_kwargs(device, t);
    py::object src;
    if (instance) {
      src = data_sources_module().attr("ArrayInstanceNormalizationDataSource")(
          optional_array(p.gamma), optional_array(p.beta), p.epsilon, label, p.channels, **kw);
    } else {
      if (t.optimizer) kw["statistics_momentum"] = t.statistics_momentum ? py::object(py::float_(*t.statistics_momentum)) : py::object(py::none());
      src = data_sources_module().attr("ArrayBatchNormalizationDataSource")(
          optional_array(p.gamma), optional_array(p.beta), optional_array(p.mean), optional_array(p.variance), p.epsilon,
          label, p.channels, **kw);
    }
    restore_moments(src, t);
    return to_normalization_source(src);
  };
  return h;
}

namespace {

// A node and everything upstream of it through the format (deepcopy).
NodeRoot nodes_round_trip(const NodeRoot& root) {
  const auto b = nodes_to_bytes(root, python_save_hooks());
  return nodes_from_bytes(b.data(), b.size(), python_load_hooks(system_default_device()));
}

}  // namespace

void bind_serialization(py::module_& m) {
  py::class_<LabelHandle>(m, "LabelHandle",
                          "mpsnn: the MPSHandle of a node in a graph loaded from bytes or a pickle. Handles are stored "
                          "as their label() (loading never runs code from the data), so a loaded graph's handle lists "
                          "hold LabelHandles with the original labels, one object per original handle.")
      .def(py::init([](std::optional<std::string> label) { return LabelHandle{std::move(label)}; }), "label"_a = py::none())
      .def("label", [](const LabelHandle& h) { return h.text; })
      .def("__eq__", [](const LabelHandle& a, const py::object& b) {
        return py::isinstance<LabelHandle>(b) && b.cast<const LabelHandle&>().text == a.text;
      })
      .def("__hash__", [](const LabelHandle& h) { return py::hash(py::cast(h.text)); })
      .def("__repr__", [](const LabelHandle& h) {
        return "LabelHandle(" + std::string(py::repr(py::cast(h.text))) + ")";
      })
      .def(py::pickle([](const LabelHandle& h) { return py::make_tuple(h.text); },
                      [](const py::tuple& t) {
                        MPSNN_CHECK(t.size() == 1, SerializationError, "[LabelHandle] bad pickle state");
                        return LabelHandle{t[0].cast<std::optional<std::string>>()};
                      }));

  m.def("_nodes_from_bytes", &node_from_bytes, "data"_a,
        "Loads what a node's pickle holds (the node and everything upstream of it); see MPSNNGraph.to_bytes for the "
        "format. Raises SerializationError for bytes that are not such data.");
  auto nodes_to_py = [](const NodeRoot& root) { return to_py_bytes(nodes_to_bytes(root, python_save_hooks())); };

  // Pickle and deepcopy of nodes: the node with everything upstream of it (sources, source states,
  // their producers), in the data-only format of graph/serialize.h.
  auto loader = [] { return py::module_::import("mpsnn._serialization").attr("load_nodes"); };
  auto filter = py::reinterpret_borrow<py::class_<FilterNode, std::shared_ptr<FilterNode>>>(m.attr("MPSNNFilterNode"));
  filter.def("__reduce__", [loader, nodes_to_py](const std::shared_ptr<FilterNode>& n) {
    return py::make_tuple(loader(), py::make_tuple(nodes_to_py(NodeRoot{n, nullptr, nullptr})));
  }, "Pickles this node with everything upstream of it (data only: weights, attributes, handle labels).");
  filter.def("__deepcopy__", [](const std::shared_ptr<FilterNode>& n, const py::object&) {
    return py::cast(nodes_round_trip(NodeRoot{n, nullptr, nullptr}).filter);
  }, "memo"_a);
  auto image = py::reinterpret_borrow<py::class_<ImageNode, std::shared_ptr<ImageNode>>>(m.attr("MPSNNImageNode"));
  image.def("__reduce__", [loader, nodes_to_py](const std::shared_ptr<ImageNode>& n) {
    return py::make_tuple(loader(), py::make_tuple(nodes_to_py(NodeRoot{nullptr, n, nullptr})));
  });
  image.def("__deepcopy__", [](const std::shared_ptr<ImageNode>& n, const py::object&) {
    return py::cast(nodes_round_trip(NodeRoot{nullptr, n, nullptr}).image);
  }, "memo"_a);
  auto state = py::reinterpret_borrow<py::class_<StateNode, std::shared_ptr<StateNode>>>(m.attr("MPSNNStateNode"));
  state.def("__reduce__", [loader, nodes_to_py](const std::shared_ptr<StateNode>& n) {
    return py::make_tuple(loader(), py::make_tuple(nodes_to_py(NodeRoot{nullptr, nullptr, n})));
  });
  state.def("__deepcopy__", [](const std::shared_ptr<StateNode>& n, const py::object&) {
    return py::cast(nodes_round_trip(NodeRoot{nullptr, nullptr, n}).state);
  }, "memo"_a);
}

}  // namespace mpsnn::bindings
