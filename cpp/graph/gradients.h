#pragma once
// Gradient nodes made from forward nodes (graph.md §1.8): `forward.gradient_filter(with_source=g)`.
// The rule for a kind with a gradient column in op_list.def: a node of the gradient kind with
// sources {g, forward sources...}, source state the forward node's result state (wiring it is
// what makes the forward kernel fill that state), attributes, padding policy and data sources
// copied from the forward node. Kinds needing another rule (one node per source for arithmetic
// and concatenation, self-gradient losses) set OpSchema::gradient_rule.
#include <vector>

#include "graph/node.h"

namespace mpsnn {

// Makes the node object of a kind. The bindings register a factory per kind so that nodes made
// in C++ are instances of the matching Python class; without one a plain FilterNode is made.
using NodeFactory = FilterNodePtr (*)(OpKind kind, Attrs attrs, std::vector<ImageNodePtr> sources,
                                      std::vector<StateNodePtr> states);
void set_node_factory(OpKind kind, NodeFactory factory);
FilterNodePtr make_filter_node(OpKind kind, Attrs attrs, std::vector<ImageNodePtr> sources,
                               std::vector<StateNodePtr> states = {});

// The gradient node of `forward` for incoming gradient(s) `gradients` (one image for the
// single-source kinds of this build). Raises UnsupportedError (NotImplementedError in Python)
// for gradient nodes, kinds without a gradient and gradients not implemented yet.
FilterNodePtr gradient_filter(FilterNode& forward, const std::vector<ImageNodePtr>& gradients);
// One gradient node per forward source (graph.md §1.8); single-source kinds give one.
std::vector<FilterNodePtr> gradient_filters(FilterNode& forward, const std::vector<ImageNodePtr>& gradients);

// The attributes of the forward node that made `state` when it is a node of `kind`, else null:
// what a hand-built gradient node takes from its gradient state (nodes.md §1.5).
const Attrs* state_producer_attrs(const StateNodePtr& state, OpKind kind);

}  // namespace mpsnn
