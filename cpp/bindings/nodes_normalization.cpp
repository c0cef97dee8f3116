// Normalization nodes (nodes.md §8).
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {
struct PyBatchNormalizationGradientNode : PyGradientFilterNode {
  using PyGradientFilterNode::PyGradientFilterNode;
};
struct PyInstanceNormalizationGradientNode : PyGradientFilterNode {
  using PyGradientFilterNode::PyGradientFilterNode;
};

// A batch / instance normalization gradient built by its initializer: sources G and X, the forward
// node's result state; attributes and data source are the forward node's.
template <typename T, typename A>
std::shared_ptr<T> norm_gradient(OpKind kind, OpKind forward_kind, const ImageNodePtr& g, const ImageNodePtr& x,
                                 const StateNodePtr& state) {
  const char* name = op_name(kind);
  MPSNN_CHECK(state != nullptr, GraphError, "[", name, "] gradient_state is None; pass the forward node's result_state");
  auto fwd = state->producer();
  MPSNN_CHECK(fwd && fwd->kind() == forward_kind, GraphError, "[", name, "] gradient_state is not the result_state of a ",
              op_name(forward_kind), " node");
  auto n = make_node<T>(kind, fwd->attrs_as<A>(), {g, x}, {state});
  n->set_data_source(fwd->normalization_source);
  return n;
}

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

  // The state node classes of these families' result states (not public MPS classes).
  py::class_<BatchNormalizationStateNode, GradientStateNode, std::shared_ptr<BatchNormalizationStateNode>>(
      m, "_MPSCNNBatchNormalizationStateNode",
      "The result state of batch normalization and of its gradient: delivered as an MPSCNNBatchNormalizationState.");
  py::class_<InstanceNormalizationGradientStateNode, GradientStateNode,
             std::shared_ptr<InstanceNormalizationGradientStateNode>>(
      m, "_MPSCNNInstanceNormalizationGradientStateNode",
      "The result state of instance normalization and of its gradient: delivered as an "
      "MPSCNNInstanceNormalizationGradientState.");

  // Gradient nodes (nodes.md §8.5, §8.6).
  auto bn_grad = py::class_<PyBatchNormalizationGradientNode, PyGradientFilterNode,
                            std::shared_ptr<PyBatchNormalizationGradientNode>>(
      m, "MPSCNNBatchNormalizationGradientNode",
      "Batch normalization gradient (nodes.md §8.5): dL/dX with the forward source's size, in the mode the forward "
      "ran in (batch statistics in training; the data source's otherwise). Its result state delivers an "
      "MPSCNNBatchNormalizationState with the statistics, gamma, beta and gradient_for_gamma() / gradient_for_beta() "
      "summed over the batch.\n\nArgs:\n    source_gradient: dL/dY (N, H, W, C).\n    source_image: the forward "
      "source X.\n    gradient_state: the forward node's result_state.");
  def_init(bn_grad, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state) {
             return norm_gradient<PyBatchNormalizationGradientNode, BatchNormalizationAttrs>(
                 OpKind::BatchNormalizationGradient, OpKind::BatchNormalization, g, x, state);
           },
           "source_gradient"_a, "source_image"_a, "gradient_state"_a);
  attr_property(bn_grad, "training_style", &BatchNormalizationAttrs::training_style,
                "MPSNNTrainingStyle (copied from the forward node); update_device_none: no gamma/beta gradients.");
  set_node_factory(OpKind::BatchNormalizationGradient, node_factory<PyBatchNormalizationGradientNode>);
  auto in_grad = py::class_<PyInstanceNormalizationGradientNode, PyGradientFilterNode,
                            std::shared_ptr<PyInstanceNormalizationGradientNode>>(
      m, "MPSCNNInstanceNormalizationGradientNode",
      "Instance normalization gradient (nodes.md §8.6): dL/dX; its result state delivers an "
      "MPSCNNInstanceNormalizationGradientState with gamma, beta and their gradients summed over the batch.");
  def_init(in_grad, [](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state) {
             return norm_gradient<PyInstanceNormalizationGradientNode, InstanceNormalizationAttrs>(
                 OpKind::InstanceNormalizationGradient, OpKind::InstanceNormalization, g, x, state);
           },
           "source_gradient"_a, "source_image"_a, "gradient_state"_a);
  attr_property(in_grad, "training_style", &InstanceNormalizationAttrs::training_style, "");
  set_node_factory(OpKind::InstanceNormalizationGradient, node_factory<PyInstanceNormalizationGradientNode>);

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

  // Gradient nodes (nodes.md §8.2-8.4). Built by hand they start from the documented defaults
  // (cross-channel and spatial 1, 5, 1; local contrast alpha 0, beta 0.5, delta 1/1024);
  // gradient_filter copies the forward node's values.
  auto check_state = [](const StateNodePtr& state) {
    MPSNN_CHECK(state != nullptr, GraphError,
                "[normalization gradient] gradient_state is None; pass the forward node's result_state");
  };
  auto cross_grad = py::class_<PyCrossChannelNormalizationGradientNode, PyGradientFilterNode,
                               std::shared_ptr<PyCrossChannelNormalizationGradientNode>>(
      m, "MPSCNNCrossChannelNormalizationGradientNode",
      "Gradient of the cross-channel normalization (the exact derivative of nodes.md §8.2).");
  def_init(cross_grad, [check_state](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state, int64_t k) {
             check_state(state);
             NormalizationAttrs a;
             a.mode = NormalizationMode::cross_channel;
             a.kernel_width = k;
             a.kernel_height = 1;
             return make_node<PyCrossChannelNormalizationGradientNode>(OpKind::NormalizationGradient, a, {g, x}, {state});
           },
           "source_gradient"_a, "source_image"_a, "gradient_state"_a, "kernel_size"_a);
  attr_property(cross_grad, "kernel_size", &NormalizationAttrs::kernel_width, "", false);
  attr_property(cross_grad, "alpha", &NormalizationAttrs::alpha, "mpsnn extension (MPS takes it from the state).");
  attr_property(cross_grad, "beta", &NormalizationAttrs::beta, "mpsnn extension (MPS takes it from the state).");
  attr_property(cross_grad, "delta", &NormalizationAttrs::delta, "mpsnn extension (MPS takes it from the state).");
  auto spatial_grad = py::class_<PySpatialNormalizationGradientNode, PyGradientFilterNode,
                                 std::shared_ptr<PySpatialNormalizationGradientNode>>(
      m, "MPSCNNSpatialNormalizationGradientNode", "Gradient of the spatial normalization (nodes.md §8.3).");
  def_init(spatial_grad, [check_state](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state, int64_t k) {
             check_state(state);
             NormalizationAttrs a;
             a.mode = NormalizationMode::spatial;
             a.kernel_width = a.kernel_height = k;
             return make_node<PySpatialNormalizationGradientNode>(OpKind::NormalizationGradient, a, {g, x}, {state});
           },
           "source_gradient"_a, "source_image"_a, "gradient_state"_a, "kernel_size"_a);
  attr_property(spatial_grad, "kernel_width", &NormalizationAttrs::kernel_width, "", false);
  attr_property(spatial_grad, "kernel_height", &NormalizationAttrs::kernel_height, "", false);
  attr_property(spatial_grad, "alpha", &NormalizationAttrs::alpha, "");
  attr_property(spatial_grad, "beta", &NormalizationAttrs::beta, "");
  attr_property(spatial_grad, "delta", &NormalizationAttrs::delta, "");
  auto lcn_grad = py::class_<PyLocalContrastNormalizationGradientNode, PyGradientFilterNode,
                             std::shared_ptr<PyLocalContrastNormalizationGradientNode>>(
      m, "MPSCNNLocalContrastNormalizationGradientNode",
      "Gradient of the local contrast normalization (nodes.md §8.4); alpha defaults to 0 when built by hand.");
  def_init(lcn_grad, [check_state](const ImageNodePtr& g, const ImageNodePtr& x, const StateNodePtr& state, int64_t kw,
                                   int64_t kh) {
             check_state(state);
             NormalizationAttrs a;
             a.mode = NormalizationMode::local_contrast;
             a.kernel_width = kw;
             a.kernel_height = kh;
             a.alpha = 0.0f;
             a.beta = 0.5f;
             a.delta = 1.0f / 1024.0f;
             return make_node<PyLocalContrastNormalizationGradientNode>(OpKind::NormalizationGradient, a, {g, x}, {state});
           },
           "source_gradient"_a, "source_image"_a, "gradient_state"_a, "kernel_width"_a, "kernel_height"_a);
  attr_property(lcn_grad, "kernel_width", &NormalizationAttrs::kernel_width, "", false);
  attr_property(lcn_grad, "kernel_height", &NormalizationAttrs::kernel_height, "", false);
  attr_property(lcn_grad, "alpha", &NormalizationAttrs::alpha, "");
  attr_property(lcn_grad, "beta", &NormalizationAttrs::beta, "");
  attr_property(lcn_grad, "delta", &NormalizationAttrs::delta, "");
  attr_property(lcn_grad, "pm", &NormalizationAttrs::pm, "");
  attr_property(lcn_grad, "ps", &NormalizationAttrs::ps, "");
  attr_property(lcn_grad, "p0", &NormalizationAttrs::p0, "");
  set_node_factory(OpKind::NormalizationGradient, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    switch (std::get<NormalizationAttrs>(a).mode) {
      case NormalizationMode::cross_channel:
        return node_factory<PyCrossChannelNormalizationGradientNode>(k, std::move(a), std::move(s), std::move(st));
      case NormalizationMode::spatial:
        return node_factory<PySpatialNormalizationGradientNode>(k, std::move(a), std::move(s), std::move(st));
      case NormalizationMode::local_contrast: break;
    }
    return node_factory<PyLocalContrastNormalizationGradientNode>(k, std::move(a), std::move(s), std::move(st));
  });
  set_node_factory(OpKind::BatchNormalization, node_factory<PyBatchNormalizationNode>);
  set_node_factory(OpKind::InstanceNormalization, node_factory<PyInstanceNormalizationNode>);
  set_node_factory(OpKind::Normalization, [](OpKind k, Attrs a, std::vector<ImageNodePtr> s, std::vector<StateNodePtr> st) {
    switch (std::get<NormalizationAttrs>(a).mode) {
      case NormalizationMode::cross_channel: return FilterNodePtr(node_factory<PyCrossChannelNormalizationNode>(k, std::move(a), std::move(s), std::move(st)));
      case NormalizationMode::spatial: return FilterNodePtr(node_factory<PySpatialNormalizationNode>(k, std::move(a), std::move(s), std::move(st)));
      case NormalizationMode::local_contrast: break;
    }
    return FilterNodePtr(node_factory<PyLocalContrastNormalizationNode>(k, std::move(a), std::move(s), std::move(st)));
  });
}

}  // namespace mpsnn::bindings
