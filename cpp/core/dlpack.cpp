#include "core/dlpack.h"

#include <string>
#include <vector>

#include "core/errors.h"

namespace mpsnn::dlpack {

namespace {

ChannelFormat format_of(const DataType& t) {
  if (t.lanes != 1) return ChannelFormat::none;
  if (t.code == kFloat && t.bits == 32) return ChannelFormat::float32;
  if (t.code == kFloat && t.bits == 16) return ChannelFormat::float16;
  if (t.code == kUInt && t.bits == 8) return ChannelFormat::unorm8;
  if (t.code == kUInt && t.bits == 16) return ChannelFormat::unorm16;
  if (t.code == kBfloat && t.bits == 16) return ChannelFormat::bfloat16;
  return ChannelFormat::none;
}

DataType type_of(ChannelFormat f) {
  switch (f) {
    case ChannelFormat::float32: return {kFloat, 32, 1};
    case ChannelFormat::float16: return {kFloat, 16, 1};
    case ChannelFormat::unorm8: return {kUInt, 8, 1};
    case ChannelFormat::unorm16: return {kUInt, 16, 1};
    case ChannelFormat::bfloat16: return {kBfloat, 16, 1};
    default: MPSNN_THROW(DTypeError, "[DLPack] format '", format_name(f), "' has no DLPack type");
  }
}

std::string type_name(const DataType& t) {
  std::string s = t.code == kInt      ? "int"
                  : t.code == kUInt   ? "uint"
                  : t.code == kFloat  ? "float"
                  : t.code == kBfloat ? "bfloat"
                                      : "(type code " + std::to_string(int(t.code)) + ")";
  s += std::to_string(int(t.bits));
  if (t.lanes != 1) s += "x" + std::to_string(int(t.lanes));
  return s;
}

std::string device_name(int type, int64_t id) {
  switch (type) {
    case kCPU: return "the CPU (kDLCPU)";
    case kCUDA: return "cuda:" + std::to_string(id) + " (kDLCUDA)";
    case kCUDAHost: return "pinned host memory (kDLCUDAHost)";
    case kCUDAManaged: return "CUDA managed memory (kDLCUDAManaged)";
    default: return "DLPack device type " + std::to_string(type) + " (id " + std::to_string(id) + ")";
  }
}

// Deletes the producer's tensor however the import ends.
struct Owned {
  Owned(void* m, bool v) : managed(m), versioned(v) {}
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  void* managed;
  bool versioned;
  ~Owned() {
    if (!managed) return;
    if (versioned) {
      auto* m = static_cast<ManagedTensorVersioned*>(managed);
      if (m->deleter) m->deleter(m);
    } else {
      auto* m = static_cast<ManagedTensor*>(managed);
      if (m->deleter) m->deleter(m);
    }
  }
};

// What an exported tensor points at: the image (kept alive) and the shape and strides arrays.
struct Export {
  ImagePtr image;
  int64_t stream = -1;
  int64_t shape[4] = {};
  int64_t strides[4] = {};
};

void release_export(Export* ctx) {
  if (!ctx) return;
  DevicePtr device = ctx->image ? ctx->image->device() : nullptr;
  std::shared_ptr<const void> keep = std::move(ctx->image);
  const int64_t stream = ctx->stream;
  delete ctx;
  // A destructor path: a failure to defer the release only makes it immediate.
  try {
    if (device) device->release_after(stream, std::move(keep));
  } catch (...) {
  }
}

void delete_unversioned(ManagedTensor* m) {
  release_export(static_cast<Export*>(m->manager_ctx));
  delete m;
}
void delete_versioned(ManagedTensorVersioned* m) {
  release_export(static_cast<Export*>(m->manager_ctx));
  delete m;
}

}  // namespace

std::pair<int, int64_t> device_of(const Image& image) { return image.device()->dlpack_device(); }

int64_t import_stream(mpsnn::Device& device) { return device.dlpack_import_stream(); }

ImagePtr import_tensor(void* managed, bool versioned, const DevicePtr& device, const char* what) {
  auto owned = std::make_shared<Owned>(managed, versioned);
  MPSNN_CHECK(managed != nullptr, DTypeError, "[", what, "] the DLPack capsule holds no tensor");
  const Tensor* t = nullptr;
  if (versioned) {
    auto* m = static_cast<ManagedTensorVersioned*>(managed);
    MPSNN_CHECK(m->version.major == 1, UnsupportedError, "[", what, "] the tensor is DLPack version ",
                m->version.major, ".", m->version.minor, "; mpsnn reads version 1");
    t = &m->dl_tensor;
  } else {
    t = &static_cast<ManagedTensor*>(managed)->dl_tensor;
  }
  MPSNN_CHECK(device != nullptr, GraphError, "[", what, "] no device to import the tensor into");
  const auto ours = device->dlpack_device();
  MPSNN_CHECK(t->device.device_type == ours.first && t->device.device_id == ours.second, UnsupportedError, "[",
              what, "] the tensor is on ", device_name(t->device.device_type, t->device.device_id), "; ",
              device->id(), " needs memory on ", device_name(ours.first, ours.second),
              ": move the tensor there first (mpsnn never copies silently)");
  const ChannelFormat f = format_of(t->dtype);
  MPSNN_CHECK(f != ChannelFormat::none, DTypeError, "[", what, "] tensor has dtype ", type_name(t->dtype),
              "; expected float32, float16, bfloat16, uint8 (unorm8) or uint16 (unorm16)");
  MPSNN_CHECK(t->ndim == 4, ShapeError, "[", what, "] tensor has ", t->ndim, " dimensions; expected 4, (N, H, W, C)");
  const ImageShape s{t->shape[0], t->shape[1], t->shape[2], t->shape[3]};
  MPSNN_CHECK(s.n > 0 && s.h > 0 && s.w > 0 && s.c > 0, ShapeError, "[", what, "] tensor shape (", s.n, ", ", s.h,
              ", ", s.w, ", ", s.c, ") has an empty dimension");
  if (t->strides) {
    int64_t expected = 1;
    for (int d = 3; d >= 0; --d) {
      MPSNN_CHECK(t->shape[d] == 1 || t->strides[d] == expected, DTypeError, "[", what,
                  "] tensor is not C-contiguous in (N, H, W, C) order (strides ", t->strides[0], ", ", t->strides[1],
                  ", ", t->strides[2], ", ", t->strides[3],
                  " elements; mpsnn never copies silently); a channels_last PyTorch tensor t qualifies as "
                  "t.permute(0, 2, 3, 1)");
      expected *= t->shape[d];
    }
  }
  void* data = static_cast<char*>(t->data) + t->byte_offset;
  // The producer ordered its writes before our import stream (__dlpack__(stream=)); wait for it.
  device->dlpack_import_wait();
  return Image::wrap(device, f, s, data, std::move(owned));
}

void* export_image(const ImagePtr& image, bool versioned, int64_t stream, const char* what) {
  MPSNN_CHECK(image != nullptr, GraphError, "[", what, "] no image");
  MPSNN_CHECK(!image->is_temporary(), TemporaryImageError, "[", what,
              "] a temporary image cannot be exported: its memory is reused once its command buffer completes");
  const DevicePtr& device = image->device();
  if (stream != -1) image->order_after_producer([&](Stream& s) { device->dlpack_order_before(s, stream); }, what);
  auto ctx = std::make_unique<Export>();
  const ImageShape& sh = image->shape();
  const int64_t ps = image->pixel_stride();
  ctx->shape[0] = sh.n, ctx->shape[1] = sh.h, ctx->shape[2] = sh.w, ctx->shape[3] = sh.c;
  ctx->strides[0] = sh.h * sh.w * ps, ctx->strides[1] = sh.w * ps, ctx->strides[2] = ps, ctx->strides[3] = 1;
  ctx->stream = stream;
  Tensor t{};
  t.data = image->data();  // allocates an image never written (zeros), as numpy() does
  const auto dev = device->dlpack_device();
  t.device = {int32_t(dev.first), int32_t(dev.second)};
  t.ndim = 4;
  t.dtype = type_of(image->format());
  t.shape = ctx->shape;
  t.strides = ctx->strides;
  t.byte_offset = 0;
  ctx->image = image;
  if (versioned) {
    auto* m = new ManagedTensorVersioned{};
    m->version = {1, 0};
    m->flags = 0;
    m->dl_tensor = t;
    m->manager_ctx = ctx.release();
    m->deleter = delete_versioned;
    return m;
  }
  auto* m = new ManagedTensor{};
  m->dl_tensor = t;
  m->manager_ctx = ctx.release();
  m->deleter = delete_unversioned;
  return m;
}

}  // namespace mpsnn::dlpack
