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
  py::class_<T, PyPoolingNode, std::shared_ptr<T>>(m, name, doc)
      .def(py::init([](const ImageNodePtr& s, int64_t kw, int64_t kh, int64_t sx, int64_t sy) {
             return make_node<T>(OpKind::Pooling, pooling(Mode, kw, kh, sx, sy), {s});
           }),
           "source"_a, "kernel_width"_a, "kernel_height"_a, "stride_in_pixels_x"_a, "stride_in_pixels_y"_a)
      .def(py::init([](const ImageNodePtr& s, int64_t size, std::optional<int64_t> stride) {
             const int64_t st = stride.value_or(size);
             return make_node<T>(OpKind::Pooling, pooling(Mode, size, size, st, st), {s});
           }),
           "source"_a, "filter_size"_a, "stride"_a = py::none());
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
  dilated
      .def(py::init([](const ImageNodePtr& s, int64_t kw, int64_t kh, int64_t sx, int64_t sy, int64_t dx, int64_t dy) {
             return make_node<PyDilatedPoolingMaxNode>(OpKind::Pooling, pooling(PoolingMode::dilated_max, kw, kh, sx, sy, dx, dy), {s});
           }),
           "source"_a, "kernel_width"_a, "kernel_height"_a, "stride_in_pixels_x"_a, "stride_in_pixels_y"_a,
           "dilation_rate_x"_a, "dilation_rate_y"_a)
      .def(py::init([](const ImageNodePtr& s, int64_t size, std::optional<int64_t> stride, std::optional<int64_t> rate) {
             const int64_t st = stride.value_or(size), d = rate.value_or(size);
             return make_node<PyDilatedPoolingMaxNode>(OpKind::Pooling, pooling(PoolingMode::dilated_max, size, size, st, st, d, d), {s});
           }),
           "source"_a, "filter_size"_a, "stride"_a = py::none(), "dilation_rate"_a = py::none());
  attr_property(dilated, "kernel_width", &PoolingAttrs::kernel_width, "", false);
  attr_property(dilated, "kernel_height", &PoolingAttrs::kernel_height, "", false);
  attr_property(dilated, "stride_in_pixels_x", &PoolingAttrs::stride_x, "", false);
  attr_property(dilated, "stride_in_pixels_y", &PoolingAttrs::stride_y, "", false);
  attr_property(dilated, "dilation_rate_x", &PoolingAttrs::dilation_x, "", false);
  attr_property(dilated, "dilation_rate_y", &PoolingAttrs::dilation_y, "", false);
  attr_property(dilated, "edge_mode", &PoolingAttrs::edge_mode, "");
}

}  // namespace mpsnn::bindings
