#pragma once
// Per-kind definitions: arity, attribute checks at node creation, and the shape rule that
// resolves a node's result size and window geometry when a plan is compiled.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor_view.h"
#include "graph/attrs.h"
#include "graph/data_source.h"
#include "graph/node.h"
#include "graph/op_kind.h"

namespace mpsnn {

// Parameters a graph read from a node's data source when it was built.
struct NodeParams {
  std::shared_ptr<const ConvolutionParams> conv;
  std::shared_ptr<const NormalizationParams> norm;
};

// Resolved geometry of a node for one set of input sizes.
struct NodeGeometry {
  WindowAxis y, x;
  EdgeMode edge_mode = EdgeMode::zero;
  bool exclude_edges = false;
  ScaleTransform transform;  // scale nodes
};

struct ShapeResult {
  ImageShape out;
  NodeGeometry geom;
};

// Size facts of an already-resolved node, used by nodes paired through a state (a transposed
// convolution sized by the convolution it undoes).
struct ResolvedNode {
  ImageShape source;
  ImageShape out;
  NodeGeometry geom;
};

struct ShapeContext {
  const FilterNode& node;
  const NodeParams& params;
  std::vector<ImageShape> sources;
  std::vector<ChannelFormat> source_formats;
  // The resolved producer of a source state, or null.
  std::function<const ResolvedNode*(const StateNode*)> state_producer;
};

struct OpSchema {
  const char* name = "";
  int min_sources = 1;
  int max_sources = 1;  // -1: unbounded
  // Size preserving filters (neurons, batch norm, ...) may be fused into their producer.
  bool size_preserving = false;
  ResultStateKind result_state = ResultStateKind::none;
  void (*validate_attrs)(const FilterNode&) = nullptr;
  ShapeResult (*shape)(const ShapeContext&) = nullptr;
};

const OpSchema& schema(OpKind kind);

#define MPSNN_OP(kind, name, attrs) const OpSchema& schema_##kind();
#include "graph/op_list.def"
#undef MPSNN_OP

// ---- shared shape helpers (graph/shape_rules.cpp) ----

// A windowed filter: resolves size and pad-before per axis from the padding policy, runs the
// custom hook if the policy has one, and fills the window geometry.
struct WindowSpec {
  int64_t kernel_h = 1, kernel_w = 1, stride_y = 1, stride_x = 1, dilation_y = 1, dilation_x = 1;
  int64_t out_channels = 1;
  EdgeMode edge_mode = EdgeMode::zero;
  bool reverse = false;
};
ShapeResult window_shape(const ShapeContext& ctx, const WindowSpec& spec);

// A size-preserving filter: result = first source (with `channels` if given); the custom hook,
// if any, is consulted and may not change the size.
ShapeResult same_shape(const ShapeContext& ctx, int64_t channels = -1);

// A filter whose result size is fixed by the node, not by padding.
ShapeResult fixed_shape(const ShapeContext& ctx, const ImageShape& out);

void check_positive(const FilterNode& node, const char* what, int64_t value);

}  // namespace mpsnn
