#pragma once
// Memory blocks shared by images, states, plans and the buffers handed to Python. A block is
// allocated by a device's allocator (and released through the release function it was given)
// or borrowed from a foreign owner (a NumPy array) that `owner` keeps alive.
#include <cstddef>
#include <functional>
#include <memory>

namespace mpsnn {

// Where a block lives: host memory, memory both the host and the device address (Metal shared
// storage, CUDA managed memory), or device memory the host cannot address.
enum class MemoryKind { host, unified, device };
const char* memory_kind_name(MemoryKind k);

class Storage {
 public:
  // A block owned by this object; `release(data)` frees it.
  static std::shared_ptr<Storage> adopt(void* data, size_t bytes, MemoryKind kind, std::function<void(void*)> release);
  static std::shared_ptr<Storage> borrow(void* data, size_t bytes, std::shared_ptr<void> owner,
                                         MemoryKind kind = MemoryKind::host);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  MemoryKind kind() const { return kind_; }
  bool owned() const { return owner_ == nullptr; }

 private:
  Storage(void* data, size_t bytes, MemoryKind kind) : data_(data), bytes_(bytes), kind_(kind) {}
  void* data_;
  size_t bytes_;
  MemoryKind kind_;
  std::function<void(void*)> release_;
  std::shared_ptr<void> owner_;
};

}  // namespace mpsnn
