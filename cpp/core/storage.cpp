#include "core/storage.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace mpsnn {

namespace {
constexpr size_t kAlignment = 64;

char* aligned_zeroed(size_t bytes) {
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, rounded == 0 ? kAlignment : rounded);
  return static_cast<char*>(p);
}
}  // namespace

std::shared_ptr<Storage> Storage::allocate(size_t bytes) {
  return std::shared_ptr<Storage>(new Storage(aligned_zeroed(bytes), bytes, nullptr));
}

std::shared_ptr<Storage> Storage::borrow(void* data, size_t bytes, std::shared_ptr<void> owner) {
  return std::shared_ptr<Storage>(new Storage(data, bytes, std::move(owner)));
}

Storage::~Storage() {
  if (!owner_) std::free(data_);
}

AlignedBuffer::AlignedBuffer(size_t bytes) : data_(aligned_zeroed(bytes)), size_(bytes) {}
AlignedBuffer::AlignedBuffer(AlignedBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}
AlignedBuffer::~AlignedBuffer() { std::free(data_); }

}  // namespace mpsnn
