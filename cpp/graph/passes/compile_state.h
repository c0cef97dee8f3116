#pragma once
// The working form of a graph while it is compiled: values (one per image node) and steps (one
// per filter), rewritten by the passes of passes/pipeline.cpp.
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "graph/graph_def.h"
#include "graph/kernel.h"
#include "graph/plan.h"

namespace mpsnn {

struct ValueInfo {
  ImageShape shape;
  int alias_of = -1;  // same memory as another value (identity steps)
  int input_index = -1;
  int producer = -1;  // step index
};

struct StepInfo {
  const FilterNode* node = nullptr;
  OpKind kind;
  std::vector<int> inputs;
  int output = -1;
  NodeGeometry geom;
  std::vector<PostOp> post_ops;
  int sum_input = -1;
  std::shared_ptr<const ConvolutionParams> conv;
  std::shared_ptr<const NormalizationParams> norm;
  bool batch_statistics = false;
  bool removed = false;
};

struct CompileState {
  const GraphDef& def;
  const PlanKey& key;
  const KernelRegistry& registry;
  CompileOptions options;
  std::vector<ValueInfo> values;
  std::vector<StepInfo> steps;
  std::unordered_map<const ImageNode*, int> value_of;
  std::vector<int> output_values;  // per GraphDef::outputs, -1 when not produced

  int root(int v) const {
    while (values[size_t(v)].alias_of >= 0) v = values[size_t(v)].alias_of;
    return v;
  }
};

// The passes, in pipeline order (one per file).
void infer_shapes(CompileState& state);
void fuse_nodes(CompileState& state);

}  // namespace mpsnn
