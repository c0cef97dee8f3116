#pragma once
// First-fit offset allocator over one arena, used at compile time to give temporary values
// disjoint lifetimes the same memory.
#include <cstddef>
#include <cstdint>
#include <map>

namespace mpsnn {

class MemoryPlanner {
 public:
  static constexpr size_t kAlign = 64;
  size_t allocate(size_t bytes);
  void release(size_t offset);
  size_t total_bytes() const { return end_; }

 private:
  std::map<size_t, size_t> free_;  // offset -> size
  std::map<size_t, size_t> used_;  // offset -> size
  size_t end_ = 0;
};

}  // namespace mpsnn
