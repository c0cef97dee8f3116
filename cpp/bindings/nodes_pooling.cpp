// Pooling nodes (nodes.md §5).
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {
PoolingAttrs pooling(PoolingMode mode, int64_t kw, int64_t kh, int64_t sx, int64_t sy, int64_t dx = 1, int64_t dy = 1) {
  PoolingAttrs a;
  a.mode = mode;
  a.kernel_width = kw;
  a.kernel_height = kh;
  a.stride_x = sx;
  a.stride_y = sy;
  a.dilation_x = dx;
  a.dilation_y = dy;
  return a;
}

// The three MPSCNNPoolingNode initializers for one subclass.
template <typename T, PoolingMode Mode>
void pooling_class(py::module_& m, const char* name, const char* doc) {
  auto c = py::class_<T, PyPoolingNode, std::shared_ptr<T>>(m, name, doc);
  def_init(c, [](const ImageNodePtr& s, int64_t kw, int64_t kh, int64_t sx, int64_t sy) {
             return make_node<T>(OpKind::Pooling, pooling(Mode, kw, kh, sx, sy), {s});
           },
           "source"_a, "kernel_width"_a, "kernel_height"_a, "stride_in_pixels_x"_a, "stride_in_pixels_y"_a);
  def_init(c, [](const ImageNodePtr& s, int64_t size, std::optional<int64_t> stride) {
             const int64_t st = stride.value_or(size);
             return make_node<T>(OpKind::Pooling, pooling(Mode, size, size, st, st), {s});
           },
           "source"_a, "filter_size"_a, "stride"_a = py::none());
}
// A pooling gradient node built by its initializer: sources G and X, the forward node's state.
template <typename T>
std::shared_ptr<T> pooling_gradient(PoolingAttrs a, const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state,
                                    const py::object& padding) {
  MPSNN_CHECK(state != nullptr, GraphError, "[pooling gradient] gradient_state is None; pass the forward node's result_state");
  auto n = make_node<T>(OpKind::PoolingGradient, a, {g, x}, {state});
  if (!padding.is_none()) n->set_padding_policy(to_padding(padding));
  else if (auto fwd = state->producer()) n->set_padding_policy(fwd->padding_policy());
  return n;
}

template <typename T, PoolingMode Mode>
void pooling_gradient_class(py::module_& m, const char* name, const char* doc) {
  auto c = py::class_<T, PyPoolingGradientNode, std::shared_ptr<T>>(m, name, doc);
  def_init(c, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state, int64_t kw, int64_t kh,
                       int64_t sx, int64_t sy, const py::object& padding) {
             return pooling_gradient<T>(pooling(Mode, kw, kh, sx, sy), g, x, state, padding);
           },
           "source_gradient"_a, "source_image"_a, "gradient_state"_a, "kernel_width"_a, "kernel_height"_a,
           "stride_in_pixels_x"_a, "stride_in_pixels_y"_a, "padding_policy"_a = py::none());
}
}  // namespace

void bind_nodes_pooling(py::module_& m) {
  auto base = py::class_<PyPoolingNode, FilterNode, std::shared_ptr<PyPoolingNode>>(
      m, "MPSCNNPoolingNode", "Base of max, average and L2-norm pooling; default edge mode clamp, padding sizeSame.");
  attr_property(base, "kernel_width", &PoolingAttrs::kernel_width, "", false);
  attr_property(base, "kernel_height", &PoolingAttrs::kernel_height, "", false);
  attr_property(base, "stride_in_pixels_x", &PoolingAttrs::stride_x, "", false);
  attr_property(base, "stride_in_pixels_y", &PoolingAttrs::stride_y, "", false);
  attr_property(base, "edge_mode", &PoolingAttrs::edge_mode, "Kernel edge mode (zero or clamp).");
  attr_property(base, "zero_pad_size_x", &PoolingAttrs::zero_pad_size_x, "Average pooling with clamp: zero border counted in the divisor.");
  attr_property(base, "zero_pad_size_y", &PoolingAttrs::zero_pad_size_y, "");
  pooling_class<PyPoolingMaxNode, PoolingMode::max>(m, "MPSCNNPoolingMaxNode", "Max pooling (nodes.md §5.3).");
  pooling_class<PyPoolingAverageNode, PoolingMode::average>(m, "MPSCNNPoolingAverageNode",
                                                             "Average pooling (nodes.md §5.2).");
  pooling_class<PyPoolingL2NormNode, PoolingMode::l2_norm>(m, "MPSCNNPoolingL2NormNode",
                                                           "L2-norm pooling: sqrt of the window's sum of squares (§5.4).");
  auto dilated = py::class_<PyDilatedPoolingMaxNode, FilterNode, std::shared_ptr<PyDilatedPoolingMaxNode>>(
      m, "MPSCNNDilatedPoolingMaxNode", "Dilated max pooling (nodes.md §5.5).");
  def_init(dilated, [](const ImageNodePtr& s, int64_t kw, int64_t kh, int64_t sx, int64_t sy, int64_t dx, int64_t dy) {
             return make_node<PyDilatedPoolingMaxNode>(OpKind::Pooling, pooling(PoolingMode::dilated_max, kw, kh, sx, sy, dx, dy), {s});
           },
           "source"_a, "kernel_width"_a, "kernel_height"_a, "stride_in_pixels_x"_a, "stride_in_pixels_y"_a,
           "dilation_rate_x"_a, "dilation_rate_y"_a);
  def_init(dilated, [](const ImageNodePtr& s, int64_t size, std::optional<int64_t> stride, std::optional<int64_t> rate) {
             const int64_t st = stride.value_or(size), d = rate.value_or(size);
             return make_node<PyDilatedPoolingMaxNode>(OpKind::Pooling, pooling(PoolingMode::dilated_max, size, size, st, st, d, d), {s});
           },
           "source"_a, "filter_size"_a, "stride"_a = py::none(), "dilation_rate"_a = py::none());
  attr_property(dilated, "kernel_width", &PoolingAttrs::kernel_width, "", false);
  attr_property(dilated, "kernel_height", &PoolingAttrs::kernel_height, "", false);
  attr_property(dilated, "stride_in_pixels_x", &PoolingAttrs::stride_x, "", false);
  attr_property(dilated, "stride_in_pixels_y", &PoolingAttrs::stride_y, "", false);
  attr_property(dilated, "dilation_rate_x", &PoolingAttrs::dilation_x, "", false);
  attr_property(dilated, "dilation_rate_y", &PoolingAttrs::dilation_y, "", false);
  attr_property(dilated, "edge_mode", &PoolingAttrs::edge_mode, "");

  // Gradient nodes (nodes.md §5.6): the geometry comes from the forward node through its state.
  auto grad = py::class_<PyPoolingGradientNode, PyGradientFilterNode, std::shared_ptr<PyPoolingGradientNode>>(
      m, "MPSCNNPoolingGradientNode",
      "Base of the pooling gradient nodes: dX with the forward source's size. Padding, edge mode and zero-pad "
      "sizes are the forward node's (from its gradient state).");
  attr_property(grad, "kernel_width", &PoolingAttrs::kernel_width, "", false);
  attr_property(grad, "kernel_height", &PoolingAttrs::kernel_height, "", false);
  attr_property(grad, "stride_in_pixels_x", &PoolingAttrs::stride_x, "", false);
  attr_property(grad, "stride_in_pixels_y", &PoolingAttrs::stride_y, "", false);
  pooling_gradient_class<PyPoolingMaxGradientNode, PoolingMode::max>(m, "MPSCNNPoolingMaxGradientNode",
                                                                     "Max pooling gradient: G routed to each window's arg-max (first maximal tap).");
  pooling_gradient_class<PyPoolingAverageGradientNode, PoolingMode::average>(m, "MPSCNNPoolingAverageGradientNode",
                                                                             "Average pooling gradient: G / N spread over each window's in-image taps.");
  pooling_gradient_class<PyPoolingL2NormGradientNode, PoolingMode::l2_norm>(m, "MPSCNNPoolingL2NormGradientNode",
                                                                            "L2-norm pooling gradient: G * X / Y over each window.");
  auto dgrad = py::class_<PyDilatedPoolingMaxGradientNode, PyPoolingGradientNode,
                          std::shared_ptr<PyDilatedPoolingMaxGradientNode>>(
      m, "MPSCNNDilatedPoolingMaxGradientNode", "Dilated max pooling gradient (nodes.md §5.5, §5.6).");
  def_init(dgrad, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state, int64_t kw, int64_t kh,
                        int64_t sx, int64_t sy, int64_t dx, int64_t dy, const py::object& padding) {
              return pooling_gradient<PyDilatedPoolingMaxGradientNode>(
                  pooling(PoolingMode::dilated_max, kw, kh, sx, sy, dx, dy), g, x, state, padding);
            },
            "source_gradient"_a, "source_image"_a, "gradient_state"_a, "kernel_width"_a, "kernel_height"_a,
            "stride_in_pixels_x"_a, "stride_in_pixels_y"_a, "dilation_rate_x"_a, "dilation_rate_y"_a,
            "padding_policy"_a = py::none());
  attr_property(dgrad, "dilation_rate_x", &PoolingAttrs::dilation_x, "", false);
  attr_property(dgrad, "dilation_rate_y", &PoolingAttrs::dilation_y, "", false);
  set_node_factory(OpKind::PoolingGradient, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    switch (std::get<PoolingAttrs>(a).mode) {
      case PoolingMode::max: return node_factory<PyPoolingMaxGradientNode>(k, std::move(a), std::move(s), std::move(st));
      case PoolingMode::average: return node_factory<PyPoolingAverageGradientNode>(k, std::move(a), std::move(s), std::move(st));
      case PoolingMode::l2_norm: return node_factory<PyPoolingL2NormGradientNode>(k, std::move(a), std::move(s), std::move(st));
      case PoolingMode::dilated_max: break;
    }
    return node_factory<PyDilatedPoolingMaxGradientNode>(k, std::move(a), std::move(s), std::move(st));
  });
  set_node_factory(OpKind::Pooling, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    switch (std::get<PoolingAttrs>(a).mode) {
      case PoolingMode::max: return FilterNodePtr(node_factory<PyPoolingMaxNode>(k, std::move(a), std::move(s), std::move(st)));
      case PoolingMode::average: return FilterNodePtr(node_factory<PyPoolingAverageNode>(k, std::move(a), std::move(s), std::move(st)));
      case PoolingMode::l2_norm: return FilterNodePtr(node_factory<PyPoolingL2NormNode>(k, std::move(a), std::move(s), std::move(st)));
      case PoolingMode::dilated_max: break;
    }
    return FilterNodePtr(node_factory<PyDilatedPoolingMaxNode>(k, std::move(a), std::move(s), std::move(st)));
  });
}

}  // namespace mpsnn::bindings
