#pragma once
// MPSImage / MPSTemporaryImage: N images of H x W x C pixels stored NHWC. The MPS rule that
// channels come in slices of four is kept where it is observable (channel offsets of
// sub-images and read/write ranges are multiples of 4); storage itself holds exactly C channels.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/format.h"
#include "core/storage.h"
#include "core/tensor.h"

namespace mpsnn {

class CommandBuffer;

struct ImageDescriptor {
  ChannelFormat channel_format = ChannelFormat::none;
  int64_t width = 1, height = 1, feature_channels = 1, number_of_images = 1;
  int usage = 3;  // MTLTextureUsage shaderRead | shaderWrite; informational on the CPU
  int storage_mode = 0, cpu_cache_mode = 0;
};

enum class DataLayout : int { height_width_channels = 0, channels_height_width = 1 };

// The pixels and images a read/write touches (MTLRegion plus MPSImageReadWriteParams).
struct ImageRegion {
  int64_t x = 0, y = 0, z = 0, width = -1, height = -1, depth = 1;  // -1: to the image edge
  int64_t channel_offset = 0, channel_count = -1;                   // -1: all channels
};

// Byte strides of the caller's buffer; 0 means dense.
struct HostStrides {
  int64_t bytes_per_column = 0, bytes_per_row = 0, bytes_per_image = 0;
};

// MTLPixelFormat raw values of the texture formats an MPSImage can alias: one, two or four
// channels of each image channel format.
enum class PixelFormat : int {
  invalid = 0,
  r8_unorm = 10,
  r16_unorm = 20,
  r16_float = 25,
  rg8_unorm = 30,
  r32_float = 55,
  rg16_unorm = 60,
  rg16_float = 65,
  rgba8_unorm = 70,
  rg32_float = 105,
  rgba16_unorm = 110,
  rgba16_float = 115,
  rgba32_float = 125,
};
// Channels per pixel (0 for invalid) and channel format of a pixel format.
int pixel_format_channels(PixelFormat f);
ChannelFormat pixel_format_channel_format(PixelFormat f);
// The pixel format with `channels` (1, 2 or 4) channels of `format`; invalid if none.
PixelFormat pixel_format_for(ChannelFormat format, int64_t channels);
const char* pixel_format_name(PixelFormat f);

// MTLTextureType raw values (the kinds an MPSImage can alias).
enum class TextureType : int { type2d = 2, type2d_array = 3 };

// MTLTextureUsage bits.
enum TextureUsage : int { usage_shader_read = 1, usage_shader_write = 2, usage_render_target = 4, usage_pixel_format_view = 16 };

struct TextureDescriptor {
  TextureType texture_type = TextureType::type2d;
  PixelFormat pixel_format = PixelFormat::rgba8_unorm;
  int64_t width = 1, height = 1, depth = 1, array_length = 1, mipmap_level_count = 1, sample_count = 1;
  int usage = usage_shader_read;  // MTLTextureDescriptor's default
  int storage_mode = 0, cpu_cache_mode = 0;
};

// MTLTexture: a 2D texture or 2D texture array, stored densely as
// [array_length][height][width][channels of the pixel format] (the layout of an MPSImage of
// number_of_images = array_length, so an image can alias it).
class Texture {
 public:
  Texture(DevicePtr device, const TextureDescriptor& desc);  // zero-filled
  // Wraps existing memory of that layout without copying; `owner` keeps it alive.
  static std::shared_ptr<Texture> wrap(DevicePtr device, const TextureDescriptor& desc, void* data,
                                       std::shared_ptr<void> owner);
  const DevicePtr& device() const { return device_; }
  const TextureDescriptor& descriptor() const { return desc_; }
  int64_t channels() const { return pixel_format_channels(desc_.pixel_format); }
  ChannelFormat channel_format() const { return pixel_format_channel_format(desc_.pixel_format); }
  size_t bytes() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  std::string label;

 private:
  Texture(DevicePtr device, const TextureDescriptor& desc, std::shared_ptr<Storage> storage);
  DevicePtr device_;
  TextureDescriptor desc_;
  std::shared_ptr<Storage> storage_;
};
using TexturePtr = std::shared_ptr<Texture>;

class Image : public std::enable_shared_from_this<Image> {
 public:
  Image(DevicePtr device, const ImageDescriptor& desc);
  virtual ~Image() = default;

  // Wraps existing dense NHWC memory without copying; `owner` keeps it alive.
  static std::shared_ptr<Image> wrap(DevicePtr device, ChannelFormat format, const ImageShape& shape,
                                     void* data, std::shared_ptr<void> owner);

  // MPSImage(texture:featureChannels:): aliases the texture's memory; feature_channels may be
  // at most the pixel format's channel count (more would need several texture slices per image,
  // which this layout cannot alias).
  static std::shared_ptr<Image> from_texture(const TexturePtr& texture, int64_t feature_channels);
  // The texture this image aliases, or null.
  const TexturePtr& texture() const { return texture_; }

  virtual bool is_temporary() const { return false; }

  // The command buffer whose encoded work writes this image (set by MPSNNGraph.encode).
  void set_producer(const std::shared_ptr<CommandBuffer>& command_buffer);
  // Called before every CPU read or write of the memory: returns at once when no encoded work
  // writes the image any more, waits while its producing command buffer is committed but not
  // completed, and throws GraphError when that buffer was never committed (waiting would never
  // end) or its work failed. Call it without the GIL (handlers may need it).
  void wait_for_producer(const char* what);
  // For a consumer on the device (DLPack export): when encoded work writing the image is pending
  // and already enqueued on its command queue's stream, calls `order(stream)` (which makes the
  // consumer's stream wait for it) instead of waiting on the host; when its buffer is committed
  // but its work not yet enqueued, waits as wait_for_producer does; throws as that does. Nothing
  // pending: returns at once. Call it without the GIL.
  void order_after_producer(const std::function<void(Stream&)>& order, const char* what);

  const DevicePtr& device() const { return device_; }
  ChannelFormat format() const { return format_; }
  const ImageShape& shape() const { return shape_; }
  int64_t width() const { return shape_.w; }
  int64_t height() const { return shape_.h; }
  int64_t feature_channels() const { return shape_.c; }
  int64_t number_of_images() const { return shape_.n; }
  int64_t pixel_stride() const { return pixel_stride_; }
  size_t element_bytes() const { return element_size(format_); }
  bool dense() const { return pixel_stride_ == shape_.c; }
  const std::shared_ptr<Image>& parent() const { return parent_; }
  int usage() const { return usage_; }

  // Backing memory; allocates on first use (MPS allocates lazily too).
  void* data();
  // data() for the CPU (NumPy views); temporary images refuse.
  void* host_data(const char* what);
  bool allocated() const;
  // Bytes of the backing store this image owns: 0 for views and wrapped memory.
  size_t resource_size() const;
  // Keeps the memory alive independently of this object (for work in flight, NumPy views).
  std::shared_ptr<Storage> storage();
  // The image's memory as a plan value (allocates if needed).
  TensorRef ref();
  // Allocates without the zero fill when nothing is allocated yet (not a view): for an image the
  // caller overwrites completely, like a graph's result (a single-threaded memset of a large
  // result cost memory-bound graphs up to a third of their time).
  void allocate_for_overwrite();

  // Alias of channels [offset, offset + count); offset a multiple of 4, count clipped.
  std::shared_ptr<Image> sub_image(int64_t channel_offset, int64_t channel_count);
  // One single-image alias per image in [start, start + length).
  std::vector<std::shared_ptr<Image>> batch_representation(int64_t start, int64_t length);

  void read_bytes(void* dst, size_t dst_size, DataLayout layout, const HostStrides& strides,
                  const ImageRegion& region, int64_t image_index);
  void write_bytes(const void* src, size_t src_size, DataLayout layout, const HostStrides& strides,
                   const ImageRegion& region, int64_t image_index);
  // Bytes a dense buffer for this region needs.
  size_t dense_bytes(const ImageRegion& region) const;

  std::string label;

 protected:
  // Throws when CPU access is not allowed (temporary images); base: always allowed.
  virtual void check_cpu_access(const char* what) const;
  virtual void check_usable(const char* what) const;
  void check_host_accessible(const char* what) const;
  Image(std::shared_ptr<Image> parent, ChannelFormat format, const ImageShape& shape,
        int64_t pixel_stride, int64_t element_offset);
  std::shared_ptr<Image> root();
  virtual std::shared_ptr<Image> make_view(const ImageShape& shape, int64_t element_offset);
  void copy_region(void* host, size_t host_size, DataLayout layout, const HostStrides& strides,
                   const ImageRegion& region, int64_t image_index, bool to_host);

  DevicePtr device_;
  ChannelFormat format_;
  ImageShape shape_;
  int64_t pixel_stride_;
  int usage_ = 3;
  std::shared_ptr<Image> parent_;  // views alias their parent's storage
  int64_t element_offset_ = 0;     // into the root's storage, in elements
  mutable std::mutex alloc_mutex_;
  std::shared_ptr<Storage> storage_;  // only on roots
  TexturePtr texture_;                // roots aliasing a texture
  // Pending work writing this image (roots; under alloc_mutex_).
  struct Producer {
    std::weak_ptr<CommandBuffer> command_buffer;
    std::shared_ptr<const std::atomic<int>> status;  // CommandBuffer::completion_status
    size_t task = 0;                                 // tasks encoded up to and including the write
    std::string label;
  };
  std::shared_ptr<Producer> producer_;
};

using ImagePtr = std::shared_ptr<Image>;

// MPSTemporaryImage: lives on one command buffer, no CPU access, usable while read_count > 0.
class TemporaryImage : public Image {
 public:
  TemporaryImage(const std::shared_ptr<CommandBuffer>& command_buffer, const ImageDescriptor& desc);
  bool is_temporary() const override { return true; }

  int read_count() const;
  void set_read_count(int count);
  // Called by each kernel encode that reads this image; frees the memory at zero.
  void consume_read(int amount, const char* what);
  const CommandBuffer* command_buffer() const { return command_buffer_; }
  void check_command_buffer(const CommandBuffer* cb, const char* what) const;

 protected:
  void check_cpu_access(const char* what) const override;
  void check_usable(const char* what) const override;
  std::shared_ptr<Image> make_view(const ImageShape& shape, int64_t element_offset) override;

 private:
  TemporaryImage(std::shared_ptr<Image> parent, const CommandBuffer* cb, const ImageShape& shape,
                 int64_t pixel_stride, int64_t element_offset);
  const TemporaryImage* temp_root() const;
  const CommandBuffer* command_buffer_;  // identity only; the buffer outlives its images' use
  int read_count_ = 1;
};

}  // namespace mpsnn
