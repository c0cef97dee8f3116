#include "core/storage.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace mpsnn {

namespace {
constexpr size_t kAlignment = 64;

char* aligned_block(size_t bytes, bool zeroed) {
  const size_t rounded = std::max<size_t>(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (!p) throw std::bad_alloc();
  if (zeroed) std::memset(p, 0, rounded);
  return static_cast<char*>(p);
}
}  // namespace

std::shared_ptr<Storage> Storage::allocate(size_t bytes, bool zeroed) {
  return std::shared_ptr<Storage>(new Storage(aligned_block(bytes, zeroed), bytes, nullptr));
}

std::shared_ptr<Storage> Storage::borrow(void* data, size_t bytes, std::shared_ptr<void> owner) {
  return std::shared_ptr<Storage>(new Storage(data, bytes, std::move(owner)));
}

Storage::~Storage() {
  if (!owner_) std::free(data_);
}

AlignedBuffer::AlignedBuffer(size_t bytes) : data_(aligned_block(bytes, true)), size_(bytes) {}
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
