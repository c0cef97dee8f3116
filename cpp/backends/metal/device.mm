// Metal devices, shared-storage memory and command-queue streams (device.h).
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>
#import <MetalPerformanceShaders/MetalPerformanceShaders.h>

#include "backends/metal/device.h"

#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "core/errors.h"

namespace mpsnn::metal {

namespace {
// Every live block of every Metal allocator by base address, for buffer_containing().
struct Blocks {
  std::mutex mutex;
  std::map<uintptr_t, std::pair<size_t, void*>> by_base;  // base -> (bytes, MTLBuffer, unretained)
};
Blocks& blocks() {
  static Blocks* b = new Blocks;  // never destroyed: blocks may be released during exit
  return *b;
}

// MTLCopyAllDevices() with the system default first (mpsnn's MTLCreateSystemDefaultDevice() is
// the first device of the first backend). Only devices MPS supports are listed.
NSArray<id<MTLDevice>>* metal_devices() {
  static NSArray<id<MTLDevice>>* devices = nil;
  static std::once_flag once;
  std::call_once(once, [] {
    @autoreleasepool {
      NSMutableArray<id<MTLDevice>>* list = [NSMutableArray array];
      id<MTLDevice> system = MTLCreateSystemDefaultDevice();
      if (system != nil && MPSSupportsMTLDevice(system)) [list addObject:system];
      for (id<MTLDevice> d in MTLCopyAllDevices())
        if (d != system && MPSSupportsMTLDevice(d)) [list addObject:d];
      devices = [list copy];
    }
  });
  return devices;
}
}  // namespace

void* buffer_containing(const void* p, size_t* offset) {
  Blocks& b = blocks();
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(b.mutex);
  auto it = b.by_base.upper_bound(a);
  if (it == b.by_base.begin()) return nullptr;
  --it;
  if (a >= it->first + it->second.first && !(a == it->first && it->second.first == 0)) return nullptr;
  if (offset) *offset = size_t(a - it->first);
  return it->second.second;
}

MetalAllocator::MetalAllocator(void* device) : device_(device) {}

std::shared_ptr<Storage> MetalAllocator::allocate(size_t bytes, bool zeroed) {
  @autoreleasepool {
    id<MTLDevice> dev = (__bridge id<MTLDevice>)device_;
    // One byte at least: a zero-length MTLBuffer does not exist, and callers may ask for none.
    id<MTLBuffer> buffer = [dev newBufferWithLength:(bytes ? bytes : 1) options:MTLResourceStorageModeShared];
    if (buffer == nil) throw BackendError("[metal] newBufferWithLength failed for " + std::to_string(bytes) +
                                          " bytes; the device is out of memory");
    void* data = buffer.contents;
    if (zeroed) std::memset(data, 0, bytes);
    void* retained = (void*)CFBridgingRetain(buffer);
    {
      std::lock_guard<std::mutex> lock(blocks().mutex);
      blocks().by_base[reinterpret_cast<uintptr_t>(data)] = {bytes, retained};
    }
    return Storage::adopt(data, bytes, MemoryKind::unified, [retained](void* p) {
      {
        std::lock_guard<std::mutex> lock(blocks().mutex);
        blocks().by_base.erase(reinterpret_cast<uintptr_t>(p));
      }
      CFBridgingRelease(retained);
    });
  }
}

struct MetalStream::Impl {
  id<MTLCommandQueue> queue;
  std::mutex mutex;
  id<MTLCommandBuffer> open;  // encoding target, nil after a commit
  id<MTLCommandBuffer> last;  // the last committed buffer (synchronize waits for it)
  std::string error;          // the first failed buffer's error, reported by synchronize()

  id<MTLCommandBuffer> current() {
    if (open == nil) {
      open = [queue commandBuffer];
      if (open == nil) throw BackendError("[metal] MTLCommandQueue.commandBuffer returned nil");
    }
    return open;
  }
  void commit(std::function<void()> fn) {
    id<MTLCommandBuffer> cb = current();
    Impl* self = this;
    __block std::function<void()> done = std::move(fn);
    [cb addCompletedHandler:^(id<MTLCommandBuffer> finished) {
      if (finished.status == MTLCommandBufferStatusError) {
        std::lock_guard<std::mutex> lock(self->mutex);
        if (self->error.empty())
          self->error = std::string("[metal] command buffer failed: ") +
                        (finished.error ? finished.error.localizedDescription.UTF8String : "unknown error");
      }
      if (done) done();
    }];
    [cb commit];
    last = cb;
    open = nil;
  }
};

MetalStream::MetalStream(void* device) : impl_(std::make_unique<Impl>()) {
  id<MTLDevice> dev = (__bridge id<MTLDevice>)device;
  impl_->queue = [dev newCommandQueue];
  if (impl_->queue == nil) throw BackendError("[metal] newCommandQueue returned nil");
}

MetalStream::~MetalStream() {
  @autoreleasepool {
    try {
      synchronize();
    } catch (...) {
      // A destructor cannot report; the error was already given to the last synchronize's caller.
    }
  }
}

void* MetalStream::native_handle() const { return (__bridge void*)impl_->queue; }

void* MetalStream::command_buffer() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return (__bridge void*)impl_->current();
}

void MetalStream::when_done(std::function<void()> fn) {
  @autoreleasepool {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->commit(std::move(fn));
  }
}

void MetalStream::synchronize() {
  @autoreleasepool {
    id<MTLCommandBuffer> wait = nil;
    {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      if (impl_->open != nil) impl_->commit(nullptr);
      wait = impl_->last;
    }
    [wait waitUntilCompleted];
    std::string error;
    {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      error.swap(impl_->error);
    }
    if (!error.empty()) throw BackendError(error);
  }
}

// Shared storage: once the work before it has completed, a copy is a memcpy.
void MetalStream::copy(const void* src, void* dst, size_t bytes) {
  synchronize();
  std::memmove(dst, src, bytes);
}

MetalDevice::MetalDevice(int index, void* device, std::string name)
    : Device(std::move(name), "metal", index), device_(device), allocator_(device) {}

MetalDevice::~MetalDevice() { CFBridgingRelease(device_); }

void MetalDevice::copy_blocking(void* dst, const void* src, size_t bytes) { std::memmove(dst, src, bytes); }

int device_count() { return int(metal_devices().count); }

std::string unavailable_reason() {
  @autoreleasepool {
    if (MTLCopyAllDevices().count == 0) return "MTLCopyAllDevices() found no Metal device";
    return "no Metal device of this machine is supported by Metal Performance Shaders (MPSSupportsMTLDevice)";
  }
}

DevicePtr make_device(int index) {
  @autoreleasepool {
    NSArray<id<MTLDevice>>* all = metal_devices();
    MPSNN_CHECK(index >= 0 && NSUInteger(index) < all.count, UnsupportedError, "[MTLDevice] metal:", index,
                " does not exist; this machine has ", all.count, " Metal device(s)");
    id<MTLDevice> d = all[NSUInteger(index)];
    return std::make_shared<MetalDevice>(index, (void*)CFBridgingRetain(d), std::string(d.name.UTF8String));
  }
}

}  // namespace mpsnn::metal
