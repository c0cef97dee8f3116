#pragma once
// Metal devices (plain C++; everything Objective-C lives in the .mm files of this directory).
//
//  * MetalDevice: one id<MTLDevice> of MTLCopyAllDevices(). The system default device
//    (MTLCreateSystemDefaultDevice) is index 0, so it is what mpsnn's MTLCreateSystemDefaultDevice()
//    returns on a Mac (registry.cpp lists Metal first).
//  * Memory: every block is an MTLBuffer in MTLStorageModeShared, so the CPU and the GPU address the
//    same bytes (MemoryKind::unified): NumPy and DLPack views of images and states are zero-copy,
//    and the graph kernel hands the same buffers to MPS (graph.mm).
//  * MetalStream: one id<MTLCommandQueue>. Work is encoded into the stream's open MTLCommandBuffer
//    (command_buffer()); `when_done` commits it with a completed handler, so an mpsnn command
//    buffer maps onto one (or, with commit_and_continue, several) MTLCommandBuffers on the queue's
//    timeline.
#include <functional>
#include <memory>
#include <string>

#include "core/device.h"

namespace mpsnn::metal {

class MetalAllocator final : public Allocator {
 public:
  explicit MetalAllocator(void* device);  // id<MTLDevice>, unretained (the device owns this)
  std::shared_ptr<Storage> allocate(size_t bytes, bool zeroed) override;

 private:
  void* device_;
};

class MetalStream final : public Stream {
 public:
  explicit MetalStream(void* device);
  ~MetalStream() override;
  void copy(const void* src, void* dst, size_t bytes) override;
  void when_done(std::function<void()> fn) override;
  void synchronize() override;
  // id<MTLCommandQueue>.
  void* native_handle() const override;
  // The open id<MTLCommandBuffer> work is encoded into (made on first use after a commit).
  void* command_buffer();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class MetalDevice final : public Device {
 public:
  MetalDevice(int index, void* device, std::string name);
  ~MetalDevice() override;
  // Apple silicon and Intel Macs alike: shared storage is visible to both (unified).
  MemoryKind memory_kind() const override { return MemoryKind::unified; }
  Allocator& allocator() override { return allocator_; }
  std::unique_ptr<Stream> make_stream() override { return std::make_unique<MetalStream>(device_); }
  // MPS: graphs on GPUs default to float16 images.
  ChannelFormat default_graph_format() const override { return ChannelFormat::float16; }
  void copy_blocking(void* dst, const void* src, size_t bytes) override;
  // id<MTLDevice> (retained by this object).
  void* native() const { return device_; }

 private:
  void* device_;
  MetalAllocator allocator_;
};

// The MTLBuffer holding `p` (a block of a Metal allocator, or inside one) and `p`'s offset in it;
// null for memory no Metal allocator made (a wrapped NumPy array).
void* buffer_containing(const void* p, size_t* offset);

int device_count();
std::string unavailable_reason();
DevicePtr make_device(int index);

}  // namespace mpsnn::metal
