// Pass 1: creates one value per image node and one step per filter, resolving every result size
// and window geometry from the padding policies (graph.md §2.13 steps 1-4).
#include <cmath>

#include "core/errors.h"
#include "graph/passes/compile_state.h"

namespace mpsnn {

namespace {

// Folds MPSCNNConvolutionDescriptor's batch-norm parameters into weights and bias.
std::shared_ptr<const ConvolutionParams> fold_descriptor_batch_norm(std::shared_ptr<const ConvolutionParams> p) {
  if (!p->desc.batch_norm) return p;
  const auto& bn = *p->desc.batch_norm;
  auto f = fold_batch_norm(*p, bn.mean, bn.variance, bn.gamma, bn.beta, bn.epsilon);
  f->desc.batch_norm.reset();
  return f;
}

bool result_state_consumed(const GraphDef& def, const FilterNode& node) {
  auto states = const_cast<FilterNode&>(node).result_states();
  for (const auto& f : def.filters)
    for (const auto& s : f->source_states())
      for (const auto& own : states)
        if (s.get() == own.get()) return true;
  return false;
}

}  // namespace


void infer_shapes(CompileState& st) {
  const GraphDef& def = st.def;
  for (size_t i = 0; i < def.source_images.size(); ++i) {
    ValueInfo v;
    v.shape = st.key.shapes[i];
    v.input_index = int(i);
    st.value_of[def.source_images[i].get()] = int(st.values.size());
    st.values.push_back(v);
  }
  std::unordered_map<const FilterNode*, ResolvedNode> resolved;
  for (const auto& fp : def.filters) {
    const FilterNode& f = *fp;
    const OpSchema& s = schema(f.kind());
    StepInfo step;
    step.node = &f;
    step.kind = f.kind();
    ShapeContext ctx{f, def.params.at(&f), {}, {}, [&](const StateNode* state) -> const ResolvedNode* {
                       auto prod = state->producer();
                       if (!prod) return nullptr;
                       auto it = resolved.find(prod.get());
                       return it == resolved.end() ? nullptr : &it->second;
                     }};
    for (const auto& src : f.sources()) {
      const int v = st.value_of.at(src.get());
      step.inputs.push_back(v);
      ctx.sources.push_back(st.values[size_t(v)].shape);
      ctx.source_formats.push_back(src->format);
    }
    for (size_t i = 1; i < ctx.sources.size(); ++i)
      MPSNN_CHECK(ctx.sources[i].n == ctx.sources[0].n, ShapeError, f.context(), " source ", i, " has ",
                  ctx.sources[i].n, " images, source 0 has ", ctx.sources[0].n, "; expected equal batch sizes");
    // Properties stay writable after construction: check the attributes again before use.
    if (s.validate_attrs) s.validate_attrs(f);
    const ShapeResult r = s.shape(ctx);
    step.geom = r.geom;
    step.conv = ctx.params.conv ? fold_descriptor_batch_norm(ctx.params.conv) : nullptr;
    step.norm = ctx.params.norm;
    if (step.conv && step.conv->desc.fused_neuron.type != NeuronType::none)
      step.post_ops.push_back(PostOp{PostOp::Kind::neuron, step.conv->desc.fused_neuron, 0, 0});
    if (f.kind() == OpKind::BatchNormalization) {
      const auto flags = f.attrs_as<BatchNormalizationAttrs>().flags;
      step.batch_statistics = flags == BatchNormalizationFlags::always ||
                              (flags == BatchNormalizationFlags::automatic && result_state_consumed(def, f));
    }
    resolved[&f] = ResolvedNode{ctx.sources[0], r.out, r.geom};
    ValueInfo out;
    out.shape = r.out;
    out.producer = int(st.steps.size());
    step.output = int(st.values.size());
    st.value_of[const_cast<FilterNode&>(f).result_image().get()] = step.output;
    st.values.push_back(out);
    st.steps.push_back(std::move(step));
  }
  for (const auto& o : def.outputs) st.output_values.push_back(o ? st.value_of.at(o.get()) : -1);
}

}  // namespace mpsnn
