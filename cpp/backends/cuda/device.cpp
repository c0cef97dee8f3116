#include "backends/cuda/device.h"

#include <cudnn_frontend_shim.h>

#include <cstdlib>
#include <unordered_map>
#include <vector>

#include "backends/cuda/libraries.h"
#include "backends/cuda/runtime.h"
#include "core/errors.h"

namespace mpsnn::cuda {

void throw_cuda_error(cudaError_t e, const char* call, const std::string& context) {
  cudaGetLastError();  // clear a sticky-free error so the next call starts clean
  const std::string what = context + " " + call + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  if (e == cudaErrorMemoryAllocation) throw BackendError(what + "; the device is out of memory");
  throw BackendError(what);
}

void set_device(int index) {
  thread_local int current = -1;
  if (current == index) return;
  MPSNN_CUDA_CHECK(cudaSetDevice(index), "[cuda:", index, "]");
  current = index;
}

namespace {
bool env_off(const char* name) {
  const char* v = std::getenv(name);
  return v && std::string(v) == "0";
}
}  // namespace

// Free blocks by (rounded) size. Blocks come back from their Storage's deleter, which may run on
// any thread, also after the allocator is gone (the deleter holds the cache).
struct CudaAllocator::Cache {
  static constexpr size_t kGranule = 512;
  static constexpr size_t kMaxCachedBytes = size_t(8) << 30;
  int index = 0;
  bool enabled = true;
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;
  size_t cached_bytes = 0;

  void* take(size_t rounded) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = free_blocks.find(rounded);
    if (it == free_blocks.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_bytes -= rounded;
    return p;
  }
  void give_back(void* p, size_t rounded) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (enabled && cached_bytes + rounded <= kMaxCachedBytes) {
        free_blocks[rounded].push_back(p);
        cached_bytes += rounded;
        return;
      }
    }
    cudaSetDevice(index);
    cudaFree(p);  // a destructor cannot throw; a failure here means the context is already gone
  }
  // Frees every cached block (before retrying a failed cudaMalloc).
  void drain() {
    std::unordered_map<size_t, std::vector<void*>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex);
      blocks.swap(free_blocks);
      cached_bytes = 0;
    }
    if (blocks.empty()) return;
    cudaSetDevice(index);
    for (auto& kv : blocks)
      for (void* p : kv.second) cudaFree(p);
  }
};

CudaAllocator::CudaAllocator(int index) : index_(index), cache_(std::make_shared<Cache>()) {
  cache_->index = index;
  cache_->enabled = !env_off("MPSNN_CUDA_CACHE");
}

CudaAllocator::~CudaAllocator() {
  std::lock_guard<std::mutex> lock(cache_->mutex);
  cache_->enabled = false;  // blocks still owned elsewhere are freed when their owners let go
}

std::shared_ptr<Storage> CudaAllocator::allocate(size_t bytes, bool zeroed) {
  set_device(index_);
  void* p = nullptr;
  const size_t rounded = bytes ? (bytes + Cache::kGranule - 1) / Cache::kGranule * Cache::kGranule : 0;
  if (bytes) {
    p = cache_->take(rounded);
    if (!p) {
      cudaError_t e = cudaMalloc(&p, rounded);
      if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        cache_->drain();
        e = cudaMalloc(&p, rounded);
      }
      if (e != cudaSuccess) {
        cudaGetLastError();
        size_t free_bytes = 0, total = 0;
        cudaMemGetInfo(&free_bytes, &total);
        MPSNN_THROW(BackendError, "[cuda:", index_, "] out of device memory: cudaMalloc of ", bytes, " bytes failed (",
                    cudaGetErrorName(e), "); ", free_bytes, " of ", total, " bytes are free");
      }
    }
    if (zeroed) MPSNN_CUDA_CHECK(cudaMemset(p, 0, bytes), "[cuda:", index_, "] zeroing new memory:");
  }
  std::shared_ptr<Cache> cache = cache_;
  return Storage::adopt(p, bytes, MemoryKind::device, [cache, rounded](void* q) {
    if (q) cache->give_back(q, rounded);
  });
}

void CudaDevice::copy_blocking(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  set_device(index());
  MPSNN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "[cuda:", index(), "]");
}

// Pinned host blocks by rounded size (powers of two from 64 KiB), kept after use: cudaMallocHost
// costs milliseconds, so a host copy of each numpy() / read_bytes would pay that every time.
struct CudaDevice::Staging {
  static constexpr size_t kMaxCachedBytes = size_t(1) << 30;
  int index = 0;
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;
  size_t cached_bytes = 0;
  static size_t round(size_t bytes) {
    size_t r = size_t(64) << 10;
    while (r < bytes) r <<= 1;
    return r;
  }
  void give_back(void* p, size_t rounded) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (cached_bytes + rounded <= kMaxCachedBytes) {
        free_blocks[rounded].push_back(p);
        cached_bytes += rounded;
        return;
      }
    }
    cudaFreeHost(p);
  }
  ~Staging() {
    for (auto& kv : free_blocks)
      for (void* p : kv.second) cudaFreeHost(p);
  }
};

CudaDevice::CudaDevice(int index, std::string name)
    : Device(std::move(name), "cuda", index), allocator_(index), staging_(std::make_shared<Staging>()) {
  staging_->index = index;
}

std::shared_ptr<Storage> CudaDevice::staging_buffer(size_t bytes) {
  const size_t rounded = Staging::round(bytes);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(staging_->mutex);
    auto it = staging_->free_blocks.find(rounded);
    if (it != staging_->free_blocks.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      staging_->cached_bytes -= rounded;
    }
  }
  if (!p) {
    set_device(index());
    const cudaError_t e = cudaMallocHost(&p, rounded);
    if (e != cudaSuccess) {
      cudaGetLastError();
      MPSNN_THROW(BackendError, "[cuda:", index(), "] out of pinned host memory: cudaMallocHost of ", rounded,
                  " bytes (staging a host copy) failed (", cudaGetErrorName(e), ")");
    }
  }
  std::shared_ptr<Staging> cache = staging_;
  return Storage::adopt(p, bytes, MemoryKind::host, [cache, rounded](void* q) { cache->give_back(q, rounded); });
}

namespace {
// A __dlpack__ stream argument as a CUDA stream: 1 the legacy default stream, 2 the per-thread
// default stream, anything else a cudaStream_t (0, which the protocol disallows as ambiguous,
// is read as the legacy default stream, which it means to the runtime).
cudaStream_t consumer_stream(int64_t s) {
  if (s == 0 || s == 1) return cudaStreamLegacy;
  if (s == 2) return cudaStreamPerThread;
  return reinterpret_cast<cudaStream_t>(static_cast<intptr_t>(s));
}
}  // namespace

int64_t CudaDevice::dlpack_import_stream() {
  std::lock_guard<std::mutex> lock(dlpack_mutex_);
  if (!import_stream_) {
    set_device(index());
    MPSNN_CUDA_CHECK(cudaStreamCreateWithFlags(&import_stream_, cudaStreamNonBlocking), "[cuda:", index(),
                     "] DLPack import stream:");
  }
  return static_cast<int64_t>(reinterpret_cast<intptr_t>(import_stream_));
}

void CudaDevice::dlpack_import_wait() {
  cudaStream_t s;
  {
    std::lock_guard<std::mutex> lock(dlpack_mutex_);
    s = import_stream_;
  }
  if (!s) return;
  set_device(index());
  MPSNN_CUDA_CHECK(cudaStreamSynchronize(s), "[cuda:", index(), "] waiting for a DLPack producer's writes:");
}

void CudaDevice::dlpack_order_before(Stream& producer, int64_t consumer) {
  CudaStream& ours = stream_of(&producer);
  cudaEvent_t ev = nullptr;
  MPSNN_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "[cuda:", index(), "] DLPack export:");
  cudaError_t e = cudaEventRecord(ev, ours.stream());
  if (e == cudaSuccess) e = cudaStreamWaitEvent(consumer_stream(consumer), ev, 0);
  cudaEventDestroy(ev);  // released once the wait has been satisfied
  if (e != cudaSuccess) throw_cuda_error(e, "cudaStreamWaitEvent", "[cuda:" + std::to_string(index()) + "] DLPack export:");
}

void CudaDevice::collect_deferred(bool wait) {
  std::vector<std::shared_ptr<const void>> done;
  {
    std::lock_guard<std::mutex> lock(dlpack_mutex_);
    auto keep = deferred_.begin();
    for (auto& d : deferred_) {
      if (wait) cudaEventSynchronize(d.first);
      if (cudaEventQuery(d.first) == cudaSuccess) {
        cudaEventDestroy(d.first);
        done.push_back(std::move(d.second));
      } else {
        cudaGetLastError();  // cudaErrorNotReady
        *keep++ = std::move(d);
      }
    }
    deferred_.erase(keep, deferred_.end());
  }
  // `done` releases here, outside the lock (a release may free memory and take other locks).
}

void CudaDevice::release_after(int64_t consumer, std::shared_ptr<const void> keep) {
  if (consumer == -1) return;  // no stream given: the consumer ordered its own work (keep releases now)
  set_device(index());
  cudaEvent_t ev = nullptr;
  if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess ||
      cudaEventRecord(ev, consumer_stream(consumer)) != cudaSuccess) {
    cudaGetLastError();
    if (ev) cudaEventDestroy(ev);
    // The consumer's stream is gone (or the context is): nothing can still be reading.
    return;
  }
  {
    std::lock_guard<std::mutex> lock(dlpack_mutex_);
    deferred_.emplace_back(ev, std::move(keep));
  }
  collect_deferred(false);
}

cudnnHandle_t CudaDevice::build_handle() {
  if (!build_handle_) {
    ensure_cudnn();
    set_device(index());
    const cudnnStatus_t st = cudnn_frontend::detail::create_handle(&build_handle_);
    MPSNN_CHECK(st == CUDNN_STATUS_SUCCESS, BackendError, "[cuda:", index(), "] cudnnCreate failed: ",
                cudnn_frontend::detail::get_error_string(st));
  }
  return build_handle_;
}

CudaDevice::~CudaDevice() {
  collect_deferred(true);
  if (import_stream_) cudaStreamDestroy(import_stream_);
  if (build_handle_) cudnn_frontend::detail::destroy_handle(build_handle_);
}

CudaStream::CudaStream(int index) : index_(index) {
  set_device(index_);
  MPSNN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "[cuda:", index_, "]");
}

CudaStream::~CudaStream() {
  if (completions_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    // The last owner may be a completion callback of this very stream.
    if (completions_.get_id() == std::this_thread::get_id()) completions_.detach();
    else completions_.join();
  }
  cudaSetDevice(index_);
  if (cudnn_) cudnn_frontend::detail::destroy_handle(cudnn_);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaStream::copy(const void* src, void* dst, size_t bytes) {
  if (!bytes) return;
  set_device(index_);
  MPSNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_), "[cuda:", index_, "]");
}

void CudaStream::synchronize() {
  set_device(index_);
  MPSNN_CUDA_CHECK(cudaStreamSynchronize(stream_), "[cuda:", index_, "]");
}

void CudaStream::when_done(std::function<void()> fn) {
  set_device(index_);
  cudaEvent_t ev = nullptr;
  MPSNN_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "[cuda:", index_, "]");
  const cudaError_t e = cudaEventRecord(ev, stream_);
  if (e != cudaSuccess) {
    cudaEventDestroy(ev);
    throw_cuda_error(e, "cudaEventRecord", "[cuda:" + std::to_string(index_) + "]");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.emplace_back(ev, std::move(fn));
  if (!completions_.joinable()) completions_ = std::thread([this] { completion_loop(); });
  cv_.notify_one();
}

void CudaStream::completion_loop() {
  cudaSetDevice(index_);
  for (;;) {
    std::pair<cudaEvent_t, std::function<void()>> item;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, nothing left
      item = std::move(pending_.front());
      pending_.pop_front();
    }
    // A failed wait (a kernel fault) still completes the buffer: its status was set by whoever
    // saw the launch error; the callback must run so nothing waits forever.
    cudaEventSynchronize(item.first);
    cudaEventDestroy(item.first);
    item.second();
  }
}

namespace {
// A CUDA graph instantiated from one capture.
class CudaRecording final : public StreamRecording {
 public:
  CudaRecording(cudaGraphExec_t exec, int index) : exec_(exec), index_(index) {}
  ~CudaRecording() override {
    cudaSetDevice(index_);
    cudaGraphExecDestroy(exec_);  // one still running is freed when it completes
  }
  void replay(Stream& s) override {
    CudaStream& stream = stream_of(&s);
    MPSNN_CUDA_CHECK(cudaGraphLaunch(exec_, stream.stream()), "[cuda:", index_, "] replaying a plan:");
  }

 private:
  cudaGraphExec_t exec_;
  int index_;
};
}  // namespace

bool CudaDevice::supports_recording() const { return !env_off("MPSNN_CUDA_GRAPHS"); }

bool CudaStream::begin_recording() {
  set_device(index_);
  if (cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal) == cudaSuccess) return true;
  cudaGetLastError();
  return false;
}

std::unique_ptr<StreamRecording> CudaStream::end_recording() {
  set_device(index_);
  cudaGraph_t graph = nullptr;
  if (cudaStreamEndCapture(stream_, &graph) != cudaSuccess || !graph) {
    cudaGetLastError();  // an invalidated capture: the caller runs the work plainly
    if (graph) cudaGraphDestroy(graph);
    return nullptr;
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return std::make_unique<CudaRecording>(exec, index_);
}

cudnnHandle_t CudaStream::cudnn() {
  if (!cudnn_) {
    ensure_cudnn();
    set_device(index_);
    cudnnHandle_t h = nullptr;
    const cudnnStatus_t st = cudnn_frontend::detail::create_handle(&h);
    MPSNN_CHECK(st == CUDNN_STATUS_SUCCESS, BackendError, "[cuda:", index_, "] cudnnCreate failed: ",
                cudnn_frontend::detail::get_error_string(st));
    cudnn_frontend::detail::set_stream(h, stream_);
    cudnn_ = h;
  }
  return cudnn_;
}

CudaStream& stream_of(Stream* s) {
  auto* cs = dynamic_cast<CudaStream*>(s);
  MPSNN_CHECK(cs != nullptr, BackendError, "[cuda] a CUDA kernel was given a stream of another device");
  set_device(cs->device_index());
  return *cs;
}

namespace {
struct Probe {
  int count = 0;
  std::string reason;
};
const Probe& probe() {
  static const Probe p = [] {
    Probe r;
    const cudaError_t e = cudaGetDeviceCount(&r.count);
    if (e != cudaSuccess) {
      cudaGetLastError();
      r.count = 0;
      r.reason = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    } else if (r.count == 0) {
      r.reason = "the CUDA driver reports no GPU";
    }
    return r;
  }();
  return p;
}
}  // namespace

int device_count() { return probe().count; }
std::string unavailable_reason() { return probe().reason; }

DevicePtr make_device(int index) {
  cudaDeviceProp prop{};
  MPSNN_CUDA_CHECK(cudaGetDeviceProperties(&prop, index), "[cuda:", index, "]");
  return std::make_shared<CudaDevice>(index, std::string(prop.name));
}

}  // namespace mpsnn::cuda
