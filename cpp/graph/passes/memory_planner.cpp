#include "graph/passes/memory_planner.h"

#include <iterator>

namespace mpsnn {

size_t MemoryPlanner::allocate(size_t bytes) {
  bytes = (bytes + kAlign - 1) / kAlign * kAlign;
  if (bytes == 0) bytes = kAlign;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < bytes) continue;
    const size_t off = it->first, size = it->second;
    free_.erase(it);
    if (size > bytes) free_[off + bytes] = size - bytes;
    used_[off] = bytes;
    return off;
  }
  // Grow, merging with a free block that ends at the current end.
  size_t off = end_;
  if (!free_.empty()) {
    auto last = std::prev(free_.end());
    if (last->first + last->second == end_) {
      off = last->first;
      free_.erase(last);
    }
  }
  end_ = off + bytes;
  used_[off] = bytes;
  return off;
}

void MemoryPlanner::release(size_t offset) {
  auto it = used_.find(offset);
  if (it == used_.end()) return;
  size_t off = it->first, size = it->second;
  used_.erase(it);
  auto next = free_.lower_bound(off);
  if (next != free_.end() && off + size == next->first) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == off) {
      prev->second += size;
      return;
    }
  }
  free_[off] = size;
}

}  // namespace mpsnn
