#pragma once
// Per-kind definitions: arity, attribute checks at node creation, the shape rule that resolves a
// node's result size and window geometry when a plan is compiled, the result states the kind
// produces (and what their buffers hold), and its gradient kind (from op_list.def).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "graph/attrs.h"
#include "graph/data_source.h"
#include "graph/node.h"
#include "graph/op_kind.h"

namespace mpsnn {

// Parameters a graph read from a node's data source (its current version).
struct NodeParams {
  std::shared_ptr<const ConvolutionParams> conv;
  std::shared_ptr<const NormalizationParams> norm;
};

// Resolved geometry of a node for one set of input sizes.
struct NodeGeometry {
  WindowAxis y, x;
  EdgeMode edge_mode = EdgeMode::zero;
  bool exclude_edges = false;
  int64_t zero_pad_y = 0, zero_pad_x = 0;  // pooling: zero border counted by clamp averages
  // Channels [offset, offset + count) of the first source are read (a custom padding policy's
  // source_feature_channel_offset / _max_count; kinds that allow it, see WindowSpec).
  int64_t source_channel_offset = 0, source_channel_count = 0;  // count 0: all channels
  ScaleTransform transform;  // scale nodes
};

struct ShapeResult {
  ImageShape out;
  NodeGeometry geom;
};

// Size facts of an already-resolved node, used by nodes paired through a state (a transposed
// convolution sized by the convolution it undoes, a gradient mirroring its forward node).
struct ResolvedNode {
  const FilterNode* node = nullptr;
  std::vector<ImageShape> sources;
  ImageShape out;
  NodeGeometry geom;
};

// The origin of a convolution's gradient state (the forward node's, or its gradient node's): the
// forward convolution, its source size and resolved geometry (MPSCNNConvolutionGradientState's
// `convolution`, `source_width`, `source_height`).
struct ConvolutionStateOrigin : StateOrigin {
  FilterNodePtr forward;
  ImageShape source;
  NodeGeometry geom;
};
// A batch normalization's state: how many values per channel its statistics cover (N*H*W of the
// forward source), which a data source needs for an unbiased running variance.
struct NormalizationStateOrigin : StateOrigin {
  int64_t sample_count = 0;
};

// What a shape rule sees. `attrs` and `padding` are the node's values frozen when the graph was
// made (graph.md §2: later property changes do not affect an existing graph).
struct ShapeContext {
  const FilterNode& node;
  const Attrs& attrs;
  const PaddingPtr& padding;
  const NodeParams& params;
  std::vector<ImageShape> sources;
  std::vector<ChannelFormat> source_formats;
  // The resolved producer of a source state, or null.
  std::function<const ResolvedNode*(const StateNode*)> state_producer;
  // Per source state of the node that is a source state of the graph (no producer; loss labels),
  // in source_states order: the values the caller's state binds (State::bound_inputs / outputs).
  struct BoundState {
    std::vector<TensorDesc> inputs, outputs;
  };
  std::vector<BoundState> bound_states;

  template <typename T>
  const T& attrs_as() const { return std::get<T>(attrs); }
  std::string context() const { return node.context(); }
};

// A result state of a kind: the node class it has, and the buffers its forward kernel fills
// when the state is consumed (none: the state only records geometry, as for neurons).
struct StateSpec {
  ResultStateKind node_class = ResultStateKind::gradient;
  std::vector<TensorDesc> (*buffers)(const ShapeContext&, const ShapeResult&) = nullptr;
};

struct OpSchema {
  OpKind kind = OpKind::None;
  const char* name = "";  // op_name(kind)
  int min_sources = 1;
  int max_sources = 1;  // -1: unbounded
  // Result states in result_states order, created with every node of the kind.
  std::vector<StateSpec> result_states;
  // The gradient node kind (op_list.def) and whether the kind is a gradient itself.
  OpKind gradient = OpKind::None;
  // Builds the gradient node(s) of a forward node, one per forward source, for kinds the generic
  // rule of graph/gradients.cpp does not fit (arithmetic and concatenation: one node per source;
  // losses are their own gradient). Null: the generic rule.
  std::vector<FilterNodePtr> (*gradient_rule)(FilterNode& forward, const std::vector<ImageNodePtr>& gradients) = nullptr;
  bool is_gradient = false;
  // Losses: the node is its own gradient (graph.md §1.8); gradient_filter is unavailable and
  // training_graph seeds the gradient of the node's source with its result image.
  bool self_gradient = false;
  // The node's work matters even when nothing reads its result image (a loss writes the labels'
  // loss image; a trainable gradient updates parameters): graphs keep it (graph.md §2.1).
  bool side_effect = false;
  bool internal = false;  // compiler-inserted steps without a Python class
  // Checks attribute values; called when a node is made and when a graph freezes its attributes.
  void (*validate_attrs)(const FilterNode&, const Attrs&) = nullptr;
  // Resolves the result size and geometry; called at plan compile time, possibly several times
  // per node (one per input size), and it may call Python (custom padding policies).
  ShapeResult (*shape)(const ShapeContext&) = nullptr;

  // A schema for `k` with its name and gradient column filled from op_list.def.
  static OpSchema for_kind(OpKind k);
};

const OpSchema& schema(OpKind kind);
// Whether `attrs` holds the attrs type op_list.def gives `kind`.
bool holds_attrs_of(OpKind kind, const Attrs& attrs);

#define MPSNN_OP(kind, name, attrs, gradient) const OpSchema& schema_##kind();
#include "graph/op_list.def"
#undef MPSNN_OP

// ---- shared shape helpers (graph/shape_rules.cpp) ----

// The hint a channel-count mismatch adds when the source looks like an (N, C, H, W) array read
// as (N, H, W, C): its height (axis 1) equals the expected channel count. Empty otherwise.
std::string nchw_hint(const ImageShape& source, int64_t expected_channels);

// A windowed filter: resolves size and pad-before per axis from the padding policy, runs the
// custom hook if the policy has one, and fills the window geometry.
struct WindowSpec {
  int64_t kernel_h = 1, kernel_w = 1, stride_y = 1, stride_x = 1, dilation_y = 1, dilation_x = 1;
  int64_t out_channels = 1;
  EdgeMode edge_mode = EdgeMode::zero;
  bool reverse = false;
  // Whether the kind reads a channel window of its source (custom policies may then set
  // source_feature_channel_offset / _max_count); otherwise setting them is refused.
  bool channel_window = false;
};
ShapeResult window_shape(const ShapeContext& ctx, const WindowSpec& spec);

// A size-preserving filter: result = first source (with `channels` if given); the custom hook,
// if any, is consulted and may not change the size.
ShapeResult same_shape(const ShapeContext& ctx, int64_t channels = -1);

// A filter whose result size is fixed by the node, not by padding. With `resizable`, a custom
// padding policy may change the result's width and height (the node's kernel then computes that
// size); without, asking for another size is an UnsupportedError naming the node (arithmetic and
// fully connected kernels only compute their own result size).
ShapeResult fixed_shape(const ShapeContext& ctx, const ImageShape& out, bool resizable = true);

void check_positive(const FilterNode& node, const char* what, int64_t value);

// A result whose byte count exceeds kMaxBytes (tensor_view.h) is a ShapeError naming the node.
void check_result_bytes(const ShapeContext& ctx, const ImageShape& out);
// A window axis (source S, result D, kernel offset) whose index arithmetic would overflow int64
// is a ShapeError naming the node; `reverse`: the window runs over the zero-inserted source.
void check_window_range(const ShapeContext& ctx, const char* axis, int64_t S, int64_t D, int64_t K, int64_t s,
                        int64_t d, int64_t offset, bool reverse);
// The same for a transposed convolution sized by a convolution gradient state: Pz = (Ke - 1) - P_conv.
void check_paired_transpose_range(const ShapeContext& ctx, const char* axis, int64_t S, int64_t D, int64_t K,
                                  int64_t s, int64_t d, int64_t conv_pad_before);

// A gradient node (sources: incoming gradient G, then the forward sources; source state: the
// forward node's result state): its forward node as resolved in this plan, with G checked
// against the forward result size. Throws a ShapeError naming the node otherwise.
const ResolvedNode& resolved_forward(const ShapeContext& ctx);

}  // namespace mpsnn
