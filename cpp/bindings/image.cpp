// MPSImageDescriptor, MPSImage, MPSTemporaryImage and the built-in allocators. NumPy arrays are
// wrapped without copying (from_numpy) and images are exposed as NumPy views (numpy()).
#include "backends/registry.h"
#include "bindings/common.h"
#include "core/dlpack.h"

namespace mpsnn::bindings {

namespace {

// NumPy has no bfloat16: the ml_dtypes package's dtype stands in (an optional extra, imported
// when a bfloat16 image meets NumPy).
py::dtype bfloat16_dtype() {
  try {
    return py::dtype::from_args(py::module_::import("ml_dtypes").attr("bfloat16"));
  } catch (py::error_already_set&) {
    MPSNN_THROW(DTypeError, "[MPSImage] bfloat16 images need the ml_dtypes package to meet NumPy (pip install "
                "ml-dtypes); DLPack needs nothing (torch.from_dlpack(image), MPSImage.from_dlpack(tensor))");
  }
}

py::dtype dtype_of(ChannelFormat f) {
  switch (f) {
    case ChannelFormat::float32: return py::dtype("float32");
    case ChannelFormat::float16: return py::dtype("float16");
    case ChannelFormat::unorm8: return py::dtype("uint8");
    case ChannelFormat::unorm16: return py::dtype("uint16");
    case ChannelFormat::bfloat16: return bfloat16_dtype();
    default: MPSNN_THROW(DTypeError, "[MPSImage] format '", format_name(f), "' has no NumPy dtype");
  }
}

// By equality, not identity: an unpickled array (e.g. one sent to a worker process) has its own
// dtype object, equal to NumPy's native one.
bool is_dtype(const py::dtype& d, const char* name) {
  const py::dtype want(name);
  return d.is(want) || d.attr("__eq__")(want).cast<py::object>().is(py::bool_(true));
}

std::string dtype_name(const py::dtype& d) { return py::str(py::handle(d)).cast<std::string>(); }

ChannelFormat format_of(const py::dtype& d) {
  if (is_dtype(d, "float32")) return ChannelFormat::float32;
  if (is_dtype(d, "float16")) return ChannelFormat::float16;
  if (is_dtype(d, "uint8")) return ChannelFormat::unorm8;
  if (is_dtype(d, "uint16")) return ChannelFormat::unorm16;
  if (dtype_name(d) == "bfloat16") return ChannelFormat::bfloat16;
  return ChannelFormat::none;
}

// Before a CPU access: waits (without the GIL: completion handlers may need it) for the command
// buffer whose encoded work writes the image, or raises MPSGraphError when it was never committed.
// Temporary images are left to host_data, which refuses them with MPSTemporaryImageError.
void wait_for_writes(Image& img, const char* what) {
  if (img.is_temporary()) return;
  ReleaseGil nogil;
  img.wait_for_producer(what);
}

py::array as_numpy(const ImagePtr& img, const char* what = "numpy") {
  wait_for_writes(*img, what);
  const int64_t e = int64_t(img->element_bytes());
  const ImageShape& s = img->shape();
  if (!img->device()->host_accessible() && !img->is_temporary()) {
    // GPU memory: a copy (README), dense, through read_bytes's staging.
    py::array out(dtype_of(img->format()), std::vector<ssize_t>{s.n, s.h, s.w, s.c});
    ReleaseGil nogil;
    img->read_bytes(out.mutable_data(), size_t(out.nbytes()), DataLayout::height_width_channels, HostStrides{},
                    ImageRegion{0, 0, 0, -1, -1, s.n, 0, -1}, 0);
    return out;
  }
  const int64_t ps = img->pixel_stride();
  std::vector<ssize_t> shape{s.n, s.h, s.w, s.c};
  std::vector<ssize_t> strides{s.h * s.w * ps * e, s.w * ps * e, ps * e, e};
  return py::array(dtype_of(img->format()), shape, strides, img->host_data(what), py::cast(img));
}

// The hint for a float16 / float32 mix-up: graphs produce float32 images on the CPU backend.
std::string float16_hint(ChannelFormat image, bool data_is_float16) {
  if (image == ChannelFormat::float32 && data_is_float16)
    return ". A graph's results are float32 on the CPU backend (MPS's default is float16): set "
           "graph.format = MPSImageFeatureChannelFormat.float16 before running to get float16 images, or use a "
           "float32 buffer";
  if (image == ChannelFormat::float16 && !data_is_float16)
    return ". This image is float16 (graph.format = MPSImageFeatureChannelFormat.float16?); use a float16 buffer";
  return "";
}

// NumPy's __array__ protocol with NumPy 2 copy semantics (works with NumPy 1.23+, which passes
// no copy argument): copy=None views when the dtype allows, copy=True always copies, copy=False
// raises ValueError when a copy would be needed (a dtype conversion).
py::object array_protocol(const ImagePtr& img, const py::object& dtype, const py::object& copy) {
  py::array view = as_numpy(img, "__array__");
  const bool convert = !dtype.is_none() && !view.dtype().equal(py::dtype::from_args(dtype));
  if (convert) {
    if (!copy.is_none() && !copy.cast<bool>())
      throw py::value_error("[MPSImage.__array__] the image stores " + std::string(format_name(img->format())) + " (" +
                            dtype_name(view.dtype()) + "); returning " + dtype_name(py::dtype::from_args(dtype)) +
                            " needs a copy, but copy=False was given");
    return view.attr("astype")(dtype);
  }
  if (!copy.is_none() && copy.cast<bool>()) return view.attr("copy")();
  return std::move(view);
}

// Host buffer of read_bytes / write_bytes: any writable buffer; NumPy arrays must have the
// image's element type (no conversion, graph.md §3.3). Arrays are read without the buffer
// protocol, which cannot describe ml_dtypes' bfloat16.
struct HostBuffer {
  void* ptr;
  size_t bytes;
};

HostBuffer host_buffer(const py::buffer& data, const Image& img, bool writable, const char* what) {
  if (py::isinstance<py::array>(data)) {
    py::array a = py::reinterpret_borrow<py::array>(data);
    MPSNN_CHECK(format_of(a.dtype()) == img.format(), DTypeError, "[MPSImage.", what, "] array has dtype ",
                dtype_name(a.dtype()), "; the image stores ", format_name(img.format()), " (",
                img.format() == ChannelFormat::bfloat16 ? std::string("ml_dtypes.bfloat16")
                                                        : dtype_name(dtype_of(img.format())),
                ")", float16_hint(img.format(), a.dtype().equal(py::dtype("float16"))));
    MPSNN_CHECK(a.flags() & py::array::c_style, DTypeError, "[MPSImage.", what, "] array is not C-contiguous");
    MPSNN_CHECK(!writable || a.writeable(), DTypeError, "[MPSImage.", what, "] array is read-only");
    return {writable ? a.mutable_data() : const_cast<void*>(a.data()), size_t(a.nbytes())};
  }
  py::buffer_info info = data.request(writable);
  if (info.itemsize > 1) {
    // A typed buffer (memoryview, array.array): its element size must be the image's.
    MPSNN_CHECK(size_t(info.itemsize) == img.element_bytes(), DTypeError, "[MPSImage.", what, "] buffer has ",
                info.itemsize, "-byte elements (format '", info.format, "'); the image stores ",
                format_name(img.format()), " (", img.element_bytes(), " bytes)",
                float16_hint(img.format(), info.itemsize == 2 && info.format == "e"));
  }
  return {info.ptr, size_t(info.size * info.itemsize)};
}

ImageRegion region_of(const py::object& region, const py::object& channels) {
  ImageRegion r;
  if (!region.is_none()) {
    py::object o = region.attr("origin"), s = region.attr("size");
    r.x = o.attr("x").cast<int64_t>();
    r.y = o.attr("y").cast<int64_t>();
    r.z = o.attr("z").cast<int64_t>();
    r.width = s.attr("width").cast<int64_t>();
    r.height = s.attr("height").cast<int64_t>();
    r.depth = s.attr("depth").cast<int64_t>();
  }
  if (!channels.is_none()) {
    r.channel_offset = channels.attr("feature_channel_offset").cast<int64_t>();
    r.channel_count = channels.attr("number_of_feature_channels_to_read_write").cast<int64_t>();
  }
  return r;
}

std::pair<int64_t, int64_t> range_of(const py::object& r) {
  if (py::isinstance(r, py::module_::import("builtins").attr("range"))) {
    const int64_t start = r.attr("start").cast<int64_t>(), stop = r.attr("stop").cast<int64_t>();
    MPSNN_CHECK(r.attr("step").cast<int64_t>() == 1, ShapeError, "range step must be 1");
    return {start, stop - start};
  }
  auto t = r.cast<std::pair<int64_t, int64_t>>();
  return t;
}

ImageDescriptor make_descriptor(ChannelFormat f, int64_t w, int64_t h, int64_t c, int64_t n, int usage) {
  ImageDescriptor d;
  d.channel_format = f;
  d.width = w;
  d.height = h;
  d.feature_channels = c;
  d.number_of_images = n;
  d.usage = usage;
  return d;
}

}  // namespace

ImagePtr image_from_array(const py::object& obj, const DevicePtr& device, const char* what) {
  MPSNN_CHECK(py::isinstance<py::array>(obj), DTypeError, "[", what,
              "] expected an MPSImage, a NumPy array or a DLPack tensor (__dlpack__), got ",
              py::str(py::type::of(obj)).cast<std::string>());
  py::array a = py::reinterpret_borrow<py::array>(obj);
  const ChannelFormat f = format_of(a.dtype());
  MPSNN_CHECK(f != ChannelFormat::none, DTypeError, "[", what, "] array has dtype ", dtype_name(a.dtype()),
              "; expected float32, float16, uint8 (unorm8), uint16 (unorm16) or ml_dtypes.bfloat16");
  MPSNN_CHECK(a.ndim() == 4, ShapeError, "[", what, "] array has ", a.ndim(),
              " dimensions; expected 4, (N, H, W, C)");
  MPSNN_CHECK(a.flags() & py::array::c_style, DTypeError, "[", what,
              "] array is not C-contiguous; pass np.ascontiguousarray(a) (mpsnn never copies silently)");
  const ImageShape s{a.shape(0), a.shape(1), a.shape(2), a.shape(3)};
  MPSNN_CHECK(s.n > 0 && s.h > 0 && s.w > 0 && s.c > 0, ShapeError, "[", what, "] array shape (", s.n, ", ", s.h, ", ",
              s.w, ", ", s.c, ") has an empty dimension");
  const DevicePtr& d = device ? device : system_default_device();
  if (!d->host_accessible()) {
    // A GPU graph: the array is copied into device memory (README: copies at the host boundary).
    ImageDescriptor desc;
    desc.channel_format = f;
    desc.width = s.w, desc.height = s.h, desc.feature_channels = s.c, desc.number_of_images = s.n;
    auto img = std::make_shared<Image>(d, desc);
    img->allocate_for_overwrite();
    ReleaseGil nogil;
    img->write_bytes(a.data(), size_t(s.numel()) * element_size(f), DataLayout::height_width_channels, HostStrides{},
                     ImageRegion{0, 0, 0, -1, -1, s.n, 0, -1}, 0);
    return img;
  }
  return Image::wrap(d, f, s, const_cast<void*>(a.data()), keep_alive(a));
}

namespace {
// The capsule of obj.__dlpack__(stream=...), asking for the versioned form first (DLPack 1.x
// producers) and falling back to the unversioned call of older ones.
py::object dlpack_capsule(const py::object& obj, const py::object& stream, const char* what) {
  try {
    try {
      return obj.attr("__dlpack__")("stream"_a = stream, "max_version"_a = py::make_tuple(1, 0));
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_TypeError)) throw;
      return obj.attr("__dlpack__")("stream"_a = stream);
    }
  } catch (py::error_already_set& e) {
    MPSNN_THROW(DTypeError, "[", what, "] DLPack export of the tensor failed: ", e.what());
  }
}
}  // namespace

// Host tensors go through NumPy's from_dlpack, which implements the protocol (versions, capsule
// ownership, the producer's deleter, read-only flags) and returns a view, never a copy. Device
// tensors are wrapped by core/dlpack.cpp: the capsule's tensor becomes the image's memory.
ImagePtr image_from_dlpack(const py::object& obj, const DevicePtr& device, const char* what) {
  MPSNN_CHECK(py::hasattr(obj, "__dlpack__"), DTypeError, "[", what, "] ",
              py::str(py::type::of(obj)).cast<std::string>(), " does not implement the DLPack protocol (__dlpack__)");
  std::pair<int, int64_t> dev{dlpack::kCPU, 0};
  if (py::hasattr(obj, "__dlpack_device__")) dev = obj.attr("__dlpack_device__")().cast<std::pair<int, int64_t>>();
  if (dev.first != dlpack::kCPU) {
    DevicePtr target = device ? device : device_for_dlpack(dev.first, dev.second);
    MPSNN_CHECK(target && !target->host_accessible(), UnsupportedError, "[", what, "] tensor is on DLPack device type ",
                dev.first, " (id ", dev.second, "); ",
                target ? "the " + target->id() + " device needs host memory (device type 1); move it to the CPU first"
                       : std::string("no device of this build has that memory"));
    const py::object cap = dlpack_capsule(obj, py::int_(dlpack::import_stream(*target)), what);
    MPSNN_CHECK(PyCapsule_CheckExact(cap.ptr()), DTypeError, "[", what, "] __dlpack__ returned ",
                py::str(py::type::of(cap)).cast<std::string>(), ", not a DLPack capsule");
    const char* raw_name = PyCapsule_GetName(cap.ptr());
    const std::string name = raw_name ? raw_name : "";
    MPSNN_CHECK(name == "dltensor" || name == "dltensor_versioned", DTypeError, "[", what,
                "] __dlpack__ returned a capsule named '", name, "'; expected 'dltensor' or 'dltensor_versioned' "
                "(a capsule is consumed once)");
    void* managed = PyCapsule_GetPointer(cap.ptr(), name.c_str());
    const bool versioned = name == "dltensor_versioned";
    PyCapsule_SetName(cap.ptr(), versioned ? "used_dltensor_versioned" : "used_dltensor");  // ours from now on
    ReleaseGil nogil;
    return dlpack::import_tensor(managed, versioned, target, what);
  }
  py::object array;
  try {
    array = py::module_::import("numpy").attr("from_dlpack")(obj);
  } catch (py::error_already_set& e) {
    MPSNN_THROW(DTypeError, "[", what, "] DLPack import failed: ", e.what());
  }
  MPSNN_CHECK(py::reinterpret_borrow<py::array>(array).flags() & py::array::c_style, DTypeError, "[", what,
              "] tensor is not C-contiguous in (N, H, W, C) order (mpsnn never copies silently); a channels_last "
              "PyTorch tensor t qualifies as t.permute(0, 2, 3, 1)");
  // device=None: the device that holds the memory (the CPU), so the import is a view.
  return image_from_array(array, device ? device : device_for_dlpack(dlpack::kCPU, 0), what);
}

namespace {
// Capsule destructors: a capsule never consumed (still named dltensor*) deletes its tensor.
void delete_unconsumed_unversioned(PyObject* cap) {
  if (!PyCapsule_IsValid(cap, "dltensor")) return;
  auto* m = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
  if (m && m->deleter) m->deleter(m);
}
void delete_unconsumed_versioned(PyObject* cap) {
  if (!PyCapsule_IsValid(cap, "dltensor_versioned")) return;
  auto* m = static_cast<dlpack::ManagedTensorVersioned*>(PyCapsule_GetPointer(cap, "dltensor_versioned"));
  if (m && m->deleter) m->deleter(m);
}

// __dlpack__ of an image in device memory (host images: NumPy's export of the numpy() view).
py::object export_dlpack(const ImagePtr& img, const py::kwargs& kwargs) {
  if (img->device()->host_accessible()) return as_numpy(img, "__dlpack__").attr("__dlpack__")(**kwargs);
  auto arg = [&](const char* k) { return kwargs.contains(k) ? py::object(kwargs[k]) : py::object(py::none()); };
  const py::object stream = arg("stream"), max_version = arg("max_version"), dl_device = arg("dl_device"),
                   copy = arg("copy");
  const auto ours = dlpack::device_of(*img);
  if (!dl_device.is_none()) {
    const auto want = dl_device.cast<std::pair<int, int64_t>>();
    if (want != ours) {
      // A host consumer that accepts a copy (np.from_dlpack(image, device="cpu")): numpy()'s copy.
      const bool copy_refused = !copy.is_none() && !copy.cast<bool>();
      if (want.first == dlpack::kCPU && !copy_refused) {
        py::dict rest;
        if (!max_version.is_none()) rest["max_version"] = max_version;
        return as_numpy(img, "__dlpack__").attr("__dlpack__")(**rest);
      }
      PyErr_SetString(PyExc_BufferError, ("[MPSImage.__dlpack__] the image lives on " + img->device()->id() +
                                          "; it cannot be exported to DLPack device (" + std::to_string(want.first) +
                                          ", " + std::to_string(want.second) + ") without a copy")
                                             .c_str());
      throw py::error_already_set();
    }
  }
  if (!copy.is_none() && copy.cast<bool>()) {
    PyErr_SetString(PyExc_BufferError, "[MPSImage.__dlpack__] copy=True: mpsnn exports device images without copies; "
                                       "export the image of a graph run instead, or numpy() for a host copy");
    throw py::error_already_set();
  }
  // The protocol: stream None means the legacy default stream for CUDA consumers.
  const int64_t s = stream.is_none() ? 1 : stream.cast<int64_t>();
  const bool versioned = !max_version.is_none() && max_version.cast<std::pair<int, int>>().first >= 1;
  void* managed;
  {
    ReleaseGil nogil;
    managed = dlpack::export_image(img, versioned, s, "MPSImage.__dlpack__");
  }
  PyObject* cap = PyCapsule_New(managed, versioned ? "dltensor_versioned" : "dltensor",
                                versioned ? delete_unconsumed_versioned : delete_unconsumed_unversioned);
  if (!cap) {
    if (versioned) {
      auto* m = static_cast<dlpack::ManagedTensorVersioned*>(managed);
      m->deleter(m);
    } else {
      auto* m = static_cast<dlpack::ManagedTensor*>(managed);
      m->deleter(m);
    }
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(cap);
}
}  // namespace

ImagePtr to_image(const py::object& o, const DevicePtr& device, const char* what) {
  if (py::isinstance<Image>(o)) return o.cast<ImagePtr>();
  if (!py::isinstance<py::array>(o) && py::hasattr(o, "__dlpack__")) return image_from_dlpack(o, device, what);
  return image_from_array(o, device, what);
}

void bind_images(py::module_& m) {
  py::class_<ImageDescriptor>(m, "MPSImageDescriptor", "Size, channels and format of an image.")
      .def(py::init([](ChannelFormat f, int64_t w, int64_t h, int64_t c, int64_t n, int usage) {
             return make_descriptor(f, w, h, c, n, usage);
           }),
           "channel_format"_a = ChannelFormat::none, "width"_a = 1, "height"_a = 1, "feature_channels"_a = 1,
           "number_of_images"_a = 1, "usage"_a = 3)
      .def_static("image_descriptor", &make_descriptor, "channel_format"_a, "width"_a, "height"_a, "feature_channels"_a,
                  "number_of_images"_a = 1, "usage"_a = 3)
      .def_readwrite("channel_format", &ImageDescriptor::channel_format)
      .def_readwrite("width", &ImageDescriptor::width)
      .def_readwrite("height", &ImageDescriptor::height)
      .def_readwrite("feature_channels", &ImageDescriptor::feature_channels)
      .def_readwrite("number_of_images", &ImageDescriptor::number_of_images)
      .def_readwrite("usage", &ImageDescriptor::usage)
      .def_readwrite("storage_mode", &ImageDescriptor::storage_mode)
      .def_readwrite("cpu_cache_mode", &ImageDescriptor::cpu_cache_mode)
      .def("copy", [](const ImageDescriptor& d) { return d; })
      .def("__repr__", [](const ImageDescriptor& d) {
        return "MPSImageDescriptor(" + std::string(format_name(d.channel_format)) + ", " + std::to_string(d.width) +
               "x" + std::to_string(d.height) + "x" + std::to_string(d.feature_channels) + ", " +
               std::to_string(d.number_of_images) + " image(s))";
      });

  py::class_<ImageAllocator, std::shared_ptr<ImageAllocator>>(m, "MPSImageAllocator",
                                                             "Built-in image allocator (persistent or temporary).")
      .def_property_readonly("is_temporary", &ImageAllocator::is_temporary_default);

  py::class_<Image, std::shared_ptr<Image>>(m, "MPSImage",
                                            "N images of H x W x C pixels, stored NHWC. Memory is allocated on first "
                                            "use. numpy() and from_numpy() share memory with NumPy without copying.")
      .def(py::init([](const DevicePtr& device, const ImageDescriptor& d) { return std::make_shared<Image>(device, d); }),
           "device"_a, "image_descriptor"_a)
      .def(py::init([](const TexturePtr& texture, int64_t feature_channels) {
             return Image::from_texture(texture, feature_channels);
           }),
           "texture"_a, "feature_channels"_a,
           "MPSImage(texture:featureChannels:): an image aliasing the texture's memory (no copy), with "
           "number_of_images = texture.array_length. feature_channels may be fewer than the pixel format's channels "
           "(pass 3 for an RGB photo in an rgba8_unorm texture) but not more: images of more than 4 channels span "
           "several texture slices, which this backend's (N, H, W, C) images cannot alias (UnsupportedError).")
      .def(py::init([](const ImagePtr& parent, const py::object& slice_range, int64_t feature_channels) {
             auto [start, len] = range_of(slice_range);
             (void)len;
             return parent->sub_image(start * 4, feature_channels);
           }),
           "parent_image"_a, "slice_range"_a, "feature_channels"_a,
           "Alias slices [start, start+length) of a parent image (one slice = 4 channels).")
      .def_static(
          "from_numpy",
          [](const py::object& a, const DevicePtr& device) { return image_from_array(a, device, "MPSImage.from_numpy"); },
          "array"_a, "device"_a = nullptr,
          "Wrap a C-contiguous (N, H, W, C) float32/float16/bfloat16 (ml_dtypes)/uint8/uint16 array without copying\n"
          "on the CPU; on a GPU (device=, or the default device when it is one) the array is copied into device\n"
          "memory through pinned staging.\n\n"
          "Raises:\n    DTypeError: wrong dtype or not C-contiguous (nothing is copied silently).\n"
          "    ShapeError: not 4-dimensional.")
      .def_static(
          "from_dlpack", [](const py::object& t, const DevicePtr& device) { return image_from_dlpack(t, device, "MPSImage.from_dlpack"); },
          "tensor"_a, "device"_a = nullptr,
          "Wrap a DLPack tensor (PyTorch, JAX, CuPy, NumPy...) of shape (N, H, W, C), C-contiguous,\n"
          "float32/float16/bfloat16/uint8/uint16, without copying: host tensors for the CPU, CUDA tensors for\n"
          "their GPU (device=None picks the device holding the memory). A CUDA producer's pending writes are\n"
          "waited for (its __dlpack__(stream=) orders them before a stream of ours, which is synchronized).\n"
          "A channels_last PyTorch tensor t qualifies as t.permute(0, 2, 3, 1).\n\n"
          "Raises:\n    UnsupportedError: the tensor's memory is not the device's.\n"
          "    DTypeError: wrong dtype or not C-contiguous (nothing is copied silently).\n"
          "    ShapeError: not 4-dimensional.")
      .def("numpy", [](const ImagePtr& img) { return as_numpy(img); },
           "An (N, H, W, C) NumPy view of the image's memory (no copy; keeps it alive).\n\n"
           "An image returned by MPSNNGraph.encode is written when its command buffer runs: reading it waits for a "
           "committed command buffer to complete, and raises MPSGraphError (naming the buffer's status) when the "
           "buffer was never committed, since waiting would never end. The same holds for read_bytes, write_bytes, "
           "__array__, __getitem__ and DLPack export. Temporary images raise MPSTemporaryImageError.")
      .def("__array__", &array_protocol, "dtype"_a = py::none(), "copy"_a = py::none(),
           "NumPy protocol: np.asarray(image) is the numpy() view, np.array(image) a copy; np.argmax(image, axis=-1) "
           "and other NumPy functions see the (N, H, W, C) values. NumPy 2 copy semantics: copy=False raises "
           "ValueError when a copy would be needed (a dtype change), copy=None views when possible.")
      .def("__getitem__", [](const ImagePtr& img, const py::object& key) { return py::object(as_numpy(img, "__getitem__")[key]); },
           "key"_a, "image[key] is image.numpy()[key]: NumPy indexing of the (N, H, W, C) view (slices are views).")
      .def(
          "__dlpack__", &export_dlpack,
          "DLPack export of the (N, H, W, C) memory, without a copy: torch.from_dlpack(image), cupy.from_dlpack(image). "
          "Host images: NumPy implements the protocol, and the export waits for the producing command buffer as "
          "numpy() does. CUDA images: the consumer's stream (stream=, None meaning the legacy default stream) waits "
          "for encoded work still writing the image (an event on the queue's stream, no host wait), and the memory "
          "goes back to mpsnn only after that stream has passed the point where the consumer let go. "
          "dl_device=(1, 0) gets a host copy unless copy=False.")
      .def("__dlpack_device__", [](const ImagePtr& img) { return dlpack::device_of(*img); },
           "(1, 0) for host memory (kDLCPU), (2, index) for CUDA memory (kDLCUDA).")
      .def_static("default_allocator", &persistent_image_allocator, "Allocator of persistent images.")
      .def_property_readonly("device", &Image::device)
      .def_property_readonly("width", &Image::width)
      .def_property_readonly("height", &Image::height)
      .def_property_readonly("feature_channels", &Image::feature_channels)
      .def_property_readonly("number_of_images", &Image::number_of_images)
      .def_property_readonly("feature_channel_format", &Image::format)
      .def_property_readonly("pixel_format", &Image::format)
      .def_property_readonly("precision", [](const Image& i) { return precision_bits(i.format()); })
      .def_property_readonly("pixel_size", [](const Image& i) { return int64_t(i.element_bytes()) * i.pixel_stride(); })
      .def_property_readonly("usage", &Image::usage)
      .def_property_readonly("texture_type", [](const Image& i) { return i.feature_channels() <= 4 && i.number_of_images() == 1 ? 2 : 3; })
      .def_property_readonly("texture", [](const ImagePtr& img) { return as_numpy(img, "texture"); },
                             "The backing memory as a NumPy view (forces allocation).")
      .def_property_readonly("mtl_texture", &Image::texture,
                             "mpsnn: the MTLTexture this image aliases (MPSImage(texture=, feature_channels=)), or None.")
      .def_property_readonly("parent", &Image::parent)
      .def_property_readonly("is_temporary", &Image::is_temporary)
      .def_readwrite("label", &Image::label)
      .def("resource_size", &Image::resource_size)
      .def("set_purgeable_state", [](const Image& i, int state) { return i.allocated() ? state : 0; }, "state"_a)
      .def("synchronize", [](const Image&, const py::object&) {}, "command_buffer"_a,
           "No-op: host memory is always CPU-visible.")
      .def("sub_image", [](Image& i, const py::object& r) {
             auto [start, len] = range_of(r);
             return i.sub_image(start, len);
           },
           "with_feature_channel_range"_a, "Alias of a channel range (start and length multiples of 4).")
      .def("batch_representation", [](Image& i, const py::object& r) {
             if (r.is_none()) return i.batch_representation(0, -1);
             auto [start, len] = range_of(r);
             return i.batch_representation(start, len);
           },
           "with_sub_range"_a = py::none(), "Split into single-image aliases sharing memory.")
      .def(
          "read_bytes",
          [](Image& img, const py::buffer& data, DataLayout layout, int64_t image_index, int64_t bytes_per_row,
             int64_t bytes_per_image, const py::object& region, const py::object& feature_channel_info) {
            const HostBuffer info = host_buffer(data, img, true, "read_bytes");
            wait_for_writes(img, "read_bytes");
            img.read_bytes(info.ptr, info.bytes, layout,
                           HostStrides{0, bytes_per_row, bytes_per_image}, region_of(region, feature_channel_info),
                           image_index);
          },
          "data"_a, "data_layout"_a, "image_index"_a = 0, py::kw_only(), "bytes_per_row"_a = 0, "bytes_per_image"_a = 0,
          "region"_a = py::none(), "feature_channel_info"_a = py::none(),
          "Copy pixels into `data` (element type = the image's format). Strides 0 mean dense.")
      .def(
          "write_bytes",
          [](Image& img, const py::buffer& data, DataLayout layout, int64_t image_index, int64_t bytes_per_column,
             int64_t bytes_per_row, int64_t bytes_per_image, const py::object& region,
             const py::object& feature_channel_info) {
            const HostBuffer info = host_buffer(data, img, false, "write_bytes");
            wait_for_writes(img, "write_bytes");
            img.write_bytes(info.ptr, info.bytes, layout,
                            HostStrides{bytes_per_column, bytes_per_row, bytes_per_image},
                            region_of(region, feature_channel_info), image_index);
          },
          "data"_a, "data_layout"_a, "image_index"_a = 0, py::kw_only(), "bytes_per_column"_a = 0,
          "bytes_per_row"_a = 0, "bytes_per_image"_a = 0, "region"_a = py::none(),
          "feature_channel_info"_a = py::none(), "Copy pixels from `data` into the image.")
      .def("__repr__", [](const Image& i) {
        return "<MPSImage " + std::to_string(i.width()) + "x" + std::to_string(i.height()) + "x" +
               std::to_string(i.feature_channels()) + ", " + std::to_string(i.number_of_images()) + " image(s), " +
               format_name(i.format()) + ">";
      });

  py::class_<TemporaryImage, Image, std::shared_ptr<TemporaryImage>>(
      m, "MPSTemporaryImage",
      "An image valid only on one command buffer, with no CPU access, released when read_count reaches 0.")
      .def(py::init([](const CommandBufferPtr& cb, const ImageDescriptor& d) { return std::make_shared<TemporaryImage>(cb, d); }),
           "command_buffer"_a, "image_descriptor"_a)
      .def_static("temporary_image", [](const CommandBufferPtr& cb, const ImageDescriptor& d) {
                    return std::make_shared<TemporaryImage>(cb, d);
                  }, "command_buffer"_a, "image_descriptor"_a)
      .def_static("default_allocator", &temporary_image_allocator, "Allocator of temporary images.")
      .def_static("prefetch_storage", [](const CommandBufferPtr&, const py::object&) {}, "command_buffer"_a,
                  "image_descriptor_list"_a, "A hint; host memory needs no prefetch.")
      .def_property("read_count", &TemporaryImage::read_count, &TemporaryImage::set_read_count);

  m.def("MPSImageBatchIncrementReadCount", [](const py::list& batch, int amount) {
    std::vector<const Image*> seen;
    for (auto item : batch) {
      auto img = item.cast<ImagePtr>();
      if (std::find(seen.begin(), seen.end(), img.get()) != seen.end()) continue;
      seen.push_back(img.get());
      if (!img->is_temporary()) continue;
      auto* t = static_cast<TemporaryImage*>(img.get());
      if (t->read_count() > 0) t->set_read_count(std::max(0, t->read_count() + amount));
    }
    return int(seen.size());
  }, "batch"_a, "amount"_a);
  m.def("MPSImageBatchResourceSize", [](const py::list& batch) {
    std::vector<const Image*> seen;
    size_t total = 0;
    for (auto item : batch) {
      auto img = item.cast<ImagePtr>();
      if (std::find(seen.begin(), seen.end(), img.get()) != seen.end()) continue;
      seen.push_back(img.get());
      total += img->resource_size();
    }
    return total;
  }, "batch"_a);
  m.def("MPSImageBatchSynchronize", [](const py::list&, const py::object&) {}, "batch"_a, "command_buffer"_a);
}

}  // namespace mpsnn::bindings
