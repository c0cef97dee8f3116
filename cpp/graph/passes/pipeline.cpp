// The compile pipeline: infer shapes, fuse, create kernels, bind the graph's inputs and outputs,
// plan temporary memory by liveness. Every node without a kernel on the device is reported at
// once.
#include <algorithm>

#include "core/errors.h"
#include "graph/passes/compile_state.h"
#include "graph/passes/memory_planner.h"

namespace mpsnn {

struct PlanBuilder {
  static PlanPtr build(CompileState& st);
};

PlanPtr PlanBuilder::build(CompileState& st) {
  auto plan = std::make_shared<Plan>();
  plan->poison_ = st.key.poison;

  // Kernels.
  std::vector<std::string> missing;
  std::vector<int> live_steps;
  for (size_t i = 0; i < st.steps.size(); ++i)
    if (!st.steps[i].removed) live_steps.push_back(int(i));
  for (int i : live_steps)
    if (!st.registry.find(st.steps[size_t(i)].kind)) missing.push_back(st.steps[size_t(i)].node->context());
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    MPSNN_THROW(UnsupportedError, "[MPSNNGraph] no kernel on the '", st.registry.backend(), "' backend for: ", list);
  }
  std::vector<PlanStep> steps;
  for (int i : live_steps) {
    StepInfo& s = st.steps[size_t(i)];
    KernelSpec spec;
    spec.node = s.node;
    spec.kind = s.kind;
    for (int v : s.inputs) spec.inputs.push_back(st.values[size_t(v)].shape);
    spec.output = st.values[size_t(s.output)].shape;
    spec.geom = s.geom;
    spec.post_ops = s.post_ops;
    spec.conv = s.conv;
    spec.norm = s.norm;
    spec.batch_statistics = s.batch_statistics;
    spec.context = s.node->context();
    PlanStep ps;
    ps.kernel = st.registry.find(s.kind)(spec);
    ps.inputs = s.inputs;
    ps.output = s.output;
    ps.sum_input = s.sum_input;
    ps.context = spec.context;
    ps.kind = s.kind;
    plan->max_inputs_ = std::max(plan->max_inputs_, int(s.inputs.size()));
    steps.push_back(std::move(ps));
  }
  // Values are addressed through their alias roots from here on.
  for (auto& ps : steps) {
    for (int& v : ps.inputs) v = st.root(v);
    ps.output = st.root(ps.output);
    if (ps.sum_input >= 0) ps.sum_input = st.root(ps.sum_input);
  }

  // Bind values to caller memory where possible; the rest live in the arena.
  const size_t nv = st.values.size();
  plan->values_.assign(nv, ValueSlot{});
  for (size_t v = 0; v < nv; ++v) plan->values_[v].shape = st.values[v].shape;
  for (size_t v = 0; v < nv; ++v) {
    const int in = st.values[v].input_index;
    if (in < 0) continue;
    if (st.key.formats[size_t(in)] == ChannelFormat::float32 && st.key.dense[size_t(in)]) {
      plan->values_[v].kind = ValueSlot::Kind::input;
      plan->values_[v].index = in;
    } else {
      plan->input_copies_.push_back({int(v), in});
    }
  }
  const auto& outputs = st.def.outputs;
  for (size_t j = 0; j < outputs.size(); ++j) {
    const int v0 = st.output_values[j];
    plan->output_shapes_.push_back(v0 >= 0 ? st.values[size_t(v0)].shape : ImageShape{});
    ChannelFormat f = ChannelFormat::float32;
    if (outputs[j]) f = outputs[j]->format != ChannelFormat::none ? outputs[j]->format : st.key.graph_format;
    plan->output_formats_.push_back(f);
    if (v0 < 0) continue;
    const int v = st.root(v0);
    ValueSlot& slot = plan->values_[size_t(v)];
    const bool produced_here = st.values[size_t(v)].input_index < 0;
    if (f == ChannelFormat::float32 && produced_here && slot.kind == ValueSlot::Kind::arena && slot.index < 0) {
      slot.kind = ValueSlot::Kind::output;
      slot.index = int(j);
    } else {
      plan->output_copies_.push_back({v, int(j)});
    }
  }

  // Temporary memory by liveness, with in-place reuse for elementwise steps and sum post-ops.
  const int end = int(steps.size());
  std::vector<int> last_use(nv, -1);
  for (int i = 0; i < end; ++i) {
    for (int v : steps[size_t(i)].inputs) last_use[size_t(v)] = i;
    if (steps[size_t(i)].sum_input >= 0) last_use[size_t(steps[size_t(i)].sum_input)] = i;
  }
  for (const auto& c : plan->output_copies_) last_use[size_t(c.value)] = end;
  auto in_arena = [&](int v) { return v >= 0 && plan->values_[size_t(v)].kind == ValueSlot::Kind::arena; };
  auto bytes_of = [&](int v) { return size_t(st.values[size_t(v)].shape.numel()) * sizeof(float); };
  MemoryPlanner mem;
  std::vector<bool> placed(nv, false), owns(nv, false);
  auto place = [&](int v) {
    plan->values_[size_t(v)].offset = mem.allocate(bytes_of(v));
    placed[size_t(v)] = owns[size_t(v)] = true;
  };
  auto hand_over = [&](int from, int to) {  // `to` reuses `from`'s memory
    plan->values_[size_t(to)].offset = plan->values_[size_t(from)].offset;
    placed[size_t(to)] = owns[size_t(to)] = true;
    owns[size_t(from)] = false;
  };
  auto release = [&](int v) {
    if (in_arena(v) && owns[size_t(v)]) {
      mem.release(plan->values_[size_t(v)].offset);
      owns[size_t(v)] = false;
    }
  };
  for (const auto& c : plan->input_copies_)
    if (!placed[size_t(c.value)]) place(c.value);
  for (int i = 0; i < end; ++i) {
    PlanStep& ps = steps[size_t(i)];
    const int out = ps.output;
    auto dies_here_alone = [&](int v) {
      return in_arena(v) && owns[size_t(v)] && last_use[size_t(v)] == i && bytes_of(v) == bytes_of(out);
    };
    const int uses0 = int(std::count(ps.inputs.begin(), ps.inputs.end(), ps.inputs[0]));
    if (in_arena(out) && !placed[size_t(out)]) {
      if (ps.sum_input >= 0 && dies_here_alone(ps.sum_input) &&
          std::find(ps.inputs.begin(), ps.inputs.end(), ps.sum_input) == ps.inputs.end()) {
        hand_over(ps.sum_input, out);
      } else if (ps.kernel->in_place_ok() && ps.sum_input < 0 && uses0 == 1 && dies_here_alone(ps.inputs[0])) {
        hand_over(ps.inputs[0], out);
      } else {
        place(out);
      }
    }
    for (int v : ps.inputs)
      if (last_use[size_t(v)] == i && v != out) release(v);
    if (ps.sum_input >= 0 && last_use[size_t(ps.sum_input)] == i && ps.sum_input != out) release(ps.sum_input);
    if (last_use[size_t(out)] < 0) release(out);  // a result nothing reads
  }
  plan->scratch_offset_ = mem.total_bytes();
  size_t scratch = 0;
  for (const auto& ps : steps) scratch = std::max(scratch, ps.kernel->scratch_bytes());
  plan->arena_bytes_ = plan->scratch_offset_ + scratch;
  plan->steps_ = std::move(steps);
  return plan;
}

PlanPtr compile_plan(const GraphDef& def, const PlanKey& key, const KernelRegistry& registry,
                     const CompileOptions& options) {
  CompileState st{def, key, registry, options, {}, {}, {}, {}};
  infer_shapes(st);
  fuse_nodes(st);
  return PlanBuilder::build(st);
}

}  // namespace mpsnn
