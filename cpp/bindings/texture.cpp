// MTLTexture, MTLTextureDescriptor and their enumerations (MTLPixelFormat, MTLTextureType,
// MTLTextureUsage): the textures MPSImage(texture=, feature_channels=) aliases (graph.md §9.6).
// A texture is stored as [array_length][height][width][channels]; from_numpy wraps such an array
// without copying and numpy() views the memory.
#include "backends/registry.h"
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {

ChannelFormat channel_format_of(const py::dtype& d) {
  if (d.equal(py::dtype("float32"))) return ChannelFormat::float32;
  if (d.equal(py::dtype("float16"))) return ChannelFormat::float16;
  if (d.equal(py::dtype("uint8"))) return ChannelFormat::unorm8;
  if (d.equal(py::dtype("uint16"))) return ChannelFormat::unorm16;
  return ChannelFormat::none;
}

py::dtype numpy_dtype(ChannelFormat f) {
  switch (f) {
    case ChannelFormat::float32: return py::dtype("float32");
    case ChannelFormat::float16: return py::dtype("float16");
    case ChannelFormat::unorm8: return py::dtype("uint8");
    default: return py::dtype("uint16");
  }
}

// (H, W), (H, W, channels) or (array_length, H, W, channels) with 1, 2 or 4 channels.
TexturePtr texture_from_array(const py::object& obj, const DevicePtr& device, int usage) {
  const char* what = "[MTLTexture.from_numpy]";
  MPSNN_CHECK(py::isinstance<py::array>(obj), DTypeError, what, " expected a NumPy array, got ",
              std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  const std::string dt = py::str(py::handle(a.dtype())).cast<std::string>();
  const ChannelFormat f = channel_format_of(a.dtype());
  MPSNN_CHECK(f != ChannelFormat::none, DTypeError, what, " array has dtype ", dt,
              "; expected float32, float16, uint8 (unorm8) or uint16 (unorm16)");
  MPSNN_CHECK(a.flags() & py::array::c_style, DTypeError, what,
              " array is not C-contiguous; pass np.ascontiguousarray(a) (it is wrapped without copying)");
  MPSNN_CHECK(a.ndim() >= 2 && a.ndim() <= 4, ShapeError, what, " array has ", a.ndim(),
              " dimensions; expected (H, W), (H, W, channels) or (array_length, H, W, channels)");
  TextureDescriptor d;
  d.texture_type = a.ndim() == 4 ? TextureType::type2d_array : TextureType::type2d;
  d.array_length = a.ndim() == 4 ? a.shape(0) : 1;
  const int off = a.ndim() == 4 ? 1 : 0;
  d.height = a.shape(off);
  d.width = a.shape(off + 1);
  const int64_t channels = a.ndim() == 2 ? 1 : a.shape(a.ndim() - 1);
  d.pixel_format = pixel_format_for(f, channels);
  MPSNN_CHECK(d.pixel_format != PixelFormat::invalid, ShapeError, what, " array has ", channels,
              " channels per pixel; textures have 1, 2 or 4 (pad RGB to RGBA and pass feature_channels=3 to MPSImage)");
  d.usage = usage;
  return Texture::wrap(device ? device : system_default_device(), d, a.mutable_data(), keep_alive(a));
}

py::array texture_numpy(const TexturePtr& t) {
  const auto& d = t->descriptor();
  MPSNN_CHECK(t->device()->host_accessible(), UnsupportedError, "[MTLTexture.numpy] the texture lives in memory the "
              "CPU cannot address");
  const int64_t e = int64_t(element_size(t->channel_format())), k = t->channels();
  std::vector<ssize_t> shape{d.array_length, d.height, d.width, k};
  std::vector<ssize_t> strides{d.height * d.width * k * e, d.width * k * e, k * e, e};
  if (d.texture_type == TextureType::type2d) {
    shape.erase(shape.begin());
    strides.erase(strides.begin());
  }
  return py::array(numpy_dtype(t->channel_format()), shape, strides, t->storage()->data(), py::cast(t));
}

py::object usage_flag(int usage) { return py::module_::import("mpsnn._core").attr("MTLTextureUsage")(usage); }

TextureDescriptor make_descriptor(PixelFormat format, int64_t width, int64_t height, bool mipmapped) {
  MPSNN_CHECK(!mipmapped, UnsupportedError, "[MTLTextureDescriptor] mipmapped textures are not supported; pass mipmapped=False");
  TextureDescriptor d;
  d.pixel_format = format;
  d.width = width;
  d.height = height;
  return d;
}

}  // namespace

void bind_textures(py::module_& m) {
  py::native_enum<PixelFormat>(m, "MTLPixelFormat", "enum.IntEnum",
                               "Texture pixel formats (Metal's raw values) that an MPSImage can alias.")
      .value("invalid", PixelFormat::invalid)
      .value("r8_unorm", PixelFormat::r8_unorm)
      .value("r16_unorm", PixelFormat::r16_unorm)
      .value("r16_float", PixelFormat::r16_float)
      .value("rg8_unorm", PixelFormat::rg8_unorm)
      .value("r32_float", PixelFormat::r32_float)
      .value("rg16_unorm", PixelFormat::rg16_unorm)
      .value("rg16_float", PixelFormat::rg16_float)
      .value("rgba8_unorm", PixelFormat::rgba8_unorm)
      .value("rg32_float", PixelFormat::rg32_float)
      .value("rgba16_unorm", PixelFormat::rgba16_unorm)
      .value("rgba16_float", PixelFormat::rgba16_float)
      .value("rgba32_float", PixelFormat::rgba32_float)
      .finalize();
  py::native_enum<TextureType>(m, "MTLTextureType", "enum.IntEnum", "Texture types (Metal's raw values).")
      .value("type2d", TextureType::type2d)
      .value("type2d_array", TextureType::type2d_array)
      .finalize();
  py::native_enum<TextureUsage>(m, "MTLTextureUsage", "enum.IntFlag", "Texture usage flags (Metal's raw values).")
      .value("unknown", TextureUsage(0))
      .value("shader_read", usage_shader_read)
      .value("shader_write", usage_shader_write)
      .value("render_target", usage_render_target)
      .value("pixel_format_view", usage_pixel_format_view)
      .finalize();

  py::class_<TextureDescriptor>(m, "MTLTextureDescriptor", "Size, pixel format, type and usage of a texture.")
      .def(py::init([](PixelFormat format, int64_t width, int64_t height, TextureType type, int64_t array_length,
                       int usage) {
             TextureDescriptor d;
             d.pixel_format = format;
             d.width = width;
             d.height = height;
             d.texture_type = type;
             d.array_length = array_length;
             d.usage = usage;
             return d;
           }),
           "pixel_format"_a = PixelFormat::rgba8_unorm, "width"_a = 1, "height"_a = 1,
           "texture_type"_a = TextureType::type2d, "array_length"_a = 1, "usage"_a = int(usage_shader_read))
      .def_static("texture2d_descriptor", &make_descriptor, "pixel_format"_a, "width"_a, "height"_a,
                  "mipmapped"_a = false, "MTLTextureDescriptor.texture2DDescriptor(pixelFormat:width:height:mipmapped:).")
      .def_readwrite("texture_type", &TextureDescriptor::texture_type)
      .def_readwrite("pixel_format", &TextureDescriptor::pixel_format)
      .def_readwrite("width", &TextureDescriptor::width)
      .def_readwrite("height", &TextureDescriptor::height)
      .def_readwrite("depth", &TextureDescriptor::depth)
      .def_readwrite("array_length", &TextureDescriptor::array_length)
      .def_readwrite("mipmap_level_count", &TextureDescriptor::mipmap_level_count)
      .def_readwrite("sample_count", &TextureDescriptor::sample_count)
      .def_property("usage", [](const TextureDescriptor& d) { return usage_flag(d.usage); },
                    [](TextureDescriptor& d, int v) { d.usage = v; }, "MTLTextureUsage flags (default shader_read).")
      .def_readwrite("storage_mode", &TextureDescriptor::storage_mode)
      .def_readwrite("cpu_cache_mode", &TextureDescriptor::cpu_cache_mode)
      .def("__repr__", [](const TextureDescriptor& d) {
        return "MTLTextureDescriptor(" + std::string(pixel_format_name(d.pixel_format)) + ", " + std::to_string(d.width) +
               "x" + std::to_string(d.height) + ", array_length " + std::to_string(d.array_length) + ")";
      });

  py::class_<Texture, TexturePtr>(m, "MTLTexture",
                                  "A 2-D texture or texture array in host memory, laid out as "
                                  "(array_length, height, width, channels); MPSImage(texture=, feature_channels=) "
                                  "aliases it.")
      .def_static("from_numpy", &texture_from_array, "array"_a, "device"_a = nullptr,
                  "usage"_a = int(usage_shader_read | usage_shader_write),
                  "Wrap a C-contiguous (H, W), (H, W, channels) or (array_length, H, W, channels) float32/float16/"
                  "uint8/uint16 array without copying (1, 2 or 4 channels; 4-D arrays make a type2d_array texture).\n\n"
                  "Raises:\n    DTypeError: wrong dtype or not C-contiguous.\n    ShapeError: other shapes.")
      .def("numpy", &texture_numpy, "A NumPy view of the texture's memory ((H, W, C) or (array_length, H, W, C)).")
      .def_property_readonly("device", &Texture::device)
      .def_property_readonly("texture_type", [](const Texture& t) { return t.descriptor().texture_type; })
      .def_property_readonly("pixel_format", [](const Texture& t) { return t.descriptor().pixel_format; })
      .def_property_readonly("width", [](const Texture& t) { return t.descriptor().width; })
      .def_property_readonly("height", [](const Texture& t) { return t.descriptor().height; })
      .def_property_readonly("depth", [](const Texture& t) { return t.descriptor().depth; })
      .def_property_readonly("array_length", [](const Texture& t) { return t.descriptor().array_length; })
      .def_property_readonly("mipmap_level_count", [](const Texture& t) { return t.descriptor().mipmap_level_count; })
      .def_property_readonly("sample_count", [](const Texture& t) { return t.descriptor().sample_count; })
      .def_property_readonly("usage", [](const Texture& t) { return usage_flag(t.descriptor().usage); })
      .def_property_readonly("allocated_size", [](const Texture& t) { return t.bytes(); })
      .def_readwrite("label", &Texture::label)
      .def("__repr__", [](const Texture& t) {
        const auto& d = t.descriptor();
        return "<MTLTexture " + std::string(pixel_format_name(d.pixel_format)) + " " + std::to_string(d.width) + "x" +
               std::to_string(d.height) + ", array_length " + std::to_string(d.array_length) + ">";
      });

  // device.make_texture(descriptor) (Swift makeTexture(descriptor:)), on the MTLDevice class.
  auto device = py::reinterpret_borrow<py::class_<Device, std::shared_ptr<Device>>>(py::type::of<Device>());
  device.def(
      "make_texture", [](const DevicePtr& d, const TextureDescriptor& desc) { return std::make_shared<Texture>(d, desc); },
      "descriptor"_a, "A new zero-filled MTLTexture (device.makeTexture(descriptor:)).");
}

}  // namespace mpsnn::bindings
