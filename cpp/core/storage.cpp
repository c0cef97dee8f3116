#include "core/storage.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/device.h"

namespace mpsnn {

const char* memory_kind_name(MemoryKind k) {
  switch (k) {
    case MemoryKind::host: return "host";
    case MemoryKind::unified: return "unified";
    case MemoryKind::device: return "device";
  }
  return "unknown";
}

std::shared_ptr<Storage> Storage::adopt(void* data, size_t bytes, MemoryKind kind, std::function<void(void*)> release) {
  auto s = std::shared_ptr<Storage>(new Storage(data, bytes, kind));
  s->release_ = std::move(release);
  return s;
}

std::shared_ptr<Storage> Storage::borrow(void* data, size_t bytes, std::shared_ptr<void> owner, MemoryKind kind) {
  auto s = std::shared_ptr<Storage>(new Storage(data, bytes, kind));
  s->owner_ = std::move(owner);
  return s;
}

Storage::~Storage() {
  if (release_) release_(data_);
}

namespace {
std::atomic<uint64_t> g_host_allocations{0};
std::atomic<int64_t> g_live_host_allocations{0};
std::atomic<int64_t> g_fail_after{-1};  // fail_host_allocation_after

// Consumes one allocation of the armed countdown; true for the one that must fail.
bool injected_failure() {
  int64_t n = g_fail_after.load(std::memory_order_relaxed);
  while (n >= 0 && !g_fail_after.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
  }
  return n == 0;
}

// 64-byte aligned host blocks (a cache line; what AVX-512 loads and oneDNN prefer).
class HostAllocator final : public Allocator {
 public:
  static constexpr size_t kAlignment = 64;
  std::shared_ptr<Storage> allocate(size_t bytes, bool zeroed) override {
    if (injected_failure()) throw std::bad_alloc();
    const size_t rounded = std::max<size_t>(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
    void* p = std::aligned_alloc(kAlignment, rounded);
    if (!p) throw std::bad_alloc();
    if (zeroed) std::memset(p, 0, rounded);
    std::shared_ptr<Storage> s;
    try {
      s = Storage::adopt(p, bytes, MemoryKind::host, [](void* q) {
        std::free(q);
        g_live_host_allocations.fetch_sub(1, std::memory_order_relaxed);
      });
    } catch (...) {
      std::free(p);
      throw;
    }
    g_host_allocations.fetch_add(1, std::memory_order_relaxed);
    g_live_host_allocations.fetch_add(1, std::memory_order_relaxed);
    return s;
  }
};
}  // namespace

uint64_t host_allocation_count() { return g_host_allocations.load(std::memory_order_relaxed); }
int64_t host_live_allocation_count() { return g_live_host_allocations.load(std::memory_order_relaxed); }
void fail_host_allocation_after(int64_t k) { g_fail_after.store(k < 0 ? -1 : k, std::memory_order_relaxed); }

Allocator& host_allocator() {
  static HostAllocator a;
  return a;
}

void Device::copy_blocking(void* dst, const void* src, size_t bytes) {
  if (bytes && src != dst) std::memcpy(dst, src, bytes);
}

std::shared_ptr<Storage> Device::staging_buffer(size_t bytes) { return host_allocator().allocate(bytes, false); }

void Device::dlpack_order_before(Stream&, int64_t) {}  // host work has completed when enqueued

void Device::release_after(int64_t, std::shared_ptr<const void> keep) { keep.reset(); }

void HostStream::copy(const void* src, void* dst, size_t bytes) {
  if (bytes && src != dst) std::memcpy(dst, src, bytes);
}

}  // namespace mpsnn
