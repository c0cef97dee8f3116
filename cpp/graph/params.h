#pragma once
// Graph-owned parameters (weights, biases, gamma/beta, running statistics): one slot per data
// source in a store per graph, each with a version. Forward and gradient steps that read the same
// data source share its slot; `reload` re-reads the sources into the same slots and bumps their
// versions, so compiled plans stay valid and backends refresh their own layouts (reordered
// weights) when they see a new version. A batch norm folded into a convolution is a derived slot,
// recomputed by `reload` from its two sources.
#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "graph/node.h"
#include "graph/schema.h"

namespace mpsnn {

// The values of a slot at one version (held by a run for its duration).
struct ParamSnapshot {
  NodeParams values;
  uint64_t version = 0;
};

class ParamSlot {
 public:
  ParamSnapshot snapshot() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return {values_, version_.load(std::memory_order_relaxed)};
  }
  NodeParams values() const { return snapshot().values; }
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  friend class ParamStore;
  void set(NodeParams v) {
    std::lock_guard<std::mutex> lock(mutex_);
    values_ = std::move(v);
    version_.fetch_add(1, std::memory_order_release);
  }
  mutable std::mutex mutex_;
  NodeParams values_;
  std::atomic<uint64_t> version_{0};
};

class ParamStore {
 public:
  // Reads the data source of every filter that has one (load, read, purge).
  void load(const std::vector<FilterNodePtr>& filters);
  // Reads every source again into the same slots, all or nothing (a source that throws changes no
  // slot). Returns true when a descriptor changed in a way compiled plans depend on (kernel size,
  // channels, strides, fused neuron): those plans must go.
  bool reload();

  // Training (graph.md §1.7): new values for the slots of these filters (deduplicated; a filter
  // without a slot is skipped), and the slots folded from them. The structure must not change.
  void update(const std::vector<const FilterNode*>& filters, const NodeParams& values);
  // Reads the data source of `f` again into its slot (a CPU-style update), refusing a changed
  // structure (GraphError: reload_from_data_sources rebuilds plans, a training step cannot).
  void reread(const FilterNode& f);

  // The slot of a filter's data source, or null when it has none.
  const ParamSlot* slot_of(const FilterNode& f) const;
  NodeParams values_of(const FilterNode& f) const;
  // A slot holding `conv` with the inference batch norm `bn` folded in (cached per pair).
  const ParamSlot* folded(const ParamSlot* conv, const ParamSlot* bn);

 private:
  struct Source {
    const FilterNode* node;  // a node reading it (for errors and the binary flag)
    std::unique_ptr<ParamSlot> slot;
  };
  struct Folded {
    const ParamSlot *conv, *bn;
    std::unique_ptr<ParamSlot> slot;
  };
  static NodeParams read(const FilterNode& f);
  static NodeParams read_unnamed(const FilterNode& f);
  static NodeParams fold(const ParamSlot& conv, const ParamSlot& bn);
  void refold(const ParamSlot* changed);  // with mutex_ held

  mutable std::mutex mutex_;
  std::unordered_map<const void*, Source> sources_;  // keyed by data-source object
  std::unordered_map<const FilterNode*, const ParamSlot*> of_node_;
  std::vector<Folded> folded_;
};

}  // namespace mpsnn
