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
      m, "MPSCNNDropoutNode", "Dropout; in inference graphs the identity (the compiler removes it).");
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
}

}  // namespace mpsnn::bindings
