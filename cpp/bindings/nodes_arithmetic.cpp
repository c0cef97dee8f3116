// Binary arithmetic (nodes.md §3), concatenation (§12), softmax (§7) and dropout (§11) nodes.
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {

std::vector<ImageNodePtr> two_sources(const std::optional<std::vector<ImageNodePtr>>& sources, const ImageNodePtr& left,
                                      const ImageNodePtr& right) {
  if (sources) {
    MPSNN_CHECK(!left && !right, GraphError, "[arithmetic] pass either sources=[a, b] or left_source/right_source, not both");
    return *sources;
  }
  MPSNN_CHECK(left && right, GraphError, "[arithmetic] needs sources=[a, b] or both left_source and right_source");
  return {left, right};
}

template <typename T, ArithmeticOp Op>
void arithmetic_class(py::module_& m, const char* name, const char* doc) {
  auto c = py::class_<T, PyBinaryArithmeticNode, std::shared_ptr<T>>(m, name, doc);
  def_init(c, [](std::optional<std::vector<ImageNodePtr>> sources, ImageNodePtr left, ImageNodePtr right) {
             ArithmeticAttrs a;
             a.op = Op;
             return make_node<T>(OpKind::Arithmetic, a, two_sources(sources, left, right));
           },
           "sources"_a = py::none(), "left_source"_a = nullptr, "right_source"_a = nullptr);
}

template <int Index>
std::array<int, 3>& strides(FilterNode& n) {
  auto& a = n.attrs_as<ArithmeticAttrs>();
  return Index == 0 ? a.primary_strides : a.secondary_strides;
}

// The attributes of a hand-built arithmetic gradient node: what its gradient state carries
// (scales, strides, bounds of the forward node, nodes.md §1.5) or, form 2, what forward_filter has.
ArithmeticAttrs arithmetic_gradient_attrs(ArithmeticOp op, const Attrs* forward, bool secondary) {
  ArithmeticAttrs a = forward && std::holds_alternative<ArithmeticAttrs>(*forward) ? std::get<ArithmeticAttrs>(*forward)
                                                                                  : ArithmeticAttrs{};
  a.op = op;
  a.is_secondary_source_filter = secondary;
  return a;
}

template <typename T, ArithmeticOp Op>
void arithmetic_gradient_class(py::module_& m, const char* name, const char* doc) {
  auto c = py::class_<T, PyArithmeticGradientNode, std::shared_ptr<T>>(m, name, doc);
  def_init(c, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state, bool secondary) {
             MPSNN_CHECK(state != nullptr, GraphError,
                         "[arithmetic gradient] gradient_state is None; pass the forward node's result_state");
             const Attrs* fwd = state_producer_attrs(state, OpKind::Arithmetic);
             return make_node<T>(OpKind::ArithmeticGradient, arithmetic_gradient_attrs(Op, fwd, secondary), {g, x}, {state});
           },
           "source_gradient"_a, "source_image"_a, "gradient_state"_a, "is_secondary_source_filter"_a);
  def_init(c, [](const std::vector<ImageNodePtr>& images, const std::shared_ptr<FilterNode>& forward, bool secondary) {
             MPSNN_CHECK(images.size() == 2, ShapeError, "[arithmetic gradient] gradient_images has ", images.size(),
                         " image(s); expected [source gradient, forward source image]");
             MPSNN_CHECK(forward && forward->kind() == OpKind::Arithmetic, GraphError,
                         "[arithmetic gradient] forward_filter must be a binary arithmetic node");
             auto n = make_node<T>(OpKind::ArithmeticGradient, arithmetic_gradient_attrs(Op, &forward->attrs(), secondary),
                                   {images[0], images[1]}, {forward->result_state()});
             n->set_padding_policy(forward->padding_policy());
             return n;
           },
           "gradient_images"_a, "forward_filter"_a, "is_secondary_source_filter"_a);
}

// The forward strides of the operand a gradient node differentiates.
std::array<int, 3>& differentiated_strides(FilterNode& n) {
  auto& a = n.attrs_as<ArithmeticAttrs>();
  return a.is_secondary_source_filter ? a.secondary_strides : a.primary_strides;
}

// SoftMax / LogSoftMax gradient nodes built by hand take the forward result Y (or its source X).
template <typename T, bool Log>
void softmax_gradient_class(py::module_& m, const char* name, const char* doc) {
  auto c = py::class_<T, PyGradientFilterNode, std::shared_ptr<T>>(m, name, doc);
  def_init(c, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state) {
             MPSNN_CHECK(state != nullptr, GraphError,
                         "[softmax gradient] gradient_state is None; pass the forward node's result_state");
             SoftMaxAttrs a{Log};
             if (auto fwd = state->producer())
               a.gradient_reads_source = !fwd->sources().empty() && x == fwd->sources()[0] && x->parent() != fwd;
             return make_node<T>(OpKind::SoftMaxGradient, a, {g, x}, {state});
           },
           "source_gradient"_a, "source_image"_a, "gradient_state"_a);
}

}  // namespace

void bind_nodes_arithmetic(py::module_& m) {
  auto base = py::class_<PyBinaryArithmeticNode, FilterNode, std::shared_ptr<PyBinaryArithmeticNode>>(
      m, "MPSNNBinaryArithmeticNode",
      "Y = clamp(op(primary_scale*A, secondary_scale*B) + bias, minimum_value, maximum_value); a stride of 0 "
      "broadcasts an operand along that axis.");
  attr_property(base, "primary_scale", &ArithmeticAttrs::primary_scale, "");
  attr_property(base, "secondary_scale", &ArithmeticAttrs::secondary_scale, "");
  attr_property(base, "bias", &ArithmeticAttrs::bias, "");
  attr_property(base, "minimum_value", &ArithmeticAttrs::minimum_value, "");
  attr_property(base, "maximum_value", &ArithmeticAttrs::maximum_value, "");
  const char* axes[3] = {"feature_channels", "pixels_y", "pixels_x"};
  for (int op = 0; op < 2; ++op)
    for (int i = 0; i < 3; ++i) {
      const std::string name = std::string(op == 0 ? "primary" : "secondary") + "_stride_in_" + axes[i];
      base.def_property(
          name.c_str(),
          [op, i](FilterNode& n) { return (op == 0 ? strides<0>(n) : strides<1>(n))[size_t(i)]; },
          [op, i](FilterNode& n, int v) {
            MPSNN_CHECK(v == 0 || v == 1, ShapeError, n.context(), " strides must be 0 (broadcast) or 1; got ", v);
            (op == 0 ? strides<0>(n) : strides<1>(n))[size_t(i)] = v;
          });
    }
  arithmetic_class<PyAdditionNode, ArithmeticOp::add>(m, "MPSNNAdditionNode", "A + B.");
  arithmetic_class<PySubtractionNode, ArithmeticOp::subtract>(m, "MPSNNSubtractionNode", "A - B.");
  arithmetic_class<PyMultiplicationNode, ArithmeticOp::multiply>(m, "MPSNNMultiplicationNode", "A * B.");
  arithmetic_class<PyDivisionNode, ArithmeticOp::divide>(m, "MPSNNDivisionNode", "A / B (IEEE: x/0 = inf).");

  auto concat = py::class_<PyConcatenationNode, FilterNode, std::shared_ptr<PyConcatenationNode>>(
      m, "MPSNNConcatenationNode",
      "Channel concatenation; each source but the last occupies a slot rounded up to 4 channels (gaps are 0).");
  def_init(concat, [](const std::vector<ImageNodePtr>& sources) {
             return make_node<PyConcatenationNode>(OpKind::Concatenation, ConcatenationAttrs{}, sources);
           },
           "sources"_a);

  auto softmax = py::class_<PySoftMaxNode, FilterNode, std::shared_ptr<PySoftMaxNode>>(
      m, "MPSCNNSoftMaxNode", "Softmax over the feature channels of each pixel.");
  def_init(softmax, [](const ImageNodePtr& s) { return make_node<PySoftMaxNode>(OpKind::SoftMax, SoftMaxAttrs{false}, {s}); },
           "source"_a);
  auto log_softmax = py::class_<PyLogSoftMaxNode, FilterNode, std::shared_ptr<PyLogSoftMaxNode>>(
      m, "MPSCNNLogSoftMaxNode", "Log-softmax over the feature channels of each pixel.");
  def_init(log_softmax, [](const ImageNodePtr& s) { return make_node<PyLogSoftMaxNode>(OpKind::SoftMax, SoftMaxAttrs{true}, {s}); },
           "source"_a);

  auto dropout = py::class_<PyDropoutNode, FilterNode, std::shared_ptr<PyDropoutNode>>(
      m, "MPSCNNDropoutNode",
      "Dropout: Y = X*M/keep_probability with a Bernoulli(keep_probability) mask M, sampled when its result state "
      "is consumed (a training graph) by Philox-4x32-10 keyed by seed (the same seed gives the same mask); in "
      "inference graphs the identity (the compiler removes it).");
  def_init(dropout, [](const ImageNodePtr& s, float keep, uint64_t seed, std::array<int64_t, 3> stride) {
                DropoutAttrs a;
                a.keep_probability = keep;
                a.seed = seed;
                a.mask_stride = stride;
                return make_node<PyDropoutNode>(OpKind::Dropout, a, {s});
              },
              "source"_a, "keep_probability"_a = 0.5f, "seed"_a = 0, "mask_stride_in_pixels"_a = std::array<int64_t, 3>{1, 1, 1});
  attr_property(dropout, "keep_probability", &DropoutAttrs::keep_probability, "", false);
  attr_property(dropout, "seed", &DropoutAttrs::seed, "", false);
  attr_property(dropout, "mask_stride_in_pixels", &DropoutAttrs::mask_stride, "", false);
  // Arithmetic nodes made in C++ (training_graph's fan-out additions) get their Python class.
  set_node_factory(OpKind::Arithmetic, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    switch (std::get<ArithmeticAttrs>(a).op) {
      case ArithmeticOp::add: return node_factory<PyAdditionNode>(k, std::move(a), std::move(s), std::move(st));
      case ArithmeticOp::subtract: return node_factory<PySubtractionNode>(k, std::move(a), std::move(s), std::move(st));
      case ArithmeticOp::multiply: return node_factory<PyMultiplicationNode>(k, std::move(a), std::move(s), std::move(st));
      case ArithmeticOp::divide: break;
    }
    return node_factory<PyDivisionNode>(k, std::move(a), std::move(s), std::move(st));
  });

  // ---- gradients (nodes.md §3.3, §7.2, §7.4, §11.2, §12.2) ----
  auto agrad = py::class_<PyArithmeticGradientNode, PyGradientFilterNode, std::shared_ptr<PyArithmeticGradientNode>>(
      m, "MPSNNArithmeticGradientNode",
      "Base of the binary arithmetic gradient nodes: the gradient w.r.t. the primary (is_secondary_source_filter "
      "False) or secondary operand, including the scales and the forward clamp mask, summed over the axes that "
      "operand is broadcast along (stride 0). Made in pairs by forward.gradient_filters(with_source=g).");
  attr_property(agrad, "primary_scale", &ArithmeticAttrs::primary_scale, "");
  attr_property(agrad, "secondary_scale", &ArithmeticAttrs::secondary_scale, "");
  attr_property(agrad, "bias", &ArithmeticAttrs::bias, "Ignored by the gradient.");
  attr_property(agrad, "minimum_value", &ArithmeticAttrs::minimum_value, "");
  attr_property(agrad, "maximum_value", &ArithmeticAttrs::maximum_value, "");
  attr_property(agrad, "is_secondary_source_filter", &ArithmeticAttrs::is_secondary_source_filter, "", false);
  for (int i = 0; i < 3; ++i) {
    const std::string name = std::string("secondary_stride_in_") + axes[i];
    agrad.def_property(
        name.c_str(), [i](FilterNode& n) { return differentiated_strides(n)[size_t(i)]; },
        [i](FilterNode& n, int v) {
          MPSNN_CHECK(v == 0 || v == 1, ShapeError, n.context(), " strides must be 0 (broadcast) or 1; got ", v);
          differentiated_strides(n)[size_t(i)] = v;
        },
        "Broadcasting of the operand this node differentiates; must equal the forward node's.");
  }
  arithmetic_gradient_class<PyAdditionGradientNode, ArithmeticOp::add>(m, "MPSNNAdditionGradientNode",
                                                                      "dA = primary_scale*m*G, dB = secondary_scale*m*G.");
  arithmetic_gradient_class<PySubtractionGradientNode, ArithmeticOp::subtract>(
      m, "MPSNNSubtractionGradientNode", "dA = primary_scale*m*G, dB = -secondary_scale*m*G.");
  arithmetic_gradient_class<PyMultiplicationGradientNode, ArithmeticOp::multiply>(
      m, "MPSNNMultiplicationGradientNode",
      "dA = primary_scale*secondary_scale*B*m*G, dB = primary_scale*secondary_scale*A*m*G; source_image is the "
      "other operand.");
  set_node_factory(OpKind::ArithmeticGradient, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    switch (std::get<ArithmeticAttrs>(a).op) {
      case ArithmeticOp::add: return node_factory<PyAdditionGradientNode>(k, std::move(a), std::move(s), std::move(st));
      case ArithmeticOp::subtract: return node_factory<PySubtractionGradientNode>(k, std::move(a), std::move(s), std::move(st));
      default: break;
    }
    return node_factory<PyMultiplicationGradientNode>(k, std::move(a), std::move(s), std::move(st));
  });

  base.def(
      "gradient_class",
      [](const FilterNode& n) -> py::object {
        const char* names[3] = {"MPSNNAdditionGradientNode", "MPSNNSubtractionGradientNode",
                                "MPSNNMultiplicationGradientNode"};
        const ArithmeticOp op = n.attrs_as<ArithmeticAttrs>().op;
        MPSNN_CHECK(op != ArithmeticOp::divide, UnsupportedError, n.context(), " division has no gradient node in MPS");
        return py::module_::import("mpsnn._core").attr(names[int(op)]);
      },
      "The class of this node's two gradient nodes (nodes.md §3.1).");

  auto cgrad = py::class_<PyConcatenationGradientNode, PyGradientFilterNode, std::shared_ptr<PyConcatenationGradientNode>>(
      m, "MPSNNConcatenationGradientNode",
      "The slice of the concatenation's incoming gradient that belongs to source_image (its 4-aligned channel "
      "slot). One per source, made by forward.gradient_filters(with_source=g).");
  def_init(cgrad, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state) {
             MPSNN_CHECK(state != nullptr, GraphError,
                         "[concatenation gradient] gradient_state is None; pass the forward node's result_state");
             return make_node<PyConcatenationGradientNode>(OpKind::ConcatenationGradient, ConcatenationAttrs{}, {g, x}, {state});
           },
           "source_gradient"_a, "source_image"_a, "gradient_state"_a);
  set_node_factory(OpKind::ConcatenationGradient, node_factory<PyConcatenationGradientNode>);

  softmax_gradient_class<PySoftMaxGradientNode, false>(m, "MPSCNNSoftMaxGradientNode",
                                                       "dX = Y*(G - sum_c G*Y), Y the forward result (source_image).");
  softmax_gradient_class<PyLogSoftMaxGradientNode, true>(m, "MPSCNNLogSoftMaxGradientNode",
                                                         "dX = G - exp(Y)*sum_c G, Y the forward result (source_image).");
  set_node_factory(OpKind::SoftMaxGradient, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    if (std::get<SoftMaxAttrs>(a).log) return node_factory<PyLogSoftMaxGradientNode>(k, std::move(a), std::move(s), std::move(st));
    return node_factory<PySoftMaxGradientNode>(k, std::move(a), std::move(s), std::move(st));
  });

  auto dgrad = py::class_<PyDropoutGradientNode, PyGradientFilterNode, std::shared_ptr<PyDropoutGradientNode>>(
      m, "MPSCNNDropoutGradientNode",
      "dX = G*M/keep_probability with the mask M the forward dropout sampled (its MPSCNNDropoutGradientState).");
  def_init(dgrad, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state, float keep, uint64_t seed,
                     std::array<int64_t, 3> stride) {
             MPSNN_CHECK(state != nullptr, GraphError,
                         "[dropout gradient] gradient_state is None; pass the forward node's result_state");
             DropoutAttrs a;
             a.keep_probability = keep;
             a.seed = seed;
             a.mask_stride = stride;
             return make_node<PyDropoutGradientNode>(OpKind::DropoutGradient, a, {g, x}, {state});
           },
           "source_gradient"_a, "source_image"_a, "gradient_state"_a, "keep_probability"_a, "seed"_a,
           "mask_stride_in_pixels"_a);
  attr_property(dgrad, "keep_probability", &DropoutAttrs::keep_probability, "", false);
  attr_property(dgrad, "seed", &DropoutAttrs::seed, "", false);
  attr_property(dgrad, "mask_stride_in_pixels", &DropoutAttrs::mask_stride, "", false);
  set_node_factory(OpKind::DropoutGradient, node_factory<PyDropoutGradientNode>);
  set_node_factory(OpKind::SoftMax, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    if (std::get<SoftMaxAttrs>(a).log) return FilterNodePtr(node_factory<PyLogSoftMaxNode>(k, std::move(a), std::move(s), std::move(st)));
    return FilterNodePtr(node_factory<PySoftMaxNode>(k, std::move(a), std::move(s), std::move(st)));
  });
  set_node_factory(OpKind::Concatenation, node_factory<PyConcatenationNode>);
  set_node_factory(OpKind::Dropout, node_factory<PyDropoutNode>);
}

}  // namespace mpsnn::bindings
