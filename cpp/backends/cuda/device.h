#pragma once
// CUDA devices: device memory from cudaMalloc, one non-blocking cudaStream_t per Stream (each
// command queue and each pooled execution context of graph.run has its own), and a cuDNN handle
// per stream, created when a kernel first asks for it.
//
// Completion: `when_done` records an event and a completion thread of the stream waits for it
// and then runs the callback. The callback may release memory and run Python handlers, which a
// CUDA host function (cudaLaunchHostFunc) must not do.
//
// Memory: blocks freed by their last owner go back to a per-device cache of free blocks, keyed by
// size, and later allocations of that size take them (no cudaMalloc, no device-wide
// synchronization of cudaFree in steady state, and a run's result often gets the address the
// previous run's had, which lets a plan's recording replay). A block is freed only after the
// device work that uses it has completed (its owners hold it until then). When cudaMalloc fails,
// the cache is emptied and the allocation tried again. MPSNN_CUDA_CACHE=0 turns the cache off.
//
// Recording (Stream::begin_recording): CUDA stream capture of the calling thread's work
// (cudaStreamCaptureModeThreadLocal), instantiated as a CUDA graph that replays with
// cudaGraphLaunch. MPSNN_CUDA_GRAPHS=0, when a plan is compiled, compiles it without replay.
#include <cudnn.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/device.h"

namespace mpsnn::cuda {

class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int index);
  ~CudaAllocator() override;
  std::shared_ptr<Storage> allocate(size_t bytes, bool zeroed) override;

 private:
  struct Cache;
  int index_;
  std::shared_ptr<Cache> cache_;  // shared with the blocks' deleters, which may outlive this
};

class CudaStream final : public Stream {
 public:
  explicit CudaStream(int index);
  ~CudaStream() override;
  void copy(const void* src, void* dst, size_t bytes) override;
  void when_done(std::function<void()> fn) override;
  void synchronize() override;
  void* native_handle() const override { return stream_; }
  bool begin_recording() override;
  std::unique_ptr<StreamRecording> end_recording() override;

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
  CudaDevice(int index, std::string name);
  MemoryKind memory_kind() const override { return MemoryKind::device; }
  Allocator& allocator() override { return allocator_; }
  std::unique_ptr<Stream> make_stream() override { return std::make_unique<CudaStream>(index()); }
  // As on MPS GPUs: float16 images, computed with float32 accumulation (register.cpp's
  // activation_format keeps float16 activations for float16 graphs).
  ChannelFormat default_graph_format() const override { return ChannelFormat::float16; }
  // Plans replay as CUDA graphs unless MPSNN_CUDA_GRAPHS=0 when they are compiled.
  bool supports_recording() const override;
  void copy_blocking(void* dst, const void* src, size_t bytes) override;
  // Pinned host memory (cudaMallocHost), from a cache of freed blocks of the same rounded size.
  std::shared_ptr<Storage> staging_buffer(size_t bytes) override;
  // DLPack: kDLCUDA memory of this device. Imports hand producers a stream of this device's own
  // and wait for it on the host before the memory is used; exports record an event on the queue's
  // stream that the consumer's stream waits for, and release the memory to the allocator only
  // once the consumer's stream has passed the point where it let go.
  std::pair<int, int64_t> dlpack_device() const override { return {2, index()}; }
  int64_t dlpack_import_stream() override;
  void dlpack_import_wait() override;
  void dlpack_order_before(Stream& producer, int64_t consumer_stream) override;
  void release_after(int64_t consumer_stream, std::shared_ptr<const void> keep) override;

  // A cuDNN handle for building plans when a graph is compiled (not for running them: each
  // stream has its own); hold build_mutex() while using it.
  std::mutex& build_mutex() { return build_mutex_; }
  cudnnHandle_t build_handle();
  ~CudaDevice() override;

 private:
  CudaAllocator allocator_;
  std::mutex build_mutex_;
  cudnnHandle_t build_handle_ = nullptr;
  struct Staging;
  std::shared_ptr<Staging> staging_;  // shared with the blocks' deleters
  std::mutex dlpack_mutex_;
  cudaStream_t import_stream_ = nullptr;
  // Exported memory the consumer let go of, each released once its event (recorded on the
  // consumer's stream at that moment) has completed; checked whenever another is added.
  std::vector<std::pair<cudaEvent_t, std::shared_ptr<const void>>> deferred_;
  void collect_deferred(bool wait);
};

// The CUDA stream a kernel was given, with its device made current on the calling thread.
CudaStream& stream_of(Stream* s);

int device_count();
// Why device_count() is 0 (no driver, no GPU), or empty.
std::string unavailable_reason();
DevicePtr make_device(int index);

}  // namespace mpsnn::cuda
