// MTLBuffer and MPSState (graph.md §5): buffers are zero-copy NumPy views of host-visible memory.
#include "backends/registry.h"
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {

py::dtype numpy_dtype(DType t) {
  switch (t) {
    case DType::f32: return py::dtype::of<float>();
    case DType::f16: return py::dtype("float16");
    case DType::i32: return py::dtype::of<int32_t>();
    case DType::u8: return py::dtype::of<uint8_t>();
    case DType::u16: return py::dtype::of<uint16_t>();
    case DType::bf16: break;
  }
  MPSNN_THROW(DTypeError, "[MTLBuffer.numpy] ", dtype_name(t), " has no NumPy dtype");
}

// A NumPy array over `bytes` of the buffer's memory, keeping the memory alive.
py::array buffer_view(const BufferPtr& b, const py::dtype& dtype, const std::vector<py::ssize_t>& shape) {
  void* data = b->contents("contents");
  auto storage = b->storage();
  auto* holder = new std::shared_ptr<Storage>(storage);
  py::capsule owner(holder, [](void* p) { delete static_cast<std::shared_ptr<Storage>*>(p); });
  return py::array(dtype, shape, data, owner);
}

py::array buffer_numpy(const BufferPtr& b, const py::object& dtype_obj) {
  const py::dtype dtype = py::dtype::from_args(dtype_obj);
  const size_t item = size_t(dtype.itemsize());
  MPSNN_CHECK(item > 0 && b->length() % item == 0, DTypeError, "[MTLBuffer.numpy] buffer of ", b->length(),
              " bytes is not a whole number of ", py::str(py::handle(dtype)).cast<std::string>(), " elements");
  return buffer_view(b, dtype, {py::ssize_t(b->length() / item)});
}

BufferPtr buffer_from_array(const py::object& obj, const DevicePtr& device) {
  py::array a = py::array::ensure(obj);
  MPSNN_CHECK(a && (a.flags() & py::array::c_style) && a.writeable(), DTypeError,
              "[MTLBuffer.from_numpy] expected a writeable C-contiguous NumPy array (it is wrapped without copying)");
  return Buffer::wrap(device ? device : system_default_device(), a.mutable_data(), size_t(a.nbytes()), keep_alive(a));
}

}  // namespace

void bind_states(py::module_& m) {
  m.def("_host_allocation_count", &host_allocation_count,
        "Test aid: blocks the host allocator has handed out (images, buffers, plan arenas).");
  m.def("_host_live_allocation_count", &host_live_allocation_count,
        "Test aid: blocks of the host allocator not yet released (leak checks).");
  m.def("_fail_host_allocation_after", &fail_host_allocation_after, "k"_a,
        "Test aid (fault injection): the next k host allocations succeed and the one after raises MemoryError, "
        "once; k < 0 disarms.");
  py::class_<Buffer, BufferPtr>(m, "MTLBuffer",
                                "A length of device memory; on host-visible devices contents() and numpy() are views.")
      .def(py::init([](const DevicePtr& device, size_t length) { return std::make_shared<Buffer>(device, length); }),
           "device"_a, "length"_a)
      .def_static("from_numpy", &buffer_from_array, "array"_a, "device"_a = nullptr,
                  "Wrap a writeable C-contiguous array without copying.")
      .def_property_readonly("length", &Buffer::length)
      .def_property_readonly("device", &Buffer::device)
      .def("contents", [](const BufferPtr& b) { return buffer_view(b, py::dtype::of<uint8_t>(), {py::ssize_t(b->length())}); },
           "The buffer's bytes as a writeable uint8 NumPy view (no copy).")
      .def("numpy", &buffer_numpy, "dtype"_a = py::dtype::of<float>(),
           "The buffer as a flat NumPy view of `dtype` (no copy).")
      .def_readwrite("label", &Buffer::label)
      .def("__len__", &Buffer::length);

  auto state = py::class_<State, StatePtr>(
      m, "MPSState",
      "Buffers beside an image (graph.md §5.1). Temporary states belong to one command buffer and live while "
      "read_count > 0; persistent states live on their device.");
  state
      .def(py::init([](const DevicePtr& device, std::optional<size_t> buffer_size, std::optional<std::vector<size_t>> resource_list) {
             MPSNN_CHECK(buffer_size.has_value() != resource_list.has_value(), GraphError,
                         "[MPSState] pass buffer_size or resource_list (a list of buffer sizes)");
             return std::make_shared<State>(device, resource_list ? *resource_list : std::vector<size_t>{*buffer_size});
           }),
           "device"_a, py::kw_only(), "buffer_size"_a = py::none(), "resource_list"_a = py::none())
      .def(py::init([](const BufferPtr& resource) { return std::make_shared<State>(std::vector<BufferPtr>{resource}); }),
           py::kw_only(), "resource"_a)
      .def(py::init([](const std::vector<BufferPtr>& resources) { return std::make_shared<State>(resources); }),
           py::kw_only(), "resources"_a)
      .def_static(
          "temporary_state",
          [](const CommandBufferPtr& cb, std::optional<size_t> buffer_size, std::optional<std::vector<size_t>> resource_list) {
            std::vector<size_t> sizes;
            if (buffer_size) sizes.push_back(*buffer_size);
            if (resource_list) sizes = *resource_list;
            return std::make_shared<State>(cb, sizes);
          },
          "command_buffer"_a, "buffer_size"_a = py::none(), "resource_list"_a = py::none())
      .def_property_readonly("resource_count", &State::resource_count)
      .def("resource", &State::resource, "index"_a = 0, "allocate_memory"_a = true,
           "The MTLBuffer at `index`; None without memory when allocate_memory is False.")
      .def("buffer_size", &State::buffer_size, "index"_a = 0)
      .def("resource_size", &State::resource_size)
      .def_property("read_count", &State::read_count, &State::set_read_count)
      .def_property_readonly("is_temporary", &State::is_temporary)
      .def_property_readonly("device", &State::device)
      .def_readwrite("label", &State::label)
      .def(
          "numpy",
          [](State& s, int index) {
            MPSNN_CHECK(index >= 0 && size_t(index) < s.layout().size(), GraphError, "[MPSState.numpy] resource ", index,
                        " has no known layout; use resource(index).numpy(dtype)");
            const TensorDesc& d = s.layout()[size_t(index)];
            return buffer_view(s.resource(index, true), numpy_dtype(d.dtype),
                               {py::ssize_t(d.shape.n), py::ssize_t(d.shape.h), py::ssize_t(d.shape.w), py::ssize_t(d.shape.c)});
          },
          "index"_a = 0,
          "mpsnn extension: a buffer of a graph-made state as a typed (N, H, W, C) NumPy view, e.g. the int32 "
          "arg-max of max pooling (y * width + x of the winning source pixel, -1 for a zero of the padding).")
      .def("__repr__", [](const State& s) {
        return std::string("<MPSState ") + std::to_string(s.resource_count()) + " buffer(s)" +
               (s.is_temporary() ? ", temporary>" : ">");
      });
  auto grad = py::class_<GradientState, State, std::shared_ptr<GradientState>>(
      m, "MPSNNGradientState", "A state a forward node fills for its gradient node (geometry, arg-max, ...).");
  py::class_<ConvolutionGradientState, GradientState, std::shared_ptr<ConvolutionGradientState>>(
      m, "MPSCNNConvolutionGradientState", "A convolution's gradient state.");
  py::class_<BinaryGradientState, State, std::shared_ptr<BinaryGradientState>>(
      m, "MPSNNBinaryGradientState", "The gradient state of a two-source node.");
  py::class_<ArithmeticGradientState, BinaryGradientState, std::shared_ptr<ArithmeticGradientState>>(
      m, "MPSCNNArithmeticGradientState",
      "The clamp mask of a binary arithmetic node, read by both of its gradient nodes (numpy(): uint8 "
      "(N, H, W, C), 1 where minimum_value < r < maximum_value).");
  py::class_<MultiaryGradientState, State, std::shared_ptr<MultiaryGradientState>>(
      m, "MPSNNMultiaryGradientState", "The gradient state of a node with several sources.");
  py::class_<DropoutGradientState, GradientState, std::shared_ptr<DropoutGradientState>>(
      m, "MPSCNNDropoutGradientState",
      "The keep mask a training-mode dropout sampled (graph.md §5.2); never temporary.")
      .def(
          "mask_data",
          [](DropoutGradientState& s) {
            MPSNN_CHECK(!s.layout().empty() && s.layout()[0].dtype == DType::u8, GraphError,
                        "[MPSCNNDropoutGradientState.mask_data] this state holds no mask made by a graph");
            const TensorDesc& d = s.layout()[0];
            py::array view = buffer_view(s.resource(0, true), numpy_dtype(d.dtype),
                                         {py::ssize_t(d.shape.n), py::ssize_t(d.shape.h), py::ssize_t(d.shape.w),
                                          py::ssize_t(d.shape.c)});
            return py::array(view.attr("copy")());
          },
          "A copy of the keep mask as a uint8 (N, H, W, C) array, 1 = kept; an axis whose mask stride is 0 has "
          "extent 1 (its elements share one draw), so it broadcasts against the image.");
  (void)grad;
}

}  // namespace mpsnn::bindings
