#pragma once
// A compute device (MTLDevice in the Python API) with its allocator and streams. Core code sees
// only these interfaces; each backend implements them (backends/<name>/device.*) and
// backends/registry.cpp hands out one canonical object per (backend, index).
//
//  * Allocator: device memory as Storage blocks (host memory on the CPU, device memory on CUDA,
//    shared memory on Metal).
//  * Stream: an ordered queue of device work. Kernels enqueue on the stream they are given;
//    `when_done` runs a callback once everything enqueued so far has finished on the device, which
//    is when command buffers complete and per-run memory may be reused. A host stream runs work as
//    it is enqueued, so its `when_done` calls back at once.
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "core/format.h"
#include "core/storage.h"

namespace mpsnn {

class Stream;

// Work recorded from a stream once and replayed on later runs (a CUDA graph): the same kernels
// with the same arguments and memory addresses as when it was recorded.
class StreamRecording {
 public:
  virtual ~StreamRecording() = default;
  // Enqueues the recorded work on `stream` (a stream of the same device).
  virtual void replay(Stream& stream) = 0;
};

class Stream {
 public:
  virtual ~Stream() = default;
  // Recording (devices whose supports_recording() is true): between begin_recording() and
  // end_recording(), work the calling thread enqueues on this stream is recorded, not run.
  // begin_recording() returns false when this stream cannot record now; end_recording() returns
  // the recording (not yet run), or null when recording failed (run the work again plainly).
  virtual bool begin_recording() { return false; }
  virtual std::unique_ptr<StreamRecording> end_recording() { return nullptr; }
  // Stream-ordered copy between any two memories of this device and the host.
  virtual void copy(const void* src, void* dst, size_t bytes) = 0;
  // Calls `fn` after all work enqueued so far has completed (possibly on another thread).
  virtual void when_done(std::function<void()> fn) = 0;
  // Blocks until all work enqueued so far has completed.
  virtual void synchronize() = 0;
  // The backend's own stream object (cudaStream_t, id<MTLCommandQueue>), or null.
  virtual void* native_handle() const { return nullptr; }
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // `zeroed` = false is for memory the caller overwrites completely.
  virtual std::shared_ptr<Storage> allocate(size_t bytes, bool zeroed) = 0;
};

class Device {
 public:
  Device(std::string name, std::string backend, int index)
      : name_(std::move(name)), backend_(std::move(backend)), index_(index) {}
  virtual ~Device() = default;
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const std::string& name() const { return name_; }
  const std::string& backend() const { return backend_; }
  int index() const { return index_; }
  // "cpu:0", "cuda:1": the spelling MPSNN_DEVICE and MTLDevice(...) accept.
  std::string id() const { return backend_ + ":" + std::to_string(index_); }

  virtual MemoryKind memory_kind() const = 0;
  bool host_accessible() const { return memory_kind() != MemoryKind::device; }
  virtual Allocator& allocator() = 0;
  virtual std::unique_ptr<Stream> make_stream() = 0;
  // MPSNNGraph.format of a new graph on this device (MPS: float16 on GPUs).
  virtual ChannelFormat default_graph_format() const = 0;
  // Whether plans compiled now for this device record their steps once per execution context and
  // replay them (Stream::begin_recording); asked once per compiled plan.
  virtual bool supports_recording() const { return false; }
  // Copies between this device's memory and the host, in either direction, and returns when
  // done (reads and writes of images by the CPU: numpy(), read_bytes, from_numpy of a GPU image).
  virtual void copy_blocking(void* dst, const void* src, size_t bytes);
  // Host memory the CPU side of copy_blocking goes through when the device's memory is not
  // host-accessible (pinned memory on CUDA, so the copy is one DMA transfer); plain host memory
  // by default. The block is the caller's until released.
  virtual std::shared_ptr<Storage> staging_buffer(size_t bytes);

  // DLPack (core/dlpack.h). The (device_type, device_id) pair of this device's memory: (1, 0)
  // for host memory (kDLCPU), (2, index) for CUDA memory (kDLCUDA).
  virtual std::pair<int, int64_t> dlpack_device() const { return {1, 0}; }
  // Importing a device tensor: the stream handle passed as __dlpack__(stream=...) so that the
  // producer orders its pending writes before it, and the wait for that stream once the tensor
  // is handed over (afterwards any stream of this device may read the memory).
  virtual int64_t dlpack_import_stream() { return -1; }
  virtual void dlpack_import_wait() {}
  // Exporting: makes the consumer's stream (its __dlpack__ stream argument: 1 the legacy default
  // stream, 2 the per-thread default stream, else a stream handle) wait for the work enqueued so
  // far on `producer` (this device's stream that writes the memory).
  virtual void dlpack_order_before(Stream& producer, int64_t consumer_stream);
  // Releases `keep` (exported memory the consumer let go of) once the work enqueued so far on the
  // consumer's stream has finished, so that this device does not reuse the memory while the
  // consumer's last reads are still running. Default: at once.
  virtual void release_after(int64_t consumer_stream, std::shared_ptr<const void> keep);

 private:
  std::string name_;
  std::string backend_;
  int index_;
};

using DevicePtr = std::shared_ptr<Device>;

// Host memory and a host stream, for backends whose memory the CPU addresses directly.
Allocator& host_allocator();
// Number of blocks host_allocator() has handed out (tests check that steady-state runs allocate
// only their results).
uint64_t host_allocation_count();
// Number of those blocks not yet released (leak checks: soak runs, fault tests).
int64_t host_live_allocation_count();
// Test aid (fault injection): the next `k` host allocations succeed and the one after throws
// std::bad_alloc, as a real allocation failure does; then allocations succeed again. k < 0 disarms.
void fail_host_allocation_after(int64_t k);
class HostStream final : public Stream {
 public:
  void copy(const void* src, void* dst, size_t bytes) override;
  void when_done(std::function<void()> fn) override { fn(); }
  void synchronize() override {}
};

}  // namespace mpsnn
