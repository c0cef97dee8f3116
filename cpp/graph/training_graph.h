#pragma once
// training_graph (graph.md §1.9): the backward graph of the forward graph ending at a node, built
// from the gradient rules of graph/gradients.h (gradient_filters for every kind), so that kinds
// gaining a gradient need nothing here.
#include <functional>
#include <vector>

#include "graph/node.h"

namespace mpsnn {

// node_handler(gradient_node, inference_node, inference_source, gradient_source), called for
// every created node: the new node, the forward node it mirrors (null for an inserted addition),
// the forward image whose gradient the new node produces, and the gradient image fed into it (an
// addition's left operand). Setting inference_source->stop_gradient inside it prunes the
// traversal beyond that image.
using GradientNodeHandler = std::function<void(const FilterNodePtr& gradient_node, const FilterNodePtr& inference_node,
                                               const ImageNodePtr& inference_source, const ImageNodePtr& gradient_source)>;

// The default handler: copies inference_source's handle to the gradient node's result image.
void copy_handle_handler(const FilterNodePtr& gradient_node, const FilterNodePtr& inference_node,
                         const ImageNodePtr& inference_source, const ImageNodePtr& gradient_source);

// Builds the backward graph of `self` seeded with `source_gradient` (null: self's result image)
// and returns the terminal nodes (whose result no other created node reads) in creation order;
// empty when nothing was created. Errors of gradient_filters (a node without gradient on the
// path) propagate, naming that node.
std::vector<FilterNodePtr> training_graph(FilterNode& self, const ImageNodePtr& source_gradient,
                                          const GradientNodeHandler& handler);

}  // namespace mpsnn
