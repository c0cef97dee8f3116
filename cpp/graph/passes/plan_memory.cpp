// Pass 6: places every value that is not the caller's memory in the arena of an execution
// context, by liveness: a value's memory is free again after its last reader, and a step's
// result may take over the memory of an input that dies there (Kernel::in_place_input). The
// kernels' scratch memory follows the values.
#include <algorithm>

#include "graph/passes/compile_state.h"
#include "graph/passes/memory_planner.h"

namespace mpsnn {

MemoryLayout plan_memory(const CompileState& st, const std::vector<int>& live,
                         const std::vector<std::unique_ptr<Kernel>>& kernels) {
  const size_t nv = st.values.size();
  const int end = int(live.size());
  MemoryLayout out;
  out.offsets.assign(nv, 0);
  auto in_arena = [&](int v) {
    const ValueInfo& val = st.values[size_t(v)];
    return val.alias_of < 0 && val.external_input < 0 && val.external_output < 0;
  };
  auto bytes_of = [&](int v) { return st.values[size_t(v)].desc.bytes(); };
  std::vector<int> last_use(nv, -1);
  for (int i = 0; i < end; ++i)
    for (int v : st.steps[size_t(live[size_t(i)])].inputs) last_use[size_t(v)] = i;
  MemoryPlanner mem;
  std::vector<bool> placed(nv, false), owns(nv, false);
  auto place = [&](int v) {
    out.offsets[size_t(v)] = mem.allocate(bytes_of(v));
    placed[size_t(v)] = owns[size_t(v)] = true;
  };
  auto hand_over = [&](int from, int to) {  // `to` reuses `from`'s memory
    out.offsets[size_t(to)] = out.offsets[size_t(from)];
    placed[size_t(to)] = owns[size_t(to)] = true;
    owns[size_t(from)] = false;
  };
  auto release = [&](int v) {
    if (in_arena(v) && owns[size_t(v)]) {
      mem.release(out.offsets[size_t(v)]);
      owns[size_t(v)] = false;
    }
  };
  for (int i = 0; i < end; ++i) {
    const StepInfo& s = st.steps[size_t(live[size_t(i)])];
    const Kernel& k = *kernels[size_t(i)];
    const int result = s.outputs[0];
    const int reuse = k.in_place_input();
    if (in_arena(result) && !placed[size_t(result)]) {
      const int cand = reuse >= 0 && reuse < int(s.inputs.size()) ? s.inputs[size_t(reuse)] : -1;
      const bool ok = cand >= 0 && in_arena(cand) && owns[size_t(cand)] && last_use[size_t(cand)] == i &&
                      bytes_of(cand) == bytes_of(result) &&
                      std::count(s.inputs.begin(), s.inputs.end(), cand) == 1;
      if (ok) hand_over(cand, result);
      else place(result);
    }
    for (size_t k2 = 1; k2 < s.outputs.size(); ++k2)
      if (in_arena(s.outputs[k2]) && !placed[size_t(s.outputs[k2])]) place(s.outputs[k2]);
    for (int v : s.inputs)
      if (last_use[size_t(v)] == i && std::find(s.outputs.begin(), s.outputs.end(), v) == s.outputs.end()) release(v);
    for (int v : s.outputs)
      if (last_use[size_t(v)] < 0) release(v);  // a result nothing reads
  }
  out.scratch_offset = mem.total_bytes();
  size_t scratch = 0;
  for (const auto& k : kernels) scratch = std::max(scratch, k->scratch_bytes());
  out.arena_bytes = (out.scratch_offset + scratch + MemoryPlanner::kAlign - 1) / MemoryPlanner::kAlign *
                    MemoryPlanner::kAlign;
  return out;
}

}  // namespace mpsnn
