// MTLBuffer and MPSState (graph.md §5): buffers are zero-copy NumPy views of host-visible memory.
#include "backends/registry.h"
#include <cstring>

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

// The parameter states (graph.md §5.2): two float32 buffers each, with byte offsets.
template <typename T>
void bind_pair(py::class_<T, State, std::shared_ptr<T>>& c, const char* first, const char* second) {
  c.def_property_readonly(first, [](T& s) { return s.first(); }, "MTLBuffer of float32 values.")
      .def_property_readonly(second, [](T& s) { return s.second(); }, "MTLBuffer of float32 values (None when absent).")
      .def_property_readonly((std::string(first) + "_offset").c_str(), &T::first_offset, "Byte offset into the buffer.")
      .def_property_readonly((std::string(second) + "_offset").c_str(), &T::second_offset, "Byte offset into the buffer.");
}

size_t descriptor_bytes(const ConvolutionDescriptor& d) { return size_t(weights_count(d)) * sizeof(float); }

void bind_parameter_states(py::module_& m) {
  auto wb = py::class_<WeightsAndBiasesState, State, std::shared_ptr<WeightsAndBiasesState>>(
      m, "MPSCNNConvolutionWeightsAndBiasesState",
      "Weights (float32, OHWI) and biases (float32 x Cout) of a convolution: what a data source's "
      "update_with_command_buffer returns and optimizers read and write.");
  wb.def(py::init([](const BufferPtr& weights, const BufferPtr& biases) {
           return std::make_shared<WeightsAndBiasesState>(weights, 0, biases, 0);
         }),
         py::kw_only(), "weights"_a, "biases"_a = py::none(), "MPSCNNConvolutionWeightsAndBiasesState(weights:biases:)")
      .def(py::init([](const BufferPtr& weights, int64_t weights_offset, const BufferPtr& biases, int64_t biases_offset,
                       const ConvolutionDescriptor& d) {
             auto s = std::make_shared<WeightsAndBiasesState>(weights, weights_offset, biases, biases_offset);
             MPSNN_CHECK(s->first_count() >= weights_count(d) &&
                             (!biases || s->second_count() >= d.output_feature_channels),
                         ShapeError, "[MPSCNNConvolutionWeightsAndBiasesState] the buffers hold ", s->first_count(),
                         " weights and ", s->second_count(), " biases after their offsets; the descriptor needs ",
                         weights_count(d), " and ", d.output_feature_channels);
             return s;
           }),
           py::kw_only(), "weights"_a, "weights_offset"_a, "biases"_a, "biases_offset"_a, "cnn_convolution_descriptor"_a,
           "(weights:weightsOffset:biases:biasesOffset:cnnConvolutionDescriptor:)")
      .def(py::init([](const DevicePtr& device, const ConvolutionDescriptor& d) {
             return std::make_shared<WeightsAndBiasesState>(device, nullptr, descriptor_bytes(d),
                                                            size_t(d.output_feature_channels) * sizeof(float));
           }),
           "device"_a, py::kw_only(), "cnn_convolution_descriptor"_a, "Zero-filled buffers sized by the descriptor.")
      .def_static(
          "temporary_cnn_convolution_weights_and_biases_state",
          [](const CommandBufferPtr& cb, const ConvolutionDescriptor& d) {
            MPSNN_CHECK(cb != nullptr, GraphError, "[MPSCNNConvolutionWeightsAndBiasesState] command_buffer is None");
            return std::make_shared<WeightsAndBiasesState>(cb->device(), cb, descriptor_bytes(d),
                                                           size_t(d.output_feature_channels) * sizeof(float));
          },
          "command_buffer"_a, py::kw_only(), "cnn_convolution_descriptor"_a);
  bind_pair(wb, "weights", "biases");

  auto pair_init = [](auto& c, const char* what) {
    using T = typename std::remove_reference_t<decltype(c)>::type;
    c.def_static(
        "temporary_state",
        [what](const CommandBufferPtr& cb, int64_t number_of_feature_channels) {
          MPSNN_CHECK(cb != nullptr, GraphError, "[", what, "] command_buffer is None");
          MPSNN_CHECK(number_of_feature_channels > 0, ShapeError, "[", what, "] number_of_feature_channels ",
                      number_of_feature_channels, "; expected > 0");
          const size_t bytes = size_t(number_of_feature_channels) * sizeof(float);
          return std::make_shared<T>(cb->device(), cb, bytes, bytes);
        },
        "command_buffer"_a, py::kw_only(), "number_of_feature_channels"_a);
  };
  auto gb = py::class_<GammaAndBetaState, State, std::shared_ptr<GammaAndBetaState>>(
      m, "MPSCNNNormalizationGammaAndBetaState", "Gamma and beta of a normalization (float32 x channels each).");
  gb.def(py::init([](const BufferPtr& gamma, const BufferPtr& beta) {
           MPSNN_CHECK(beta != nullptr, GraphError, "[MPSCNNNormalizationGammaAndBetaState] beta is None");
           return std::make_shared<GammaAndBetaState>(gamma, 0, beta, 0);
         }),
         py::kw_only(), "gamma"_a, "beta"_a);
  pair_init(gb, "MPSCNNNormalizationGammaAndBetaState");
  bind_pair(gb, "gamma", "beta");
  auto mv = py::class_<MeanAndVarianceState, State, std::shared_ptr<MeanAndVarianceState>>(
      m, "MPSCNNNormalizationMeanAndVarianceState", "Mean and variance of a normalization (float32 x channels each).");
  mv.def(py::init([](const BufferPtr& mean, const BufferPtr& variance) {
           MPSNN_CHECK(variance != nullptr, GraphError, "[MPSCNNNormalizationMeanAndVarianceState] variance is None");
           return std::make_shared<MeanAndVarianceState>(mean, 0, variance, 0);
         }),
         py::kw_only(), "mean"_a, "variance"_a);
  pair_init(mv, "MPSCNNNormalizationMeanAndVarianceState");
  bind_pair(mv, "mean", "variance");
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
  // Typed accessors (graph.md §5.2): the buffer of a role, or None when the state has none (a forward
  // node's state, or a gradient whose training style computes no parameter gradients).
  auto role = [](const char* name) {
    return [name](State& s) -> py::object {
      const int i = s.find_buffer(name);
      if (i < 0) return py::none();
      return py::cast(s.resource(i, true));
    };
  };
  py::class_<ConvolutionGradientState, GradientState, std::shared_ptr<ConvolutionGradientState>>(
      m, "MPSCNNConvolutionGradientState",
      "A convolution's gradient state. The one a convolution gradient node delivers (its result state) holds the "
      "parameter gradients, float32, summed over the batch; a forward node's holds none (None below).")
      .def_property_readonly("gradient_for_weights", role("gradient_for_weights"),
                             "MTLBuffer of dL/dW in the data source's weight layout, OHWI: "
                             "[Cout][KH][KW][Cin/groups] (depthwise [Cout][KH][KW]); "
                             "`.numpy().reshape(w.shape)`. None without weight gradients.")
      .def_property_readonly("gradient_for_biases", role("gradient_for_biases"),
                             "MTLBuffer of dL/db, one float32 per output channel (computed also when the data source "
                             "has no bias). None without weight gradients.")
      .def_property_readonly(
          "source_width",
          [](const State& s) -> py::object {
            auto* o = dynamic_cast<const ConvolutionStateOrigin*>(s.origin.get());
            return o ? py::object(py::int_(o->source.w)) : py::object(py::none());
          },
          "Width of the forward convolution's source (MPSImageSizeEncodingState); None for a state no graph made.")
      .def_property_readonly(
          "source_height",
          [](const State& s) -> py::object {
            auto* o = dynamic_cast<const ConvolutionStateOrigin*>(s.origin.get());
            return o ? py::object(py::int_(o->source.h)) : py::object(py::none());
          },
          "Height of the forward convolution's source.")
      .def_property_readonly(
          "convolution",
          [](const State& s) -> py::object {
            auto* o = dynamic_cast<const ConvolutionStateOrigin*>(s.origin.get());
            if (!o) return py::none();
            const NodeGeometry& g = o->geom;
            KernelProps k;
            k.kernel_width = g.x.kernel;
            k.kernel_height = g.y.kernel;
            k.stride_x = g.x.stride;
            k.stride_y = g.y.stride;
            k.dilation_x = g.x.dilation;
            k.dilation_y = g.y.dilation;
            k.offset_x = g.x.extent() / 2 - g.x.pad_before;
            k.offset_y = g.y.extent() / 2 - g.y.pad_before;
            k.edge_mode = g.edge_mode;
            k.source_feature_channel_offset = g.source_channel_offset;
            if (g.source_channel_count) k.source_feature_channel_max_count = g.source_channel_count;
            const auto& a = o->forward->attrs_as<ConvolutionAttrs>();
            k.is_backwards = a.variant == ConvolutionVariant::transpose;
            return kernel_object(o->forward.get(), k);
          },
          "The forward kernel (an MPSCNNConvolution, MPSCNNFullyConnected or MPSCNNConvolutionTranspose) with the "
          "geometry it ran with: kernel size, strides, dilation, offset, edge mode, channel window (a transposed "
          "convolution's offset is in its zero-inserted source). None for a state no graph made.")
      .def_property_readonly(
          "gradient_for_weights_layout",
          [](const State&) { return py::module_::import("mpsnn._core").attr("MPSCNNConvolutionWeightsLayout").attr("ohwi"); },
          "MPSCNNConvolutionWeightsLayout.ohwi (the only layout).");
  auto bn_state = py::class_<BatchNormalizationState, GradientState, std::shared_ptr<BatchNormalizationState>>(
      m, "MPSCNNBatchNormalizationState",
      "Batch normalization's state (graph.md §5.2): mean() and variance() it normalized with (the batch's, "
      "biased, in training), and, from its gradient node, gamma(), beta(), gradient_for_gamma(), "
      "gradient_for_beta() (summed over the batch). Each is an MTLBuffer of C float32, or None when the state "
      "holds no such buffer.");
  for (const char* name : {"gamma", "beta", "mean", "variance", "gradient_for_gamma", "gradient_for_beta"})
    bn_state.def(name, role(name));
  bn_state.def(
      "reset",
      [](State& s) {
        for (const char* name : {"gradient_for_gamma", "gradient_for_beta"})
          if (int i = s.find_buffer(name); i >= 0) {
            BufferPtr b = s.resource(i, true);
            std::memset(b->contents("reset"), 0, b->length());
          }
      },
      "Clears the accumulated gradients (gradient_for_gamma / gradient_for_beta set to 0).");
  auto in_state = py::class_<InstanceNormalizationGradientState, GradientState,
                             std::shared_ptr<InstanceNormalizationGradientState>>(
      m, "MPSCNNInstanceNormalizationGradientState",
      "Instance normalization's gradient state (graph.md §5.2): gamma, beta as used and gradient_for_gamma, "
      "gradient_for_beta, each an MTLBuffer of C float32 (None where absent). This backend runs a batch as one "
      "run: the gradients are the per-image parts summed over the batch, and an encode_batch state batch holds "
      "this one object N times.");
  for (const char* name : {"gamma", "beta", "gradient_for_gamma", "gradient_for_beta"})
    in_state.def_property_readonly(name, role(name));
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
  bn_state.def_property_readonly(
      "sample_count",
      [](const State& s) -> py::object {
        auto* o = dynamic_cast<const NormalizationStateOrigin*>(s.origin.get());
        return o ? py::object(py::int_(o->sample_count)) : py::object(py::none());
      },
      "mpsnn extension: the values per channel the batch statistics cover (N*H*W), e.g. for an unbiased "
      "running variance; None for a state no graph made.");
  bind_parameter_states(m);
  (void)grad;
}

}  // namespace mpsnn::bindings
