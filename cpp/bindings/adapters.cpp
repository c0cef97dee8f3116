// Adapters from Python protocol objects (handles, data sources, padding policies, allocators,
// transform providers) to the C++ interfaces. They take the GIL themselves, because the graph
// calls them while compiling a plan on a thread that released it.
#include <cstring>

#include "backends/registry.h"
#include "bindings/common.h"

namespace mpsnn::bindings {

PyRef::~PyRef() {
  if (!obj) return;  // released already (one-shot handlers take it under the GIL): no GIL needed
  PythonCall call;
  if (!call.ok()) {
    obj.release();  // the interpreter is exiting (gil.h): leak rather than crash
    return;
  }
  obj = py::object();
}

std::shared_ptr<void> keep_alive(py::object o) {
  auto ref = std::make_shared<PyRef>(std::move(o));
  return std::shared_ptr<void>(ref, ref.get());
}

namespace {

bool has(const py::object& o, const char* name) { return py::hasattr(o, name) && !o.attr(name).is_none(); }

// Calls o.name() (or reads o.name when it is not callable, as for properties).
py::object call_or_get(const py::object& o, const char* name) {
  py::object a = o.attr(name);
  return PyCallable_Check(a.ptr()) ? a() : a;
}

// value.cast<T>() for what a protocol method returned: a value of the wrong type is a DTypeError
// (the graph adds the node's name), not pybind11's untyped cast error.
template <typename T>
T cast_return(const py::object& value, const char* protocol, const char* method, const char* expected) {
  try {
    return value.cast<T>();
  } catch (const py::cast_error&) {
    MPSNN_THROW(DTypeError, "[", protocol, "] ", method, " returned ", py::str(py::type::of(value)).cast<std::string>(),
                "; expected ", expected);
  }
}

std::optional<std::string> optional_label(const py::object& o) {
  if (!py::hasattr(o, "label")) return std::nullopt;
  py::object l = call_or_get(o, "label");
  if (l.is_none()) return std::nullopt;
  return py::str(l).cast<std::string>();
}

// The optional load() / purge() of the data-source protocols (protocols.py); called without
// the GIL held.
bool call_load(const py::object& o) {
  AcquireGil gil;
  return !py::hasattr(o, "load") || cast_return<bool>(o.attr("load")(), "data source", "load()", "a bool");
}
void call_purge(const py::object& o) {
  AcquireGil gil;
  if (py::hasattr(o, "purge")) o.attr("purge")();
}

// A buffer of raw bytes (bytes, bytearray, a memoryview or array of unsigned/signed chars).
bool is_byte_buffer(const py::object& v) {
  if (py::isinstance<py::bytes>(v) || PyByteArray_Check(v.ptr())) return true;
  if (!PyObject_CheckBuffer(v.ptr()) || py::isinstance<py::array>(v)) return false;
  py::buffer_info info = v.cast<py::buffer>().request();
  return info.itemsize == 1 && (info.format == "B" || info.format == "b" || info.format == "c");
}

// Float vectors as data sources return them: an ndarray or sequence of numbers, or raw float32
// bytes (bytes / bytearray / memoryview, as Apple code hands over a float pointer).
std::optional<std::vector<float>> float_vector(const py::object& v, const std::string& what) {
  if (v.is_none()) return std::nullopt;
  if (is_byte_buffer(v)) {
    py::buffer_info info = v.cast<py::buffer>().request();
    const size_t bytes = size_t(info.size);
    MPSNN_CHECK(bytes % 4 == 0, DTypeError, what, " returned ", bytes,
                " bytes; raw bytes are read as float32, so the length must be a multiple of 4");
    ssize_t expect = 1;
    for (ssize_t i = info.ndim - 1; i >= 0; --i) {
      MPSNN_CHECK(info.shape[size_t(i)] == 1 || info.strides[size_t(i)] == expect, DTypeError, what,
                  " byte buffer is not contiguous");
      expect *= info.shape[size_t(i)];
    }
    std::vector<float> out(bytes / 4);
    if (bytes) std::memcpy(out.data(), info.ptr, bytes);
    return out;
  }
  // Numbers only: NumPy would turn [1.0, None] into [1.0, nan] (an object array first).
  py::array natural = py::array::ensure(v);
  if (!natural) PyErr_Clear();
  MPSNN_CHECK(natural && std::string("biuf").find(natural.dtype().kind()) != std::string::npos, DTypeError, what,
              " must be a sequence of numbers convertible to float32, or float32 bytes");
  py::array_t<float, py::array::c_style | py::array::forcecast> a;
  try {
    a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(natural);
  } catch (...) {
  }
  MPSNN_CHECK(a, DTypeError, what, " must be a sequence of numbers convertible to float32, or float32 bytes");
  return std::vector<float>(a.data(), a.data() + a.size());
}

// What an update method returned: None, or a state of class T (DTypeError otherwise; the graph
// adds the node's name).
template <typename T>
std::shared_ptr<State> returned_state(const py::object& r, const char* method, const char* expected) {
  if (r.is_none()) return nullptr;
  MPSNN_CHECK(py::isinstance<T>(r), DTypeError, method, " returned ", py::str(py::type::of(r)).cast<std::string>(),
              "; expected ", expected, " or None");
  return r.cast<std::shared_ptr<T>>();
}

bool returned_bool(const py::object& r, const char* method) {
  MPSNN_CHECK(py::isinstance<py::bool_>(r) || r.is_none(), DTypeError, method, " returned ",
              py::str(py::type::of(r)).cast<std::string>(), "; expected a bool");
  return r.is_none() ? false : r.cast<bool>();
}

class PyHandle final : public Handle {
 public:
  explicit PyHandle(py::object o) : ref(std::move(o)) {}
  std::optional<std::string> label() const override {
    AcquireGil gil;
    return optional_label(ref.obj);
  }
  PyRef ref;
};

class PyConvolutionSource final : public ConvolutionDataSource {
 public:
  explicit PyConvolutionSource(py::object o) : ref_(std::move(o)) {}
  DataType data_type() override {
    AcquireGil gil;
    return DataType(cast_return<uint32_t>(call_or_get(ref_.obj, "data_type"), "MPSCNNConvolutionDataSource",
                                          "data_type()", "an MPSDataType"));
  }
  ConvolutionDescriptor descriptor() override {
    AcquireGil gil;
    py::object d = call_or_get(ref_.obj, "descriptor");
    MPSNN_CHECK(py::isinstance<ConvolutionDescriptor>(d), DTypeError,
                "[MPSCNNConvolutionDataSource] descriptor() returned ", py::str(py::type::of(d)).cast<std::string>(),
                "; expected an MPSCNNConvolutionDescriptor");
    return d.cast<ConvolutionDescriptor>();
  }
  HostArray weights() override {
    AcquireGil gil;
    py::object w = ref_.obj.attr("weights")();
    MPSNN_CHECK(py::isinstance<py::buffer>(w), DTypeError,
                "[MPSCNNConvolutionDataSource] weights() returned ", py::str(py::type::of(w)).cast<std::string>(),
                "; expected a NumPy array or another buffer");
    py::buffer_info info = w.cast<py::buffer>().request();
    // Must be one dense block; element type checked against data_type() by the reader.
    ssize_t expect = info.itemsize;
    for (ssize_t i = info.ndim - 1; i >= 0; --i) {
      MPSNN_CHECK(info.shape[size_t(i)] == 1 || info.strides[size_t(i)] == expect, DTypeError,
                  "[MPSCNNConvolutionDataSource] weights() array is not C-contiguous");
      expect *= info.shape[size_t(i)];
    }
    const DataType t = data_type();
    const bool raw = is_byte_buffer(w);  // bytes of data_type() values, as behind Apple's pointer
    MPSNN_CHECK(raw || size_t(info.itemsize) == data_type_size(t), DTypeError,
                "[MPSCNNConvolutionDataSource] weights() has ", info.itemsize, "-byte elements but data_type() is ",
                data_type_name(t));
    const size_t bytes = size_t(info.size * info.itemsize);
    MPSNN_CHECK(!raw || data_type_size(t) == 0 || bytes % data_type_size(t) == 0, DTypeError,
                "[MPSCNNConvolutionDataSource] weights() returned ", bytes, " bytes, not a whole number of ",
                data_type_name(t), " values");
    HostArray out{info.ptr, bytes, keep_alive(w), {}};
    if (!raw && info.ndim > 1) out.shape.assign(info.shape.begin(), info.shape.end());  // checked by the reader
    return out;
  }
  std::optional<std::vector<float>> bias_terms() override {
    AcquireGil gil;
    return float_vector(ref_.obj.attr("bias_terms")(), "[MPSCNNConvolutionDataSource] bias_terms()");
  }
  bool load() override { return call_load(ref_.obj); }
  void purge() override { call_purge(ref_.obj); }
  std::optional<std::string> label() override {
    AcquireGil gil;
    return optional_label(ref_.obj);
  }
  int weights_quantization_type() override {
    AcquireGil gil;
    return has(ref_.obj, "weights_quantization_type")
               ? cast_return<int>(call_or_get(ref_.obj, "weights_quantization_type"), "MPSCNNConvolutionDataSource",
                                  "weights_quantization_type()", "an MPSCNNWeightsQuantizationType")
               : 0;
  }
  std::vector<float> ranges_for_uint8_kernel() override {
    AcquireGil gil;
    if (!has(ref_.obj, "ranges_for_uint8_kernel")) return {};
    return float_vector(ref_.obj.attr("ranges_for_uint8_kernel")(), "ranges_for_uint8_kernel()").value_or(std::vector<float>{});
  }
  std::vector<float> lookup_table_for_uint8_kernel() override {
    AcquireGil gil;
    if (!has(ref_.obj, "lookup_table_for_uint8_kernel")) return {};
    return float_vector(ref_.obj.attr("lookup_table_for_uint8_kernel")(), "lookup_table_for_uint8_kernel()")
        .value_or(std::vector<float>{});
  }
  bool has_gpu_update() override {
    AcquireGil gil;
    return has(ref_.obj, "update_with_command_buffer");
  }
  std::shared_ptr<State> update_with_command_buffer(const std::shared_ptr<CommandBuffer>& cb,
                                                    const std::shared_ptr<State>& gradient_state,
                                                    const std::shared_ptr<State>& source_state) override {
    AcquireGil gil;
    py::object r = ref_.obj.attr("update_with_command_buffer")(cb, gradient_state, source_state);
    return returned_state<WeightsAndBiasesState>(r, "update_with_command_buffer()",
                                                 "an MPSCNNConvolutionWeightsAndBiasesState");
  }
  bool has_cpu_update() override {
    AcquireGil gil;
    return has(ref_.obj, "update_with_gradient_state");
  }
  bool update_with_gradient_state(const std::shared_ptr<State>& gradient_state,
                                  const std::shared_ptr<State>& source_state) override {
    AcquireGil gil;
    return returned_bool(ref_.obj.attr("update_with_gradient_state")(gradient_state, source_state),
                         "update_with_gradient_state()");
  }
  // graph/data_source.h: a longer weights() buffer is used with this warning.
  void warn(const std::string& message) override {
    AcquireGil gil;
    if (PyErr_WarnEx(PyExc_UserWarning, message.c_str(), 1) < 0) throw py::error_already_set();
  }
  py::object object() const { return ref_.obj; }

 private:
  PyRef ref_;
};

class PyNormalizationSource final : public NormalizationDataSource {
 public:
  explicit PyNormalizationSource(py::object o) : ref_(std::move(o)) {}
  int64_t number_of_feature_channels() override {
    AcquireGil gil;
    return cast_return<int64_t>(call_or_get(ref_.obj, "number_of_feature_channels"), "normalization data source",
                                "number_of_feature_channels()", "an int");
  }
  std::optional<std::vector<float>> gamma() override { return vec("gamma"); }
  std::optional<std::vector<float>> beta() override { return vec("beta"); }
  std::optional<std::vector<float>> mean() override { return vec("mean"); }
  std::optional<std::vector<float>> variance() override { return vec("variance"); }
  std::optional<float> epsilon() override {
    AcquireGil gil;
    if (!has(ref_.obj, "epsilon")) return std::nullopt;
    return cast_return<float>(call_or_get(ref_.obj, "epsilon"), "normalization data source", "epsilon()", "a float");
  }
  bool load() override { return call_load(ref_.obj); }
  void purge() override { call_purge(ref_.obj); }
  std::optional<std::string> label() override {
    AcquireGil gil;
    return optional_label(ref_.obj);
  }
  bool has_update(Update which, bool instance) override {
    AcquireGil gil;
    return has(ref_.obj, method(which, instance));
  }
  std::shared_ptr<State> update_on_command_buffer(Update which, bool instance, const std::shared_ptr<CommandBuffer>& cb,
                                                  const std::shared_ptr<State>& state) override {
    AcquireGil gil;
    const char* name = method(which, instance);
    py::object r = ref_.obj.attr(name)(cb, state_argument(instance, state));
    if (which == Update::gpu_gamma_beta)
      return returned_state<GammaAndBetaState>(r, name, "an MPSCNNNormalizationGammaAndBetaState");
    return returned_state<MeanAndVarianceState>(r, name, "an MPSCNNNormalizationMeanAndVarianceState");
  }
  bool update_after_completion(Update which, bool instance, const std::shared_ptr<State>& state) override {
    AcquireGil gil;
    const char* name = method(which, instance);
    return returned_bool(ref_.obj.attr(name)(state_argument(instance, state)), name);
  }
  py::object object() const { return ref_.obj; }

 private:
  // The protocol's method names (graph.md §6.5-6.6).
  static const char* method(Update which, bool instance) {
    switch (which) {
      case Update::gpu_gamma_beta: return "update_gamma_and_beta_with_command_buffer";
      case Update::gpu_mean_variance: return "update_mean_and_variance_with_command_buffer";
      case Update::cpu_gamma_beta:
        return instance ? "update_gamma_and_beta_with_instance_normalization_state_batch"
                        : "update_gamma_and_beta_with_batch_normalization_state";
      case Update::cpu_mean_variance: return "update_mean_and_variance_with_batch_normalization_state";
    }
    return "";
  }
  // Instance normalization takes a state batch. This backend runs a batch as one run, so its one
  // gradient state already holds the batch's sums: the batch has that one state.
  static py::object state_argument(bool instance, const std::shared_ptr<State>& state) {
    if (!instance) return py::cast(state);
    py::list l;
    l.append(py::cast(state));
    return std::move(l);
  }
  std::optional<std::vector<float>> vec(const char* name) {
    AcquireGil gil;
    if (!py::hasattr(ref_.obj, name)) return std::nullopt;
    return float_vector(call_or_get(ref_.obj, name), std::string("[normalization data source] ") + name + "()");
  }
  PyRef ref_;
};

class PyPadding final : public PaddingPolicy {
 public:
  explicit PyPadding(py::object o) : ref(std::move(o)) {}
  int padding_method() const override {
    AcquireGil gil;
    return cast_return<int>(call_or_get(ref.obj, "padding_method"), "MPSNNPadding", "padding_method()",
                            "an MPSNNPaddingMethod (an int)");
  }
  std::optional<std::string> label() const override {
    AcquireGil gil;
    return optional_label(ref.obj);
  }
  ImageDescriptor destination_image_descriptor(const PaddingRequest& request, KernelProps& kernel,
                                               const ImageDescriptor& suggested) const override {
    AcquireGil gil;
    MPSNN_CHECK(py::hasattr(ref.obj, "destination_image_descriptor"), GraphError, request.node_context,
                " padding policy has the custom bit but no destination_image_descriptor method");
    py::list images;
    for (size_t i = 0; i < request.sources.size(); ++i) {
      ImageDescriptor d;
      d.channel_format = request.source_formats[i] == ChannelFormat::none ? ChannelFormat::float32 : request.source_formats[i];
      d.width = request.sources[i].w;
      d.height = request.sources[i].h;
      d.feature_channels = request.sources[i].c;
      d.number_of_images = request.sources[i].n;
      images.append(std::make_shared<Image>(system_default_device(), d));  // descriptor only, never allocated
    }
    py::object k = kernel_object(request.node, kernel);
    py::object result = ref.obj.attr("destination_image_descriptor")(images, py::none(), k, suggested);
    kernel = kernel_props(k);
    MPSNN_CHECK(py::isinstance<ImageDescriptor>(result), GraphError, request.node_context,
                " destination_image_descriptor returned ", py::str(py::type::of(result)).cast<std::string>(),
                "; expected an MPSImageDescriptor");
    return result.cast<ImageDescriptor>();
  }
  PyRef ref;
};

class PyAllocator final : public ImageAllocator {
 public:
  explicit PyAllocator(py::object o) : ref(std::move(o)) {}
  ImagePtr allocate(const CommandBufferPtr& cb, const DevicePtr&, const ImageDescriptor& desc) const override {
    AcquireGil gil;
    py::object img = ref.obj.attr("image")(cb ? py::cast(cb) : py::none(), desc, py::none());
    MPSNN_CHECK(py::isinstance<Image>(img), GraphError, "[MPSImageAllocator] image() returned ",
                py::str(py::type::of(img)).cast<std::string>(), "; expected an MPSImage");
    return img.cast<ImagePtr>();
  }
  PyRef ref;
};

class PyTransformProvider final : public TransformProvider {
 public:
  explicit PyTransformProvider(py::object o) : ref(std::move(o)) {}
  std::optional<ScaleTransform> transform(int64_t w, int64_t h, int64_t c,
                                          const HandlePtr& handle) const override {
    AcquireGil gil;
    ImageDescriptor d;
    d.channel_format = ChannelFormat::float32;
    d.width = w;
    d.height = h;
    d.feature_channels = c;
    auto img = std::make_shared<Image>(system_default_device(), d);
    py::object t = ref.obj.attr("transform")("for_source_image"_a = img, "handle"_a = from_handle(handle));
    if (t.is_none()) return std::nullopt;
    auto field = [&](const char* name) {
      MPSNN_CHECK(py::hasattr(t, name), DTypeError, "[MPSImageTransformProvider] transform() returned ",
                  py::str(py::type::of(t)).cast<std::string>(), ", which has no ", name, "; expected an MPSScaleTransform");
      return cast_return<double>(t.attr(name), "MPSImageTransformProvider", name, "a float");
    };
    return ScaleTransform{field("scale_x"), field("scale_y"), field("translate_x"), field("translate_y")};
  }
  PyRef ref;
};

}  // namespace

HandlePtr to_handle(const py::object& o) {
  if (o.is_none()) return nullptr;
  return std::make_shared<PyHandle>(o);
}
py::object from_handle(const HandlePtr& h) {
  if (!h) return py::none();
  auto* p = dynamic_cast<PyHandle*>(h.get());
  return p ? p->ref.obj : py::none();
}

std::shared_ptr<ConvolutionDataSource> to_convolution_source(const py::object& o) {
  for (const char* m : {"data_type", "descriptor", "weights", "bias_terms"})
    MPSNN_CHECK(py::hasattr(o, m), DTypeError, "weights object of type ", py::str(py::type::of(o)).cast<std::string>(),
                " lacks '", m, "'; expected an MPSCNNConvolutionDataSource (data_type, descriptor, weights, bias_terms, load, purge, label)");
  return std::make_shared<PyConvolutionSource>(o);
}

std::shared_ptr<NormalizationDataSource> to_normalization_source(const py::object& o) {
  for (const char* m : {"number_of_feature_channels", "gamma", "beta"})
    MPSNN_CHECK(py::hasattr(o, m), DTypeError, "data source of type ", py::str(py::type::of(o)).cast<std::string>(),
                " lacks '", m, "'; expected a normalization data source (number_of_feature_channels, gamma, beta, ...)");
  return std::make_shared<PyNormalizationSource>(o);
}

py::object from_convolution_source(const ConvolutionDataSource& s) {
  auto* p = dynamic_cast<const PyConvolutionSource*>(&s);
  return p ? p->object() : py::none();
}
py::object from_normalization_source(const NormalizationDataSource& s) {
  auto* p = dynamic_cast<const PyNormalizationSource*>(&s);
  return p ? p->object() : py::none();
}

PaddingPtr to_padding(const py::object& o) {
  if (py::isinstance<PaddingPolicy>(o)) return o.cast<PaddingPtr>();
  MPSNN_CHECK(py::hasattr(o, "padding_method"), DTypeError, "padding policy of type ",
              py::str(py::type::of(o)).cast<std::string>(), " lacks padding_method(); expected an MPSNNPadding");
  return std::make_shared<PyPadding>(o);
}
py::object from_padding(const PaddingPtr& p) {
  if (auto* py_p = dynamic_cast<PyPadding*>(p.get())) return py_p->ref.obj;
  return py::cast(p);
}

ImageAllocatorPtr to_allocator(const py::object& o) {
  if (py::isinstance<ImageAllocator>(o)) return o.cast<ImageAllocatorPtr>();
  MPSNN_CHECK(py::hasattr(o, "image"), DTypeError, "image allocator of type ",
              py::str(py::type::of(o)).cast<std::string>(), " lacks image(); expected an MPSImageAllocator");
  return std::make_shared<PyAllocator>(o);
}
py::object from_allocator(const ImageAllocatorPtr& a) {
  if (auto* p = dynamic_cast<const PyAllocator*>(a.get())) return p->ref.obj;
  return py::cast(std::const_pointer_cast<ImageAllocator>(a));
}

std::shared_ptr<TransformProvider> to_transform_provider(const py::object& o) {
  if (o.is_none()) return nullptr;
  MPSNN_CHECK(py::hasattr(o, "transform"), DTypeError, "transform provider of type ",
              py::str(py::type::of(o)).cast<std::string>(), " lacks transform(); expected an MPSImageTransformProvider");
  return std::make_shared<PyTransformProvider>(o);
}

}  // namespace mpsnn::bindings
