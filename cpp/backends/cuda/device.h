#pragma once
// CUDA devices: device memory from cudaMalloc, one non-blocking cudaStream_t per Stream (each
// command queue and each pooled execution context of graph.run has its own), and a cuDNN handle
// per stream, created when a kernel first asks for it.
//
// Completion: `when_done` records an event and a completion thread of the stream waits for it
// and then runs the callback. The callback may release memory and run Python handlers, which a
// CUDA host function (cudaLaunchHostFunc) must not do.
#include <cudnn.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/device.h"

namespace mpsnn::cuda {

class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int index) : index_(index) {}
  std::shared_ptr<Storage> allocate(size_t bytes, bool zeroed) override;

 private:
  int index_;
};

class CudaStream final : public Stream {
 public:
  explicit CudaStream(int index);
  ~CudaStream() override;
  void copy(const void* src, void* dst, size_t bytes) override;
  void when_done(std::function<void()> fn) override;
  void synchronize() override;
  void* native_handle() const override { return stream_; }

  cudaStream_t stream() const { return stream_; }
  int device_index() const { return index_; }
  // This stream's cuDNN handle (opens cuDNN on first use).
  cudnnHandle_t cudnn();

 private:
  void completion_loop();
  int index_;
  cudaStream_t stream_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<cudaEvent_t, std::function<void()>>> pending_;
  bool stopping_ = false;
  std::thread completions_;
};

class CudaDevice final : public Device {
 public:
  CudaDevice(int index, std::string name) : Device(std::move(name), "cuda", index), allocator_(index) {}
  MemoryKind memory_kind() const override { return MemoryKind::device; }
  Allocator& allocator() override { return allocator_; }
  std::unique_ptr<Stream> make_stream() override { return std::make_unique<CudaStream>(index()); }
  // Images are stored in float32 and computed in float32 (the float16 default of MPS GPUs comes
  // with float16 activations: not yet).
  ChannelFormat default_graph_format() const override { return ChannelFormat::float32; }
  void copy_blocking(void* dst, const void* src, size_t bytes) override;

  // A cuDNN handle for building plans when a graph is compiled (not for running them: each
  // stream has its own); hold build_mutex() while using it.
  std::mutex& build_mutex() { return build_mutex_; }
  cudnnHandle_t build_handle();
  ~CudaDevice() override;

 private:
  CudaAllocator allocator_;
  std::mutex build_mutex_;
  cudnnHandle_t build_handle_ = nullptr;
};

// The CUDA stream a kernel was given, with its device made current on the calling thread.
CudaStream& stream_of(Stream* s);

int device_count();
// Why device_count() is 0 (no driver, no GPU), or empty.
std::string unavailable_reason();
DevicePtr make_device(int index);

}  // namespace mpsnn::cuda
