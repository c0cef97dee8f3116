// Gradients of binary arithmetic (nodes.md §3.3-3.4) and concatenation (§12.2): the two kinds
// whose forward node has one gradient node per source (graph.md §1.8), made by the
// gradient_rule of their forward schema.
#include "core/errors.h"
#include "graph/gradients.h"
#include "graph/schema.h"

namespace mpsnn {

std::vector<int64_t> concatenation_offsets(const std::vector<ImageShape>& sources);  // ops/arithmetic.cpp

namespace {
const char* kOperand[2] = {"primary", "secondary"};

std::string shape_text(const ImageShape& s) {
  return std::to_string(s.w) + "x" + std::to_string(s.h) + "x" + std::to_string(s.c) + " (" + std::to_string(s.n) +
         " images)";
}

// The resolved forward node of a gradient whose state must come from a node of `kind`; G must
// have its result's size.
const ResolvedNode& forward_of_kind(const ShapeContext& ctx, OpKind kind) {
  const auto& states = ctx.node.source_states();
  const StateNode* state = states.empty() ? nullptr : states[0].get();
  MPSNN_CHECK(state != nullptr, GraphError, ctx.context(),
              " has no gradient_state; expected the result_state of its forward node");
  const ResolvedNode* fwd = ctx.state_producer(state);
  MPSNN_CHECK(fwd != nullptr, GraphError, ctx.context(), " gradient_state comes from a node that is not part of this graph");
  MPSNN_CHECK(fwd->node->kind() == kind, GraphError, ctx.context(), " gradient_state comes from ", fwd->node->context(),
              "; expected the state of a ", op_name(kind), " node");
  MPSNN_CHECK(ctx.sources[0] == fwd->out, ShapeError, ctx.context(), " source gradient is ", shape_text(ctx.sources[0]),
              "; expected the size of ", fwd->node->context(), "'s result, ", shape_text(fwd->out));
  return *fwd;
}
}  // namespace

// The clamp mask [lo < r < hi] per result element (nodes.md §3.1), one byte each.
std::vector<TensorDesc> arithmetic_state_buffers(const ShapeContext&, const ShapeResult& r) {
  return {TensorDesc{DType::u8, r.out}};
}

// graph.md §1.8: a primary and a secondary gradient node. The multiplication gradient's source
// image is the other operand (whose values it needs); addition and subtraction gradients read
// only the size of the operand they differentiate, which is their source image.
std::vector<FilterNodePtr> arithmetic_gradients(FilterNode& forward, const std::vector<ImageNodePtr>& gradients) {
  const auto& a = forward.attrs_as<ArithmeticAttrs>();
  MPSNN_CHECK(a.op != ArithmeticOp::divide, UnsupportedError, forward.context(),
              " division has no gradient node in MPS (MPSNNDivisionNode); mark its result stop_gradient to keep it "
              "out of training graphs");
  MPSNN_CHECK(gradients.size() == 1 && gradients[0] != nullptr, GraphError, forward.context(),
              " gradient_filters needs exactly one incoming gradient image; got ", gradients.size());
  std::vector<FilterNodePtr> out;
  for (int k = 0; k < 2; ++k) {
    ArithmeticAttrs g = a;
    g.is_secondary_source_filter = k == 1;
    const int source = a.op == ArithmeticOp::multiply ? 1 - k : k;
    FilterNodePtr n = make_filter_node(OpKind::ArithmeticGradient, g, {gradients[0], forward.sources()[size_t(source)]},
                                       {forward.result_state()});
    n->set_padding_policy(forward.padding_policy());
    out.push_back(std::move(n));
  }
  return out;
}

// graph.md §1.8: one slice per forward source.
std::vector<FilterNodePtr> concatenation_gradients(FilterNode& forward, const std::vector<ImageNodePtr>& gradients) {
  MPSNN_CHECK(gradients.size() == 1 && gradients[0] != nullptr, GraphError, forward.context(),
              " gradient_filters needs exactly one incoming gradient image; got ", gradients.size());
  std::vector<FilterNodePtr> out;
  for (size_t k = 0; k < forward.sources().size(); ++k) {
    ConcatenationAttrs c;
    c.source_index = int64_t(k);
    FilterNodePtr n = make_filter_node(OpKind::ConcatenationGradient, c, {gradients[0], forward.sources()[k]},
                                       {forward.result_state()});
    n->set_padding_policy(forward.padding_policy());
    out.push_back(std::move(n));
  }
  return out;
}

// Sources: G, then the forward source image (the other operand for multiplication, the
// differentiated operand otherwise); source state: the forward node's arithmetic gradient state,
// whose clamp mask the step reads as its third input.
const OpSchema& schema_ArithmeticGradient() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::ArithmeticGradient);
    o.min_sources = o.max_sources = 2;
    o.validate_attrs = [](const FilterNode& n, const Attrs& attrs) {
      MPSNN_CHECK(std::get<ArithmeticAttrs>(attrs).op != ArithmeticOp::divide, UnsupportedError, n.context(),
                  " division has no gradient node in MPS");
    };
    o.shape = [](const ShapeContext& ctx) {
      const ResolvedNode& fwd = forward_of_kind(ctx, OpKind::Arithmetic);
      const auto& mine = ctx.attrs_as<ArithmeticAttrs>();
      const auto& theirs = std::get<ArithmeticAttrs>(fwd.node->attrs());
      MPSNN_CHECK(mine.op == theirs.op, GraphError, ctx.context(), " is the gradient of another operation than ",
                  fwd.node->context());
      MPSNN_CHECK(mine.primary_strides == theirs.primary_strides && mine.secondary_strides == theirs.secondary_strides,
                  ShapeError, ctx.context(), " strides differ from those of ", fwd.node->context(),
                  "; expected the forward node's broadcasting");
      const int k = mine.is_secondary_source_filter ? 1 : 0;
      const bool mul = mine.op == ArithmeticOp::multiply;
      const int read = mul ? 1 - k : k;
      if (mul) {
        MPSNN_CHECK(ctx.node.sources()[1] == fwd.node->sources()[size_t(read)], GraphError, ctx.context(),
                    " source_image must be the ", kOperand[read], " source of ", fwd.node->context(),
                    " (the other operand of the multiplication, whose values the gradient needs)");
      } else {
        MPSNN_CHECK(ctx.sources[1] == fwd.sources[size_t(k)], ShapeError, ctx.context(), " source image is ",
                    shape_text(ctx.sources[1]), "; expected the ", kOperand[k], " source of ", fwd.node->context(),
                    ", ", shape_text(fwd.sources[size_t(k)]));
      }
      return ShapeResult{fwd.sources[size_t(k)], {}};
    };
    return o;
  }();
  return s;
}

// Sources: G, then the forward source this node serves; the slot is resolved from the forward
// node's source sizes and handed to the kernel as the channel window [offset, offset + count) of G.
const OpSchema& schema_ConcatenationGradient() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::ConcatenationGradient);
    o.min_sources = o.max_sources = 2;
    o.shape = [](const ShapeContext& ctx) {
      const ResolvedNode& fwd = forward_of_kind(ctx, OpKind::Concatenation);
      int64_t k = ctx.attrs_as<ConcatenationAttrs>().source_index;
      const auto& fsrc = fwd.node->sources();
      if (k < 0) {
        for (size_t i = 0; i < fsrc.size() && k < 0; ++i)
          if (fsrc[i] == ctx.node.sources()[1]) k = int64_t(i);
        MPSNN_CHECK(k >= 0, GraphError, ctx.context(), " source_image is none of the sources of ",
                    fwd.node->context(), "; expected the forward source whose gradient this node returns");
      }
      MPSNN_CHECK(k < int64_t(fwd.sources.size()), GraphError, ctx.context(), " serves source ", k, " of ",
                  fwd.node->context(), ", which has ", fwd.sources.size());
      const ImageShape& x = fwd.sources[size_t(k)];
      MPSNN_CHECK(ctx.sources[1] == x, ShapeError, ctx.context(), " source image is ", shape_text(ctx.sources[1]),
                  "; expected source ", k, " of ", fwd.node->context(), ", ", shape_text(x));
      ShapeResult r{x, {}};
      r.geom.source_channel_offset = concatenation_offsets(fwd.sources)[size_t(k)];
      r.geom.source_channel_count = x.c;
      return r;
    };
    return o;
  }();
  return s;
}

}  // namespace mpsnn
