// Pass 2 (run again after fusion): removes steps whose outputs nothing reads, and marks steps
// whose result image nothing reads (StepInfo::result_needed). A forward node kept only for its
// result state is not computed when that state has no buffers (a neuron's). Steps of side-effect
// kinds (OpSchema::side_effect) are always live, and so are the values source states receive (a
// loss's loss image).
#include "graph/passes/compile_state.h"

namespace mpsnn {

void prune_steps(CompileState& st) {
  std::vector<bool> live(st.values.size(), false);
  for (int v : st.output_values)
    if (v >= 0) live[size_t(v)] = true;
  for (const auto& vals : st.result_state_values)
    for (int v : vals) live[size_t(v)] = true;
  for (const auto& vals : st.bound_output_values)
    for (int v : vals) live[size_t(v)] = true;
  for (size_t i = st.steps.size(); i-- > 0;) {
    StepInfo& s = st.steps[i];
    bool needed = !s.removed && s.node && schema(s.kind).side_effect;
    for (int v : s.outputs) needed = needed || live[size_t(v)];
    if (!needed) {
      s.removed = true;
      continue;
    }
    s.result_needed = live[size_t(s.outputs[0])];  // every reader comes later in step order
    for (int v : s.inputs) live[size_t(v)] = true;
  }
}

}  // namespace mpsnn
