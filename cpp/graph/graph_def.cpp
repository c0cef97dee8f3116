#include "graph/graph_def.h"

#include <functional>
#include <unordered_set>

#include "core/errors.h"

namespace mpsnn {

namespace {
TrainingStyle training_style_of(const FilterNode& f) {
  switch (f.kind()) {
    case OpKind::ConvolutionGradient: return f.attrs_as<ConvolutionAttrs>().training_style;
    case OpKind::BatchNormalizationGradient: return f.attrs_as<BatchNormalizationAttrs>().training_style;
    case OpKind::InstanceNormalizationGradient: return f.attrs_as<InstanceNormalizationAttrs>().training_style;
    default: return TrainingStyle::update_device_none;
  }
}

// Whether the data source implements the update methods of `style` (all are optional).
bool source_updates(FilterNode& f, TrainingStyle style) {
  const bool gpu = style == TrainingStyle::update_device_gpu;
  return with_node_context(f, [&] {
    if (f.convolution_source) return gpu ? f.convolution_source->has_gpu_update() : f.convolution_source->has_cpu_update();
    if (!f.normalization_source) return false;
    using U = NormalizationDataSource::Update;
    const bool instance = f.kind() == OpKind::InstanceNormalizationGradient;
    auto& src = *f.normalization_source;
    if (gpu) return src.has_update(U::gpu_gamma_beta, instance) || (!instance && src.has_update(U::gpu_mean_variance, false));
    return src.has_update(U::cpu_gamma_beta, instance) || (!instance && src.has_update(U::cpu_mean_variance, false));
  });
}

// The trainable gradient nodes whose data sources update parameters; their gradient states
// become (unexported) result states, which also keeps the nodes from being pruned.
void find_updates(const std::vector<FilterNodePtr>& topo, GraphDef& def) {
  for (const auto& f : topo) {
    const TrainingStyle style = training_style_of(*f);
    if (style == TrainingStyle::update_device_none || !f->result_state()) continue;
    if (!source_updates(*f, style)) continue;
    const StateNodePtr st = f->result_state();
    size_t index = def.result_states.size();
    for (size_t i = 0; i < def.result_states.size(); ++i)
      if (def.result_states[i] == st) index = i;
    if (index == def.result_states.size()) def.result_states.push_back(st);
    FilterNodePtr forward;
    if (!f->source_states().empty() && f->source_states()[0]) forward = f->source_states()[0]->producer();
    def.updates.push_back(GraphDef::Update{f, forward, style, index});
  }
}
}  // namespace

GraphDef GraphDef::discover(const std::vector<ImageNodePtr>& results, const std::vector<bool>& needed) {
  GraphDef def;
  MPSNN_CHECK(!results.empty(), GraphError, "[MPSNNGraph] no result image given");
  MPSNN_CHECK(needed.size() == results.size(), GraphError, "[MPSNNGraph] results_are_needed has ", needed.size(),
              " entries for ", results.size(), " result images");
  def.results = results;
  def.results_needed = needed;
  std::unordered_set<const FilterNode*> visited;
  std::unordered_set<const ImageNode*> seen_sources;
  std::unordered_set<const StateNode*> seen_states;
  std::vector<FilterNodePtr> topo;

  // Depth-first, inputs in declaration order: source images first, then source states
  // (graph.md §2.3 project decision). Iterative to survive very deep networks.
  struct Frame {
    FilterNodePtr node;
    size_t next = 0;
  };
  auto visit_image = [&](const ImageNodePtr& img, std::vector<Frame>& stack) {
    if (auto parent = img->parent()) {
      if (!visited.count(parent.get())) {
        visited.insert(parent.get());
        stack.push_back({parent});
      }
    } else if (seen_sources.insert(img.get()).second) {
      def.source_images.push_back(img);
    }
  };
  for (size_t r = 0; r < results.size(); ++r) {
    MPSNN_CHECK(results[r] != nullptr, GraphError, "[MPSNNGraph] result image ", r, " is None");
    MPSNN_CHECK(results[r]->parent() != nullptr, GraphError, "[MPSNNGraph] result image ", r,
                " is a graph input (no filter produces it); expected the result image of a filter node");
    std::vector<Frame> stack;
    visit_image(results[r], stack);
    while (!stack.empty()) {
      Frame& f = stack.back();
      const auto& srcs = f.node->sources();
      const auto& states = f.node->source_states();
      if (f.next < srcs.size()) {
        ImageNodePtr img = srcs[f.next++];
        visit_image(img, stack);
      } else if (f.next < srcs.size() + states.size()) {
        StateNodePtr st = states[f.next - srcs.size()];
        ++f.next;
        if (!st) continue;
        if (auto prod = st->producer()) {
          if (!visited.count(prod.get())) {
            visited.insert(prod.get());
            stack.push_back({prod});
          }
        } else if (seen_states.insert(st.get()).second) {
          def.source_states.push_back(st);
        }
      } else {
        topo.push_back(f.node);
        stack.pop_back();
      }
    }
  }

  // Outputs: first result, results 2..n, exported images.
  std::unordered_set<const ImageNode*> in_outputs;
  def.outputs.push_back(needed[0] ? results[0] : nullptr);
  for (size_t r = 1; r < results.size(); ++r)
    if (needed[r] && in_outputs.insert(results[r].get()).second) def.outputs.push_back(results[r]);
  for (const auto& f : topo) {
    auto img = f->result_image();
    if (img->export_from_graph && in_outputs.insert(img.get()).second) def.outputs.push_back(img);
    for (const auto& st : f->result_states())
      if (st->export_from_graph) def.result_states.push_back(st);
  }
  def.num_exported_states = def.result_states.size();
  find_updates(topo, def);
  // Prune: keep filters that some output (or a kept filter) needs, and those whose work is a side
  // effect (graph.md §2.1: a training graph whose result is not needed still updates parameters
  // and computes its loss).
  std::unordered_set<const FilterNode*> keep;
  std::vector<const FilterNode*> work;
  for (const auto& o : def.outputs)
    if (o) work.push_back(o->parent().get());
  for (const auto& st : def.result_states) work.push_back(st->producer().get());
  for (const auto& f : topo)
    if (schema(f->kind()).side_effect) work.push_back(f.get());
  MPSNN_CHECK(!work.empty(), GraphError,
              "[MPSNNGraph] no result is needed and nothing is exported; the graph would do nothing");
  while (!work.empty()) {
    const FilterNode* f = work.back();
    work.pop_back();
    if (!keep.insert(f).second) continue;
    for (const auto& s : f->sources())
      if (auto p = s->parent()) work.push_back(p.get());
    for (const auto& s : f->source_states())
      if (s)
        if (auto p = s->producer()) work.push_back(p.get());
  }
  for (const auto& f : topo)
    if (keep.count(f.get())) def.filters.push_back(f);
  // Source states of filters pruned away are not asked for.
  std::unordered_set<const StateNode*> used;
  for (const auto& f : def.filters)
    for (const auto& s : f->source_states())
      if (s) used.insert(s.get());
  std::vector<StateNodePtr> states;
  for (const auto& s : def.source_states)
    if (used.count(s.get())) states.push_back(s);
  def.source_states = std::move(states);
  for (const auto& f : def.filters) {
    const OpSchema& s = schema(f->kind());
    if (s.validate_attrs) s.validate_attrs(*f, f->attrs());
    def.frozen[f.get()] = Frozen{f->attrs(), f->padding_policy()};
  }
  return def;
}

}  // namespace mpsnn
