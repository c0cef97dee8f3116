#include "graph/node.h"

#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

namespace {
class BuiltinAllocator final : public ImageAllocator {
 public:
  explicit BuiltinAllocator(bool temporary) : temporary_(temporary) {}
  ImagePtr allocate(const CommandBufferPtr& cb, const DevicePtr& device, const ImageDescriptor& desc) const override {
    if (temporary_ && cb) return std::make_shared<TemporaryImage>(cb, desc);
    return std::make_shared<Image>(device, desc);
  }
  bool is_temporary_default() const override { return temporary_; }

 private:
  bool temporary_;
};
}  // namespace

ImageAllocatorPtr persistent_image_allocator() {
  static const auto a = std::make_shared<BuiltinAllocator>(false);
  return a;
}
ImageAllocatorPtr temporary_image_allocator() {
  static const auto a = std::make_shared<BuiltinAllocator>(true);
  return a;
}

std::shared_ptr<FilterNode> ImageNode::parent() const {
  return parent_ ? parent_->shared_from_this() : nullptr;
}

std::shared_ptr<FilterNode> StateNode::producer() const {
  return producer_ ? producer_->shared_from_this() : nullptr;
}

FilterNode::FilterNode(OpKind kind, Attrs attrs, std::vector<ImageNodePtr> sources,
                       std::vector<StateNodePtr> source_states)
    : kind_(kind),
      attrs_(std::move(attrs)),
      sources_(std::move(sources)),
      source_states_(std::move(source_states)),
      result_(std::make_unique<ImageNode>()) {
  const OpSchema& s = schema(kind_);
  const int n = int(sources_.size());
  MPSNN_CHECK(n >= s.min_sources && (s.max_sources < 0 || n <= s.max_sources), ShapeError, "[", s.name,
              "] got ", n, " source image(s); expected ",
              s.max_sources < 0 ? "at least " + std::to_string(s.min_sources)
                                : (s.min_sources == s.max_sources ? std::to_string(s.min_sources)
                                                                  : std::to_string(s.min_sources) + " to " +
                                                                        std::to_string(s.max_sources)));
  for (size_t i = 0; i < sources_.size(); ++i)
    MPSNN_CHECK(sources_[i] != nullptr, ShapeError, "[", s.name, "] source image ", i, " is None");
  MPSNN_CHECK(holds_attrs_of(kind_, attrs_), GraphError, "[", s.name, "] internal error: attributes of another kind");
  result_->parent_ = this;
  // nodes.md §2.2: a gradient's result has the format of its incoming gradient; other results
  // default to none (the graph's format).
  if (s.is_gradient) result_->format = sources_[0]->format;
  padding_ = default_padding_for(kind_, attrs_);
  for (const auto& st : s.result_states) add_result_state(st.node_class);
  if (s.validate_attrs) s.validate_attrs(*this, attrs_);
}

void FilterNode::wrong_attrs() const {
  MPSNN_THROW(UnsupportedError, context(), " has no such property (its attributes are those of a ", op_name(kind_),
              " node)");
}

ImageNodePtr FilterNode::result_image() { return ImageNodePtr(shared_from_this(), result_.get()); }

std::vector<StateNodePtr> FilterNode::result_states() {
  std::vector<StateNodePtr> out;
  auto self = shared_from_this();
  for (auto& s : result_states_) out.push_back(StateNodePtr(self, s.get()));
  return out;
}

StateNodePtr FilterNode::result_state() {
  if (result_states_.empty()) return nullptr;
  return StateNodePtr(shared_from_this(), result_states_.front().get());
}

void FilterNode::add_result_state(ResultStateKind kind) {
  std::unique_ptr<StateNode> s;
  switch (kind) {
    case ResultStateKind::none: return;
    case ResultStateKind::gradient: s = std::make_unique<GradientStateNode>(); break;
    case ResultStateKind::convolution_gradient: {
      const auto* conv = std::get_if<ConvolutionAttrs>(&attrs_);
      if (conv && conv->variant == ConvolutionVariant::transpose)
        s = std::make_unique<ConvolutionTransposeGradientStateNode>();
      else
        s = std::make_unique<ConvolutionGradientStateNode>();
      break;
    }
    case ResultStateKind::arithmetic_gradient: s = std::make_unique<ArithmeticGradientStateNode>(); break;
    case ResultStateKind::multiary_gradient: s = std::make_unique<MultiaryGradientStateNode>(); break;
    case ResultStateKind::batch_normalization: s = std::make_unique<BatchNormalizationStateNode>(); break;
    case ResultStateKind::instance_normalization_gradient:
      s = std::make_unique<InstanceNormalizationGradientStateNode>();
      break;
    case ResultStateKind::dropout_gradient: s = std::make_unique<GradientStateNode>(StateClass::dropout_gradient); break;
  }
  s->producer_ = this;
  result_states_.push_back(std::move(s));
}

void FilterNode::set_padding_policy(PaddingPtr policy) {
  MPSNN_CHECK(policy != nullptr, ShapeError, context(), " padding_policy cannot be None");
  padding_ = std::move(policy);
}

std::string FilterNode::context() const {
  std::string c = std::string("[") + op_name(kind_);
  if (const auto& l = label ? label : source_label_) c += " '" + *l + "'";
  return c + "]";
}

void FilterNode::set_data_source(std::shared_ptr<ConvolutionDataSource> source) {
  convolution_source = std::move(source);
  source_label_ = convolution_source ? convolution_source->label() : std::nullopt;
}

void FilterNode::set_data_source(std::shared_ptr<NormalizationDataSource> source) {
  normalization_source = std::move(source);
  source_label_ = normalization_source ? normalization_source->label() : std::nullopt;
}

namespace {
thread_local const FilterNode* t_callback_node = nullptr;
}  // namespace

NodeCallbackScope::NodeCallbackScope(const FilterNode& node) : previous_(t_callback_node) { t_callback_node = &node; }
NodeCallbackScope::~NodeCallbackScope() { t_callback_node = previous_; }
const FilterNode* NodeCallbackScope::current() { return t_callback_node; }

PaddingPtr default_padding_for(OpKind kind, const Attrs& attrs) {
  using namespace padding;
  static const PaddingPtr same = DefaultPadding::with_method(kSizeSame);
  static const PaddingPtr valid = DefaultPadding::with_method(kSizeValidOnly);
  if (kind == OpKind::BinaryConvolution) return valid;
  if (kind == OpKind::Convert || kind == OpKind::Fill) return same;
  if ((kind == OpKind::Convolution || kind == OpKind::ConvolutionGradient) &&
      std::get<ConvolutionAttrs>(attrs).variant == ConvolutionVariant::fully_connected)
    return valid;
  return same;
}

}  // namespace mpsnn
