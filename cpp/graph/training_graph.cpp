// training_graph (graph.md §1.9). The forward filters reachable from `self` through image links
// are visited in reverse topological order (depth-first post-order over sources in declaration
// order, reversed), so a filter is processed once every consumer inside that sub-graph has
// produced its gradient contribution. State links are not followed (the documented limitation):
// a filter connected to the rest only through a state gets no gradient node.
#include "graph/training_graph.h"

#include <type_traits>
#include <unordered_map>
#include <unordered_set>

#include "core/errors.h"
#include "graph/gradients.h"
#include "graph/schema.h"

namespace mpsnn {

void copy_handle_handler(const FilterNodePtr& gradient_node, const FilterNodePtr&, const ImageNodePtr& inference_source,
                         const ImageNodePtr&) {
  gradient_node->result_image()->handle = inference_source->handle;
}

namespace {

template <typename T, typename = void>
struct has_training_style : std::false_type {};
template <typename T>
struct has_training_style<T, std::void_t<decltype(std::declval<T&>().training_style)>> : std::true_type {};

// §1.9 step 7: a trainable forward node's training style, on its gradient node (whatever attrs
// types the two kinds have).
void copy_training_style(const FilterNode& forward, FilterNode& gradient) {
  std::optional<TrainingStyle> style;
  std::visit([&](const auto& a) {
    if constexpr (has_training_style<std::decay_t<decltype(a)>>::value) style = a.training_style;
  }, forward.attrs());
  if (!style) return;
  std::visit([&](auto& a) {
    if constexpr (has_training_style<std::decay_t<decltype(a)>>::value) a.training_style = *style;
  }, gradient.attrs());
}

bool is_trainable(const FilterNode& f) { return f.convolution_source || f.normalization_source; }

// Forward filters reachable from `self` through source images, sources before consumers.
std::vector<FilterNodePtr> forward_order(FilterNode& self) {
  std::vector<FilterNodePtr> order;
  std::unordered_set<const FilterNode*> seen{&self};
  struct Frame {
    FilterNodePtr node;
    size_t next = 0;
  };
  std::vector<Frame> stack{{self.shared_from_this()}};
  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.next < f.node->sources().size()) {
      auto parent = f.node->sources()[f.next++]->parent();
      if (parent && seen.insert(parent.get()).second) stack.push_back({parent});
    } else {
      order.push_back(f.node);
      stack.pop_back();
    }
  }
  return order;
}

}  // namespace

std::vector<FilterNodePtr> training_graph(FilterNode& self, const ImageNodePtr& source_gradient,
                                          const GradientNodeHandler& handler) {
  std::vector<FilterNodePtr> created;
  // Gradient contributions per forward image, in the order they were created (the consumer order
  // in which inserted additions sum them, left to right).
  std::unordered_map<const ImageNode*, std::vector<ImageNodePtr>> contributions;
  const ImageNodePtr seed = source_gradient ? source_gradient : self.result_image();
  const bool self_gradient = schema(self.kind()).self_gradient;
  if (self_gradient) {
    // A loss's result is already the gradient of its (prediction) source.
    const ImageNodePtr& prediction = self.sources()[0];
    if (!prediction->stop_gradient && prediction->parent()) contributions[prediction.get()].push_back(seed);
  }

  const std::vector<FilterNodePtr> order = forward_order(self);
  for (size_t i = order.size(); i-- > 0;) {
    const FilterNodePtr& forward = order[i];
    if (self_gradient && forward.get() == &self) continue;
    const ImageNodePtr result = forward->result_image();
    ImageNodePtr g;
    if (forward.get() == &self) {
      g = seed;
    } else {
      auto it = contributions.find(result.get());
      if (it == contributions.end()) continue;  // no gradient reaches this node (stop_gradient, pruned)
      std::vector<ImageNodePtr>& parts = it->second;
      g = parts[0];
      // §1.9 step 3: fan-out, summed left to right by plain additions.
      for (size_t k = 1; k < parts.size(); ++k) {
        ArithmeticAttrs add;
        add.op = ArithmeticOp::add;
        FilterNodePtr sum = make_filter_node(OpKind::Arithmetic, add, {g, parts[k]});
        created.push_back(sum);
        handler(sum, nullptr, result, g);
        g = sum->result_image();
      }
    }
    const auto& sources = forward->sources();
    // A consumer of stop_gradient images still runs when it trains parameters (its data
    // gradient then is a terminal); otherwise it is skipped (graph.md §1.9 step 5).
    bool any_open = false;
    for (const auto& s : sources) any_open = any_open || !s->stop_gradient;
    if (!any_open && !is_trainable(*forward)) continue;
    std::vector<FilterNodePtr> nodes = gradient_filters(*forward, {g});
    MPSNN_CHECK(nodes.size() == sources.size(), GraphError, forward->context(), " made ", nodes.size(),
                " gradient nodes for ", sources.size(), " sources");
    for (size_t k = 0; k < nodes.size(); ++k) {
      const ImageNodePtr& source = sources[k];
      // One gradient node per source: those for stop_gradient sources of multi-source nodes are
      // not part of the training graph.
      if (source->stop_gradient && sources.size() > 1) continue;
      FilterNodePtr& node = nodes[k];
      copy_training_style(*forward, *node);
      created.push_back(node);
      handler(node, forward, source, g);
      if (!source->stop_gradient && source->parent()) contributions[source.get()].push_back(node->result_image());
    }
  }

  // Terminals: created nodes whose result no other created node reads.
  std::unordered_set<const ImageNode*> read;
  for (const auto& n : created)
    for (const auto& s : n->sources()) read.insert(s.get());
  std::vector<FilterNodePtr> terminals;
  for (const auto& n : created)
    if (!read.count(n->result_image().get())) terminals.push_back(n);
  return terminals;
}

}  // namespace mpsnn
