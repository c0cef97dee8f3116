#pragma once
// A compiled, immutable execution plan for one set of input sizes and formats: a list of steps
// over typed values that live in the caller's memory (inputs, outputs, exported states) or in an
// arena owned by an execution context. Executing only loops over the steps, each a kernel on the
// device's stream; boundary conversions and poison fills are steps like any other. Contexts are
// pooled and return to the pool when the device has finished with them, so steady-state runs
// allocate nothing and several threads can run one plan at once.
//
// Replay (devices that support recording: CUDA graphs): a context records its steps the second
// time it runs with the same bound memory (the addresses and pixel strides of every input and
// output, the parameter versions) and replays that recording on later runs with the same bound
// memory, instead of enqueueing each step; runs with other bindings enqueue the steps plainly. A
// context keeps its last kMaxRecordings recordings. Replaying launches exactly the kernels the
// plain run launches, with the same arguments: the results are the same bit for bit.
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/image.h"
#include "graph/graph_def.h"
#include "graph/kernel.h"

namespace mpsnn {

// Settings of compilation (graph.md §2.10 optimizations may be switched off for testing).
struct CompileOptions {
  bool fuse = true;
  // Fill temporary memory with NaN and results with all-ones bits before every run, so a step
  // that reads memory nobody wrote, or leaves part of its output unwritten, shows up (test aid).
  bool poison_temporaries = false;
};

// What selects a plan: the sizes, formats and layouts of the source images and the graph's
// storage format.
struct PlanKey {
  std::vector<ImageShape> shapes;
  std::vector<ChannelFormat> formats;
  std::vector<bool> dense;
  // Per source state (source_state_handles order): the values it binds (State::bound_inputs,
  // bound_outputs), e.g. the labels, weights and loss image of MPSCNNLossLabels.
  std::vector<std::vector<TensorDesc>> state_inputs, state_outputs;
  ChannelFormat graph_format = ChannelFormat::float32;
  bool fuse = true;
  bool poison = false;
  bool operator==(const PlanKey& o) const {
    return shapes == o.shapes && formats == o.formats && dense == o.dense && state_inputs == o.state_inputs &&
           state_outputs == o.state_outputs && graph_format == o.graph_format && fuse == o.fuse && poison == o.poison;
  }
};
struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const;
};

struct ValueSlot {
  enum class Kind { input, output, arena };
  Kind kind = Kind::arena;
  int index = -1;     // input or output position
  size_t offset = 0;  // arena values
  TensorDesc desc;
};

struct PlanStep {
  std::unique_ptr<Kernel> kernel;
  int first_input = 0, num_inputs = 0;    // into Plan::step_values_
  int first_output = 0, num_outputs = 0;  // into Plan::step_values_
  int first_param = 0, num_params = 0;    // into Plan::params_
  std::string context;
  std::string fused;  // what the step absorbed, for describe(): "relu, sum, clamp"
  // A graph-level backend's one step (KernelRegistry::graph_kernel): it runs even when some of
  // its outputs are not wanted (null data), which it skips itself.
  bool whole_graph = false;
};

class ExecContext;
class Plan;
class ParamStore;
using PlanPtr = std::shared_ptr<const Plan>;

class Plan : public std::enable_shared_from_this<Plan> {
 public:
  explicit Plan(DevicePtr device);
  ~Plan();
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  // Enqueues a run on `stream` (null: the context's own stream, waited for before returning).
  // `inputs`: the source images in source order, then the values the source states bind
  // (PlanKey::state_inputs). `outputs`: the images of GraphDef::outputs (entries with null data
  // are not produced), the buffers of the exported result states, then the values the source
  // states receive (PlanKey::state_outputs).
  void execute(const std::vector<TensorRef>& inputs, const std::vector<TensorRef>& outputs, Stream* stream) const;

  const std::vector<ImageShape>& output_shapes() const { return output_shapes_; }
  const std::vector<ChannelFormat>& output_formats() const { return output_formats_; }
  // Buffers of each exported result state (GraphDef::result_states order).
  const std::vector<std::vector<TensorDesc>>& result_state_layouts() const { return result_state_layouts_; }
  const std::vector<std::shared_ptr<const StateOrigin>>& result_state_origins() const { return result_state_origins_; }
  size_t arena_bytes() const { return arena_bytes_; }
  std::string describe() const;
  static constexpr size_t kMaxRecordings = 4;
  // Whether runs of this plan are recorded and replayed, and how many were (for describe()).
  bool records() const { return records_; }
  // The size this plan gives an image node (its value's shape), or null when it has none.
  const ImageShape* shape_of(const ImageNode* node) const;

 private:
  friend std::string plan_to_dot(const Plan& plan, const std::string& title);
  friend PlanPtr compile_plan(const GraphDef&, const PlanKey&, const KernelRegistry&, const DevicePtr&,
                              const std::shared_ptr<ParamStore>&, const CompileOptions&);
  std::unique_ptr<ExecContext> acquire() const;
  void release(std::unique_ptr<ExecContext> ctx) const;
  void run_steps(ExecContext& ctx, Stream& stream) const;

  DevicePtr device_;
  // The graph's parameter store: a plan retained by a command buffer may outlive its graph.
  std::shared_ptr<const ParamStore> param_store_;
  std::vector<ValueSlot> values_;
  std::vector<PlanStep> steps_;
  std::vector<int> step_values_;
  std::vector<const ParamSlot*> params_;
  std::vector<ImageShape> output_shapes_;
  std::vector<ChannelFormat> output_formats_;
  std::vector<std::vector<TensorDesc>> result_state_layouts_;
  std::vector<std::shared_ptr<const StateOrigin>> result_state_origins_;
  std::vector<std::pair<const ImageNode*, ImageShape>> image_shapes_;
  size_t arena_bytes_ = 0;
  size_t scratch_offset_ = 0;
  int max_refs_ = 1;
  bool records_ = false;
  mutable std::atomic<uint64_t> recorded_runs_{0}, replayed_runs_{0};
  mutable std::mutex pool_mutex_;
  mutable std::vector<std::unique_ptr<ExecContext>> pool_;
};

// Runs the pass pipeline (passes/pipeline.cpp).
PlanPtr compile_plan(const GraphDef& def, const PlanKey& key, const KernelRegistry& registry, const DevicePtr& device,
                     const std::shared_ptr<ParamStore>& params, const CompileOptions& options);

}  // namespace mpsnn
