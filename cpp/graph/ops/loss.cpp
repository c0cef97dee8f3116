// Loss nodes (nodes.md §13): MPSCNNLossNode and MPSCNNYOLOLossNode. Both are their own gradient:
// the result image is dL/d(source), and the loss value goes to the loss image of the
// MPSCNNLossLabels bound to the node's labels (its one source state, a source state of the graph).
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

const char* loss_type_name(LossType type) {
  switch (type) {
    case LossType::mean_absolute_error: return "mean absolute error";
    case LossType::mean_squared_error: return "mean squared error";
    case LossType::softmax_cross_entropy: return "softmax cross entropy";
    case LossType::sigmoid_cross_entropy: return "sigmoid cross entropy";
    case LossType::categorical_cross_entropy: return "categorical cross entropy";
    case LossType::hinge: return "hinge";
    case LossType::huber: return "huber";
    case LossType::cosine_distance: return "cosine distance";
    case LossType::log: return "log";
    case LossType::kullback_leibler_divergence: return "kullback leibler divergence";
  }
  return "unknown";
}

const char* reduction_type_name(ReductionType type) {
  switch (type) {
    case ReductionType::none: return "none";
    case ReductionType::sum: return "sum";
    case ReductionType::mean: return "mean";
    case ReductionType::sum_by_non_zero_weights: return "sum by non-zero weights";
  }
  return "unknown";
}

namespace {
std::string shape_text(const ImageShape& s) {
  return std::to_string(s.w) + "x" + std::to_string(s.h) + "x" + std::to_string(s.c) + " (" + std::to_string(s.n) +
         (s.n == 1 ? " image)" : " images)");
}

int64_t round4(int64_t c) { return (c + 3) / 4 * 4; }

void check_descriptor(const std::string& ctx, const LossDescriptor& d, const char* which) {
  MPSNN_CHECK(int(d.type) >= 0 && int(d.type) <= int(LossType::kullback_leibler_divergence), ShapeError, ctx, which,
              " loss type ", int(d.type), " is not a MPSCNNLossType; expected 0 (mean absolute error) to 9 "
              "(kullback leibler divergence)");
  MPSNN_CHECK(int(d.reduction) >= 0 && int(d.reduction) <= int(ReductionType::sum_by_non_zero_weights), ShapeError,
              ctx, which, " reduction type ", int(d.reduction), " is not a MPSCNNReductionType; expected 0 (none) to 3 "
              "(sum by non-zero weights)");
  MPSNN_CHECK(d.label_smoothing >= 0.0f && d.label_smoothing <= 1.0f, ShapeError, ctx, which, " label_smoothing is ",
              d.label_smoothing, "; expected a value in [0, 1]");
  MPSNN_CHECK(d.number_of_classes >= 1, ShapeError, ctx, which, " number_of_classes is ", d.number_of_classes,
              "; expected at least 1");
  MPSNN_CHECK(d.epsilon >= 0.0f, ShapeError, ctx, which, " epsilon is ", d.epsilon, "; expected a value >= 0");
  MPSNN_CHECK(d.type != LossType::huber || d.delta > 0.0f, ShapeError, ctx, which, " huber delta is ", d.delta,
              "; expected a value > 0");
}

// The labels bound to a loss node: labels [, weights] in, the loss image out, all matching the
// source (nodes.md §13.1). Labels may carry the source's channels rounded up to a multiple of 4
// (MPS stores channels in slices of four; Apple's MNIST sample passes 12 label channels for 10
// classes): the padding channels are ignored.
void check_labels(const ShapeContext& ctx, ReductionType reduction) {
  MPSNN_CHECK(ctx.bound_states.size() == 1, GraphError, ctx.context(),
              " input_labels is not bound to an MPSCNNLossLabels; pass the labels in source_states");
  const auto& b = ctx.bound_states[0];
  MPSNN_CHECK((b.inputs.size() == 1 || b.inputs.size() == 2) && b.outputs.size() == 1, GraphError, ctx.context(),
              " input_labels is bound to a state that is not an MPSCNNLossLabels");
  const ImageShape& src = ctx.sources[0];
  auto fits = [&](const ImageShape& s, bool per_element) {
    if (!per_element) return s.n == src.n && s.h == 1 && s.w == 1 && s.c == 1;
    return s.n == src.n && s.h == src.h && s.w == src.w && (s.c == src.c || s.c == round4(src.c));
  };
  const ImageShape& labels = b.inputs[0].shape;
  MPSNN_CHECK(fits(labels, true), ShapeError, ctx.context(), " labels are ", shape_text(labels),
              " but the source is ", shape_text(src), "; expected labels of the source's size (one labels image per "
              "source image; the channels may be rounded up to a multiple of 4)");
  const ImageShape& loss = b.outputs[0].shape;
  const bool per_element = reduction == ReductionType::none;
  MPSNN_CHECK(fits(loss, per_element), ShapeError, ctx.context(), " the labels' loss image is ", shape_text(loss),
              "; reduction '", reduction_type_name(reduction), "' writes ",
              per_element ? "one loss per element: expected the source's size (" + shape_text(src) + ")"
                          : "one loss per image: expected 1x1x1 (" + std::to_string(src.n) + " images)",
              "; set loss_image_size of MPSCNNLossLabels accordingly");
}
}  // namespace

const OpSchema& schema_Loss() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::Loss);
    o.self_gradient = true;
    o.side_effect = true;
    o.validate_attrs = [](const FilterNode& n, const Attrs& attrs) {
      const LossDescriptor& d = std::get<LossAttrs>(attrs).loss;
      check_descriptor(n.context(), d, "");
      // nodes.md §13.2 (chosen): the cosine distance is defined for the sum reduction only.
      MPSNN_CHECK(d.type != LossType::cosine_distance || d.reduction == ReductionType::sum, ShapeError, n.context(),
                  " cosine distance supports only reduction 'sum'; got '", reduction_type_name(d.reduction), "'");
    };
    o.shape = [](const ShapeContext& ctx) {
      const LossDescriptor& d = ctx.attrs_as<LossAttrs>().loss;
      // A softmax over one feature channel is constant: the loss and its gradient would be 0.
      MPSNN_CHECK(d.type != LossType::softmax_cross_entropy || ctx.sources[0].c > 1, ShapeError, ctx.context(),
                  " softmax cross entropy normalizes over the feature channels, but the source has 1 channel; "
                  "expected at least 2 (use sigmoid cross entropy for one binary prediction per element)");
      check_labels(ctx, d.reduction);
      return same_shape(ctx);
    };
    return o;
  }();
  return s;
}

const OpSchema& schema_YOLOLoss() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::YOLOLoss);
    o.self_gradient = true;
    o.side_effect = true;
    o.validate_attrs = [](const FilterNode& n, const Attrs& attrs) {
      const auto& a = std::get<YOLOLossAttrs>(attrs);
      check_descriptor(n.context(), a.xy, " xy_loss_descriptor");
      check_descriptor(n.context(), a.wh, " wh_loss_descriptor");
      check_descriptor(n.context(), a.confidence, " confidence_loss_descriptor");
      check_descriptor(n.context(), a.classes, " classes_loss_descriptor");
      MPSNN_CHECK(int(a.reduction) >= 0 && int(a.reduction) <= int(ReductionType::mean), ShapeError, n.context(),
                  " reduction type ", int(a.reduction), " is not supported by the YOLO loss; expected none, sum or mean");
      MPSNN_CHECK(a.number_of_anchor_boxes >= 1, ShapeError, n.context(), " number_of_anchor_boxes is ",
                  a.number_of_anchor_boxes, "; expected at least 1");
      MPSNN_CHECK(int64_t(a.anchor_boxes.size()) == 2 * a.number_of_anchor_boxes, ShapeError, n.context(),
                  " anchor_boxes holds ", a.anchor_boxes.size(), " values; expected a (width, height) pair per anchor box (",
                  2 * a.number_of_anchor_boxes, " values)");
      for (auto t : {a.xy.type, a.wh.type, a.confidence.type})
        MPSNN_CHECK(t != LossType::softmax_cross_entropy && t != LossType::cosine_distance, ShapeError, n.context(),
                    " the xy, wh and confidence terms are per-channel losses; '", loss_type_name(t),
                    "' needs a channel vector (only classes_loss_descriptor may use it)");
    };
    o.shape = [](const ShapeContext& ctx) {
      const auto& a = ctx.attrs_as<YOLOLossAttrs>();
      const ImageShape& src = ctx.sources[0];
      const int64_t A = a.number_of_anchor_boxes;
      MPSNN_CHECK(src.c % A == 0 && src.c / A >= 6, ShapeError, ctx.context(), " the source has ", src.c,
                  " feature channels; expected ", A, " anchor box(es) of 5 + K channels each (x, y, w, h, confidence "
                  "and K >= 1 classes), i.e. a multiple of ", A, " of at least ", 6 * A);
      MPSNN_CHECK(a.classes.type != LossType::softmax_cross_entropy || src.c / A - 5 > 1, ShapeError, ctx.context(),
                  " softmax cross entropy over 1 class is constant; expected at least 2 classes per anchor box");
      check_labels(ctx, a.reduction);
      return same_shape(ctx);
    };
    return o;
  }();
  return s;
}

}  // namespace mpsnn
