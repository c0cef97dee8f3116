#pragma once
// What an MPSNNGraph keeps after walking its nodes once (graph.md §2.2): the filters needed for
// the results in topological order, the graph inputs and outputs in handle order, and each
// filter's attributes and padding policy frozen at that moment (MPS fixes node parameters when
// the graph is made: a property changed later affects new graphs, not this one).
#include <memory>
#include <unordered_map>
#include <vector>

#include "graph/node.h"
#include "graph/schema.h"

namespace mpsnn {

struct GraphDef {
  std::vector<FilterNodePtr> filters;           // topological order, pruned to what outputs need
  std::vector<ImageNodePtr> source_images;      // source_image_handles order
  std::vector<StateNodePtr> source_states;      // source_state_handles order
  std::vector<ImageNodePtr> results;            // as given to the initializer
  std::vector<bool> results_needed;
  // Outputs a run produces: output 0 is the first result (null when not needed), then the
  // intermediate images (results 2..n, then exported images) in intermediate_image_handles order.
  std::vector<ImageNodePtr> outputs;
  // Exported states in result_state_handles order ([0, num_exported_states)), then the parameter
  // gradient states of `updates` that are not exported (the graph hands them to data sources).
  std::vector<StateNodePtr> result_states;
  size_t num_exported_states = 0;
  // A trainable gradient node whose data source updates the parameters (graph.md §1.7, §6.4-6.6):
  // its training style (GPU: during encode; CPU: after completion) and the index in
  // result_states of the state holding its parameter gradients.
  struct Update {
    FilterNodePtr gradient;  // ConvolutionGradient, BatchNormalizationGradient, InstanceNormalizationGradient
    FilterNodePtr forward;   // the node whose result state the gradient reads (its kernels reload too)
    TrainingStyle style = TrainingStyle::update_device_gpu;
    size_t state = 0;
  };
  std::vector<Update> updates;
  struct Frozen {
    Attrs attrs;
    PaddingPtr padding;
  };
  std::unordered_map<const FilterNode*, Frozen> frozen;

  // Walks from the results; throws GraphError for unusable graphs.
  static GraphDef discover(const std::vector<ImageNodePtr>& results, const std::vector<bool>& needed);
  const Frozen& frozen_of(const FilterNode& f) const { return frozen.at(&f); }
};

}  // namespace mpsnn
