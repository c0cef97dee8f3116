#pragma once
// Serialization of node graphs and MPSNNGraphs (graph.md §2.9): a versioned binary format that
// holds data only (no code, no pickled objects), so loading bytes from anywhere is safe. Every
// attribute of every op kind is written through the field lists of serialize.cpp, one per attrs
// type of graph/attrs.h: an attrs type without a field list does not compile.
//
// Format, version 1. All integers and floats little-endian, floats as their IEEE bits.
//
//   offset 0   8 bytes  magic "MPSNNSER"
//   offset 8   u32      format version (1)
//   offset 12  u32      content: 1 = MPSNNGraph, 2 = a node and everything upstream of it
//   offset 16  sections, each: 4-byte tag, u64 payload length, payload; in this order:
//     "HNDL"  handles: u32 count, then per handle an optional string (its label(); loaded as
//             mpsnn.LabelHandle). One entry per distinct handle object.
//     "SRCS"  data sources: u32 count of convolution sources, each {fields of
//             MPSCNNConvolutionDescriptor, u8 binary, u8 transpose, f32[] weights (OHWI, float32),
//             u32[] binary weights, optional f32[] bias, optional string label}; u32 count of
//             normalization sources, each {u8 instance, u8 with statistics, i64 channels, f32[]
//             gamma, beta, mean, variance, f32 epsilon, optional string label}. Loaded as the
//             Array*DataSource classes (python/mpsnn/data_sources.py).
//     "NODE"  u32 count of graph inputs (image nodes without a producer), each an image record;
//             u32 count of free state nodes (loss labels), each a state record; u32 count of
//             filters in topological order, each a filter record (below).
//     "ROOT"  node files: u8 what (0 filter, 1 image, 2 state) and its reference. Graph files:
//             u32 n, n image references (results), n u8 (results needed), u8 several results,
//             i32 format, u8 destination allocator temporary, u8 output_state_is_temporary,
//             string label, i32 options, u8 fusion enabled, u8 poison temporaries.
//     "END\0" empty.
//
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

namespace mpsnn {

constexpr uint32_t kSerializationVersion = 1;

// What a loader makes for the stored objects (the bindings make Python objects).
struct LoadHooks {
  std::function<HandlePtr(const std::optional<std::string>& label)> handle;
  std::function<std::shared_ptr<ConvolutionDataSource>(const ConvolutionParams& params, bool binary)> convolution_source;
  std::function<std::shared_ptr<NormalizationDataSource>(const NormalizationParams& params, bool instance)>
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

std::vector<uint8_t> graph_to_bytes(const NNGraph& graph, const GraphExtras& extras);
std::shared_ptr<NNGraph> graph_from_bytes(const uint8_t* data, size_t size, const DevicePtr& device,
                                          const KernelRegistry* registry, const LoadHooks& hooks, GraphExtras* extras);

std::vector<uint8_t> nodes_to_bytes(const NodeRoot& root);
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
