#pragma once
// MPSNNGraph: discovers its nodes once, reads the data sources, and compiles a plan per set of
// input sizes and formats (cached). `encode` records a plan run into a command buffer; `run`
// executes synchronously on the calling thread. Both are safe from many threads at once.
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/command.h"
#include "core/image.h"
#include "graph/graph_def.h"
#include "graph/kernel.h"
#include "graph/plan.h"

namespace mpsnn {

class NNGraph {
 public:
  NNGraph(DevicePtr device, std::vector<ImageNodePtr> results, std::vector<bool> results_needed,
          const KernelRegistry* registry);

  const DevicePtr& device() const { return device_; }
  const GraphDef& definition() const { return def_; }
  std::vector<HandlePtr> source_image_handles() const;
  std::vector<HandlePtr> source_state_handles() const;
  std::vector<HandlePtr> intermediate_image_handles() const;
  std::vector<HandlePtr> result_state_handles() const;
  HandlePtr result_handle() const;
  bool result_image_is_needed() const { return def_.results_needed[0]; }

  // Properties (MPSNNGraph). `format` is float32 by default on host backends.
  ChannelFormat format() const { return format_.load(); }
  void set_format(ChannelFormat f);
  ImageAllocatorPtr destination_image_allocator() const;
  void set_destination_image_allocator(ImageAllocatorPtr a);
  bool output_state_is_temporary = false;
  // MPSKernel members.
  std::string label;
  int kernel_options = 0;
  CompileOptions options() const;
  void set_options(const CompileOptions& o);

  // Encodes one run. `intermediates` receives the exported images (may be null). Returns the
  // result image or null when it is not needed.
  ImagePtr encode(const CommandBufferPtr& command_buffer, const std::vector<ImagePtr>& sources,
                  std::vector<ImagePtr>* intermediates);
  // Encodes a batch: sources[i] holds one single-image MPSImage per batch item.
  std::vector<ImagePtr> encode_batch(const CommandBufferPtr& command_buffer,
                                     const std::vector<std::vector<ImagePtr>>& sources,
                                     std::vector<std::vector<ImagePtr>>* intermediates);
  // Runs now on this thread; returns [result or null, intermediates...].
  std::vector<ImagePtr> run(const std::vector<ImagePtr>& sources);

  int read_count_for_source_image(int index) const;
  int read_count_for_source_state(int index) const;
  void reload_from_data_sources();

  // MPSKernel copy (graph.md §2.9): an independent graph over the same nodes on `device` (this
  // graph's device when null) with this graph's properties. Data sources are read again, not
  // shared through compiled plans; trainable data sources will be copied once training exists.
  std::shared_ptr<NNGraph> copy(DevicePtr device, const KernelRegistry* registry) const;
  std::string debug_description();
  // The plan used for these sources (compiling it if needed); for inspection and tests.
  PlanPtr plan_for(const std::vector<ImagePtr>& sources);

 private:
  struct Prepared {
    PlanPtr plan;
    std::vector<RawImage> inputs;
    std::vector<std::shared_ptr<const void>> keepalive;
  };
  Prepared prepare(const std::vector<ImagePtr>& sources, const CommandBuffer* cb, const char* what);
  std::vector<ImagePtr> allocate_outputs(const Plan& plan, const CommandBufferPtr& cb);
  static std::vector<RawImage> output_views(std::vector<ImagePtr>& outputs, std::vector<std::shared_ptr<const void>>& keep);

  DevicePtr device_;
  const KernelRegistry* registry_;
  GraphDef def_;
  std::atomic<ChannelFormat> format_{ChannelFormat::float32};
  mutable std::mutex mutex_;  // plan cache, options, allocator
  ImageAllocatorPtr destination_allocator_ = persistent_image_allocator();
  CompileOptions options_;
  std::unordered_map<PlanKey, PlanPtr, PlanKeyHash> plans_;
  std::mutex compile_mutex_;
  std::shared_ptr<std::atomic<int>> pending_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace mpsnn
