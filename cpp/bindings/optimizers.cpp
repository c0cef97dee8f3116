// MPSVectorDescriptor / MPSVector and the optimizers (graph.md §7): MPSNNOptimizerDescriptor,
// MPSNNOptimizer, MPSNNOptimizerStochasticGradientDescent, MPSNNOptimizerRMSProp,
// MPSNNOptimizerAdam with their vector encode forms. The update logic is graph/optimizer.*.
#include <cmath>

#include "backends/registry.h"
#include "bindings/common.h"
#include "graph/optimizer.h"

namespace mpsnn::bindings {

namespace {

// MPSVectorDescriptor: the shape of a vector (or of `vectors` vectors, `vector_bytes` apart).
struct VectorDescriptor {
  int64_t length = 0, vectors = 1, vector_bytes = 0;
  DataType data_type = DataType::float32;
};

int64_t vector_bytes_for(int64_t length, DataType type) { return length * int64_t(data_type_size(type)); }

VectorDescriptor make_descriptor(int64_t length, int64_t vectors, const std::optional<int64_t>& vector_bytes,
                                 DataType type) {
  MPSNN_CHECK(length > 0 && vectors > 0, ShapeError, "[MPSVectorDescriptor] length ", length, " and vectors ", vectors,
              "; expected both > 0");
  MPSNN_CHECK(data_type_size(type) > 0, DTypeError, "[MPSVectorDescriptor] data_type ", data_type_name(type),
              " has no element size");
  VectorDescriptor d{length, vectors, vector_bytes ? *vector_bytes : vector_bytes_for(length, type), type};
  MPSNN_CHECK(d.vector_bytes >= vector_bytes_for(length, type), ShapeError, "[MPSVectorDescriptor] vector_bytes ",
              d.vector_bytes, " is less than one vector of ", length, " ", data_type_name(type), " (",
              vector_bytes_for(length, type), " bytes)");
  return d;
}

VectorRef make_vector(BufferPtr buffer, int64_t offset, const VectorDescriptor& d) {
  MPSNN_CHECK(buffer != nullptr, GraphError, "[MPSVector] needs a buffer");
  VectorRef v{std::move(buffer), d.length, d.vectors, d.vector_bytes, offset, d.data_type};
  MPSNN_CHECK(offset >= 0 && offset + v.span() <= int64_t(v.buffer->length()), ShapeError, "[MPSVector] ",
              d.vectors, " vector(s) of ", d.length, " ", data_type_name(d.data_type), " at offset ", offset, " need ",
              offset + v.span(), " bytes; the buffer has ", v.buffer->length());
  return v;
}

py::array vector_numpy(const VectorRef& v) {
  MPSNN_CHECK(v.data_type == DataType::float32 || v.data_type == DataType::float16, DTypeError,
              "[MPSVector.numpy] ", data_type_name(v.data_type), " vectors have no NumPy view here; use the buffer");
  const py::dtype dtype = v.data_type == DataType::float32 ? py::dtype::of<float>() : py::dtype("float16");
  char* data = static_cast<char*>(v.buffer->contents("MPSVector.numpy")) + v.offset;
  auto* holder = new std::shared_ptr<Storage>(v.buffer->storage());
  py::capsule owner(holder, [](void* p) { delete static_cast<std::shared_ptr<Storage>*>(p); });
  const py::ssize_t item = py::ssize_t(data_type_size(v.data_type));
  if (v.vectors == 1) return py::array(dtype, {py::ssize_t(v.length)}, {item}, data, owner);
  return py::array(dtype, {py::ssize_t(v.vectors), py::ssize_t(v.length)}, {py::ssize_t(v.vector_bytes), item}, data,
                   owner);
}

VectorRef vector_from_numpy(const py::object& obj, const DevicePtr& device) {
  py::array a = py::array::ensure(obj);
  MPSNN_CHECK(a && (a.flags() & py::array::c_style) && a.writeable() && (a.ndim() == 1 || a.ndim() == 2),
              DTypeError, "[MPSVector.from_numpy] expected a writeable C-contiguous 1-D or 2-D array (it is wrapped "
              "without copying)");
  DataType type = DataType::invalid;
  if (a.dtype().equal(py::dtype::of<float>())) type = DataType::float32;
  else if (a.dtype().equal(py::dtype("float16"))) type = DataType::float16;
  MPSNN_CHECK(type != DataType::invalid, DTypeError, "[MPSVector.from_numpy] expected float32 or float16, got ",
              py::str(py::handle(a.dtype())).cast<std::string>());
  const int64_t vectors = a.ndim() == 2 ? int64_t(a.shape(0)) : 1;
  const int64_t length = int64_t(a.shape(a.ndim() - 1));
  auto buffer = Buffer::wrap(device ? device : system_default_device(), a.mutable_data(), size_t(a.nbytes()),
                             keep_alive(a));
  return make_vector(std::move(buffer), 0, make_descriptor(length, vectors, std::nullopt, type));
}

OptimizerDescriptor make_optimizer_descriptor(float learning_rate, float gradient_rescale, bool apply_gradient_clipping,
                                              float gradient_clip_max, float gradient_clip_min,
                                              RegularizationType regularization_type, float regularization_scale) {
  OptimizerDescriptor d;
  d.learning_rate = learning_rate;
  d.gradient_rescale = gradient_rescale;
  d.apply_gradient_clipping = apply_gradient_clipping;
  d.gradient_clip_max = gradient_clip_max;
  d.gradient_clip_min = gradient_clip_min;
  d.regularization_type = regularization_type;
  d.regularization_scale = regularization_scale;
  MPSNN_CHECK(!(gradient_clip_min > gradient_clip_max), ShapeError, "[MPSNNOptimizerDescriptor] gradient_clip_min ",
              gradient_clip_min, " is above gradient_clip_max ", gradient_clip_max);
  return d;
}

// The subclasses share the C++ Optimizer; their Python classes select the rule.
struct Sgd : Optimizer {
  using Optimizer::Optimizer;
};
struct RmsProp : Optimizer {
  using Optimizer::Optimizer;
};
struct Adam : Optimizer {
  using Optimizer::Optimizer;
};

template <typename T>
std::shared_ptr<T> make_optimizer(const DevicePtr& device, OptimizerRule rule, const OptimizerDescriptor& d) {
  MPSNN_CHECK(device != nullptr, GraphError, "[MPSNNOptimizer] needs a device");
  return std::make_shared<T>(device, kernel_registry(device->backend()), rule, d);
}

OptimizerDescriptor with_rate(float learning_rate) {
  OptimizerDescriptor d;
  d.learning_rate = learning_rate;
  return d;
}

// The encode call: validation and scheduling in C++, the GIL released meanwhile.
void encode(Optimizer& o, const std::shared_ptr<CommandBuffer>& cb, const VectorRef& g, const VectorRef& w,
            const VectorRef* s0, const VectorRef* s1, const VectorRef* s2, const VectorRef& r) {
  ReleaseGil nogil;
  o.encode_vectors(cb, g, w, s0, s1, s2, r, "encode");
}

const VectorRef* opt(const std::optional<VectorRef>& v) { return v ? &*v : nullptr; }

using Lists = std::optional<std::vector<VectorRef>>;
StateVectorLists lists_of(const Lists& a, const Lists& b = std::nullopt, const Lists& c = std::nullopt) {
  StateVectorLists l;
  if (a) l.lists[0] = *a;
  if (b) l.lists[1] = *b;
  if (c) l.lists[2] = *c;
  return l;
}

template <typename T>
T& required(const std::shared_ptr<T>& p, const char* name) {
  MPSNN_CHECK(p != nullptr, GraphError, "[MPSNNOptimizer.encode] ", name, " is None");
  return *p;
}

void encode_convolution(Optimizer& o, const CommandBufferPtr& cb, const StatePtr& gradient_state,
                        const std::shared_ptr<WeightsAndBiasesState>& source, const StateVectorLists& lists,
                        const std::shared_ptr<WeightsAndBiasesState>& result) {
  ReleaseGil nogil;
  o.encode_convolution(cb, required(gradient_state, "convolution_gradient_state"),
                       required(source, "convolution_source_state"), lists, required(result, "result_state"), "encode");
}

void encode_normalization(Optimizer& o, const CommandBufferPtr& cb, const StatePtr& gradient_state,
                          const StatePtr& source, const StateVectorLists& lists,
                          const std::shared_ptr<GammaAndBetaState>& result) {
  ReleaseGil nogil;
  o.encode_normalization(cb, required(gradient_state, "batch_normalization_state"),
                         required(source, "batch_normalization_source_state"), lists, required(result, "result_state"),
                         "encode");
}

// The convolution and batch-normalization encode forms of one optimizer class; `names` are its
// state-vector list keywords (graph.md §7.6), the lists passed on in OptimizerBuffers order.
template <typename T>
void bind_state_forms(py::class_<T, Optimizer, std::shared_ptr<T>>& c, int lists, const char* l0, const char* l1,
                      const char* l2) {
  // Every list defaults to None; a list the rule needs raises a typed error naming it when missing.
  auto list_arg = [](const char* name) { return py::arg(name) = py::none(); };
  if (lists == 1) {
    c.def("encode", [](T& o, const CommandBufferPtr& cb, const StatePtr& g, const std::shared_ptr<WeightsAndBiasesState>& s,
                       const Lists& a, const std::shared_ptr<WeightsAndBiasesState>& r) {
            encode_convolution(o, cb, g, s, lists_of(a), r);
          },
          "command_buffer"_a, py::kw_only(), "convolution_gradient_state"_a, "convolution_source_state"_a,
          list_arg(l0), "result_state"_a,
          "The convolution form: weights (list index 0) and biases (index 1) from a convolution gradient state.");
    c.def("encode", [](T& o, const CommandBufferPtr& cb, const StatePtr& st, const Lists& a,
                       const std::shared_ptr<GammaAndBetaState>& r) { encode_normalization(o, cb, st, st, lists_of(a), r); },
          "command_buffer"_a, py::kw_only(), "batch_normalization_state"_a, list_arg(l0), "result_state"_a,
          "The batch-normalization form: gamma (index 0) and beta (index 1) and their gradients from one state.");
    c.def("encode", [](T& o, const CommandBufferPtr& cb, const StatePtr& g, const StatePtr& s, const Lists& a,
                       const std::shared_ptr<GammaAndBetaState>& r) { encode_normalization(o, cb, g, s, lists_of(a), r); },
          "command_buffer"_a, py::kw_only(), "batch_normalization_gradient_state"_a, "batch_normalization_source_state"_a,
          list_arg(l0), "result_state"_a,
          "The batch-normalization form with gradients and values from two states.");
    return;
  }
  // Adam: momentum and velocity lists, maximum velocity optional (AMSGrad).
  c.def("encode", [](T& o, const CommandBufferPtr& cb, const StatePtr& g, const std::shared_ptr<WeightsAndBiasesState>& s,
                     const Lists& a, const Lists& b, const Lists& u, const std::shared_ptr<WeightsAndBiasesState>& r) {
          encode_convolution(o, cb, g, s, lists_of(a, b, u), r);
        },
        "command_buffer"_a, py::kw_only(), "convolution_gradient_state"_a, "convolution_source_state"_a, list_arg(l0),
        list_arg(l1), list_arg(l2), "result_state"_a,
        "The convolution form: weights (list index 0) and biases (index 1) from a convolution gradient state.");
  c.def("encode", [](T& o, const CommandBufferPtr& cb, const StatePtr& st, const Lists& a, const Lists& b, const Lists& u,
                     const std::shared_ptr<GammaAndBetaState>& r) { encode_normalization(o, cb, st, st, lists_of(a, b, u), r); },
        "command_buffer"_a, py::kw_only(), "batch_normalization_state"_a, list_arg(l0), list_arg(l1),
        list_arg(l2), "result_state"_a,
        "The batch-normalization form: gamma (index 0) and beta (index 1) and their gradients from one state.");
  c.def("encode", [](T& o, const CommandBufferPtr& cb, const StatePtr& g, const StatePtr& s, const Lists& a,
                     const Lists& b, const Lists& u, const std::shared_ptr<GammaAndBetaState>& r) {
          encode_normalization(o, cb, g, s, lists_of(a, b, u), r);
        },
        "command_buffer"_a, py::kw_only(), "batch_normalization_gradient_state"_a, "batch_normalization_source_state"_a,
        list_arg(l0), list_arg(l1), list_arg(l2), "result_state"_a,
        "The batch-normalization form with gradients and values from two states.");
}

// MPSKernel copy: an optimizer of the same class with the same settings and time step.
template <typename T>
void bind_copy(py::class_<T, Optimizer, std::shared_ptr<T>>& c, OptimizerRule rule) {
  auto copy = [rule](const T& o, const DevicePtr& device) {
    const DevicePtr& d = device ? device : o.device();
    auto out = std::make_shared<T>(d, kernel_registry(d->backend()), rule, o.descriptor());
    out->copy_settings_from(o);
    return out;
  };
  c.def("copy", [copy](const T& o) { return copy(o, nullptr); }, "An independent optimizer with the same settings and time step.")
      .def("copy_with_device", copy, "device"_a, "The same on `device` (copyWithZone:device:).");
}

}  // namespace

py::object make_python_optimizer(const DevicePtr& device, const OptimizerRecord& record) {
  auto made = [&](auto optimizer) {
    record.apply_to(*optimizer);
    return py::cast(optimizer);
  };
  switch (record.rule) {
    case OptimizerRule::sgd: return made(make_optimizer<Sgd>(device, record.rule, record.desc));
    case OptimizerRule::rmsprop: return made(make_optimizer<RmsProp>(device, record.rule, record.desc));
    case OptimizerRule::adam: break;
  }
  return made(make_optimizer<Adam>(device, record.rule, record.desc));
}

void bind_optimizers(py::module_& m) {
  py::native_enum<RegularizationType>(m, "MPSNNRegularizationType", "enum.IntEnum",
                                      "The regularization term optimizers add to each gradient (graph.md §7.2).")
      .value("none", RegularizationType::none)
      .value("l1", RegularizationType::l1)
      .value("l2", RegularizationType::l2)
      .finalize();

  py::class_<VectorDescriptor>(m, "MPSVectorDescriptor",
                               "The shape of an MPSVector: `vectors` vectors of `length` elements, `vector_bytes` apart.")
      .def(py::init([](int64_t length, DataType data_type, int64_t vectors, std::optional<int64_t> vector_bytes) {
             return make_descriptor(length, vectors, vector_bytes, data_type);
           }),
           "length"_a, "data_type"_a = DataType::float32, py::kw_only(), "vectors"_a = 1, "vector_bytes"_a = py::none())
      .def_static("vector_descriptor", [](int64_t length, DataType data_type) {
             return make_descriptor(length, 1, std::nullopt, data_type);
           }, "length"_a, "data_type"_a, "vectorDescriptorWithLength:dataType:")
      .def_static("vector_bytes_for_length", &vector_bytes_for, "length"_a, "data_type"_a,
                  "The bytes of one densely packed vector (vectorBytesForLength:dataType:).")
      .def_readwrite("length", &VectorDescriptor::length)
      .def_readwrite("vectors", &VectorDescriptor::vectors)
      .def_readwrite("vector_bytes", &VectorDescriptor::vector_bytes)
      .def_readwrite("data_type", &VectorDescriptor::data_type)
      .def("__repr__", [](const VectorDescriptor& d) {
        return "<MPSVectorDescriptor length=" + std::to_string(d.length) + " vectors=" + std::to_string(d.vectors) +
               " " + data_type_name(d.data_type) + ">";
      });

  py::class_<VectorRef>(m, "MPSVector",
                        "A vector (or several) over an MTLBuffer. On host-visible devices numpy() is a view.")
      .def(py::init([](const BufferPtr& buffer, const VectorDescriptor& descriptor, int64_t offset) {
             return make_vector(buffer, offset, descriptor);
           }),
           "buffer"_a, "descriptor"_a, py::kw_only(), "offset"_a = 0, "MPSVector(buffer:descriptor:) / (buffer:offset:descriptor:)")
      .def(py::init([](const DevicePtr& device, const VectorDescriptor& descriptor) {
             MPSNN_CHECK(device != nullptr, GraphError, "[MPSVector] needs a device");
             const int64_t bytes = VectorRef::span_of(descriptor.length, descriptor.vectors, descriptor.vector_bytes,
                                                      descriptor.data_type);
             return make_vector(std::make_shared<Buffer>(device, size_t(bytes)), 0, descriptor);
           }),
           "device"_a, "descriptor"_a, "A new zero-filled vector (MPSVector(device:descriptor:)).")
      .def_static("from_numpy", &vector_from_numpy, "array"_a, "device"_a = nullptr,
                  "mpsnn extension: wrap a writeable C-contiguous float32/float16 array of shape (length,) or "
                  "(vectors, length) without copying.")
      .def_property_readonly("device", [](const VectorRef& v) { return v.buffer->device(); })
      .def_property_readonly("data", [](const VectorRef& v) { return v.buffer; }, "The MTLBuffer.")
      .def_readonly("length", &VectorRef::length)
      .def_readonly("vectors", &VectorRef::vectors)
      .def_readonly("vector_bytes", &VectorRef::vector_bytes)
      .def_readonly("offset", &VectorRef::offset)
      .def_readonly("data_type", &VectorRef::data_type)
      .def("resource_size", &VectorRef::span, "Bytes the vector spans.")
      .def("numpy", &vector_numpy, "mpsnn extension: a view of the elements, shape (length,) or (vectors, length).");

  py::class_<OptimizerDescriptor>(m, "MPSNNOptimizerDescriptor",
                                  "Learning rate, gradient rescale and clipping, regularization (graph.md §7.1).")
      .def(py::init(&make_optimizer_descriptor), py::kw_only(), "learning_rate"_a = 0.001f,
           "gradient_rescale"_a = 1.0f, "apply_gradient_clipping"_a = false,
           "gradient_clip_max"_a = std::numeric_limits<float>::infinity(),
           "gradient_clip_min"_a = -std::numeric_limits<float>::infinity(),
           "regularization_type"_a = RegularizationType::none, "regularization_scale"_a = 0.0f)
      .def_static("optimizer_descriptor", &make_optimizer_descriptor, py::kw_only(), "learning_rate"_a,
                  "gradient_rescale"_a, "apply_gradient_clipping"_a = false,
                  "gradient_clip_max"_a = std::numeric_limits<float>::infinity(),
                  "gradient_clip_min"_a = -std::numeric_limits<float>::infinity(),
                  "regularization_type"_a = RegularizationType::none, "regularization_scale"_a = 0.0f)
      .def_readwrite("learning_rate", &OptimizerDescriptor::learning_rate)
      .def_readwrite("gradient_rescale", &OptimizerDescriptor::gradient_rescale)
      .def_readwrite("apply_gradient_clipping", &OptimizerDescriptor::apply_gradient_clipping)
      .def_readwrite("gradient_clip_max", &OptimizerDescriptor::gradient_clip_max)
      .def_readwrite("gradient_clip_min", &OptimizerDescriptor::gradient_clip_min)
      .def_readwrite("regularization_type", &OptimizerDescriptor::regularization_type)
      .def_readwrite("regularization_scale", &OptimizerDescriptor::regularization_scale);

  auto value = [](float OptimizerDescriptor::*field) {
    return [field](const Optimizer& o) { return o.descriptor().*field; };
  };
  py::class_<Optimizer, std::shared_ptr<Optimizer>>(m, "MPSNNOptimizer",
                                                    "Base of the optimizers (abstract: make a subclass).")
      .def_property_readonly("device", &Optimizer::device)
      .def_property_readonly("learning_rate", value(&OptimizerDescriptor::learning_rate))
      .def_property_readonly("gradient_rescale", value(&OptimizerDescriptor::gradient_rescale))
      .def_property_readonly("gradient_clip_max", value(&OptimizerDescriptor::gradient_clip_max))
      .def_property_readonly("gradient_clip_min", value(&OptimizerDescriptor::gradient_clip_min))
      .def_property_readonly("regularization_scale", value(&OptimizerDescriptor::regularization_scale))
      .def_property_readonly("regularization_type", [](const Optimizer& o) { return o.descriptor().regularization_type; })
      .def_property("apply_gradient_clipping", [](const Optimizer& o) { return o.descriptor().apply_gradient_clipping; },
                    &Optimizer::set_apply_gradient_clipping)
      .def("set_learning_rate", &Optimizer::set_learning_rate, "value"_a)
      .def("__repr__", [](const Optimizer& o) { return "<" + o.name() + " learning_rate=" + std::to_string(o.descriptor().learning_rate) + ">"; });

  auto sgd = py::class_<Sgd, Optimizer, std::shared_ptr<Sgd>>(
      m, "MPSNNOptimizerStochasticGradientDescent",
      "w = w - lr*g; with a momentum vector m = mu*m + lr*g, w = w - m; Nesterov m = mu*m + g, w = w - lr*(g + mu*m).")
      .def(py::init([](const DevicePtr& device, float learning_rate) {
             return make_optimizer<Sgd>(device, OptimizerRule::sgd, with_rate(learning_rate));
           }),
           "device"_a, "learning_rate"_a)
      .def(py::init([](const DevicePtr& device, float momentum_scale, std::optional<bool> use_nestrov_momentum,
                       const OptimizerDescriptor& optimizer_descriptor, std::optional<bool> use_nesterov_momentum) {
             MPSNN_CHECK(!(use_nestrov_momentum && use_nesterov_momentum), GraphError,
                         "[MPSNNOptimizerStochasticGradientDescent] pass use_nestrov_momentum (MPS's spelling) or "
                         "its alias use_nesterov_momentum, not both");
             auto o = make_optimizer<Sgd>(device, OptimizerRule::sgd, optimizer_descriptor);
             o->momentum_scale = momentum_scale;
             o->nesterov = use_nestrov_momentum.value_or(use_nesterov_momentum.value_or(false));
             return o;
           }),
           "device"_a, py::kw_only(), "momentum_scale"_a, "use_nestrov_momentum"_a = py::none(),
           "optimizer_descriptor"_a, "use_nesterov_momentum"_a = py::none())
      .def_property_readonly("momentum_scale", [](const Sgd& o) { return o.momentum_scale; })
      .def_property_readonly("use_nestrov_momentum", [](const Sgd& o) { return o.nesterov; })
      .def_property_readonly("use_nesterov_momentum", [](const Sgd& o) { return o.nesterov; },
                             "Alias of MPS's use_nestrov_momentum.")
      .def(
          "encode",
          [](Sgd& o, const std::shared_ptr<CommandBuffer>& cb, const VectorRef& input_gradient_vector,
             const VectorRef& input_values_vector, const std::optional<VectorRef>& input_momentum_vector,
             const VectorRef& result_values_vector) {
            encode(o, cb, input_gradient_vector, input_values_vector, opt(input_momentum_vector), nullptr, nullptr,
                   result_values_vector);
          },
          "command_buffer"_a, py::kw_only(), "input_gradient_vector"_a, "input_values_vector"_a,
          "input_momentum_vector"_a = py::none(), "result_values_vector"_a,
          "One SGD update of the vector (momentum updated in place; result may be the values vector).");

  bind_state_forms(sgd, 1, "input_momentum_vectors", "", "");
  bind_copy(sgd, OptimizerRule::sgd);

  auto rms = py::class_<RmsProp, Optimizer, std::shared_ptr<RmsProp>>(
      m, "MPSNNOptimizerRMSProp", "s = decay*s + (1 - decay)*g^2; w = w - lr*g / (sqrt(s) + epsilon).")
      .def(py::init([](const DevicePtr& device, float learning_rate) {
             return make_optimizer<RmsProp>(device, OptimizerRule::rmsprop, with_rate(learning_rate));
           }),
           "device"_a, "learning_rate"_a)
      .def(py::init([](const DevicePtr& device, double decay, float epsilon, const OptimizerDescriptor& d) {
             auto o = make_optimizer<RmsProp>(device, OptimizerRule::rmsprop, d);
             o->decay = float(decay);
             o->epsilon = epsilon;
             return o;
           }),
           "device"_a, py::kw_only(), "decay"_a, "epsilon"_a, "optimizer_descriptor"_a)
      .def_property_readonly("decay", [](const RmsProp& o) { return double(o.decay); })
      .def_property_readonly("epsilon", [](const RmsProp& o) { return o.epsilon; })
      .def(
          "encode",
          [](RmsProp& o, const std::shared_ptr<CommandBuffer>& cb, const VectorRef& input_gradient_vector,
             const VectorRef& input_values_vector, const VectorRef& input_sum_of_squares_vector,
             const VectorRef& result_values_vector) {
            encode(o, cb, input_gradient_vector, input_values_vector, &input_sum_of_squares_vector, nullptr, nullptr,
                   result_values_vector);
          },
          "command_buffer"_a, py::kw_only(), "input_gradient_vector"_a, "input_values_vector"_a,
          "input_sum_of_squares_vector"_a, "result_values_vector"_a,
          "One RMSProp update of the vector (sum of squares updated in place).");

  bind_state_forms(rms, 1, "input_sum_of_squares_vectors", "", "");
  bind_copy(rms, OptimizerRule::rmsprop);

  auto adam = py::class_<Adam, Optimizer, std::shared_ptr<Adam>>(
      m, "MPSNNOptimizerAdam",
      "Adam (graph.md §7.5): time_step advances once per encode; a maximum_velocity_vector selects AMSGrad.")
      .def(py::init([](const DevicePtr& device, float learning_rate) {
             return make_optimizer<Adam>(device, OptimizerRule::adam, with_rate(learning_rate));
           }),
           "device"_a, "learning_rate"_a)
      .def(py::init([](const DevicePtr& device, double beta1, double beta2, float epsilon, int64_t time_step,
                       const OptimizerDescriptor& d) {
             MPSNN_CHECK(time_step >= 0, ShapeError, "[MPSNNOptimizerAdam] time_step ", time_step, "; expected >= 0");
             auto o = make_optimizer<Adam>(device, OptimizerRule::adam, d);
             o->beta1 = float(beta1);
             o->beta2 = float(beta2);
             o->epsilon = epsilon;
             o->set_time_step(time_step);
             return o;
           }),
           "device"_a, py::kw_only(), "beta1"_a, "beta2"_a, "epsilon"_a, "time_step"_a, "optimizer_descriptor"_a)
      .def_property_readonly("beta1", [](const Adam& o) { return double(o.beta1); })
      .def_property_readonly("beta2", [](const Adam& o) { return double(o.beta2); })
      .def_property_readonly("epsilon", [](const Adam& o) { return o.epsilon; })
      .def_property("time_step", &Optimizer::time_step, [](Adam& o, int64_t t) {
        MPSNN_CHECK(t >= 0, ShapeError, "[MPSNNOptimizerAdam] time_step ", t, "; expected >= 0");
        o.set_time_step(t);
      })
      .def(
          "encode",
          [](Adam& o, const std::shared_ptr<CommandBuffer>& cb, const VectorRef& input_gradient_vector,
             const VectorRef& input_values_vector, const VectorRef& input_momentum_vector,
             const VectorRef& input_velocity_vector, const std::optional<VectorRef>& maximum_velocity_vector,
             const VectorRef& result_values_vector) {
            encode(o, cb, input_gradient_vector, input_values_vector, &input_momentum_vector, &input_velocity_vector,
                   opt(maximum_velocity_vector), result_values_vector);
          },
          "command_buffer"_a, py::kw_only(), "input_gradient_vector"_a, "input_values_vector"_a,
          "input_momentum_vector"_a, "input_velocity_vector"_a, "maximum_velocity_vector"_a = py::none(),
          "result_values_vector"_a,
          "One Adam update (AMSGrad with maximum_velocity_vector); momentum and velocity updated in place.");
  bind_state_forms(adam, 3, "input_momentum_vectors", "input_velocity_vectors", "maximum_velocity_vectors");
  bind_copy(adam, OptimizerRule::adam);
}

}  // namespace mpsnn::bindings
