#include "core/image.h"

#include <algorithm>
#include <cstring>

#include "core/command.h"
#include "core/errors.h"

namespace mpsnn {

namespace {
ImageShape shape_of(const ImageDescriptor& d) {
  return ImageShape{d.number_of_images, d.height, d.width, d.feature_channels};
}

void check_descriptor(const ImageDescriptor& d) {
  MPSNN_CHECK(d.width > 0 && d.height > 0 && d.feature_channels > 0 && d.number_of_images > 0,
              ShapeError, "[MPSImage] image descriptor has width ", d.width, ", height ", d.height,
              ", feature_channels ", d.feature_channels, ", number_of_images ", d.number_of_images,
              "; expected all > 0");
  MPSNN_CHECK(element_size(d.channel_format) != 0, DTypeError,
              "[MPSImage] channel format '", format_name(d.channel_format),
              "' cannot be allocated; expected unorm8, unorm16, float16 or float32");
  // Slices of four channels (graph.md §3.2): the byte count must not overflow.
  MPSNN_CHECK(checked_bytes({d.number_of_images, d.height, d.width, (d.feature_channels + 3) / 4 * 4},
                            int64_t(element_size(d.channel_format))) >= 0,
              ShapeError, "[MPSImage] image descriptor of width ", d.width, ", height ", d.height, ", feature_channels ",
              d.feature_channels, " and number_of_images ", d.number_of_images, " needs more than 2^52 bytes");
}
}  // namespace

// ---------------------------------------------------------------------------------------------
int pixel_format_channels(PixelFormat f) {
  switch (f) {
    case PixelFormat::r8_unorm: case PixelFormat::r16_unorm: case PixelFormat::r16_float: case PixelFormat::r32_float:
      return 1;
    case PixelFormat::rg8_unorm: case PixelFormat::rg16_unorm: case PixelFormat::rg16_float: case PixelFormat::rg32_float:
      return 2;
    case PixelFormat::rgba8_unorm: case PixelFormat::rgba16_unorm: case PixelFormat::rgba16_float:
    case PixelFormat::rgba32_float:
      return 4;
    default: return 0;
  }
}

ChannelFormat pixel_format_channel_format(PixelFormat f) {
  switch (f) {
    case PixelFormat::r8_unorm: case PixelFormat::rg8_unorm: case PixelFormat::rgba8_unorm: return ChannelFormat::unorm8;
    case PixelFormat::r16_unorm: case PixelFormat::rg16_unorm: case PixelFormat::rgba16_unorm: return ChannelFormat::unorm16;
    case PixelFormat::r16_float: case PixelFormat::rg16_float: case PixelFormat::rgba16_float: return ChannelFormat::float16;
    case PixelFormat::r32_float: case PixelFormat::rg32_float: case PixelFormat::rgba32_float: return ChannelFormat::float32;
    default: return ChannelFormat::none;
  }
}

PixelFormat pixel_format_for(ChannelFormat format, int64_t channels) {
  const PixelFormat table[4][3] = {
      {PixelFormat::r8_unorm, PixelFormat::rg8_unorm, PixelFormat::rgba8_unorm},
      {PixelFormat::r16_unorm, PixelFormat::rg16_unorm, PixelFormat::rgba16_unorm},
      {PixelFormat::r16_float, PixelFormat::rg16_float, PixelFormat::rgba16_float},
      {PixelFormat::r32_float, PixelFormat::rg32_float, PixelFormat::rgba32_float}};
  int row = -1;
  switch (format) {
    case ChannelFormat::unorm8: row = 0; break;
    case ChannelFormat::unorm16: row = 1; break;
    case ChannelFormat::float16: row = 2; break;
    case ChannelFormat::float32: row = 3; break;
    default: return PixelFormat::invalid;
  }
  const int col = channels == 1 ? 0 : channels == 2 ? 1 : channels == 4 ? 2 : -1;
  return col < 0 ? PixelFormat::invalid : table[row][col];
}

const char* pixel_format_name(PixelFormat f) {
  switch (f) {
    case PixelFormat::r8_unorm: return "r8_unorm";
    case PixelFormat::r16_unorm: return "r16_unorm";
    case PixelFormat::r16_float: return "r16_float";
    case PixelFormat::rg8_unorm: return "rg8_unorm";
    case PixelFormat::r32_float: return "r32_float";
    case PixelFormat::rg16_unorm: return "rg16_unorm";
    case PixelFormat::rg16_float: return "rg16_float";
    case PixelFormat::rgba8_unorm: return "rgba8_unorm";
    case PixelFormat::rg32_float: return "rg32_float";
    case PixelFormat::rgba16_unorm: return "rgba16_unorm";
    case PixelFormat::rgba16_float: return "rgba16_float";
    case PixelFormat::rgba32_float: return "rgba32_float";
    default: return "invalid";
  }
}

namespace {
void check_texture_descriptor(const TextureDescriptor& d) {
  MPSNN_CHECK(pixel_format_channels(d.pixel_format) > 0, DTypeError, "[MTLTexture] pixel format ",
              pixel_format_name(d.pixel_format), " (", int(d.pixel_format),
              ") is not one an MPSImage can alias; expected r/rg/rgba of 8unorm, 16unorm, 16float or 32float");
  MPSNN_CHECK(d.texture_type == TextureType::type2d || d.texture_type == TextureType::type2d_array, UnsupportedError,
              "[MTLTexture] texture type ", int(d.texture_type), "; expected type2d (2) or type2d_array (3)");
  MPSNN_CHECK(d.width > 0 && d.height > 0 && d.array_length > 0 && d.depth == 1, ShapeError,
              "[MTLTexture] descriptor has width ", d.width, ", height ", d.height, ", depth ", d.depth,
              ", array_length ", d.array_length, "; expected all > 0 and depth 1");
  MPSNN_CHECK(d.texture_type == TextureType::type2d_array || d.array_length == 1, ShapeError,
              "[MTLTexture] a type2d texture has array_length 1, got ", d.array_length, "; use type2d_array");
  MPSNN_CHECK(checked_bytes({d.array_length, d.height, d.width, pixel_format_channels(d.pixel_format)},
                            int64_t(element_size(pixel_format_channel_format(d.pixel_format)))) >= 0,
              ShapeError, "[MTLTexture] descriptor of width ", d.width, ", height ", d.height, " and array_length ",
              d.array_length, " needs more than 2^52 bytes");
  MPSNN_CHECK(d.mipmap_level_count == 1 && d.sample_count == 1, UnsupportedError,
              "[MTLTexture] mipmap_level_count ", d.mipmap_level_count, " and sample_count ", d.sample_count,
              "; this backend supports 1 and 1");
}
}  // namespace

Texture::Texture(DevicePtr device, const TextureDescriptor& desc, std::shared_ptr<Storage> storage)
    : device_(std::move(device)), desc_(desc), storage_(std::move(storage)) {}

Texture::Texture(DevicePtr device, const TextureDescriptor& desc) : device_(std::move(device)), desc_(desc) {
  check_texture_descriptor(desc_);
  storage_ = device_->allocator().allocate(bytes(), true);
}

size_t Texture::bytes() const {
  return size_t(desc_.array_length * desc_.height * desc_.width * channels()) * element_size(channel_format());
}

std::shared_ptr<Texture> Texture::wrap(DevicePtr device, const TextureDescriptor& desc, void* data,
                                       std::shared_ptr<void> owner) {
  check_texture_descriptor(desc);
  auto t = std::shared_ptr<Texture>(new Texture(std::move(device), desc, nullptr));
  t->storage_ = Storage::borrow(data, t->bytes(), std::move(owner), t->device_->memory_kind());
  return t;
}

std::shared_ptr<Image> Image::from_texture(const TexturePtr& texture, int64_t feature_channels) {
  MPSNN_CHECK(texture != nullptr, GraphError, "[MPSImage] texture is None");
  const TextureDescriptor& td = texture->descriptor();
  const int64_t k = texture->channels();
  MPSNN_CHECK(feature_channels > 0, ShapeError, "[MPSImage] feature_channels is ", feature_channels, "; expected > 0");
  MPSNN_CHECK(feature_channels <= k, UnsupportedError, "[MPSImage] feature_channels ", feature_channels,
              " exceed the ", k, " channel(s) of the texture's pixel format ", pixel_format_name(td.pixel_format),
              "; more than 4 channels need several texture slices per image, which this backend's images cannot "
              "alias. Make an MPSImage(device, image_descriptor) and fill it with write_bytes instead");
  ImageDescriptor d;
  d.channel_format = texture->channel_format();
  d.width = td.width;
  d.height = td.height;
  d.feature_channels = feature_channels;
  d.number_of_images = td.array_length;
  d.usage = td.usage;
  auto img = std::make_shared<Image>(texture->device(), d);
  img->pixel_stride_ = k;
  img->storage_ = texture->storage();
  img->texture_ = texture;
  img->label = texture->label;
  return img;
}

void Image::set_producer(const std::shared_ptr<CommandBuffer>& cb) {
  if (parent_) return root()->set_producer(cb);
  auto p = std::make_shared<Producer>();
  p->command_buffer = cb;
  p->status = cb->completion_status();
  p->task = cb->tasks_encoded();
  p->label = cb->label;
  std::lock_guard<std::mutex> lock(alloc_mutex_);
  producer_ = std::move(p);
}

void Image::wait_for_producer(const char* what) {
  if (parent_) return root()->wait_for_producer(what);
  std::shared_ptr<Producer> p;
  {
    std::lock_guard<std::mutex> lock(alloc_mutex_);
    p = producer_;
  }
  if (!p) return;
  const std::string name = p->label.empty() ? std::string("the command buffer") : "command buffer '" + p->label + "'";
  auto done = [&] {
    std::lock_guard<std::mutex> lock(alloc_mutex_);
    if (producer_ == p) producer_.reset();
  };
  int final_status = p->status->load();
  if (final_status == 0) {
    auto cb = p->command_buffer.lock();
    MPSNN_CHECK(cb != nullptr, GraphError, "[MPSImage.", what, "] the image is the result of an encode into ", name,
                ", which was released without being committed; its memory holds no result. Keep the command "
                "buffer, commit() it and wait_until_completed() before reading");
    if (cb->tasks_run() >= p->task && !cb->committed() && !cb->error()) return done();  // commit_and_continue
    MPSNN_CHECK(cb->committed(), GraphError, "[MPSImage.", what, "] the image is the result of an encode into ",
                name, ", whose status is not_enqueued (never committed): its memory holds no result yet, and "
                "waiting would never end. Call command_buffer.commit() (and wait_until_completed()) before "
                "reading the image");
    cb->wait_until_finished();
    final_status = p->status->load();
  }
  MPSNN_CHECK(final_status != int(CommandBufferStatus::error), GraphError, "[MPSImage.", what,
              "] the work of ", name,
              " that produces this image failed, so the image holds no result; wait_until_completed() raises the "
              "error");
  done();
}

void Image::order_after_producer(const std::function<void(Stream&)>& order, const char* what) {
  if (parent_) return root()->order_after_producer(order, what);
  std::shared_ptr<Producer> p;
  {
    std::lock_guard<std::mutex> lock(alloc_mutex_);
    p = producer_;
  }
  if (!p) return;
  if (p->status->load() == 0) {
    auto cb = p->command_buffer.lock();
    // Enqueued on the queue's stream (the buffer holds the queue, and so the stream, while we hold it).
    if (cb && cb->committed() && !cb->error() && cb->tasks_run() >= p->task && p->status->load() == 0) {
      order(cb->queue()->stream());
      return;
    }
  }
  wait_for_producer(what);
}

Image::Image(DevicePtr device, const ImageDescriptor& desc)
    : device_(std::move(device)),
      format_(desc.channel_format),
      shape_(shape_of(desc)),
      pixel_stride_(desc.feature_channels),
      usage_(desc.usage) {
  check_descriptor(desc);
}

Image::Image(std::shared_ptr<Image> parent, ChannelFormat format, const ImageShape& shape,
             int64_t pixel_stride, int64_t element_offset)
    : device_(parent->device_),
      format_(format),
      shape_(shape),
      pixel_stride_(pixel_stride),
      usage_(parent->usage_),
      parent_(std::move(parent)),
      element_offset_(element_offset) {}

std::shared_ptr<Image> Image::wrap(DevicePtr device, ChannelFormat format, const ImageShape& shape,
                                   void* data, std::shared_ptr<void> owner) {
  ImageDescriptor d;
  d.channel_format = format;
  d.number_of_images = shape.n;
  d.height = shape.h;
  d.width = shape.w;
  d.feature_channels = shape.c;
  auto img = std::make_shared<Image>(std::move(device), d);
  img->storage_ = Storage::borrow(data, size_t(shape.numel()) * element_size(format), std::move(owner),
                                 img->device_->memory_kind());
  return img;
}

std::shared_ptr<Image> Image::root() {
  Image* p = this;
  while (p->parent_) p = p->parent_.get();
  return p->shared_from_this();
}

void Image::check_cpu_access(const char*) const {}

void Image::check_host_accessible(const char* what) const {
  MPSNN_CHECK(device_->host_accessible(), UnsupportedError, "[MPSImage.", what, "] the image lives in ",
              memory_kind_name(device_->memory_kind()), " memory of device '", device_->name(),
              "', which the CPU cannot address");
}
void Image::check_usable(const char*) const {}

void* Image::data() {
  check_usable("access");
  return static_cast<char*>(storage()->data()) + element_offset_ * int64_t(element_bytes());
}

void* Image::host_data(const char* what) {
  check_cpu_access(what);
  check_host_accessible(what);
  wait_for_producer(what);
  return data();
}

std::shared_ptr<Storage> Image::storage() {
  if (parent_) return root()->storage();
  std::lock_guard<std::mutex> lock(alloc_mutex_);
  if (!storage_) storage_ = device_->allocator().allocate(size_t(shape_.numel()) * element_bytes(), true);
  return storage_;
}

void Image::allocate_for_overwrite() {
  if (parent_) return;
  std::lock_guard<std::mutex> lock(alloc_mutex_);
  if (!storage_) storage_ = device_->allocator().allocate(size_t(shape_.numel()) * element_bytes(), false);
}

bool Image::allocated() const {
  if (parent_) return parent_->allocated();
  std::lock_guard<std::mutex> lock(alloc_mutex_);
  return storage_ != nullptr;
}

size_t Image::resource_size() const {
  if (parent_ || texture_) return 0;  // the memory belongs to the parent or the texture
  std::lock_guard<std::mutex> lock(alloc_mutex_);
  if (storage_ && !storage_->owned()) return 0;
  return size_t(shape_.numel()) * element_size(format_);
}

TensorRef Image::ref() { return TensorRef{data(), storage_dtype(format_), shape_, pixel_stride_}; }

std::shared_ptr<Image> Image::make_view(const ImageShape& shape, int64_t element_offset) {
  return std::shared_ptr<Image>(new Image(shared_from_this(), format_, shape, pixel_stride_, element_offset));
}

std::shared_ptr<Image> Image::sub_image(int64_t channel_offset, int64_t channel_count) {
  MPSNN_CHECK(channel_offset >= 0 && channel_offset % 4 == 0 && channel_offset < shape_.c, ShapeError,
              "[MPSImage.sub_image] feature channel range starts at ", channel_offset,
              "; expected a multiple of 4 below ", shape_.c);
  MPSNN_CHECK(channel_count > 0, ShapeError, "[MPSImage.sub_image] feature channel range has length ",
              channel_count, "; expected > 0");
  const int64_t count = std::min(channel_count, shape_.c - channel_offset);
  ImageShape s = shape_;
  s.c = count;
  auto v = make_view(s, element_offset_ + channel_offset);
  v->element_offset_ = element_offset_ + channel_offset;
  return v;
}

std::vector<std::shared_ptr<Image>> Image::batch_representation(int64_t start, int64_t length) {
  if (length < 0) length = shape_.n - start;
  MPSNN_CHECK(start >= 0 && length > 0 && start + length <= shape_.n, ShapeError,
              "[MPSImage.batch_representation] range [", start, ", ", start + length,
              ") is outside the image's ", shape_.n, " images");
  std::vector<std::shared_ptr<Image>> out;
  ImageShape s = shape_;
  s.n = 1;
  const int64_t per_image = shape_.h * shape_.w * pixel_stride_;
  for (int64_t i = start; i < start + length; ++i) out.push_back(make_view(s, element_offset_ + i * per_image));
  return out;
}

size_t Image::dense_bytes(const ImageRegion& r) const {
  const int64_t w = r.width < 0 ? shape_.w - r.x : r.width;
  const int64_t h = r.height < 0 ? shape_.h - r.y : r.height;
  const int64_t c = r.channel_count < 0 ? shape_.c - r.channel_offset : r.channel_count;
  return size_t(std::max<int64_t>(0, w * h * c * r.depth)) * element_bytes();
}

void Image::copy_region(void* host, size_t host_size, DataLayout layout, const HostStrides& strides,
                        const ImageRegion& region, int64_t image_index, bool to_host) {
  const char* op = to_host ? "read_bytes" : "write_bytes";
  check_cpu_access(op);
  wait_for_producer(op);
  const int64_t x0 = region.x, y0 = region.y;
  const int64_t w = region.width < 0 ? shape_.w - x0 : region.width;
  const int64_t h = region.height < 0 ? shape_.h - y0 : region.height;
  const int64_t first_image = image_index + region.z;  // graph.md §3.3 project decision
  const int64_t c0 = region.channel_offset;
  const int64_t nc = region.channel_count < 0 ? shape_.c - c0 : region.channel_count;
  MPSNN_CHECK(x0 >= 0 && y0 >= 0 && w > 0 && h > 0 && x0 + w <= shape_.w && y0 + h <= shape_.h, ShapeError,
              "[MPSImage.", op, "] region x ", x0, "+", w, ", y ", y0, "+", h, " lies outside the ",
              shape_.w, "x", shape_.h, " image");
  MPSNN_CHECK(first_image >= 0 && region.depth >= 1 && first_image + region.depth <= shape_.n, ShapeError,
              "[MPSImage.", op, "] images [", first_image, ", ", first_image + region.depth,
              ") are outside the image's ", shape_.n, " images");
  MPSNN_CHECK(c0 >= 0 && c0 % 4 == 0 && nc > 0 && c0 + nc <= shape_.c && (c0 == 0 || nc % 4 == 0), ShapeError,
              "[MPSImage.", op, "] feature channels [", c0, ", ", c0 + nc, ") are invalid for ", shape_.c,
              " channels; expected an offset that is a multiple of 4 and a count > 0 that is a multiple of 4 "
              "unless the offset is 0");
  const int64_t e = int64_t(element_bytes());
  const bool hwc = layout == DataLayout::height_width_channels;
  const int64_t col = strides.bytes_per_column ? strides.bytes_per_column : (hwc ? nc * e : e);
  const int64_t row = strides.bytes_per_row ? strides.bytes_per_row : w * col;
  const int64_t chan = hwc ? e : h * row;  // CHW: one channel plane after the other
  const int64_t img = strides.bytes_per_image ? strides.bytes_per_image : (hwc ? h * row : nc * h * row);
  // Highest byte touched must lie inside the caller's buffer.
  const int64_t last = (region.depth - 1) * img + (h - 1) * row + (w - 1) * col + (nc - 1) * chan + e;
  // Half the bytes a float32 region needs: most likely float16 data (MPS graphs default to float16).
  const bool half_size = format_ == ChannelFormat::float32 && int64_t(host_size) * 2 == last;
  MPSNN_CHECK(last <= int64_t(host_size), ShapeError, "[MPSImage.", op, "] buffer has ", host_size,
              " bytes; the region and strides need ", last,
              half_size ? " (the size of float16 data: this image stores float32; for float16 images set "
                          "graph.format = MPSImageFeatureChannelFormat.float16 before running the graph)"
                        : "");
  // Device memory the CPU cannot address is staged through a pinned host buffer holding the
  // images the region touches (Device::staging_buffer), copied after the producing command buffer
  // finished (wait_for_producer above): read-modify-write for writes, so channels and pixels
  // outside the region are kept, except when the region covers those images whole.
  const bool staged = !device_->host_accessible();
  const int64_t per_image = shape_.h * shape_.w * pixel_stride_ * e;
  const int64_t first_byte = first_image * per_image;
  const int64_t end_byte = ((first_image + region.depth) * shape_.h * shape_.w - 1) * pixel_stride_ * e + shape_.c * e;
  const bool whole_images = x0 == 0 && y0 == 0 && w == shape_.w && h == shape_.h && c0 == 0 && nc == shape_.c &&
                            pixel_stride_ == shape_.c;
  std::shared_ptr<Storage> stage;
  char* base = static_cast<char*>(data()) + first_byte;  // pixel offsets below are relative to first_image
  char* device_base = base;
  if (staged) {
    stage = device_->staging_buffer(size_t(end_byte - first_byte));
    if (to_host || !whole_images) device_->copy_blocking(stage->data(), device_base, size_t(end_byte - first_byte));
    base = static_cast<char*>(stage->data());
  }
  char* hostb = static_cast<char*>(host);
  // Dense (N, H, W, C) both sides: one block per image.
  const bool contiguous = whole_images && hwc && col == nc * e && row == w * col;
  for (int64_t j = 0; j < region.depth; ++j) {
    if (contiguous) {
      char* pix = base + j * per_image;
      char* hp = hostb + j * img;
      if (to_host) std::memcpy(hp, pix, size_t(per_image));
      else std::memcpy(pix, hp, size_t(per_image));
      continue;
    }
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        char* pix = base + ((j * shape_.h + (y0 + y)) * shape_.w + (x0 + x)) * pixel_stride_ * e + c0 * e;
        char* hp = hostb + j * img + y * row + x * col;
        if (hwc && chan == e) {
          if (to_host) std::memcpy(hp, pix, size_t(nc * e));
          else std::memcpy(pix, hp, size_t(nc * e));
        } else {
          for (int64_t c = 0; c < nc; ++c) {
            if (to_host) std::memcpy(hp + c * chan, pix + c * e, size_t(e));
            else std::memcpy(pix + c * e, hp + c * chan, size_t(e));
          }
        }
      }
    }
  }
  if (staged && !to_host) device_->copy_blocking(device_base, stage->data(), size_t(end_byte - first_byte));
}

void Image::read_bytes(void* dst, size_t dst_size, DataLayout layout, const HostStrides& strides,
                       const ImageRegion& region, int64_t image_index) {
  copy_region(dst, dst_size, layout, strides, region, image_index, true);
}

void Image::write_bytes(const void* src, size_t src_size, DataLayout layout, const HostStrides& strides,
                        const ImageRegion& region, int64_t image_index) {
  copy_region(const_cast<void*>(src), src_size, layout, strides, region, image_index, false);
}

// ---------------------------------------------------------------------------------------------
TemporaryImage::TemporaryImage(const std::shared_ptr<CommandBuffer>& command_buffer,
                               const ImageDescriptor& desc)
    : Image(command_buffer->device(), desc), command_buffer_(command_buffer.get()) {}

TemporaryImage::TemporaryImage(std::shared_ptr<Image> parent, const CommandBuffer* cb,
                               const ImageShape& shape, int64_t pixel_stride, int64_t element_offset)
    : Image(std::move(parent), ChannelFormat::none, shape, pixel_stride, element_offset), command_buffer_(cb) {
  format_ = parent_->format();
}

const TemporaryImage* TemporaryImage::temp_root() const {
  const Image* p = this;
  while (p->parent()) p = p->parent().get();
  return static_cast<const TemporaryImage*>(p);
}

std::shared_ptr<Image> TemporaryImage::make_view(const ImageShape& shape, int64_t element_offset) {
  return std::shared_ptr<Image>(
      new TemporaryImage(shared_from_this(), command_buffer_, shape, pixel_stride_, element_offset));
}

int TemporaryImage::read_count() const {
  std::lock_guard<std::mutex> lock(temp_root()->alloc_mutex_);
  return temp_root()->read_count_;
}

void TemporaryImage::set_read_count(int count) {
  auto* r = const_cast<TemporaryImage*>(temp_root());
  std::lock_guard<std::mutex> lock(r->alloc_mutex_);
  MPSNN_CHECK(r->read_count_ > 0, TemporaryImageError,
              "[MPSTemporaryImage] read_count cannot be changed after it reached 0 (the memory was released)");
  MPSNN_CHECK(count >= 0, TemporaryImageError, "[MPSTemporaryImage] read_count ", count, " is negative");
  r->read_count_ = count;
  if (count == 0) r->storage_.reset();
}

void TemporaryImage::consume_read(int amount, const char* what) {
  auto* r = const_cast<TemporaryImage*>(temp_root());
  std::lock_guard<std::mutex> lock(r->alloc_mutex_);
  MPSNN_CHECK(r->read_count_ >= amount, TemporaryImageError, "[", what,
              "] temporary image has read_count ", r->read_count_, "; this encode reads it ", amount,
              " time(s). Raise read_count before encoding");
  r->read_count_ -= amount;
  // In-flight work holds its own reference to the storage; the image itself forgets it.
  if (r->read_count_ == 0) r->storage_.reset();
}

void TemporaryImage::check_command_buffer(const CommandBuffer* cb, const char* what) const {
  MPSNN_CHECK(cb == command_buffer_, TemporaryImageError, "[", what,
              "] temporary image belongs to another command buffer; temporary images are valid only on the "
              "command buffer they were created for");
}

void TemporaryImage::check_usable(const char* what) const {
  MPSNN_CHECK(read_count() > 0, TemporaryImageError, "[MPSTemporaryImage.", what,
              "] the image's read_count reached 0 and its memory was released");
}

void TemporaryImage::check_cpu_access(const char* what) const {
  MPSNN_THROW(TemporaryImageError, "[MPSTemporaryImage.", what,
              "] temporary images live in device-private memory and cannot be read or written by the CPU");
}

}  // namespace mpsnn
