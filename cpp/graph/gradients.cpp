#include "graph/gradients.h"

#include <mutex>

#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

namespace {
NodeFactory g_factories[kNumOpKinds] = {};

// Why `forward` has no gradient node in this build.
[[noreturn]] void no_gradient(const FilterNode& forward) {
  const OpSchema& s = schema(forward.kind());
  if (s.is_gradient)
    MPSNN_THROW(UnsupportedError, forward.context(), " is a gradient node; gradients of gradients are not supported");
  if (s.self_gradient)
    MPSNN_THROW(UnsupportedError, forward.context(), " is its own gradient: its result image is the gradient with ",
                "respect to its source, so gradient_filter is unavailable (use training_graph, or its result_image ",
                "as the incoming gradient of the node before it)");
  switch (forward.kind()) {
    case OpKind::BinaryConvolution:
    case OpKind::Scale:
      MPSNN_THROW(UnsupportedError, forward.context(),
                  " has no gradient node in MPS; mark its result stop_gradient to keep it out of training graphs");
    default: break;
  }
  MPSNN_THROW(UnsupportedError, forward.context(), " gradient nodes of this kind are not implemented yet in this build");
}
}  // namespace

void set_node_factory(OpKind kind, NodeFactory factory) { g_factories[size_t(kind)] = factory; }

FilterNodePtr make_filter_node(OpKind kind, Attrs attrs, std::vector<ImageNodePtr> sources,
                               std::vector<StateNodePtr> states) {
  if (NodeFactory f = g_factories[size_t(kind)]) return f(kind, std::move(attrs), std::move(sources), std::move(states));
  return std::make_shared<FilterNode>(kind, std::move(attrs), std::move(sources), std::move(states));
}

namespace {
// The generic rule: one gradient node for a single-source forward node.
FilterNodePtr generic_gradient(FilterNode& forward, const std::vector<ImageNodePtr>& gradients) {
  const OpSchema& s = schema(forward.kind());
  MPSNN_CHECK(gradients.size() == 1 && gradients[0] != nullptr, GraphError, forward.context(),
              " gradient_filter needs exactly one incoming gradient image; got ", gradients.size());
  std::vector<ImageNodePtr> sources{gradients[0]};
  for (const auto& src : forward.sources()) sources.push_back(src);
  StateNodePtr state = forward.result_state();
  std::vector<StateNodePtr> states;
  if (state) states.push_back(state);
  FilterNodePtr g = make_filter_node(s.gradient, forward.attrs(), std::move(sources), std::move(states));
  g->set_padding_policy(forward.padding_policy());
  if (forward.convolution_source) g->set_data_source(forward.convolution_source);
  if (forward.normalization_source) g->set_data_source(forward.normalization_source);
  return g;
}
}  // namespace

std::vector<FilterNodePtr> gradient_filters(FilterNode& forward, const std::vector<ImageNodePtr>& gradients) {
  const OpSchema& s = schema(forward.kind());
  if (s.gradient == OpKind::None) no_gradient(forward);
  if (s.gradient_rule) return s.gradient_rule(forward, gradients);
  return {generic_gradient(forward, gradients)};
}

const Attrs* state_producer_attrs(const StateNodePtr& state, OpKind kind) {
  if (!state) return nullptr;
  auto producer = state->producer();
  return producer && producer->kind() == kind ? &producer->attrs() : nullptr;
}

FilterNodePtr gradient_filter(FilterNode& forward, const std::vector<ImageNodePtr>& gradients) {
  std::vector<FilterNodePtr> nodes = gradient_filters(forward, gradients);
  // graph.md §1.8: the singular form is unavailable where a node has one gradient per source.
  MPSNN_CHECK(nodes.size() == 1, UnsupportedError, forward.context(), " has one gradient node per source (",
              nodes.size(), "); use gradient_filters");
  return nodes[0];
}

}  // namespace mpsnn
