#pragma once
// The working form of a graph while it is compiled: typed values (image values, one per image
// node; state values, one per buffer of a consumed or exported result state) and steps with
// several inputs and outputs, rewritten by the passes of passes/pipeline.cpp.
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "graph/graph_def.h"
#include "graph/kernel.h"
#include "graph/params.h"
#include "graph/plan.h"

namespace mpsnn {

enum class ValueKind { image, state };

struct ValueInfo {
  ValueKind kind = ValueKind::image;
  TensorDesc desc;
  int alias_of = -1;  // same memory as another value (identity steps such as inference dropout)
  int producer = -1;  // step index; -1 for graph inputs
  // Bound to the caller's memory: position in Plan::execute's inputs or outputs, else -1.
  int external_input = -1, external_output = -1;
  int source_image = -1;  // the graph input this value stands for (before boundary lowering)
};

struct StepInfo {
  const FilterNode* node = nullptr;  // null for internal steps
  OpKind kind = OpKind::None;
  const Attrs* attrs = nullptr;
  std::vector<int> inputs;   // source images, then source-state buffers, then a fused addend
  std::vector<int> outputs;  // result image, then result-state buffers
  std::vector<const ParamSlot*> params;
  NodeParams param_values;   // at compile time, version `param_version` (one snapshot)
  uint64_t param_version = 0;
  NodeGeometry geom;
  std::vector<PostOp> post_ops;
  // Batch normalization in training mode: statistics of the batch instead of the running ones
  // (its gradient: whether its forward step used them).
  bool batch_statistics = false;
  // Whether anything reads the result image (prune_steps). A step kept only for its result states
  // (a gradient node whose data gradient nothing consumes) may skip computing it.
  bool result_needed = true;
  // Fused into another step, aliased away, or dead (nothing reads its outputs).
  bool removed = false;
  std::string context;
};

struct CompileState {
  const GraphDef& def;
  const PlanKey& key;
  const KernelRegistry& registry;
  const DevicePtr& device;
  ParamStore& params;
  CompileOptions options;
  std::vector<ValueInfo> values;
  std::vector<StepInfo> steps;
  std::unordered_map<const ImageNode*, int> value_of;
  std::unordered_map<const StateNode*, std::vector<int>> state_values;
  std::vector<int> output_values;                   // per GraphDef::outputs, -1 when not produced
  std::vector<std::vector<int>> result_state_values;  // per GraphDef::result_states
  std::vector<std::shared_ptr<const StateOrigin>> result_state_origins;  // per GraphDef::result_states
  // Values the graph's source states receive from their consumer (the loss image of loss
  // labels), per GraphDef::source_states; bound to the caller's memory after the result states.
  std::vector<std::vector<int>> bound_output_values;

  int root(int v) const {
    while (values[size_t(v)].alias_of >= 0) v = values[size_t(v)].alias_of;
    return v;
  }
  // Attributes of compiler-inserted steps (kernels copy what they need when they are made).
  std::vector<std::unique_ptr<Attrs>> internal;
  const Attrs& internal_attrs(Attrs a) {
    internal.push_back(std::make_unique<Attrs>(std::move(a)));
    return *internal.back();
  }
  int add_value(ValueInfo v) {
    values.push_back(v);
    return int(values.size()) - 1;
  }
};

// What the memory pass hands to the plan.
struct MemoryLayout {
  std::vector<size_t> offsets;  // per value, arena values only
  size_t scratch_offset = 0, arena_bytes = 0;
};

// The passes, in pipeline order (one per file).
void infer_shapes(CompileState& st);       // values and steps from nodes, shape rules
void prune_steps(CompileState& st);        // dead steps (e.g. a forward node only its state is read from)
void fuse_nodes(CompileState& st);         // BN folding, neuron and residual fusion, dropout aliasing
void lower_boundaries(CompileState& st);   // binds caller memory, inserts Convert steps
std::vector<std::unique_ptr<Kernel>> create_kernels(CompileState& st, std::vector<int>& live_steps);
MemoryLayout plan_memory(const CompileState& st, const std::vector<int>& live_steps,
                         const std::vector<std::unique_ptr<Kernel>>& kernels);

}  // namespace mpsnn
