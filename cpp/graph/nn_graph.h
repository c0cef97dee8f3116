#pragma once
// MPSNNGraph: discovers its nodes once (freezing their attributes), reads the data sources into
// its parameter store, and compiles a plan per set of input sizes and formats (cached). `encode`
// records a plan run into a command buffer; `run` executes on the calling thread and waits.
// Both are safe from many threads at once.
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/command.h"
#include "core/image.h"
#include "graph/graph_def.h"
#include "graph/kernel.h"
#include "graph/params.h"
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
  // Whether encodes update parameters through data sources (a training graph, graph.md §1.7).
  bool updates_parameters() const { return !def_.updates.empty(); }

  // Properties (MPSNNGraph). `format` defaults to the device's (float32 on the CPU).
  ChannelFormat format() const { return format_.load(); }
  void set_format(ChannelFormat f);
  ImageAllocatorPtr destination_image_allocator() const;
  void set_destination_image_allocator(ImageAllocatorPtr a);
  bool output_state_is_temporary = false;
  // MPSKernel members.
  std::string label;
  int kernel_options = 0;
  // MPSKernelOptionsVerbose: with this bit in kernel_options, every newly compiled plan's
  // description (steps, fusions, buffers) goes to the log function (default: std::cerr). The
  // function is called without the graph's locks held, on the compiling thread.
  static constexpr int kVerbose = 16;
  using LogFn = std::function<void(const std::string&)>;
  void set_log(LogFn fn);
  CompileOptions options() const;
  void set_options(const CompileOptions& o);

  // Encodes one run. `source_states` in source_state_handles order (null: none given);
  // `intermediates` receives the exported images and `destination_states` the exported result
  // states (either may be null). Returns the result image or null when it is not needed.
  ImagePtr encode(const CommandBufferPtr& command_buffer, const std::vector<ImagePtr>& sources,
                  const std::vector<StatePtr>* source_states, std::vector<ImagePtr>* intermediates,
                  std::vector<StatePtr>* destination_states);
  // Encodes a batch: sources[i] holds one single-image MPSImage per batch item. The batch runs as
  // one N-image run, so each exported state covers the whole batch and fills its batch N times.
  // source_states[i] is an MPSStateBatch: one state object repeated, or one MPSCNNLossLabels per
  // item (gathered into one labels object whose loss image each item's loss image views).
  std::vector<ImagePtr> encode_batch(const CommandBufferPtr& command_buffer,
                                     const std::vector<std::vector<ImagePtr>>& sources,
                                     const std::vector<std::vector<StatePtr>>* source_states,
                                     std::vector<std::vector<ImagePtr>>* intermediates,
                                     std::vector<std::vector<StatePtr>>* destination_states);
  // Runs now on this thread; returns [result or null, intermediates...].
  std::vector<ImagePtr> run(const std::vector<ImagePtr>& sources, const std::vector<StatePtr>* source_states = nullptr,
                            std::vector<StatePtr>* destination_states = nullptr);

  int read_count_for_source_image(int index) const;
  int read_count_for_source_state(int index) const;
  void reload_from_data_sources();

  // MPSKernel copy (graph.md §2.9): an independent graph over the same nodes on `device` with its
  // kernel registry (both null: this graph's) and this graph's properties. Data sources are read
  // again into the copy's own parameter store; trainable data sources will be copied once
  // training exists.
  std::shared_ptr<NNGraph> copy(DevicePtr device, const KernelRegistry* registry) const;
  std::string debug_description();
  // Number of compiled plans in the cache (tests: reloads and repeated runs compile nothing).
  size_t num_plans() const;
  // The plan used for these sources (compiling it if needed); for inspection and tests.
  PlanPtr plan_for(const std::vector<ImagePtr>& sources, const std::vector<StatePtr>* source_states = nullptr);

 private:
  // One run's plan and the caller memory bound to it (kept alive until the run completes).
  struct Prepared {
    PlanPtr plan;
    std::vector<TensorRef> inputs, outputs;
    std::vector<ImagePtr> images;   // GraphDef::outputs order
    std::vector<StatePtr> states;   // GraphDef::result_states order
    std::vector<ImagePtr> state_outputs;  // images the source states receive (loss images)
    std::vector<std::shared_ptr<const void>> keepalive;
  };
  Prepared prepare(const std::vector<ImagePtr>& sources, const std::vector<StatePtr>* source_states,
                   const CommandBufferPtr& cb, const char* what);
  PlanPtr find_plan(const PlanKey& key, const CompileOptions& opts);
  void check_source_states(const std::vector<StatePtr>* states, const CommandBuffer* cb, const char* what) const;
  // The context of the node that reads source state `index` (the loss of a labels node).
  std::string source_state_owner(size_t index) const;
  void allocate_outputs(Prepared& p, const CommandBufferPtr& cb);
  void allocate_states(Prepared& p, const CommandBufferPtr& cb);
  // Training graphs (graph/training_updates.cpp): the data sources' parameter updates after the
  // plan run on `cb`; `states` are the run's result states (GraphDef::result_states order).
  void encode_updates(const CommandBufferPtr& cb, const std::vector<StatePtr>& states);

  DevicePtr device_;
  const KernelRegistry* registry_;
  GraphDef def_;
  std::shared_ptr<ParamStore> params_ = std::make_shared<ParamStore>();  // shared with the plans
  std::atomic<ChannelFormat> format_{ChannelFormat::float32};
  mutable std::mutex mutex_;  // plan cache, options, allocator
  ImageAllocatorPtr destination_allocator_ = persistent_image_allocator();
  CompileOptions options_;
  std::unordered_map<PlanKey, PlanPtr, PlanKeyHash> plans_;
  std::mutex compile_mutex_;
  // The thread compiling a plan or reloading the data sources (holding compile_mutex_), if any.
  // A callback of this graph's nodes (padding policy, data source, transform provider) runs on
  // that thread; using the graph from it would deadlock, so prepare() and reload refuse it.
  std::atomic<std::thread::id> busy_thread_{};
  void check_not_reentered(const char* what) const;
  LogFn log_;  // guarded by mutex_
  // Runs encoded or running and not yet completed (reload_from_data_sources refuses while > 0).
  std::shared_ptr<std::atomic<int>> pending_ = std::make_shared<std::atomic<int>>(0);
  // Training graphs: their runs execute one at a time (graph/training_updates.cpp says why), and
  // `run` goes through this graph's own queue so that updates happen as after an encode.
  std::shared_ptr<std::mutex> run_mutex_ = std::make_shared<std::mutex>();
  std::once_flag queue_once_;
  std::shared_ptr<CommandQueue> queue_;
};

}  // namespace mpsnn
