// Pass 4: binds values to the caller's memory and lowers what cannot be bound into Convert steps.
// Image values are stored in the backend's activation format (KernelRegistry::activations_for:
// float32 on the CPU, float16 for float16 graphs on CUDA). A dense source image of that format is
// read in place; any other (another format, a channel slice of a wider image) is converted into
// an activation value first. A result of the activation format that this plan produces is written
// in place; other formats, and results that are graph inputs or already bound elsewhere, get a
// Convert step at the end. Buffers of exported result states are written where
// the caller's state holds them.
#include "core/errors.h"
#include "graph/passes/compile_state.h"

namespace mpsnn {

namespace {
StepInfo convert_step(const Attrs& attrs, int from, int to, const char* what) {
  StepInfo s;
  s.kind = OpKind::Convert;
  s.attrs = &attrs;
  s.inputs = {from};
  s.outputs = {to};
  s.context = std::string("[convert ") + what + "]";
  return s;
}
}  // namespace

void lower_boundaries(CompileState& st) {
  const ChannelFormat act = st.registry.activations_for(st.key.graph_format);
  auto attrs_of = [&](ChannelFormat from, ChannelFormat to) -> const Attrs& {
    return st.internal_attrs(ConvertAttrs{from, to});
  };
  std::vector<StepInfo> front, back;
  const size_t n = st.values.size();
  for (size_t v = 0; v < n; ++v) {
    const int in = st.values[v].source_image;
    if (in < 0) continue;
    const ChannelFormat f = st.key.formats[size_t(in)];
    if (f == act && st.key.dense[size_t(in)]) {
      st.values[v].external_input = in;
      continue;
    }
    ValueInfo e;
    e.desc = TensorDesc{storage_dtype(f), st.values[v].desc.shape};
    e.external_input = in;
    const int ev = st.add_value(e);
    front.push_back(convert_step(attrs_of(f, act), ev, int(v), "source image"));
  }
  const auto& outputs = st.def.outputs;
  for (size_t j = 0; j < outputs.size(); ++j) {
    const int v0 = st.output_values[j];
    if (v0 < 0) continue;
    const ChannelFormat f = outputs[j]->format != ChannelFormat::none ? outputs[j]->format : st.key.graph_format;
    const int v = st.root(v0);
    ValueInfo& val = st.values[size_t(v)];
    if (f == act && val.source_image < 0 && val.external_output < 0) {
      val.external_output = int(j);
      continue;
    }
    ValueInfo e;
    e.desc = TensorDesc{storage_dtype(f), val.desc.shape};
    e.external_output = int(j);
    const int ev = st.add_value(e);
    back.push_back(convert_step(attrs_of(act, f), v, ev, "result image"));
  }
  int next = int(outputs.size());
  for (const auto& vals : st.result_state_values)
    for (int v : vals) st.values[size_t(v)].external_output = next++;
  if (front.empty() && back.empty()) return;
  std::vector<StepInfo> steps = std::move(front);
  for (auto& s : st.steps) steps.push_back(std::move(s));
  for (auto& s : back) steps.push_back(std::move(s));
  st.steps = std::move(steps);
}

}  // namespace mpsnn
