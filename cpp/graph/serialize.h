#pragma once
// Serialization of node graphs and MPSNNGraphs (graph.md §2.9): a versioned binary format that
// holds data only (no code, no pickled objects), so loading bytes from anywhere is safe. Every
// attribute of every op kind is written through the field lists of serialize.cpp, one per attrs
// type of graph/attrs.h: an attrs type without a field list does not compile.
//
// What is stored (project decision on graph.md §2.9's "the optimized representation"): the node
// graph as the graph froze it (attributes and padding as compiled), its data sources with their
// training state, and the graph's options -- not a compiled plan. A plan is specific to the source
// sizes it was compiled for and to the device's backend and ISA, so it is compiled again on the
// loading device at the first encode, by the same deterministic passes: the loaded graph's plan
// equals the stored graph's (tests/test_serialization.py compares their plan pictures) and a
// graph loaded on another device runs there.
//
// Format, version 2 (version 1, without the trainer records, is read too). All integers and floats little-endian, floats as their IEEE bits.
//
//   offset 0   8 bytes  magic "MPSNNSER"
//   offset 8   u32      format version (1)
//   offset 12  u32      content: 1 = MPSNNGraph, 2 = a node and everything upstream of it
//   offset 16  sections, each: 4-byte tag, u64 payload length, payload; in this order:
//     "HNDL"  handles: u32 count, then per handle an optional string (its label(); loaded as
//             mpsnn.LabelHandle). One entry per distinct handle object.
//     "SRCS"  data sources: u32 count of convolution sources, each {fields of
//             MPSCNNConvolutionDescriptor, u8 binary, u8 transpose, f32[] weights (OHWI, float32),
//             u32[] binary weights, optional f32[] bias, optional string label, v2: optional
//             trainer record}; u32 count of normalization sources, each {u8 instance, u8 with
//             statistics, i64 channels, f32[] gamma, beta, mean, variance, f32 epsilon, optional
//             string label, v2: optional trainer record, optional f32 statistics momentum}.
//             Loaded as the Array*DataSource classes (python/mpsnn/data_sources.py), trainable
//             with the stored optimizer when a trainer record is there.
//     "NODE"  u32 count of graph inputs (image nodes without a producer), each an image record;
//             u32 count of free state nodes (loss labels), each a state record; u32 count of
//             filters in topological order, each a filter record (below).
//     "ROOT"  node files: u8 what (0 filter, 1 image, 2 state) and its reference. Graph files:
//             u32 n, n image references (results), n u8 (results needed), u8 several results,
//             i32 format, u8 destination allocator temporary, u8 output_state_is_temporary,
//             string label, i32 options, u8 fusion enabled, u8 poison temporaries.
//     "END\0" empty.
//
//   trainer record (the optimizer a trainable data source updates its parameters with, and its
//     moments, so that a loaded training graph trains on from where the stored one was): the
//     fields of OptimizerRecord (name + value, as attrs: rule 0 SGD / 1 RMSProp / 2 Adam, the
//     MPSNNOptimizerDescriptor's fields, the rules' settings, time step, AMSGrad), then u32
//     count of moment lists, each {string name (the encode keyword, e.g. "input_velocity_vectors",
//     in the order the rule keeps them), u32 count, count f32[] (one per parameter array:
//     weights then biases, gamma then beta)}.
//   string: u32 byte count, UTF-8 bytes. optional x: u8 0/1, then x. T[]: u64 count, values.
//   image record: i32 handle (-1 none), i32 format, u8 allocator temporary, u8 export_from_graph,
//     u8 synchronize_resource, u8 stop_gradient.
//   state record: u8 class (free states: 7 = loss labels), i32 handle, u8 export_from_graph,
//     u8 synchronize_resource.
//   filter record: string kind (op_list.def name), optional string label, padding {u8 kind
//     (0 method, 1 / 2 TensorFlow average pooling same / valid only), i32 method}, attrs (the
//     kind's field list: per field its name as a string, then its value), u32 + image references
//     (sources), u32 + state references (source states), i32 convolution source, i32
//     normalization source (-1 none), the result image record, u32 + result state records.
//   image reference: i32 r; r >= 0 the result image of filter r (an earlier filter), r < 0
//     graph input -r-1. state reference: u8 0 + i32 filter + i32 index (a result state of an
//     earlier filter), or u8 1 + i32 free state index.
//
// Loading checks every count, index, enum value and string against what remains and what is
// defined; anything else raises SerializationError naming the section, the field and the byte
// offset. Attribute checks of the node kinds and the data source readers run on the decoded
// values too, their errors reported the same way.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "graph/data_source.h"
#include "graph/nn_graph.h"
#include "graph/node.h"
#include "graph/optimizer.h"

namespace mpsnn {

constexpr uint32_t kSerializationVersion = 2;

// What a trainable data source stores beyond its parameters: the optimizer's settings, its time
// step and moments (the trainer record above), and a batch normalization source's running
// statistics momentum. Data sources tell it through SaveHooks (the bindings ask mpsnn's Array
// data sources); a user's own data source stores its parameters only (project decision: its
// update code is Python and is not stored; a loaded copy is an untrained-able Array source).
struct OptimizerRecord {
  OptimizerRule rule = OptimizerRule::sgd;
  OptimizerDescriptor desc;
  float momentum_scale = 0.0f;
  bool nesterov = false;
  float decay = 0.9f, epsilon = 1e-8f, beta1 = 0.9f, beta2 = 0.999f;
  int64_t time_step = 0;
  bool amsgrad = false;
  std::vector<std::pair<std::string, std::vector<std::vector<float>>>> moments;

  static OptimizerRecord of(const Optimizer& o);  // settings and time step, no moments
  void apply_to(Optimizer& o) const;              // settings and time step
};
struct SourceTraining {
  std::optional<OptimizerRecord> optimizer;
  std::optional<float> statistics_momentum;  // normalization sources
};

struct SaveHooks {
  std::function<SourceTraining(ConvolutionDataSource&)> convolution;
  std::function<SourceTraining(NormalizationDataSource&)> normalization;
};

// What a loader makes for the stored objects (the bindings make Python objects).
struct LoadHooks {
  std::function<HandlePtr(const std::optional<std::string>& label)> handle;
  std::function<std::shared_ptr<ConvolutionDataSource>(const ConvolutionParams& params, bool binary,
                                                       const SourceTraining& training)>
      convolution_source;
  std::function<std::shared_ptr<NormalizationDataSource>(const NormalizationParams& params, bool instance,
                                                         const SourceTraining& training)>
      normalization_source;
};

// One node and everything upstream of it: exactly one member is set.
struct NodeRoot {
  FilterNodePtr filter;
  ImageNodePtr image;
  StateNodePtr state;
};

// The graph's properties beyond its nodes that the bindings keep (several-results form).
struct GraphExtras {
  bool multi_result = false;
};

std::vector<uint8_t> graph_to_bytes(const NNGraph& graph, const GraphExtras& extras, const SaveHooks& hooks = {});
std::shared_ptr<NNGraph> graph_from_bytes(const uint8_t* data, size_t size, const DevicePtr& device,
                                          const KernelRegistry* registry, const LoadHooks& hooks, GraphExtras* extras);

std::vector<uint8_t> nodes_to_bytes(const NodeRoot& root, const SaveHooks& hooks = {});
NodeRoot nodes_from_bytes(const uint8_t* data, size_t size, const LoadHooks& hooks);

// Graphviz DOT text of a graph's nodes (graph.md §1: image, state and filter nodes; `names`
// give a node's class name, e.g. MPSCNNConvolutionNode) with the image sizes of `plan` when given,
// or of the compiled plan itself (steps with what they fused, values and the arena offsets they
// share).
struct DotNames {
  std::function<std::string(const FilterNode&)> filter;
  std::function<std::string(const StateNode&)> state;
};
std::string graph_to_dot(const NNGraph& graph, const DotNames& names, const Plan* shapes_from);
std::string plan_to_dot(const Plan& plan, const std::string& title);

}  // namespace mpsnn
