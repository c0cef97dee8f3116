#include "graph/params.h"

#include <algorithm>

#include "core/errors.h"

namespace mpsnn {

namespace {
const void* source_key(const FilterNode& f) {
  if (f.convolution_source) return f.convolution_source.get();
  if (f.normalization_source) return f.normalization_source.get();
  return nullptr;
}

// MPSCNNConvolutionDescriptor's own batch-norm parameters are folded when the source is read.
std::shared_ptr<const ConvolutionParams> fold_descriptor_batch_norm(std::shared_ptr<const ConvolutionParams> p) {
  if (!p->desc.batch_norm) return p;
  const auto& bn = *p->desc.batch_norm;
  auto f = fold_batch_norm(*p, bn.mean, bn.variance, bn.gamma, bn.beta, bn.epsilon);
  f->desc.batch_norm.reset();
  f->desc.batch_norm_folded = true;
  return f;
}

bool same_neuron(const NeuronDescriptor& a, const NeuronDescriptor& b) {
  return a.type == b.type && a.a == b.a && a.b == b.b && a.c == b.c && a.data == b.data;
}

// Whether plans compiled for `a` are valid for `b` (everything but the parameter values).
bool same_structure(const NodeParams& a, const NodeParams& b) {
  if (bool(a.conv) != bool(b.conv) || bool(a.norm) != bool(b.norm)) return false;
  if (a.conv) {
    const auto &x = a.conv->desc, &y = b.conv->desc;
    if (x.kernel_width != y.kernel_width || x.kernel_height != y.kernel_height ||
        x.input_feature_channels != y.input_feature_channels || x.output_feature_channels != y.output_feature_channels ||
        x.stride_x != y.stride_x || x.stride_y != y.stride_y || x.dilation_x != y.dilation_x ||
        x.dilation_y != y.dilation_y || x.groups != y.groups || x.depthwise != y.depthwise ||
        x.sub_pixel_scale_factor != y.sub_pixel_scale_factor || !same_neuron(x.fused_neuron, y.fused_neuron) ||
        a.conv->bias.empty() != b.conv->bias.empty())
      return false;
  }
  if (a.norm && a.norm->channels != b.norm->channels) return false;
  return true;
}
}  // namespace

NodeParams ParamStore::read(const FilterNode& f) {
  return with_node_context(f, [&] { return read_unnamed(f); });
}

NodeParams ParamStore::read_unnamed(const FilterNode& f) {
  NodeParams p;
  if (f.convolution_source)
    p.conv = fold_descriptor_batch_norm(
        read_convolution_source(*f.convolution_source, f.kind() == OpKind::BinaryConvolution, f.context(),
                                (f.kind() == OpKind::Convolution || f.kind() == OpKind::ConvolutionGradient) &&
                                    f.attrs_as<ConvolutionAttrs>().variant == ConvolutionVariant::transpose));
  if (f.normalization_source)
    p.norm = read_normalization_source(*f.normalization_source, f.kind() == OpKind::BatchNormalization, f.context());
  return p;
}

NodeParams ParamStore::fold(const ParamSlot& conv, const ParamSlot& bn) {
  const NodeParams c = conv.values(), b = bn.values();
  NodeParams p;
  p.conv = fold_batch_norm(*c.conv, b.norm->mean, b.norm->variance, b.norm->gamma, b.norm->beta, b.norm->epsilon);
  return p;
}

void ParamStore::load(const std::vector<FilterNodePtr>& filters) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& f : filters) {
    const void* key = source_key(*f);
    if (!key) continue;
    auto it = sources_.find(key);
    if (it == sources_.end()) {
      Source s{f.get(), std::make_unique<ParamSlot>()};
      s.slot->set(read(*f));
      it = sources_.emplace(key, std::move(s)).first;
    }
    of_node_[f.get()] = it->second.slot.get();
  }
}

bool ParamStore::reload() {
  std::lock_guard<std::mutex> lock(mutex_);
  // Every source is read before any slot changes: one that raises (or fails validation) leaves
  // the graph with all of its previous parameters, not a mix of old and new.
  std::vector<std::pair<ParamSlot*, NodeParams>> fresh;
  fresh.reserve(sources_.size());
  for (auto& kv : sources_) fresh.emplace_back(kv.second.slot.get(), read(*kv.second.node));
  bool structure_changed = false;
  for (auto& [slot, values] : fresh) {
    structure_changed = structure_changed || !same_structure(slot->values(), values);
    slot->set(std::move(values));
  }
  for (auto& f : folded_) f.slot->set(fold(*f.conv, *f.bn));
  return structure_changed;
}

void ParamStore::refold(const ParamSlot* changed) {
  for (auto& f : folded_)
    if (f.conv == changed || f.bn == changed) f.slot->set(fold(*f.conv, *f.bn));
}

void ParamStore::update(const std::vector<const FilterNode*>& filters, const NodeParams& values) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<ParamSlot*> done;
  for (const FilterNode* f : filters) {
    auto it = of_node_.find(f);
    if (it == of_node_.end()) continue;
    auto* slot = const_cast<ParamSlot*>(it->second);  // the store owns every slot it hands out
    if (std::find(done.begin(), done.end(), slot) != done.end()) continue;
    MPSNN_CHECK(same_structure(slot->values(), values), GraphError, f->context(),
                " a parameter update changed the parameters' structure (sizes, descriptor)");
    slot->set(values);
    refold(slot);
    done.push_back(slot);
  }
}

void ParamStore::reread(const FilterNode& f) {
  NodeParams fresh = read(f);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = of_node_.find(&f);
  if (it == of_node_.end()) return;
  auto* slot = const_cast<ParamSlot*>(it->second);
  MPSNN_CHECK(same_structure(slot->values(), fresh), GraphError, f.context(),
              " after its CPU-style update the data source describes other parameters (sizes, descriptor, "
              "fused neuron); a training step cannot change them: call reload_from_data_sources()");
  slot->set(std::move(fresh));
  refold(slot);
}

const ParamSlot* ParamStore::slot_of(const FilterNode& f) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = of_node_.find(&f);
  return it == of_node_.end() ? nullptr : it->second;
}

NodeParams ParamStore::values_of(const FilterNode& f) const {
  const ParamSlot* s = slot_of(f);
  return s ? s->values() : NodeParams{};
}

const ParamSlot* ParamStore::folded(const ParamSlot* conv, const ParamSlot* bn) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& f : folded_)
    if (f.conv == conv && f.bn == bn) return f.slot.get();
  Folded f{conv, bn, std::make_unique<ParamSlot>()};
  f.slot->set(fold(*conv, *bn));
  folded_.push_back(std::move(f));
  return folded_.back().slot.get();
}

}  // namespace mpsnn
