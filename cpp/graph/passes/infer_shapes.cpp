// Pass 1: creates one value per image node and one step per filter, resolving every result size
// and window geometry from the padding policies (graph.md §2.13 steps 1-4). A result state that
// another filter reads or the graph exports becomes state values (its buffers, from the
// schema's StateSpec) appended to the producing step's outputs and to the consumer's inputs. A
// source state of the graph (loss labels) binds caller values: inputs of its consumer, and
// outputs its consumer writes (PlanKey::state_inputs / state_outputs).
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
  int next_input = int(def.source_images.size());
  std::unordered_map<const StateNode*, size_t> bound_index;
  for (size_t i = 0; i < def.source_states.size(); ++i) {
    const StateNode* sn = def.source_states[i].get();
    bound_index[sn] = i;
    std::vector<int>& ins = st.state_values[sn];
    for (const TensorDesc& d : st.key.state_inputs[i]) {
      ValueInfo v;
      v.kind = ValueKind::state;
      v.desc = d;
      v.external_input = next_input++;
      ins.push_back(st.add_value(v));
    }
    std::vector<int> outs;
    for (const TensorDesc& d : st.key.state_outputs[i]) {
      ValueInfo v;
      v.kind = ValueKind::state;
      v.desc = d;
      outs.push_back(st.add_value(v));
    }
    st.bound_output_values.push_back(std::move(outs));
  }
  const auto wanted = wanted_states(def);
  std::unordered_map<const FilterNode*, ResolvedNode> resolved;
  std::unordered_map<const FilterNode*, int> step_of;
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
                     },
                     {}};
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
      auto b = bound_index.find(state.get());
      if (b != bound_index.end())
        ctx.bound_states.push_back({st.key.state_inputs[b->second], st.key.state_outputs[b->second]});
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
    // Values this node writes into a source state of the graph (a loss writes the labels' loss).
    for (const auto& state : f.source_states()) {
      auto b = state ? bound_index.find(state.get()) : bound_index.end();
      if (b == bound_index.end()) continue;
      for (int v : st.bound_output_values[b->second]) {
        MPSNN_CHECK(st.values[size_t(v)].producer < 0, GraphError, f.context(),
                    " a source state of the graph is written by two nodes");
        st.values[size_t(v)].producer = step_index;
        step.outputs.push_back(v);
      }
    }
    if (f.kind() == OpKind::BatchNormalization) {
      const auto flags = std::get<BatchNormalizationAttrs>(frozen.attrs).flags;
      step.batch_statistics = flags == BatchNormalizationFlags::always ||
                              (flags == BatchNormalizationFlags::automatic && state_consumed);
    }
    // A batch normalization gradient differentiates the mode its forward step ran in.
    if (f.kind() == OpKind::BatchNormalizationGradient && !f.source_states().empty() && f.source_states()[0])
      if (auto fwd = f.source_states()[0]->producer())
        if (auto it = step_of.find(fwd.get()); it != step_of.end())
          step.batch_statistics = st.steps[size_t(it->second)].batch_statistics;
    step_of[&f] = step_index;
    st.steps.push_back(std::move(step));
  }
  for (const auto& o : def.outputs) st.output_values.push_back(o ? st.value_of.at(o.get()) : -1);
  for (const auto& s : def.result_states) {
    auto it = st.state_values.find(s.get());
    st.result_state_values.push_back(it == st.state_values.end() ? std::vector<int>{} : it->second);
    // A convolution's or convolution gradient's state records the forward convolution it belongs to.
    std::shared_ptr<const StateOrigin> origin;
    FilterNodePtr fwd = s->producer();
    if (fwd && fwd->kind() == OpKind::ConvolutionGradient)
      fwd = fwd->source_states().empty() || !fwd->source_states()[0] ? nullptr : fwd->source_states()[0]->producer();
    if (fwd && fwd->kind() == OpKind::Convolution)
      if (auto r = resolved.find(fwd.get()); r != resolved.end()) {
        auto o = std::make_shared<ConvolutionStateOrigin>();
        o->forward = fwd;
        o->source = r->second.sources[0];
        o->geom = r->second.geom;
        origin = std::move(o);
      }
    if (fwd && fwd->kind() == OpKind::BatchNormalizationGradient)
      fwd = fwd->source_states().empty() || !fwd->source_states()[0] ? nullptr : fwd->source_states()[0]->producer();
    if (fwd && fwd->kind() == OpKind::BatchNormalization)
      if (auto r = resolved.find(fwd.get()); r != resolved.end()) {
        auto o = std::make_shared<NormalizationStateOrigin>();
        o->sample_count = r->second.sources[0].n * r->second.sources[0].h * r->second.sources[0].w;
        origin = std::move(o);
      }
    st.result_state_origins.push_back(std::move(origin));
  }
}

}  // namespace mpsnn
