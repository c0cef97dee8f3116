// The compile pipeline: the pass order, and the assembly of the immutable Plan from what the
// passes produced. Poison fills (a test aid) are Fill steps placed first, once memory is planned.
#include <algorithm>

#include "core/errors.h"
#include "graph/passes/compile_state.h"

namespace mpsnn {

namespace {
// The one step of a graph-level backend: every caller-bound value, in Plan::execute's order, and
// every parameter slot of the graph.
std::unique_ptr<Kernel> graph_kernel_step(CompileState& st, std::vector<int>& inputs, std::vector<int>& outputs,
                                          std::vector<const ParamSlot*>& params) {
  GraphKernelSpec spec;
  spec.def = &st.def;
  spec.key = &st.key;
  spec.params = &st.params;
  spec.poison_outputs = st.key.poison;
  spec.graph_format = st.key.graph_format;
  // Plan::execute's inputs and outputs, all of them (a result nobody needs has a null binding).
  size_t n_in = st.def.source_images.size(), n_out = st.def.outputs.size();
  for (const auto& d : st.key.state_inputs) n_in += d.size();
  for (const auto& vals : st.result_state_values) n_out += vals.size();
  for (const auto& d : st.key.state_outputs) n_out += d.size();
  inputs.assign(n_in, -1);
  outputs.assign(n_out, -1);
  for (size_t v = 0; v < st.values.size(); ++v) {
    const ValueInfo& val = st.values[v];
    if (val.external_input >= 0) {
      if (inputs.size() <= size_t(val.external_input)) inputs.resize(size_t(val.external_input) + 1, -1);
      inputs[size_t(val.external_input)] = int(v);
    }
    if (val.external_output >= 0) {
      if (outputs.size() <= size_t(val.external_output)) outputs.resize(size_t(val.external_output) + 1, -1);
      outputs[size_t(val.external_output)] = int(v);
    }
  }
  // Every binding has a value, except outputs nothing produces (a result that is not needed).
  auto descs = [&](std::vector<int>& vals, std::vector<TensorDesc>& out, bool output) {
    for (size_t i = 0; i < vals.size(); ++i) {
      if (vals[i] < 0) {
        ValueInfo none;
        (output ? none.external_output : none.external_input) = int(i);
        vals[i] = st.add_value(none);
      }
      out.push_back(st.values[size_t(vals[i])].desc);
    }
  };
  descs(inputs, spec.inputs, false);
  descs(outputs, spec.outputs, true);
  for (const auto& f : st.def.filters)
    if (const ParamSlot* slot = st.params.slot_of(*f)) {
      params.push_back(slot);
      spec.param_nodes.push_back(f.get());
    }
  for (const auto& vals : st.result_state_values) spec.result_state_buffers.push_back(vals.size());
  for (const StepInfo& s : st.steps)
    if (s.node) spec.geometry.emplace_back(s.node, s.geom);
  for (const auto& kv : st.value_of) spec.shapes.emplace_back(kv.first, st.values[size_t(kv.second)].desc.shape);
  return st.registry.graph_kernel(spec, *st.device);
}

// A quiet NaN in float32 and, per half, in float16 and bfloat16: poisoned memory reads as NaN
// whatever the dtype of the value that lands on it.
constexpr uint32_t kNaNPattern = 0x7fc07fc0u;
constexpr uint32_t kAllOnes = 0xffffffffu;      // NaN in float16/32, the maximum in unorm formats
}  // namespace

PlanPtr compile_plan(const GraphDef& def, const PlanKey& key, const KernelRegistry& registry, const DevicePtr& device,
                     const std::shared_ptr<ParamStore>& params, const CompileOptions& options) {
  CompileState st{def, key, registry, device, *params, options, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  infer_shapes(st);
  prune_steps(st);
  // A graph-level backend fuses and plans memory itself: only the shapes and the caller bindings
  // are ours (graph_kernel_step below).
  const bool graph_level = registry.graph_kernel != nullptr;
  if (!graph_level) {
    fuse_nodes(st);
    prune_steps(st);
  }
  lower_boundaries(st);
  std::vector<int> live;
  std::vector<std::unique_ptr<Kernel>> kernels;
  std::vector<int> graph_inputs, graph_outputs;
  std::vector<const ParamSlot*> graph_params;
  if (graph_level) {
    kernels.push_back(graph_kernel_step(st, graph_inputs, graph_outputs, graph_params));
  } else {
    kernels = create_kernels(st, live);
  }
  const MemoryLayout mem = graph_level ? MemoryLayout{std::vector<size_t>(st.values.size(), 0), 0, 0}
                                       : plan_memory(st, live, kernels);

  auto plan = std::make_shared<Plan>(device);
  plan->param_store_ = params;
  plan->records_ = device->supports_recording();
  const size_t nv = st.values.size();
  plan->values_.resize(nv);
  for (size_t v = 0; v < nv; ++v) {
    const ValueInfo& val = st.values[v];
    ValueSlot& slot = plan->values_[v];
    slot.desc = val.desc;
    if (val.external_input >= 0) {
      slot.kind = ValueSlot::Kind::input;
      slot.index = val.external_input;
    } else if (val.external_output >= 0) {
      slot.kind = ValueSlot::Kind::output;
      slot.index = val.external_output;
    } else {
      slot.offset = mem.offsets[v];
    }
  }
  auto add_step = [&](std::unique_ptr<Kernel> kernel, const std::vector<int>& inputs, const std::vector<int>& outputs,
                      const std::vector<const ParamSlot*>& step_params, std::string context) {
    PlanStep ps;
    ps.kernel = std::move(kernel);
    ps.first_input = int(plan->step_values_.size());
    ps.num_inputs = int(inputs.size());
    plan->step_values_.insert(plan->step_values_.end(), inputs.begin(), inputs.end());
    ps.first_output = int(plan->step_values_.size());
    ps.num_outputs = int(outputs.size());
    plan->step_values_.insert(plan->step_values_.end(), outputs.begin(), outputs.end());
    ps.first_param = int(plan->params_.size());
    ps.num_params = int(step_params.size());
    plan->params_.insert(plan->params_.end(), step_params.begin(), step_params.end());
    ps.context = std::move(context);
    plan->max_refs_ = std::max({plan->max_refs_, ps.num_inputs, ps.num_outputs});
    plan->steps_.push_back(std::move(ps));
  };
  size_t arena_bytes = mem.arena_bytes;
  if (graph_level) {
    // Its temporaries live inside the framework: key.poison reaches the kernel, which poisons the
    // caller-bound outputs only (GraphKernelSpec::poison_outputs).
    add_step(std::move(kernels[0]), graph_inputs, graph_outputs, graph_params, "[MPSNNGraph]");
    plan->steps_.back().whole_graph = true;
  } else if (key.poison) {
    // One value spanning the whole arena (temporaries and scratch), then every caller output.
    KernelFactory fill = registry.find(OpKind::Fill);
    MPSNN_CHECK(fill != nullptr, UnsupportedError, "[MPSNNGraph] the '", registry.backend(),
                "' backend has no fill kernel for poison_temporaries");
    auto fill_step = [&](int v, uint32_t pattern) {
      KernelSpec spec;
      spec.kind = OpKind::Fill;
      const Attrs& a = st.internal_attrs(FillAttrs{pattern});
      spec.attrs = &a;
      spec.outputs = {plan->values_[size_t(v)].desc};
      spec.context = "[fill]";
      add_step(fill(spec, *device), {}, {v}, {}, spec.context);
    };
    if (arena_bytes) {
      ValueSlot whole;
      whole.desc = TensorDesc{DType::u8, ImageShape{1, 1, 1, int64_t(arena_bytes)}};
      plan->values_.push_back(whole);
      fill_step(int(plan->values_.size()) - 1, kNaNPattern);
    }
    for (size_t v = 0; v < nv; ++v)
      if (plan->values_[v].kind == ValueSlot::Kind::output) fill_step(int(v), kAllOnes);
  }
  for (size_t i = 0; i < live.size(); ++i) {
    const StepInfo& s = st.steps[size_t(live[i])];
    add_step(std::move(kernels[i]), s.inputs, s.outputs, s.params, s.context);
    std::string& fused = plan->steps_.back().fused;
    for (const auto& op : s.post_ops) {
      const char* what = op.kind == PostOp::Kind::sum ? "sum"
                         : op.kind == PostOp::Kind::clamp ? "clamp" : neuron_name(op.neuron.type);
      fused += (fused.empty() ? "" : ", ") + std::string(what);
    }
  }
  plan->arena_bytes_ = arena_bytes;
  plan->scratch_offset_ = mem.scratch_offset;

  const auto& outputs = def.outputs;
  for (size_t j = 0; j < outputs.size(); ++j) {
    const int v0 = st.output_values[j];
    plan->output_shapes_.push_back(v0 >= 0 ? st.values[size_t(v0)].desc.shape : ImageShape{});
    ChannelFormat f = ChannelFormat::float32;
    if (outputs[j]) f = outputs[j]->format != ChannelFormat::none ? outputs[j]->format : key.graph_format;
    plan->output_formats_.push_back(f);
  }
  for (const auto& vals : st.result_state_values) {
    std::vector<TensorDesc> layout;
    for (int v : vals) layout.push_back(st.values[size_t(v)].desc);
    plan->result_state_layouts_.push_back(std::move(layout));
  }
  plan->result_state_origins_ = st.result_state_origins;
  for (const auto& [node, v] : st.value_of) plan->image_shapes_.emplace_back(node, st.values[size_t(v)].desc.shape);
  return plan;
}

}  // namespace mpsnn
