// MPSKernel classes: the kernel objects a custom padding hook receives (one Python class per MPS
// kernel class, so `isinstance(kernel, MPSCNNPooling)` works), and the stand-alone image scale
// kernels MPSImageBilinearScale / MPSImageLanczosScale, which run on the scale nodes' machinery.
#include <map>
#include <mutex>
#include <tuple>

#include "backends/registry.h"
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {

// MPSKernel.
struct KernelObject {
  virtual ~KernelObject() = default;
  std::optional<std::string> label;
};
// MPSCNNKernel / MPSCNNBinaryKernel as a padding hook sees them: a copy of the node's kernel
// geometry that the hook may change (offset, edge mode).
struct CNNKernel : KernelObject {
  KernelProps props;
};
struct CNNBinaryKernel : KernelObject {
  KernelProps props;
};

#define MPSNN_KERNEL(Name, Base) \
  struct Name : Base {};
MPSNN_KERNEL(ConvolutionKernel, CNNKernel)
MPSNN_KERNEL(FullyConnectedKernel, ConvolutionKernel)
MPSNN_KERNEL(ConvolutionTransposeKernel, CNNKernel)
MPSNN_KERNEL(BinaryConvolutionKernel, CNNKernel)
MPSNN_KERNEL(BinaryFullyConnectedKernel, BinaryConvolutionKernel)
MPSNN_KERNEL(PoolingKernel, CNNKernel)
MPSNN_KERNEL(PoolingMaxKernel, PoolingKernel)
MPSNN_KERNEL(PoolingAverageKernel, PoolingKernel)
MPSNN_KERNEL(PoolingL2NormKernel, PoolingKernel)
MPSNN_KERNEL(DilatedPoolingMaxKernel, PoolingKernel)
MPSNN_KERNEL(NeuronKernel, CNNKernel)
MPSNN_KERNEL(SoftMaxKernel, CNNKernel)
MPSNN_KERNEL(LogSoftMaxKernel, CNNKernel)
MPSNN_KERNEL(CrossChannelNormalizationKernel, CNNKernel)
MPSNN_KERNEL(SpatialNormalizationKernel, CNNKernel)
MPSNN_KERNEL(LocalContrastNormalizationKernel, CNNKernel)
MPSNN_KERNEL(BatchNormalizationKernel, CNNKernel)
MPSNN_KERNEL(InstanceNormalizationKernel, CNNKernel)
MPSNN_KERNEL(UpsamplingKernel, CNNKernel)
MPSNN_KERNEL(UpsamplingNearestKernel, UpsamplingKernel)
MPSNN_KERNEL(UpsamplingBilinearKernel, UpsamplingKernel)
MPSNN_KERNEL(DropoutKernel, CNNKernel)
MPSNN_KERNEL(ArithmeticKernel, CNNBinaryKernel)
MPSNN_KERNEL(AddKernel, ArithmeticKernel)
MPSNN_KERNEL(SubtractKernel, ArithmeticKernel)
MPSNN_KERNEL(MultiplyKernel, ArithmeticKernel)
MPSNN_KERNEL(DivideKernel, ArithmeticKernel)
MPSNN_KERNEL(GradientKernel, CNNBinaryKernel)
MPSNN_KERNEL(PoolingGradientKernel, GradientKernel)
MPSNN_KERNEL(PoolingMaxGradientKernel, PoolingGradientKernel)
MPSNN_KERNEL(PoolingAverageGradientKernel, PoolingGradientKernel)
MPSNN_KERNEL(PoolingL2NormGradientKernel, PoolingGradientKernel)
MPSNN_KERNEL(DilatedPoolingMaxGradientKernel, PoolingGradientKernel)
MPSNN_KERNEL(NeuronGradientKernel, GradientKernel)
#undef MPSNN_KERNEL

template <typename T>
std::shared_ptr<KernelObject> with(const KernelProps& p) {
  auto k = std::make_shared<T>();
  k->props = p;
  return k;
}

// The MPS kernel class that runs `node` (MPSCNNKernel where MPS has none, e.g. concatenation).
std::shared_ptr<KernelObject> kernel_for(const FilterNode* node, const KernelProps& p) {
  if (!node) return with<CNNKernel>(p);
  switch (node->kind()) {
    case OpKind::Convolution:
      switch (node->attrs_as<ConvolutionAttrs>().variant) {
        case ConvolutionVariant::regular: return with<ConvolutionKernel>(p);
        case ConvolutionVariant::fully_connected: return with<FullyConnectedKernel>(p);
        case ConvolutionVariant::transpose: return with<ConvolutionTransposeKernel>(p);
      }
      break;
    case OpKind::BinaryConvolution:
      return node->attrs_as<BinaryConvolutionAttrs>().fully_connected ? with<BinaryFullyConnectedKernel>(p)
                                                                      : with<BinaryConvolutionKernel>(p);
    case OpKind::Pooling:
      switch (node->attrs_as<PoolingAttrs>().mode) {
        case PoolingMode::max: return with<PoolingMaxKernel>(p);
        case PoolingMode::average: return with<PoolingAverageKernel>(p);
        case PoolingMode::l2_norm: return with<PoolingL2NormKernel>(p);
        case PoolingMode::dilated_max: return with<DilatedPoolingMaxKernel>(p);
      }
      break;
    case OpKind::PoolingGradient:
      switch (node->attrs_as<PoolingAttrs>().mode) {
        case PoolingMode::max: return with<PoolingMaxGradientKernel>(p);
        case PoolingMode::average: return with<PoolingAverageGradientKernel>(p);
        case PoolingMode::l2_norm: return with<PoolingL2NormGradientKernel>(p);
        case PoolingMode::dilated_max: return with<DilatedPoolingMaxGradientKernel>(p);
      }
      break;
    case OpKind::Neuron: return with<NeuronKernel>(p);
    case OpKind::NeuronGradient: return with<NeuronGradientKernel>(p);
    case OpKind::SoftMax:
      return node->attrs_as<SoftMaxAttrs>().log ? with<LogSoftMaxKernel>(p) : with<SoftMaxKernel>(p);
    case OpKind::Normalization:
      switch (node->attrs_as<NormalizationAttrs>().mode) {
        case NormalizationMode::cross_channel: return with<CrossChannelNormalizationKernel>(p);
        case NormalizationMode::spatial: return with<SpatialNormalizationKernel>(p);
        case NormalizationMode::local_contrast: return with<LocalContrastNormalizationKernel>(p);
      }
      break;
    case OpKind::BatchNormalization: return with<BatchNormalizationKernel>(p);
    case OpKind::InstanceNormalization: return with<InstanceNormalizationKernel>(p);
    case OpKind::Upsampling:
      return node->attrs_as<UpsamplingAttrs>().mode == UpsamplingMode::nearest ? with<UpsamplingNearestKernel>(p)
                                                                               : with<UpsamplingBilinearKernel>(p);
    case OpKind::Dropout: return with<DropoutKernel>(p);
    case OpKind::Arithmetic:
      switch (node->attrs_as<ArithmeticAttrs>().op) {
        case ArithmeticOp::add: return with<AddKernel>(p);
        case ArithmeticOp::subtract: return with<SubtractKernel>(p);
        case ArithmeticOp::multiply: return with<MultiplyKernel>(p);
        case ArithmeticOp::divide: return with<DivideKernel>(p);
      }
      break;
    default: break;
  }
  return with<CNNKernel>(p);
}

// The geometry properties of MPSCNNKernel (and, with the primary_ names, MPSCNNBinaryKernel).
template <typename K, typename Class>
void geometry_properties(Class& cls, const char* prefix) {
  const std::string p = prefix;
  auto offset = [](const K& k) {
    return py::module_::import("mpsnn._types").attr("MPSOffset")(k.props.offset_x, k.props.offset_y, k.props.offset_z);
  };
  auto set_offset = [](K& k, const py::object& o) {
    k.props.offset_x = o.attr("x").cast<int64_t>();
    k.props.offset_y = o.attr("y").cast<int64_t>();
    k.props.offset_z = o.attr("z").cast<int64_t>();
  };
  cls.def_property((p + "offset").c_str(), offset, set_offset)
      .def_property((p + "edge_mode").c_str(), [](const K& k) { return k.props.edge_mode; },
                    [](K& k, EdgeMode e) { k.props.edge_mode = e; })
      .def_property_readonly((p + "kernel_width").c_str(), [](const K& k) { return k.props.kernel_width; })
      .def_property_readonly((p + "kernel_height").c_str(), [](const K& k) { return k.props.kernel_height; })
      .def_property_readonly((p + "stride_in_pixels_x").c_str(), [](const K& k) { return k.props.stride_x; })
      .def_property_readonly((p + "stride_in_pixels_y").c_str(), [](const K& k) { return k.props.stride_y; })
      .def_property_readonly((p + "dilation_rate_x").c_str(), [](const K& k) { return k.props.dilation_x; })
      .def_property_readonly((p + "dilation_rate_y").c_str(), [](const K& k) { return k.props.dilation_y; });
}

template <typename K, typename Class>
void common_properties(Class& cls) {
  cls.def_property("offset_x", [](const K& k) { return k.props.offset_x; }, [](K& k, int64_t v) { k.props.offset_x = v; })
      .def_property("offset_y", [](const K& k) { return k.props.offset_y; }, [](K& k, int64_t v) { k.props.offset_y = v; })
      .def_property("offset_z", [](const K& k) { return k.props.offset_z; }, [](K& k, int64_t v) { k.props.offset_z = v; })
      .def_property("source_feature_channel_offset", [](const K& k) { return k.props.source_feature_channel_offset; },
                    [](K& k, int64_t v) { k.props.source_feature_channel_offset = v; })
      .def_property("source_feature_channel_max_count",
                    [](const K& k) { return k.props.source_feature_channel_max_count; },
                    [](K& k, int64_t v) { k.props.source_feature_channel_max_count = v; })
      .def_property("destination_feature_channel_offset",
                    [](const K& k) { return k.props.destination_feature_channel_offset; },
                    [](K& k, int64_t v) { k.props.destination_feature_channel_offset = v; })
      .def_property_readonly("is_backwards", [](const K& k) { return k.props.is_backwards; });
}

// ---- MPSImageBilinearScale / MPSImageLanczosScale -------------------------------------------

// A transform provider that always answers the kernel's scale_transform.
class FixedTransform final : public TransformProvider {
 public:
  explicit FixedTransform(ScaleTransform t) : t_(t) {}
  std::optional<ScaleTransform> transform(int64_t, int64_t, int64_t, const std::shared_ptr<Handle>&) const override {
    return t_;
  }

 private:
  ScaleTransform t_;
};

// Hands the caller's destination image to the graph as its result.
class DestinationAllocator final : public ImageAllocator {
 public:
  ImagePtr allocate(const CommandBufferPtr&, const DevicePtr&, const ImageDescriptor&) const override { return image; }
  ImagePtr image;  // set for one encode, under the kernel's mutex
};

// MPSImageScale: owns one single-node graph (source -> scale node) per destination size and
// transform; the graph compiles and caches a plan per source size and format as usual.
class ImageScaleKernel : public KernelObject {
 public:
  ImageScaleKernel(DevicePtr device, ScaleMode mode, const char* name) : device_(std::move(device)), mode_(mode), name_(name) {
    MPSNN_CHECK(device_ != nullptr, GraphError, "[", name_, "] device is None");
  }
  const DevicePtr& device() const { return device_; }
  std::optional<ScaleTransform> scale_transform;

  void encode(const CommandBufferPtr& cb, const ImagePtr& src, const ImagePtr& dst) {
    MPSNN_CHECK(cb != nullptr, GraphError, "[", name_, "] command_buffer is None");
    MPSNN_CHECK(src != nullptr && dst != nullptr, GraphError, "[", name_, "] source and destination images are required");
    MPSNN_CHECK(src.get() != dst.get(), GraphError, "[", name_, "] the destination is the source; MPSImageScale does not work in place");
    MPSNN_CHECK(src->device() == device_ && dst->device() == device_, GraphError, "[", name_,
                "] source and destination must be on the kernel's device '", device_->name(), "'");
    MPSNN_CHECK(src->feature_channels() == dst->feature_channels() && src->number_of_images() == dst->number_of_images(),
                ShapeError, "[", name_, "] destination has ", dst->number_of_images(), " image(s) of ",
                dst->feature_channels(), " feature channels; expected the source's ", src->number_of_images(), " of ",
                src->feature_channels(), " (only width and height are resampled)");
    std::lock_guard<std::mutex> lock(mutex_);
    Entry& e = entry(dst->width(), dst->height());
    e.graph->set_format(dst->format());
    e.target->image = dst;
    struct Reset {
      DestinationAllocator& a;
      ~Reset() { a.image = nullptr; }
    } reset{*e.target};
    e.graph->encode(cb, {src}, nullptr, nullptr, nullptr);
  }

 private:
  struct Entry {
    std::shared_ptr<NNGraph> graph;
    std::shared_ptr<DestinationAllocator> target;
  };
  using Key = std::tuple<int64_t, int64_t, bool, double, double, double, double>;

  Entry& entry(int64_t width, int64_t height) {
    const ScaleTransform t = scale_transform.value_or(ScaleTransform{});
    const Key key{width, height, scale_transform.has_value(), t.scale_x, t.scale_y, t.translate_x, t.translate_y};
    auto it = graphs_.find(key);
    if (it != graphs_.end()) return it->second;
    ScaleAttrs a;
    a.mode = mode_;
    a.output_width = width;
    a.output_height = height;
    if (scale_transform) a.transform_provider = std::make_shared<FixedTransform>(*scale_transform);
    auto source = std::make_shared<ImageNode>();
    auto node = std::make_shared<FilterNode>(OpKind::Scale, a, std::vector<ImageNodePtr>{source});
    node->label = name_;
    Entry e;
    e.graph = std::make_shared<NNGraph>(device_, std::vector<ImageNodePtr>{node->result_image()}, std::vector<bool>{true},
                                        kernel_registry(device_->backend()));
    e.target = std::make_shared<DestinationAllocator>();
    e.graph->set_destination_image_allocator(e.target);
    return graphs_.emplace(key, std::move(e)).first->second;
  }

  DevicePtr device_;
  ScaleMode mode_;
  std::string name_;
  std::mutex mutex_;
  std::map<Key, Entry> graphs_;
};
struct BilinearScaleKernel : ImageScaleKernel {
  explicit BilinearScaleKernel(DevicePtr d) : ImageScaleKernel(std::move(d), ScaleMode::bilinear, "MPSImageBilinearScale") {}
};
struct LanczosScaleKernel : ImageScaleKernel {
  explicit LanczosScaleKernel(DevicePtr d) : ImageScaleKernel(std::move(d), ScaleMode::lanczos, "MPSImageLanczosScale") {}
};

template <typename T>
void scale_kernel_class(py::module_& m, const char* name, const char* doc) {
  py::class_<T, ImageScaleKernel, std::shared_ptr<T>>(m, name, doc).def(py::init<DevicePtr>(), "device"_a);
}

}  // namespace

py::object kernel_object(const FilterNode* node, const KernelProps& props) { return py::cast(kernel_for(node, props)); }

KernelProps kernel_props(const py::handle& kernel) {
  if (py::isinstance<CNNKernel>(kernel)) return kernel.cast<const CNNKernel&>().props;
  return kernel.cast<const CNNBinaryKernel&>().props;
}

void bind_kernels(py::module_& m) {
  py::class_<KernelObject, std::shared_ptr<KernelObject>>(m, "MPSKernel", "Base of the MPS kernel classes.")
      .def_readwrite("label", &KernelObject::label);

  auto cnn = py::class_<CNNKernel, KernelObject, std::shared_ptr<CNNKernel>>(
      m, "MPSCNNKernel",
      "A unary CNN kernel as a custom padding policy's destination_image_descriptor sees it: its geometry, with "
      "offset and edge_mode writable. The object is an instance of the node's MPS kernel class (MPSCNNPoolingMax, "
      "MPSCNNConvolution, ...).");
  geometry_properties<CNNKernel>(cnn, "");
  common_properties<CNNKernel>(cnn);
  auto binary = py::class_<CNNBinaryKernel, KernelObject, std::shared_ptr<CNNBinaryKernel>>(
      m, "MPSCNNBinaryKernel",
      "A two-source CNN kernel (arithmetic, gradients) as a padding hook sees it; primary_offset and "
      "primary_edge_mode are the primary source's geometry (offset / edge_mode are the same values).");
  geometry_properties<CNNBinaryKernel>(binary, "primary_");
  geometry_properties<CNNBinaryKernel>(binary, "");
  common_properties<CNNBinaryKernel>(binary);

#define MPSNN_BIND(Type, Base, Name) \
  py::class_<Type, Base, std::shared_ptr<Type>>(m, Name);
  MPSNN_BIND(ConvolutionKernel, CNNKernel, "MPSCNNConvolution")
  MPSNN_BIND(FullyConnectedKernel, ConvolutionKernel, "MPSCNNFullyConnected")
  MPSNN_BIND(ConvolutionTransposeKernel, CNNKernel, "MPSCNNConvolutionTranspose")
  MPSNN_BIND(BinaryConvolutionKernel, CNNKernel, "MPSCNNBinaryConvolution")
  MPSNN_BIND(BinaryFullyConnectedKernel, BinaryConvolutionKernel, "MPSCNNBinaryFullyConnected")
  MPSNN_BIND(PoolingKernel, CNNKernel, "MPSCNNPooling")
  MPSNN_BIND(PoolingMaxKernel, PoolingKernel, "MPSCNNPoolingMax")
  MPSNN_BIND(PoolingAverageKernel, PoolingKernel, "MPSCNNPoolingAverage")
  MPSNN_BIND(PoolingL2NormKernel, PoolingKernel, "MPSCNNPoolingL2Norm")
  MPSNN_BIND(DilatedPoolingMaxKernel, PoolingKernel, "MPSCNNDilatedPoolingMax")
  MPSNN_BIND(NeuronKernel, CNNKernel, "MPSCNNNeuron")
  MPSNN_BIND(SoftMaxKernel, CNNKernel, "MPSCNNSoftMax")
  MPSNN_BIND(LogSoftMaxKernel, CNNKernel, "MPSCNNLogSoftMax")
  MPSNN_BIND(CrossChannelNormalizationKernel, CNNKernel, "MPSCNNCrossChannelNormalization")
  MPSNN_BIND(SpatialNormalizationKernel, CNNKernel, "MPSCNNSpatialNormalization")
  MPSNN_BIND(LocalContrastNormalizationKernel, CNNKernel, "MPSCNNLocalContrastNormalization")
  MPSNN_BIND(BatchNormalizationKernel, CNNKernel, "MPSCNNBatchNormalization")
  MPSNN_BIND(InstanceNormalizationKernel, CNNKernel, "MPSCNNInstanceNormalization")
  MPSNN_BIND(UpsamplingKernel, CNNKernel, "MPSCNNUpsampling")
  MPSNN_BIND(UpsamplingNearestKernel, UpsamplingKernel, "MPSCNNUpsamplingNearest")
  MPSNN_BIND(UpsamplingBilinearKernel, UpsamplingKernel, "MPSCNNUpsamplingBilinear")
  MPSNN_BIND(DropoutKernel, CNNKernel, "MPSCNNDropout")
  MPSNN_BIND(ArithmeticKernel, CNNBinaryKernel, "MPSCNNArithmetic")
  MPSNN_BIND(AddKernel, ArithmeticKernel, "MPSCNNAdd")
  MPSNN_BIND(SubtractKernel, ArithmeticKernel, "MPSCNNSubtract")
  MPSNN_BIND(MultiplyKernel, ArithmeticKernel, "MPSCNNMultiply")
  MPSNN_BIND(DivideKernel, ArithmeticKernel, "MPSCNNDivide")
  MPSNN_BIND(GradientKernel, CNNBinaryKernel, "MPSCNNGradientKernel")
  MPSNN_BIND(PoolingGradientKernel, GradientKernel, "MPSCNNPoolingGradient")
  MPSNN_BIND(PoolingMaxGradientKernel, PoolingGradientKernel, "MPSCNNPoolingMaxGradient")
  MPSNN_BIND(PoolingAverageGradientKernel, PoolingGradientKernel, "MPSCNNPoolingAverageGradient")
  MPSNN_BIND(PoolingL2NormGradientKernel, PoolingGradientKernel, "MPSCNNPoolingL2NormGradient")
  MPSNN_BIND(DilatedPoolingMaxGradientKernel, PoolingGradientKernel, "MPSCNNDilatedPoolingMaxGradient")
  MPSNN_BIND(NeuronGradientKernel, GradientKernel, "MPSCNNNeuronGradient")
#undef MPSNN_BIND

  auto scale = py::class_<ImageScaleKernel, KernelObject, std::shared_ptr<ImageScaleKernel>>(
      m, "MPSImageScale",
      "Base of the stand-alone resampling kernels (nodes.md §10): encode(command_buffer, source_image, "
      "destination_image) resamples the source to the destination's width and height with scale_transform "
      "(None: the whole source fills the destination). Runs on the command buffer like a graph.");
  scale.def_property_readonly("device", &ImageScaleKernel::device)
      .def_property(
          "scale_transform", [](const ImageScaleKernel& k) { return k.scale_transform; },
          [](ImageScaleKernel& k, std::optional<ScaleTransform> t) { k.scale_transform = t; },
          "MPSScaleTransform or None (dest = source * scale + translate, pixel-edge coordinates).")
      .def(
          "encode",
          [](ImageScaleKernel& k, const CommandBufferPtr& cb, const ImagePtr& src, const ImagePtr& dst) {
            ReleaseGil nogil;
            k.encode(cb, src, dst);
          },
          "command_buffer"_a, "source_image"_a, "destination_image"_a)
      .def(
          "encode",
          [](ImageScaleKernel& k, const CommandBufferPtr& cb, const ImagePtr& src, const ImagePtr& dst) {
            ReleaseGil nogil;
            k.encode(cb, src, dst);
          },
          "command_buffer"_a, "source_texture"_a, "destination_texture"_a,
          "Apple's texture form; textures are MPSImages here.");
  scale_kernel_class<BilinearScaleKernel>(m, "MPSImageBilinearScale", "Bilinear resampling (nodes.md §10.3).");
  scale_kernel_class<LanczosScaleKernel>(m, "MPSImageLanczosScale", "Lanczos-3 resampling (nodes.md §10.4).");
}

}  // namespace mpsnn::bindings
