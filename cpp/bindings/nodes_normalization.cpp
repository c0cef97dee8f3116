// Normalization nodes (nodes.md §8).
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {
template <typename T>
std::shared_ptr<T> norm_node(const ImageNodePtr& s, NormalizationMode mode, int64_t kw, int64_t kh, float alpha,
                             float beta, float delta) {
  NormalizationAttrs a;
  a.mode = mode;
  a.kernel_width = kw;
  a.kernel_height = kh;
  a.alpha = alpha;
  a.beta = beta;
  a.delta = delta;
  return make_node<T>(OpKind::Normalization, a, {s});
}
}  // namespace

void bind_nodes_normalization(py::module_& m) {
  auto bn = py::class_<PyBatchNormalizationNode, FilterNode, std::shared_ptr<PyBatchNormalizationNode>>(
      m, "MPSCNNBatchNormalizationNode",
      "y = gamma*(x - mean)/sqrt(variance + epsilon) + beta. Inference uses the data source's statistics (and is "
      "folded into a preceding convolution); flags=calculate_statistics_always uses the batch's own.");
  def_init(bn, [](const ImageNodePtr& s, const py::object& ds) {
           auto n = make_node<PyBatchNormalizationNode>(OpKind::BatchNormalization, BatchNormalizationAttrs{}, {s});
           n->set_data_source(to_normalization_source(ds));
           return n;
         },
         "source"_a, "data_source"_a);
  attr_property(bn, "flags", &BatchNormalizationAttrs::flags, "MPSCNNBatchNormalizationFlags.");
  attr_property(bn, "training_style", &BatchNormalizationAttrs::training_style, "");

  auto in = py::class_<PyInstanceNormalizationNode, FilterNode, std::shared_ptr<PyInstanceNormalizationNode>>(
      m, "MPSCNNInstanceNormalizationNode", "Normalization per image and channel over its pixels (nodes.md §8.6).");
  def_init(in, [](const ImageNodePtr& s, const py::object& ds) {
           auto n = make_node<PyInstanceNormalizationNode>(OpKind::InstanceNormalization, InstanceNormalizationAttrs{}, {s});
           n->set_data_source(to_normalization_source(ds));
           return n;
         },
         "source"_a, "data_source"_a);
  attr_property(in, "training_style", &InstanceNormalizationAttrs::training_style, "");

  auto base = py::class_<PyNormalizationNode, FilterNode, std::shared_ptr<PyNormalizationNode>>(
      m, "MPSCNNNormalizationNode", "Base of the LRN-style normalizations; alpha, beta, delta.");
  attr_property(base, "alpha", &NormalizationAttrs::alpha, "");
  attr_property(base, "beta", &NormalizationAttrs::beta, "");
  attr_property(base, "delta", &NormalizationAttrs::delta, "");
  auto cross = py::class_<PyCrossChannelNormalizationNode, PyNormalizationNode, std::shared_ptr<PyCrossChannelNormalizationNode>>(
      m, "MPSCNNCrossChannelNormalizationNode", "Local response normalization across channels (nodes.md §8.2).");
  def_init(cross, [](const ImageNodePtr& s, int64_t k) {
              return norm_node<PyCrossChannelNormalizationNode>(s, NormalizationMode::cross_channel, k, 1, 1, 5, 1);
            },
            "source"_a, "kernel_size"_a = 5);
  attr_property(cross, "kernel_size_in_feature_channels", &NormalizationAttrs::kernel_width, "", false);
  auto spatial = py::class_<PySpatialNormalizationNode, PyNormalizationNode, std::shared_ptr<PySpatialNormalizationNode>>(
      m, "MPSCNNSpatialNormalizationNode", "Normalization over a spatial window per channel (nodes.md §8.3).");
  def_init(spatial, [](const ImageNodePtr& s, int64_t k) {
                return norm_node<PySpatialNormalizationNode>(s, NormalizationMode::spatial, k, k, 1, 5, 1);
              },
              "source"_a, "kernel_size"_a = 5);
  attr_property(spatial, "kernel_width", &NormalizationAttrs::kernel_width, "");
  attr_property(spatial, "kernel_height", &NormalizationAttrs::kernel_height, "");
  auto lcn = py::class_<PyLocalContrastNormalizationNode, PyNormalizationNode,
                        std::shared_ptr<PyLocalContrastNormalizationNode>>(
      m, "MPSCNNLocalContrastNormalizationNode", "Local contrast normalization (nodes.md §8.4).");
  def_init(lcn, [](const ImageNodePtr& s, int64_t k) {
            return norm_node<PyLocalContrastNormalizationNode>(s, NormalizationMode::local_contrast, k, k, 1.0f, 0.5f,
                                                               1.0f / 1024.0f);
          },
          "source"_a, "kernel_size"_a = 5);
  attr_property(lcn, "kernel_width", &NormalizationAttrs::kernel_width, "");
  attr_property(lcn, "kernel_height", &NormalizationAttrs::kernel_height, "");
  attr_property(lcn, "pm", &NormalizationAttrs::pm, "");
  attr_property(lcn, "ps", &NormalizationAttrs::ps, "");
  attr_property(lcn, "p0", &NormalizationAttrs::p0, "");
}

}  // namespace mpsnn::bindings
