// Pass 5: asks the backend for one kernel per live step. Every step without a kernel on the
// device is reported at once.
#include "core/errors.h"
#include "graph/passes/compile_state.h"

namespace mpsnn {

std::vector<std::unique_ptr<Kernel>> create_kernels(CompileState& st, std::vector<int>& live) {
  live.clear();
  for (size_t i = 0; i < st.steps.size(); ++i)
    if (!st.steps[i].removed) live.push_back(int(i));
  std::string missing;
  for (int i : live)
    if (!st.registry.find(st.steps[size_t(i)].kind))
      missing += (missing.empty() ? "" : ", ") + st.steps[size_t(i)].context;
  MPSNN_CHECK(missing.empty(), UnsupportedError, "[MPSNNGraph] no kernel on the '", st.registry.backend(),
              "' backend for: ", missing);
  std::vector<std::unique_ptr<Kernel>> kernels;
  for (int i : live) {
    StepInfo& s = st.steps[size_t(i)];
    for (int& v : s.inputs) v = st.root(v);
    for (int& v : s.outputs) v = st.root(v);
    KernelSpec spec;
    spec.node = s.node;
    spec.kind = s.kind;
    spec.attrs = s.attrs;
    for (int v : s.inputs) spec.inputs.push_back(st.values[size_t(v)].desc);
    for (int v : s.outputs) spec.outputs.push_back(st.values[size_t(v)].desc);
    spec.geom = s.geom;
    spec.post_ops = s.post_ops;
    spec.params = s.param_values;
    spec.params_version = s.param_version;
    spec.batch_statistics = s.batch_statistics;
    spec.result_needed = s.result_needed;
    spec.context = s.context;
    kernels.push_back(st.registry.find(s.kind)(spec, *st.device));
  }
  return kernels;
}

}  // namespace mpsnn
