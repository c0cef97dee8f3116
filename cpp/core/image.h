#pragma once
// MPSImage / MPSTemporaryImage: N images of H x W x C pixels stored NHWC. The MPS rule that
// channels come in slices of four is kept where it is observable (channel offsets of
// sub-images and read/write ranges are multiples of 4); storage itself holds exactly C channels.
#include <cstdint>
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

class Image : public std::enable_shared_from_this<Image> {
 public:
  Image(DevicePtr device, const ImageDescriptor& desc);
  virtual ~Image() = default;

  // Wraps existing dense NHWC memory without copying; `owner` keeps it alive.
  static std::shared_ptr<Image> wrap(DevicePtr device, ChannelFormat format, const ImageShape& shape,
                                     void* data, std::shared_ptr<void> owner);

  virtual bool is_temporary() const { return false; }

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
