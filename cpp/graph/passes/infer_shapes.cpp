// Pass 1: creates one value per image node and one step per filter, resolving every result size
// and window geometry from the padding policies (graph.md §2.13 steps 1-4). A result state that
// another filter reads or the graph exports becomes state values (its buffers, from the
// schema's StateSpec) appended to the producing step's outputs and to the consumer's inputs.
#include <unordered_set>

#include "core/errors.h"
#include "graph/passes/compile_state.h"

namespace mpsnn {

namespace {
// States some filter of the graph reads, or that the graph exports.
std::unordered_set<const StateNode*> wanted_states(const GraphDef& def) {
  std::unordered_set<const StateNode*> out;
  for (const auto& f : def.filters)
    for (const auto& s : f->source_states())
      if (s) out.insert(s.get());
  for (const auto& s : def.result_states) out.insert(s.get());
  return out;
}
}  // namespace

void infer_shapes(CompileState& st) {
  const GraphDef& def = st.def;
  const DType activations = storage_dtype(st.registry.activations_for(st.key.graph_format));
  for (size_t i = 0; i < def.source_images.size(); ++i) {
    ValueInfo v;
    v.desc = TensorDesc{activations, st.key.shapes[i]};
    v.source_image = int(i);
    st.value_of[def.source_images[i].get()] = st.add_value(v);
  }
  const auto wanted = wanted_states(def);
  std::unordered_map<const FilterNode*, ResolvedNode> resolved;
  for (const auto& fp : def.filters) {
    FilterNode& f = *fp;
    const OpSchema& s = schema(f.kind());
    const GraphDef::Frozen& frozen = def.frozen_of(f);
    StepInfo step;
    step.node = &f;
    step.kind = f.kind();
    step.attrs = &frozen.attrs;
    step.context = f.context();
    if (const ParamSlot* slot = st.params.slot_of(f)) {
      step.params.push_back(slot);
      ParamSnapshot snap = slot->snapshot();
      step.param_values = std::move(snap.values);
      step.param_version = snap.version;
    }
    ShapeContext ctx{f, frozen.attrs, frozen.padding, step.param_values, {}, {},
                     [&](const StateNode* state) -> const ResolvedNode* {
                       auto prod = state->producer();
                       if (!prod) return nullptr;
                       auto it = resolved.find(prod.get());
                       return it == resolved.end() ? nullptr : &it->second;
                     }};
    for (const auto& src : f.sources()) {
      const int v = st.value_of.at(src.get());
      step.inputs.push_back(v);
      ctx.sources.push_back(st.values[size_t(v)].desc.shape);
      ctx.source_formats.push_back(src->format);
    }
    for (const auto& state : f.source_states()) {
      if (!state) continue;
      auto it = st.state_values.find(state.get());
      if (it != st.state_values.end()) step.inputs.insert(step.inputs.end(), it->second.begin(), it->second.end());
    }
    for (size_t i = 1; i < ctx.sources.size(); ++i)
      MPSNN_CHECK(ctx.sources[i].n == ctx.sources[0].n, ShapeError, f.context(), " source ", i, " has ",
                  ctx.sources[i].n, " images, source 0 has ", ctx.sources[0].n, "; expected equal batch sizes");
    const ShapeResult r = with_node_context(f, [&] { return s.shape(ctx); });
    MPSNN_CHECK(r.out.n > 0 && r.out.h > 0 && r.out.w > 0 && r.out.c > 0, ShapeError, f.context(), " result is ",
                r.out.w, "x", r.out.h, "x", r.out.c, " with ", r.out.n, " images; expected all sizes > 0");
    check_result_bytes(ctx, r.out);
    step.geom = r.geom;
    if (step.param_values.conv && step.param_values.conv->desc.fused_neuron.type != NeuronType::none)
      step.post_ops.push_back(PostOp{PostOp::Kind::neuron, step.param_values.conv->desc.fused_neuron, 0, 0});
    resolved[&f] = ResolvedNode{&f, ctx.sources, r.out, r.geom};

    const int step_index = int(st.steps.size());
    ValueInfo out;
    out.desc = TensorDesc{activations, r.out};
    out.producer = step_index;
    const int result = st.add_value(out);
    step.outputs.push_back(result);
    st.value_of[f.result_image().get()] = result;
    // Result states: filled only when read or exported (nodes.md §2.1).
    const auto states = f.result_states();
    bool state_consumed = false;
    for (size_t k = 0; k < states.size() && k < s.result_states.size(); ++k) {
      if (!wanted.count(states[k].get())) continue;
      state_consumed = true;
      std::vector<int>& vals = st.state_values[states[k].get()];
      if (!s.result_states[k].buffers) continue;
      for (const TensorDesc& d : s.result_states[k].buffers(ctx, r)) {
        ValueInfo sv;
        sv.kind = ValueKind::state;
        sv.desc = d;
        sv.producer = step_index;
        vals.push_back(st.add_value(sv));
        step.outputs.push_back(vals.back());
      }
    }
    if (f.kind() == OpKind::BatchNormalization) {
      const auto flags = std::get<BatchNormalizationAttrs>(frozen.attrs).flags;
      step.batch_statistics = flags == BatchNormalizationFlags::always ||
                              (flags == BatchNormalizationFlags::automatic && state_consumed);
    }
    st.steps.push_back(std::move(step));
  }
  for (const auto& o : def.outputs) st.output_values.push_back(o ? st.value_of.at(o.get()) : -1);
  for (const auto& s : def.result_states) {
    auto it = st.state_values.find(s.get());
    st.result_state_values.push_back(it == st.state_values.end() ? std::vector<int>{} : it->second);
  }
}

}  // namespace mpsnn
