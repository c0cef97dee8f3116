// Pass 3: rewrites steps without changing results (graph.md §2.10).
//  * dropout in inference is an identity: its result aliases its source (always done). A dropout
//    whose state is consumed (a training graph reads its mask) keeps its step, which samples the mask;
//  * batch normalization in inference mode folds into the producing convolution;
//  * neurons fuse into the producing convolution / fully connected step as post-ops;
//  * an addition whose operand comes from a convolution becomes that convolution's sum
//    post-op (the residual connection), followed by the addition's always-applied clamp; the
//    other addend becomes the convolution step's last input. Not when the addition's gradient
//    state (its clamp mask) is consumed: the convolution step does not produce it.
// A producer is fused into only when its result has exactly one consumer and is not a graph
// output, and never across a custom padding policy that does not allow fusion.
#include "graph/passes/compile_state.h"

namespace mpsnn {

namespace {

struct Uses {
  std::vector<int> count;  // consumers per value (steps and outputs)
};

Uses count_uses(const CompileState& st) {
  Uses u;
  u.count.assign(st.values.size(), 0);
  for (const auto& s : st.steps) {
    if (s.removed) continue;
    for (int v : s.inputs) ++u.count[size_t(v)];
  }
  for (int v : st.output_values)
    if (v >= 0) ++u.count[size_t(v)];
  return u;
}

bool blocks_fusion(const CompileState& st, const FilterNode& node) {
  const int m = st.def.frozen_of(node).padding->padding_method();
  return (m & padding::kCustom) && !(m & padding::kCustomAllowForNodeFusion);
}

bool is_output(const CompileState& st, int v) {
  for (int o : st.output_values)
    if (o == v) return true;
  return false;
}

// The convolution step producing `v` that may absorb one more operation, or null.
StepInfo* fusable_producer(CompileState& st, const Uses& uses, int v) {
  const int p = st.values[size_t(v)].producer;
  if (p < 0 || uses.count[size_t(v)] != 1 || is_output(st, v)) return nullptr;
  StepInfo& s = st.steps[size_t(p)];
  if (s.removed || s.kind != OpKind::Convolution || s.outputs.size() != 1) return nullptr;
  if (s.param_values.conv->desc.sub_pixel_scale_factor != 1) return nullptr;
  return &s;
}

void absorb(CompileState& st, StepInfo& producer, StepInfo& consumer) {
  producer.outputs[0] = consumer.outputs[0];
  st.values[size_t(consumer.outputs[0])].producer = st.values[size_t(consumer.inputs[0])].producer;
  consumer.removed = true;
}

bool has_sum(const StepInfo& s) {
  for (const auto& op : s.post_ops)
    if (op.kind == PostOp::Kind::sum) return true;
  return false;
}

bool default_addition(const ArithmeticAttrs& a) {
  return a.op == ArithmeticOp::add && a.primary_scale == 1.0f && a.secondary_scale == 1.0f && a.bias == 0.0f &&
         a.primary_strides == std::array<int, 3>{1, 1, 1} && a.secondary_strides == std::array<int, 3>{1, 1, 1};
}

}  // namespace

void fuse_nodes(CompileState& st) {
  for (auto& s : st.steps) {
    if (s.kind != OpKind::Dropout || s.removed || s.outputs.size() > 1) continue;
    st.values[size_t(s.outputs[0])].alias_of = s.inputs[0];
    s.removed = true;
  }
  if (!st.options.fuse) return;
  for (size_t i = 0; i < st.steps.size(); ++i) {
    StepInfo& s = st.steps[i];
    if (s.removed || blocks_fusion(st, *s.node)) continue;
    const Uses uses = count_uses(st);
    switch (s.kind) {
      case OpKind::BatchNormalization: {
        // Training (batch statistics) and a consumed or exported state (the statistics it used)
        // keep the step.
        if (s.batch_statistics || s.outputs.size() > 1) break;
        StepInfo* p = fusable_producer(st, uses, s.inputs[0]);
        if (!p || !p->post_ops.empty() ||
            std::get<ConvolutionAttrs>(*p->attrs).variant == ConvolutionVariant::transpose)
          break;
        const ParamSlot* folded = st.params.folded(p->params.at(0), s.params.at(0));
        p->params = {folded};
        ParamSnapshot snap = folded->snapshot();
        p->param_values = std::move(snap.values);
        p->param_version = snap.version;
        absorb(st, *p, s);
        break;
      }
      case OpKind::Neuron: {
        StepInfo* p = fusable_producer(st, uses, s.inputs[0]);
        const auto& n = std::get<NeuronAttrs>(*s.attrs).neuron;
        if (!p || !st.registry.can_fuse_neuron || !st.registry.can_fuse_neuron(n)) break;
        p->post_ops.push_back(PostOp{PostOp::Kind::neuron, n, 0, 0});
        absorb(st, *p, s);
        break;
      }
      case OpKind::Arithmetic: {
        const auto& a = std::get<ArithmeticAttrs>(*s.attrs);
        if (!default_addition(a) || !st.registry.can_fuse_sum || s.outputs.size() > 1) break;
        for (int k = 0; k < 2; ++k) {
          const int operand = s.inputs[size_t(k)], other = s.inputs[size_t(1 - k)];
          StepInfo* p = fusable_producer(st, uses, operand);
          // The cropped transposed-convolution path rewrites its output after the primitive.
          if (!p || has_sum(*p) || operand == other ||
              std::get<ConvolutionAttrs>(*p->attrs).variant == ConvolutionVariant::transpose)
            continue;
          // The other addend must be computed before the convolution that accumulates into it.
          if (st.values[size_t(st.root(other))].producer >= st.values[size_t(operand)].producer) continue;
          if (!(st.values[size_t(other)].desc == st.values[size_t(s.outputs[0])].desc)) continue;
          p->post_ops.push_back(PostOp{PostOp::Kind::sum, {}, 0, 0});
          p->post_ops.push_back(PostOp{PostOp::Kind::clamp, {}, a.minimum_value, a.maximum_value});
          p->inputs.push_back(other);
          p->outputs[0] = s.outputs[0];
          st.values[size_t(s.outputs[0])].producer = st.values[size_t(operand)].producer;
          s.removed = true;
          break;
        }
        break;
      }
      default: break;
    }
  }
}

}  // namespace mpsnn
