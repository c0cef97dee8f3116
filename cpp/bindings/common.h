#pragma once
// Shared by the binding files: pybind11, the Python-protocol adapters, and the C++ types that
// give every MPS node class its own Python class (so isinstance follows MPS's inheritance).
#include <pybind11/native_enum.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/functional.h>

#include <memory>
#include <string>
#include <vector>

#include "core/command.h"
#include "core/errors.h"
#include "core/image.h"
#include "core/state.h"
#include "graph/gradients.h"
#include "graph/nn_graph.h"
#include "graph/node.h"
#include "graph/schema.h"
#include "graph/serialize.h"
#include "bindings/gil.h"

namespace py = pybind11;
using namespace pybind11::literals;

// Every image-node argument (source=, sources=, result_image=, with_source=, ...) refuses a
// filter node with a DTypeError that names the fix, instead of pybind11's generic TypeError.
namespace pybind11::detail {
template <>
class type_caster<std::shared_ptr<mpsnn::ImageNode>>
    : public copyable_holder_caster<mpsnn::ImageNode, std::shared_ptr<mpsnn::ImageNode>> {
  using base = copyable_holder_caster<mpsnn::ImageNode, std::shared_ptr<mpsnn::ImageNode>>;

 public:
  bool load(handle src, bool convert) {
    if (base::load(src, convert)) return true;
    if (src && isinstance<mpsnn::FilterNode>(src)) {
      const std::string cls = str(type::handle_of(src).attr("__name__"));
      throw mpsnn::DTypeError("got the filter node " + cls + " where an image node (MPSNNImageNode) is expected; pass "
                              "`node.result_image` (e.g. source=conv.result_image)");
    }
    return false;
  }
};
}  // namespace pybind11::detail

namespace mpsnn::bindings {

// A Python object owned from C++: released with the GIL held, or leaked at interpreter exit.
struct PyRef {
  py::object obj;
  explicit PyRef(py::object o) : obj(std::move(o)) {}
  ~PyRef();
};
// A shared_ptr<void> that keeps a Python object alive from C++.
std::shared_ptr<void> keep_alive(py::object o);

// Protocol adapters (adapters.cpp): any Python object with the protocol's methods.
HandlePtr to_handle(const py::object& o);
py::object from_handle(const HandlePtr& h);
std::shared_ptr<ConvolutionDataSource> to_convolution_source(const py::object& o);
std::shared_ptr<NormalizationDataSource> to_normalization_source(const py::object& o);
// The Python object behind a data source made by to_*_source, or None.
py::object from_convolution_source(const ConvolutionDataSource& s);
py::object from_normalization_source(const NormalizationDataSource& s);
PaddingPtr to_padding(const py::object& o);
py::object from_padding(const PaddingPtr& p);
ImageAllocatorPtr to_allocator(const py::object& o);
py::object from_allocator(const ImageAllocatorPtr& a);
std::shared_ptr<TransformProvider> to_transform_provider(const py::object& o);

// Converts a C-contiguous float32/float16/uint8/uint16 NumPy (N, H, W, C) array into an image
// without copying; `what` names the caller in errors.
ImagePtr image_from_array(const py::object& array, const DevicePtr& device, const char* what);
// Wraps a DLPack tensor of shape (N, H, W, C) without copying: host tensors via NumPy's
// from_dlpack, device (CUDA) tensors via core/dlpack.h.
ImagePtr image_from_dlpack(const py::object& tensor, const DevicePtr& device, const char* what);
// Accepts an MPSImage, a NumPy array or a DLPack tensor.
ImagePtr to_image(const py::object& o, const DevicePtr& device, const char* what);

// One C++ type per Python node class.
#define MPSNN_PY_NODE(Name, Base) \
  struct Name : Base {            \
    using Base::Base;             \
  };
MPSNN_PY_NODE(PyConvolutionNode, FilterNode)
MPSNN_PY_NODE(PyFullyConnectedNode, PyConvolutionNode)
MPSNN_PY_NODE(PyConvolutionTransposeNode, PyConvolutionNode)
MPSNN_PY_NODE(PyBinaryConvolutionNode, PyConvolutionNode)
MPSNN_PY_NODE(PyBinaryFullyConnectedNode, PyBinaryConvolutionNode)
MPSNN_PY_NODE(PyPoolingNode, FilterNode)
MPSNN_PY_NODE(PyPoolingMaxNode, PyPoolingNode)
MPSNN_PY_NODE(PyPoolingAverageNode, PyPoolingNode)
MPSNN_PY_NODE(PyPoolingL2NormNode, PyPoolingNode)
MPSNN_PY_NODE(PyDilatedPoolingMaxNode, FilterNode)
MPSNN_PY_NODE(PyNeuronNode, FilterNode)
MPSNN_PY_NODE(PySoftMaxNode, FilterNode)
MPSNN_PY_NODE(PyLogSoftMaxNode, FilterNode)
MPSNN_PY_NODE(PyBinaryArithmeticNode, FilterNode)
MPSNN_PY_NODE(PyAdditionNode, PyBinaryArithmeticNode)
MPSNN_PY_NODE(PySubtractionNode, PyBinaryArithmeticNode)
MPSNN_PY_NODE(PyMultiplicationNode, PyBinaryArithmeticNode)
MPSNN_PY_NODE(PyDivisionNode, PyBinaryArithmeticNode)
MPSNN_PY_NODE(PyConcatenationNode, FilterNode)
MPSNN_PY_NODE(PyBatchNormalizationNode, FilterNode)
MPSNN_PY_NODE(PyInstanceNormalizationNode, FilterNode)
MPSNN_PY_NODE(PyNormalizationNode, FilterNode)
MPSNN_PY_NODE(PyCrossChannelNormalizationNode, PyNormalizationNode)
MPSNN_PY_NODE(PySpatialNormalizationNode, PyNormalizationNode)
MPSNN_PY_NODE(PyLocalContrastNormalizationNode, PyNormalizationNode)
MPSNN_PY_NODE(PyDropoutNode, FilterNode)
MPSNN_PY_NODE(PyUpsamplingNearestNode, FilterNode)
MPSNN_PY_NODE(PyUpsamplingBilinearNode, FilterNode)
MPSNN_PY_NODE(PyScaleNode, FilterNode)
MPSNN_PY_NODE(PyBilinearScaleNode, PyScaleNode)
MPSNN_PY_NODE(PyLanczosScaleNode, PyScaleNode)
MPSNN_PY_NODE(PyGradientFilterNode, FilterNode)
MPSNN_PY_NODE(PyPoolingGradientNode, PyGradientFilterNode)
MPSNN_PY_NODE(PyPoolingMaxGradientNode, PyPoolingGradientNode)
MPSNN_PY_NODE(PyPoolingAverageGradientNode, PyPoolingGradientNode)
MPSNN_PY_NODE(PyPoolingL2NormGradientNode, PyPoolingGradientNode)
MPSNN_PY_NODE(PyDilatedPoolingMaxGradientNode, PyPoolingGradientNode)
MPSNN_PY_NODE(PyNeuronGradientNode, PyGradientFilterNode)
MPSNN_PY_NODE(PyArithmeticGradientNode, PyGradientFilterNode)
MPSNN_PY_NODE(PyAdditionGradientNode, PyArithmeticGradientNode)
MPSNN_PY_NODE(PySubtractionGradientNode, PyArithmeticGradientNode)
MPSNN_PY_NODE(PyMultiplicationGradientNode, PyArithmeticGradientNode)
MPSNN_PY_NODE(PyConcatenationGradientNode, PyGradientFilterNode)
MPSNN_PY_NODE(PySoftMaxGradientNode, PyGradientFilterNode)
MPSNN_PY_NODE(PyLogSoftMaxGradientNode, PyGradientFilterNode)
MPSNN_PY_NODE(PyDropoutGradientNode, PyGradientFilterNode)
MPSNN_PY_NODE(PyCrossChannelNormalizationGradientNode, PyGradientFilterNode)
MPSNN_PY_NODE(PySpatialNormalizationGradientNode, PyGradientFilterNode)
MPSNN_PY_NODE(PyLocalContrastNormalizationGradientNode, PyGradientFilterNode)
MPSNN_PY_NODE(PyUpsamplingNearestGradientNode, PyGradientFilterNode)
MPSNN_PY_NODE(PyUpsamplingBilinearGradientNode, PyGradientFilterNode)
#undef MPSNN_PY_NODE

// Neuron node classes share one C++ base with a per-class type tag.
template <NeuronType T>
struct PyNeuron : PyNeuronNode {
  using PyNeuronNode::PyNeuronNode;
};

// Creates node `T` of `kind` (the C++ node makes its own result states).
template <typename T>
std::shared_ptr<T> make_node(OpKind kind, Attrs attrs, std::vector<ImageNodePtr> sources,
                             std::vector<StateNodePtr> states = {}) {
  return std::make_shared<T>(kind, std::move(attrs), std::move(sources), std::move(states));
}

// A NodeFactory (graph/gradients.h) making Python class T, for nodes created in C++.
template <typename T>
FilterNodePtr node_factory(OpKind kind, Attrs attrs, std::vector<ImageNodePtr> sources, std::vector<StateNodePtr> states) {
  return make_node<T>(kind, std::move(attrs), std::move(sources), std::move(states));
}

// Registers `factory` as an initializer of `cls` and as its static `node(...)` (Apple's
// nodeWithSource:… class factories, Swift's init), with the same keywords and defaults. The
// first `node` of a class starts its own overload chain, so it shadows every base class factory.
template <typename Class, typename F, typename... Extra>
Class& def_init(Class& cls, F factory, const Extra&... extra) {
  if (!cls.attr("__dict__").contains("node")) cls.attr("node") = py::none();
  cls.def_static("node", factory, extra...);
  cls.def(py::init(std::move(factory)), extra...);
  return cls;
}

// The object a custom padding hook receives as `kernel` (kernels.cpp): an instance of the MPS
// kernel class of the node (MPSCNNPoolingMax, MPSCNNConvolution, ...) holding a copy of `props`;
// kernel_props reads back what the hook changed.
py::object kernel_object(const FilterNode* node, const KernelProps& props);
KernelProps kernel_props(const py::handle& kernel);

// A read/write Python property over one field of a node's attribute struct.
template <typename A, typename F, typename Class>
void attr_property(Class& cls, const char* name, F A::*field, const char* doc, bool writable = true) {
  if (writable)
    cls.def_property(
        name, [field](const FilterNode& n) { return n.attrs_as<A>().*field; },
        [field](FilterNode& n, F v) { n.attrs_as<A>().*field = v; }, doc);
  else
    cls.def_property_readonly(name, [field](const FilterNode& n) { return n.attrs_as<A>().*field; }, doc);
}

void bind_errors(py::module_& m);
void bind_enums(py::module_& m);
void bind_textures(py::module_& m);
void bind_images(py::module_& m);
void bind_commands(py::module_& m);
void bind_nodes(py::module_& m);
void bind_nodes_convolution(py::module_& m);
void bind_nodes_pooling(py::module_& m);
void bind_nodes_neuron(py::module_& m);
void bind_nodes_arithmetic(py::module_& m);
void bind_nodes_normalization(py::module_& m);
void bind_nodes_resample(py::module_& m);
void bind_nodes_loss(py::module_& m);
void bind_graph(py::module_& m);
void bind_serialization(py::module_& m);
// The objects graph/serialize.h loaders make in Python: mpsnn.LabelHandle and the Array*DataSource
// classes, trainable with their stored optimizer made on `device` (serialize.cpp).
LoadHooks python_load_hooks(const DevicePtr& device);
// What the Array*DataSource classes store of their training (serialize.cpp).
SaveHooks python_save_hooks();
// The Python optimizer (MPSNNOptimizerStochasticGradientDescent, ...RMSProp, ...Adam) a record
// describes, on `device` (optimizers.cpp).
py::object make_python_optimizer(const DevicePtr& device, const OptimizerRecord& record);
void bind_states(py::module_& m);
void bind_kernels(py::module_& m);
void bind_optimizers(py::module_& m);

}  // namespace mpsnn::bindings
