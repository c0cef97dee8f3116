#pragma once
// A compiled, immutable execution plan for one set of input sizes and formats. Steps read and
// write float32 NHWC values that live in the caller's images (inputs, outputs) or in an arena
// owned by an execution context; contexts are pooled, so steady-state runs allocate nothing
// and several threads can run one plan at once.
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/image.h"
#include "core/storage.h"
#include "graph/graph_def.h"
#include "graph/kernel.h"

namespace mpsnn {

// Settings of compilation (graph.md §2.10 optimizations may be switched off for testing).
struct CompileOptions {
  bool fuse = true;
  // Fill temporary memory with NaN before every run, so a step that reads memory it did not
  // write shows up in results (a test aid).
  bool poison_temporaries = false;
};

// What selects a plan: the sizes, formats and layouts of the source images and the graph's
// storage format.
struct PlanKey {
  std::vector<ImageShape> shapes;
  std::vector<ChannelFormat> formats;
  std::vector<bool> dense;
  ChannelFormat graph_format = ChannelFormat::float32;
  bool fuse = true;
  bool poison = false;
  bool operator==(const PlanKey& o) const {
    return shapes == o.shapes && formats == o.formats && dense == o.dense && graph_format == o.graph_format &&
           fuse == o.fuse && poison == o.poison;
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
  ImageShape shape;
};

struct PlanStep {
  std::unique_ptr<Kernel> kernel;
  std::vector<int> inputs;
  int output = -1;
  int sum_input = -1;  // value accumulated into the output by a fused sum post-op
  std::string context;
  OpKind kind;
};

// A boundary conversion between a caller image (any format, any pixel stride) and a float32
// arena value.
struct BoundaryCopy {
  int value;
  int image;  // input or output position
};

class ExecContext;

class Plan {
 public:
  Plan();
  ~Plan();
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  // Runs the plan; `inputs` in source order, `outputs` in GraphDef::outputs order (entries
  // with null data are not produced).
  void execute(const std::vector<RawImage>& inputs, const std::vector<RawImage>& outputs) const;

  const std::vector<ImageShape>& output_shapes() const { return output_shapes_; }
  const std::vector<ChannelFormat>& output_formats() const { return output_formats_; }
  size_t arena_bytes() const { return arena_bytes_; }
  size_t num_steps() const { return steps_.size(); }
  std::string describe() const;

 private:
  friend struct PlanBuilder;
  std::unique_ptr<ExecContext> acquire() const;
  void release(std::unique_ptr<ExecContext> ctx) const;

  std::vector<ValueSlot> values_;
  std::vector<PlanStep> steps_;
  std::vector<BoundaryCopy> input_copies_, output_copies_;
  std::vector<ImageShape> output_shapes_;
  std::vector<ChannelFormat> output_formats_;
  size_t arena_bytes_ = 0;
  size_t scratch_offset_ = 0;
  int max_inputs_ = 1;
  bool poison_ = false;
  mutable std::mutex pool_mutex_;
  mutable std::vector<std::unique_ptr<ExecContext>> pool_;
};

using PlanPtr = std::shared_ptr<const Plan>;

// Runs the pass pipeline (passes/pipeline.cpp).
PlanPtr compile_plan(const GraphDef& def, const PlanKey& key, const KernelRegistry& registry,
                     const CompileOptions& options);

}  // namespace mpsnn
