// Upsampling (nodes.md §9) and scale nodes (§10).
#include <cmath>

#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {
template <typename T>
std::shared_ptr<T> upsampling(const ImageNodePtr& s, UpsamplingMode mode, int64_t fx, int64_t fy, bool align) {
  UpsamplingAttrs a;
  a.mode = mode;
  a.scale_factor_x = fx;
  a.scale_factor_y = fy;
  a.align_corners = align;
  return make_node<T>(OpKind::Upsampling, a, {s});
}

std::array<int64_t, 3> size_of(const py::object& o) {
  if (py::hasattr(o, "width"))
    return {o.attr("width").cast<int64_t>(), o.attr("height").cast<int64_t>(),
            py::hasattr(o, "depth") ? o.attr("depth").cast<int64_t>() : 1};
  auto t = o.cast<std::vector<int64_t>>();
  MPSNN_CHECK(t.size() == 2 || t.size() == 3, ShapeError, "[scale] output_size must be (width, height[, depth])");
  return {t[0], t[1], t.size() == 3 ? t[2] : 1};
}

template <typename T, ScaleMode Mode>
void scale_class(py::module_& m, const char* name, const char* doc) {
  auto make = [](const ImageNodePtr& s, const py::object& provider, const py::object& size) {
    ScaleAttrs a;
    a.mode = Mode;
    auto [w, h, d] = size_of(size);
    a.output_width = w;
    a.output_height = h;
    a.output_depth = d;
    a.transform_provider = to_transform_provider(provider);
    return make_node<T>(OpKind::Scale, a, {s});
  };
  // MPS's two initializers: (source, outputSize) and (source, transformProvider, outputSize).
  auto c = py::class_<T, PyScaleNode, std::shared_ptr<T>>(m, name, doc);
  def_init(c, [make](const ImageNodePtr& s, const py::object& size) { return make(s, py::none(), size); }, "source"_a,
           "output_size"_a);
  def_init(c, make, "source"_a, "transform_provider"_a, "output_size"_a);
}
// A gradient's scale factor: MPS passes doubles; upsampling factors are integers >= 1.
int64_t integer_factor(double f, const char* name) {
  MPSNN_CHECK(f >= 1.0 && std::floor(f) == f && f < 9.0e15, ShapeError, "[upsampling gradient] ", name, " is ", f,
              "; expected an integer >= 1 (the forward node's factor)");
  return int64_t(f);
}

template <typename T, UpsamplingMode Mode>
py::class_<T, PyGradientFilterNode, std::shared_ptr<T>> upsampling_gradient_class(py::module_& m, const char* name, const char* doc) {
  auto c = py::class_<T, PyGradientFilterNode, std::shared_ptr<T>>(m, name, doc);
  def_init(c, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state, double fx, double fy) {
             MPSNN_CHECK(state != nullptr, GraphError,
                         "[upsampling gradient] gradient_state is None; pass the forward node's result_state");
             UpsamplingAttrs a;
             a.mode = Mode;
             a.scale_factor_x = integer_factor(fx, "scale_factor_x");
             a.scale_factor_y = integer_factor(fy, "scale_factor_y");
             // nodes.md §9.2: align_corners comes from the forward node through the state.
             if (const Attrs* fwd = state_producer_attrs(state, OpKind::Upsampling))
               a.align_corners = std::get<UpsamplingAttrs>(*fwd).align_corners;
             return make_node<T>(OpKind::UpsamplingGradient, a, {g, x}, {state});
           },
           "source_gradient"_a, "source_image"_a, "gradient_state"_a, "scale_factor_x"_a, "scale_factor_y"_a);
  c.def_property_readonly("scale_factor_x", [](const FilterNode& n) { return double(n.attrs_as<UpsamplingAttrs>().scale_factor_x); })
      .def_property_readonly("scale_factor_y", [](const FilterNode& n) { return double(n.attrs_as<UpsamplingAttrs>().scale_factor_y); });
  return c;
}
}  // namespace

void bind_nodes_resample(py::module_& m) {
  auto nearest = py::class_<PyUpsamplingNearestNode, FilterNode, std::shared_ptr<PyUpsamplingNearestNode>>(
      m, "MPSCNNUpsamplingNearestNode", "Nearest-neighbour upsampling by integer factors.");
  def_init(nearest, [](const ImageNodePtr& s, int64_t fx, int64_t fy) {
             return upsampling<PyUpsamplingNearestNode>(s, UpsamplingMode::nearest, fx, fy, false);
           },
           "source"_a, "integer_scale_factor_x"_a, "integer_scale_factor_y"_a);
  nearest.def_property_readonly("scale_factor_x", [](const FilterNode& n) { return double(n.attrs_as<UpsamplingAttrs>().scale_factor_x); })
      .def_property_readonly("scale_factor_y", [](const FilterNode& n) { return double(n.attrs_as<UpsamplingAttrs>().scale_factor_y); });
  auto bilinear = py::class_<PyUpsamplingBilinearNode, FilterNode, std::shared_ptr<PyUpsamplingBilinearNode>>(
      m, "MPSCNNUpsamplingBilinearNode", "Bilinear upsampling by integer factors (align_corners on or off).");
  def_init(bilinear, [](const ImageNodePtr& s, int64_t fx, int64_t fy, bool align) {
             return upsampling<PyUpsamplingBilinearNode>(s, UpsamplingMode::bilinear, fx, fy, align);
           },
           "source"_a, "integer_scale_factor_x"_a, "integer_scale_factor_y"_a, "align_corners"_a = false);
  bilinear.def_property_readonly("scale_factor_x", [](const FilterNode& n) { return double(n.attrs_as<UpsamplingAttrs>().scale_factor_x); })
      .def_property_readonly("scale_factor_y", [](const FilterNode& n) { return double(n.attrs_as<UpsamplingAttrs>().scale_factor_y); })
      .def_property_readonly("align_corners", [](const FilterNode& n) { return n.attrs_as<UpsamplingAttrs>().align_corners; });
  upsampling_gradient_class<PyUpsamplingNearestGradientNode, UpsamplingMode::nearest>(
      m, "MPSCNNUpsamplingNearestGradientNode", "Nearest upsampling gradient: the sum of G over each fy x fx block.");
  upsampling_gradient_class<PyUpsamplingBilinearGradientNode, UpsamplingMode::bilinear>(
      m, "MPSCNNUpsamplingBilinearGradientNode",
      "Bilinear upsampling gradient: the adjoint of the forward interpolation (align_corners of the forward node).")
      .def_property_readonly("align_corners", [](const FilterNode& n) { return n.attrs_as<UpsamplingAttrs>().align_corners; });
  set_node_factory(OpKind::UpsamplingGradient, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    if (std::get<UpsamplingAttrs>(a).mode == UpsamplingMode::nearest)
      return node_factory<PyUpsamplingNearestGradientNode>(k, std::move(a), std::move(s), std::move(st));
    return node_factory<PyUpsamplingBilinearGradientNode>(k, std::move(a), std::move(s), std::move(st));
  });
  py::class_<PyScaleNode, FilterNode, std::shared_ptr<PyScaleNode>>(m, "MPSNNScaleNode",
                                                                    "Base of the resampling nodes with a fixed output size.");
  scale_class<PyBilinearScaleNode, ScaleMode::bilinear>(m, "MPSNNBilinearScaleNode", "Bilinear resampling (nodes.md §10.3).");
  scale_class<PyLanczosScaleNode, ScaleMode::lanczos>(m, "MPSNNLanczosScaleNode", "Lanczos-3 resampling (nodes.md §10.4).");
  set_node_factory(OpKind::Upsampling, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    if (std::get<UpsamplingAttrs>(a).mode == UpsamplingMode::nearest) return FilterNodePtr(node_factory<PyUpsamplingNearestNode>(k, std::move(a), std::move(s), std::move(st)));
    return FilterNodePtr(node_factory<PyUpsamplingBilinearNode>(k, std::move(a), std::move(s), std::move(st)));
  });
  set_node_factory(OpKind::Scale, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    if (std::get<ScaleAttrs>(a).mode == ScaleMode::bilinear) return FilterNodePtr(node_factory<PyBilinearScaleNode>(k, std::move(a), std::move(s), std::move(st)));
    return FilterNodePtr(node_factory<PyLanczosScaleNode>(k, std::move(a), std::move(s), std::move(st)));
  });
}

}  // namespace mpsnn::bindings
