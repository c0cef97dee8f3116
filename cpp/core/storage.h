#pragma once
// Host memory blocks shared by images, plans and the buffers handed to Python.
#include <cstddef>
#include <memory>

namespace mpsnn {

// A block of bytes, either owned (64-byte aligned, zero-initialised unless the caller will
// overwrite all of it) or borrowed from a foreign owner (a NumPy array) kept alive through `owner`.
class Storage {
 public:
  static std::shared_ptr<Storage> allocate(size_t bytes, bool zeroed = true);
  static std::shared_ptr<Storage> borrow(void* data, size_t bytes, std::shared_ptr<void> owner);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  bool owned() const { return owner_ == nullptr; }

 private:
  Storage(void* data, size_t bytes, std::shared_ptr<void> owner)
      : data_(data), bytes_(bytes), owner_(std::move(owner)) {}
  void* data_;
  size_t bytes_;
  std::shared_ptr<void> owner_;
};

// Aligned scratch memory owned by value (arenas of execution contexts).
struct AlignedBuffer {
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes);
  AlignedBuffer(AlignedBuffer&&) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&&) noexcept;
  ~AlignedBuffer();
  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace mpsnn
