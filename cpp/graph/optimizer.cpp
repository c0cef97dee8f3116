#include "graph/optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/errors.h"
#include "graph/kernel.h"

namespace mpsnn {

namespace {
const char* rule_name(OptimizerRule r) {
  switch (r) {
    case OptimizerRule::sgd: return "MPSNNOptimizerStochasticGradientDescent";
    case OptimizerRule::rmsprop: return "MPSNNOptimizerRMSProp";
    case OptimizerRule::adam: return "MPSNNOptimizerAdam";
  }
  return "MPSNNOptimizer";
}

// The bytes of a vector's memory: [first, last) of its buffer's storage.
// Bytes a vector covers. A buffer without memory yet (its memory is bound when the update runs:
// a training graph's parameter snapshot) is its own address space: it can only overlap itself.
struct Span {
  uintptr_t first;
  uintptr_t last;
  const Buffer* lazy = nullptr;  // first / last are offsets into it then
  bool overlaps(const Span& o) const { return lazy == o.lazy && first < o.last && o.first < last; }
  bool same(const Span& o) const { return lazy == o.lazy && first == o.first && last == o.last; }
};
}  // namespace

Optimizer::Optimizer(DevicePtr device, const KernelRegistry* registry, OptimizerRule rule, OptimizerDescriptor desc)
    : device_(std::move(device)), rule_(rule), desc_(desc) {
  MPSNN_CHECK(device_ != nullptr, GraphError, "[", rule_name(rule), "] needs a device");
  update_ = registry ? registry->optimizer_update : nullptr;
  MPSNN_CHECK(update_ != nullptr, UnsupportedError, "[", rule_name(rule), "] the '", device_->backend(),
              "' backend has no optimizer kernel yet; make the optimizer on the CPU device");
}

std::string Optimizer::name() const { return rule_name(rule_); }

OptimizerDescriptor Optimizer::descriptor() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return desc_;
}

void Optimizer::set_learning_rate(float lr) {
  std::lock_guard<std::mutex> lock(mutex_);
  desc_.learning_rate = lr;
}

void Optimizer::set_apply_gradient_clipping(bool on) {
  std::lock_guard<std::mutex> lock(mutex_);
  desc_.apply_gradient_clipping = on;
}

OptimizerStep Optimizer::next_step() {
  OptimizerStep s;
  s.rule = rule_;
  s.desc = descriptor();
  s.learning_rate = s.desc.learning_rate;
  s.momentum_scale = momentum_scale;
  s.nesterov = nesterov;
  s.decay = decay;
  s.epsilon = epsilon;
  s.beta1 = beta1;
  s.beta2 = beta2;
  if (rule_ == OptimizerRule::adam) {
    // graph.md §7.5: t advances once per encode call, lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
    // (evaluated in double, then rounded once).
    s.time_step = ++time_step_;
    const double t = double(s.time_step);
    const double lr_t = double(s.desc.learning_rate) * std::sqrt(1.0 - std::pow(double(beta2), t)) /
                        (1.0 - std::pow(double(beta1), t));
    s.learning_rate = float(lr_t);
  }
  return s;
}

namespace {
// The state vector names of each rule (OptimizerBuffers order); "" where the rule has none.
const char* const kStateNames[3][3] = {{"input_momentum_vector", "", ""},
                                       {"input_sum_of_squares_vector", "", ""},
                                       {"input_momentum_vector", "input_velocity_vector", "maximum_velocity_vector"}};

// The state vector list keywords of the convolution and normalization forms (graph.md §7.6).
const char* kListNames[3][3] = {{"input_momentum_vectors", "", ""},
                                {"input_sum_of_squares_vectors", "", ""},
                                {"input_momentum_vectors", "input_velocity_vectors", "maximum_velocity_vectors"}};

// Entry `j` of every given list as the update's state vectors ("input_velocity_vectors[1]").
void attach_lists(OptimizerUpdate& u, const StateVectorLists& lists, const char* const names[3], size_t j) {
  for (int k = 0; k < 3; ++k)
    if (!lists.lists[k].empty())
      u.states[k] = NamedVector{std::string(names[k]) + "[" + std::to_string(j) + "]", lists.lists[k][j]};
}

// `count` float32 elements of a state's buffer `index`, `offset` bytes in.
VectorRef float_vector(const BufferPtr& buffer, int64_t offset, int64_t count) {
  return VectorRef{buffer, count, 1, count * int64_t(sizeof(float)), offset, DataType::float32};
}

// `n` values of part `j` (0: weights / gamma, 1: biases / beta) of a parameter state. The buffer
// gets its memory when the update runs, not now: a training graph's snapshot state binds the
// graph's parameters to it then (training_updates.cpp).
VectorRef pair_vector(ParameterPairState& s, size_t j, int64_t n) {
  return float_vector(s.lazy_part(j), j == 0 ? s.first_offset() : s.second_offset(), n);
}

// The float32 buffer of a graph-made state's role, or a typed error naming it.
VectorRef role_vector(State& s, const char* role, const std::string& ctx, const char* arg) {
  const int i = s.find_buffer(role);
  MPSNN_CHECK(i >= 0, GraphError, ctx, " ", arg, " holds no ", role,
              " (a state its gradient node filled is expected)");
  const TensorDesc& d = s.layout()[size_t(i)];
  MPSNN_CHECK(d.dtype == DType::f32, DTypeError, ctx, " ", arg, ".", role, " is ", dtype_name(d.dtype),
              "; expected float32");
  return float_vector(s.resource(i, true), 0, int64_t(d.shape.numel()));
}
}  // namespace

void Optimizer::encode_vectors(const std::shared_ptr<CommandBuffer>& cb, const VectorRef& gradient,
                               const VectorRef& values, const VectorRef* state0, const VectorRef* state1,
                               const VectorRef* state2, const VectorRef& result, const char* what) {
  const char* const* names = kStateNames[int(rule_)];
  OptimizerUpdate u{{"input_gradient_vector", gradient}, {"input_values_vector", values}, {}, {"result_values_vector", result}};
  const VectorRef* given[3] = {state0, state1, state2};
  for (int k = 0; k < 3; ++k)
    if (given[k]) u.states[k] = NamedVector{names[k], *given[k]};
  std::vector<OptimizerUpdate> updates;
  updates.push_back(std::move(u));
  encode_updates(cb, std::move(updates), what);
}

void Optimizer::check_lists(const StateVectorLists& lists, size_t& count, const std::string& ctx,
                            const char* const list_names[3]) const {
  // Which lists the rule needs (graph.md §7.3-7.5) and that all given lists have one length.
  const bool needed[3][3] = {{false, false, false}, {true, false, false}, {true, true, false}};
  count = 0;
  for (int k = 0; k < 3; ++k) {
    const auto& l = lists.lists[k];
    if (!*list_names[k]) {
      MPSNN_CHECK(l.empty(), GraphError, ctx, " takes no list in position ", k);
      continue;
    }
    MPSNN_CHECK(!needed[int(rule_)][k] || !l.empty(), GraphError, ctx, " needs ", list_names[k],
                " (index 0 for the weights, index 1 for the biases)");
    if (l.empty()) continue;
    MPSNN_CHECK(l.size() <= 2, ShapeError, ctx, " ", list_names[k], " has ", l.size(),
                " vectors; expected 1 (weights only) or 2 (weights and biases)");
    MPSNN_CHECK(count == 0 || count == l.size(), ShapeError, ctx, " ", list_names[k], " has ", l.size(),
                " vectors; the other lists have ", count);
    count = l.size();
  }
}

void Optimizer::encode_convolution(const std::shared_ptr<CommandBuffer>& cb, State& gradient_state,
                                   ParameterPairState& source, const StateVectorLists& lists,
                                   ParameterPairState& result, const char* what) {
  const std::string ctx = std::string("[") + rule_name(rule_) + "." + what + "]";
  MPSNN_CHECK(gradient_state.state_class() == StateClass::convolution_gradient, GraphError, ctx,
              " convolution_gradient_state is not an MPSCNNConvolutionGradientState");
  MPSNN_CHECK(source.state_class() == StateClass::convolution_weights_and_biases &&
                  result.state_class() == StateClass::convolution_weights_and_biases,
              GraphError, ctx, " convolution_source_state and result_state must be "
              "MPSCNNConvolutionWeightsAndBiasesState objects");
  size_t count = 0;
  check_lists(lists, count, ctx, kListNames[int(rule_)]);
  const VectorRef gw = role_vector(gradient_state, "gradient_for_weights", ctx, "convolution_gradient_state");
  const bool biases_everywhere = gradient_state.find_buffer("gradient_for_biases") >= 0 && source.second() != nullptr &&
                                 result.second() != nullptr;
  if (count == 0) count = biases_everywhere ? 2 : 1;
  MPSNN_CHECK(count == 1 || biases_everywhere, GraphError, ctx, " the state vector lists have 2 entries (weights and ",
              "biases) but ", source.second() == nullptr ? "convolution_source_state" : "result_state",
              " has no biases buffer");
  std::vector<OptimizerUpdate> updates;
  for (size_t j = 0; j < count; ++j) {
    const bool w = j == 0;
    const VectorRef g = w ? gw : role_vector(gradient_state, "gradient_for_biases", ctx, "convolution_gradient_state");
    const int64_t n = g.length;
    const int64_t have_src = w ? source.first_count() : source.second_count();
    const int64_t have_res = w ? result.first_count() : result.second_count();
    const char* part = w ? "weights" : "biases";
    MPSNN_CHECK(have_src >= n && have_res >= n, ShapeError, ctx, " the gradient has ", n, " ", part,
                "; convolution_source_state holds ", have_src, " and result_state ", have_res, " (expected >= ", n, ")");
    OptimizerUpdate u{{std::string("convolution_gradient_state.gradient_for_") + part, g},
                      {std::string("convolution_source_state.") + part, pair_vector(source, j, n)},
                      {},
                      {std::string("result_state.") + part, pair_vector(result, j, n)}};
    attach_lists(u, lists, kListNames[int(rule_)], j);
    updates.push_back(std::move(u));
  }
  encode_updates(cb, std::move(updates), what);
}

void Optimizer::encode_normalization(const std::shared_ptr<CommandBuffer>& cb, State& gradient_state, State& source,
                                     const StateVectorLists& lists, ParameterPairState& result, const char* what) {
  const std::string ctx = std::string("[") + rule_name(rule_) + "." + what + "]";
  auto normalization = [](const State& s) {
    return s.state_class() == StateClass::batch_normalization ||
           s.state_class() == StateClass::instance_normalization_gradient;
  };
  MPSNN_CHECK(normalization(gradient_state) && normalization(source), GraphError, ctx,
              " expected MPSCNNBatchNormalizationState objects (or an MPSCNNInstanceNormalizationGradientState)");
  MPSNN_CHECK(result.state_class() == StateClass::normalization_gamma_and_beta, GraphError, ctx,
              " result_state must be an MPSCNNNormalizationGammaAndBetaState");
  size_t count = 0;
  check_lists(lists, count, ctx, kListNames[int(rule_)]);
  if (count == 0) count = 2;
  MPSNN_CHECK(count == 1 || result.second() != nullptr, GraphError, ctx, " result_state has no beta buffer");
  std::vector<OptimizerUpdate> updates;
  for (size_t j = 0; j < count; ++j) {
    const char* part = j == 0 ? "gamma" : "beta";
    const VectorRef g = role_vector(gradient_state, j == 0 ? "gradient_for_gamma" : "gradient_for_beta", ctx,
                                    "batch_normalization_gradient_state");
    VectorRef v = role_vector(source, part, ctx, "batch_normalization_source_state");
    const int64_t n = g.length;
    const int64_t have_res = j == 0 ? result.first_count() : result.second_count();
    MPSNN_CHECK(v.length == n && have_res >= n, ShapeError, ctx, " the gradient has ", n, " ", part,
                " values; the source state holds ", v.length, " and result_state ", have_res);
    OptimizerUpdate u{{std::string("gradient_for_") + part, g},
                      {std::string("source.") + part, v},
                      {},
                      {std::string("result_state.") + part, pair_vector(result, j, n)}};
    attach_lists(u, lists, kListNames[int(rule_)], j);
    updates.push_back(std::move(u));
  }
  encode_updates(cb, std::move(updates), what);
}

void Optimizer::copy_settings_from(const Optimizer& o) {
  MPSNN_CHECK(o.rule_ == rule_, GraphError, "[", rule_name(rule_), "] cannot take the settings of an ", o.name());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    desc_ = o.descriptor();
  }
  momentum_scale = o.momentum_scale;
  nesterov = o.nesterov;
  decay = o.decay;
  epsilon = o.epsilon;
  beta1 = o.beta1;
  beta2 = o.beta2;
  set_time_step(o.time_step());
}

void Optimizer::encode_updates(const std::shared_ptr<CommandBuffer>& cb, std::vector<OptimizerUpdate> updates,
                               const char* what) {
  const std::string ctx = std::string("[") + rule_name(rule_) + "." + what + "]";
  MPSNN_CHECK(cb != nullptr, GraphError, ctx, " needs a command buffer");
  MPSNN_CHECK(!cb->committed(), GraphError, ctx,
              " the command buffer was already committed; encode into a new command buffer");
  MPSNN_CHECK(cb->device() == device_, GraphError, ctx, " the command buffer belongs to device '",
              cb->device()->name(), "'; this optimizer was made for '", device_->name(), "'");
  const char* const* rule_names = kStateNames[int(rule_)];
  std::vector<Span> all_spans;  // across updates: nothing may overlap between them either
  std::vector<std::string> all_names;
  for (const OptimizerUpdate& u : updates) {
    // Which state vectors the rule needs (graph.md §7.3-7.5).
    switch (rule_) {
      case OptimizerRule::sgd: break;  // momentum optional: plain SGD without it
      case OptimizerRule::rmsprop:
        MPSNN_CHECK(u.states[0].has_value(), GraphError, ctx, " needs ", rule_names[0]);
        break;
      case OptimizerRule::adam:
        MPSNN_CHECK(u.states[0].has_value() && u.states[1].has_value(), GraphError, ctx, " needs ", rule_names[0],
                    " and ", rule_names[1]);
        break;
    }
    std::vector<const NamedVector*> all{&u.gradient, &u.values};
    for (const auto& st : u.states)
      if (st) all.push_back(&*st);
    all.push_back(&u.result);
    const int64_t length = u.values.vector.length, vectors = u.values.vector.vectors;
    const size_t first_span = all_spans.size();
    for (const NamedVector* n : all) {
      const VectorRef& v = n->vector;
      const char* name = n->name.c_str();
      MPSNN_CHECK(v.buffer != nullptr, GraphError, ctx, " ", name, " has no buffer");
      MPSNN_CHECK(v.data_type == DataType::float32, DTypeError, ctx, " ", name, " holds ", data_type_name(v.data_type),
                  "; optimizers take float32 vectors");
      MPSNN_CHECK(v.buffer->device() == device_, GraphError, ctx, " ", name, " lives on device '",
                  v.buffer->device()->name(), "'; expected '", device_->name(), "'");
      MPSNN_CHECK(v.length == length && v.vectors == vectors, ShapeError, ctx, " ", name, " has ", v.vectors,
                  " vector(s) of length ", v.length, "; ", u.values.name, " has ", vectors, " of length ", length,
                  "; expected the same sizes");
      const int64_t row = v.length * int64_t(sizeof(float));
      MPSNN_CHECK(v.vectors == 1 || v.vector_bytes >= row, ShapeError, ctx, " ", name, " vector_bytes ",
                  v.vector_bytes, " is less than one vector (", row, " bytes)");
      const int64_t end = v.offset + v.span();
      MPSNN_CHECK(v.offset >= 0 && end <= int64_t(v.buffer->length()), ShapeError, ctx, " ", name, " needs ", end,
                  " bytes of its buffer; the buffer has ", v.buffer->length());
      const bool lazy = !v.buffer->allocated();
      const uintptr_t base = (lazy ? 0 : reinterpret_cast<uintptr_t>(v.buffer->data())) + uintptr_t(v.offset);
      all_spans.push_back(Span{base, base + uintptr_t(v.span()), lazy ? v.buffer.get() : nullptr});
      all_names.push_back(n->name);
    }
    // The result may be the values' own memory (an in-place update) but must not partly overlap
    // any other vector, and no two others may overlap: each element's update reads its inputs
    // before writing, so only exact aliasing of values and result is well defined.
    const size_t values_at = first_span + 1, result_at = all_spans.size() - 1;
    for (size_t i = 0; i < all_spans.size(); ++i)
      for (size_t j = std::max(i + 1, first_span); j < all_spans.size(); ++j) {
        if (!all_spans[i].overlaps(all_spans[j])) continue;
        const bool in_place = i == values_at && j == result_at && all_spans[i].same(all_spans[j]) &&
                              u.values.vector.vector_bytes == u.result.vector.vector_bytes;
        // Two updates of one call reading the same gradient memory is harmless; writing is not.
        const bool shared_read = i < first_span && j < first_span + 2 && all_spans[i].same(all_spans[j]);
        MPSNN_CHECK(in_place || shared_read, GraphError, ctx, " ", all_names[i], " and ", all_names[j],
                    " overlap; only a result may be its own values vector");
      }
  }

  const OptimizerStep step = next_step();
  OptimizerUpdateFn update = update_;
  struct Refs {
    VectorRef v[6];  // gradient, values, state0..2, result
    bool has[3];
  };
  std::vector<Refs> refs;
  for (const OptimizerUpdate& u : updates) {
    Refs r{};
    r.v[0] = u.gradient.vector;
    r.v[1] = u.values.vector;
    for (int k = 0; k < 3; ++k) {
      r.has[k] = u.states[k].has_value();
      if (r.has[k]) r.v[2 + k] = u.states[k]->vector;
    }
    r.v[5] = u.result.vector;
    for (const VectorRef& v : r.v)  // (a buffer without memory yet keeps what it is bound to)
      if (v.buffer && v.buffer->allocated()) cb->retain(v.buffer->storage());
    refs.push_back(std::move(r));
  }
  cb->encode(
      [step, update, refs](Stream& stream) {
        auto at = [](const VectorRef& v, int64_t k) {
          return reinterpret_cast<float*>(static_cast<char*>(v.buffer->data()) + v.offset + k * v.vector_bytes);
        };
        for (const Refs& r : refs)
          for (int64_t k = 0; k < r.v[0].vectors; ++k) {
            OptimizerBuffers b;
            b.gradient = at(r.v[0], k);
            b.values = at(r.v[1], k);
            float** states[3] = {&b.state0, &b.state1, &b.state2};
            for (int s = 0; s < 3; ++s)
              if (r.has[s]) *states[s] = at(r.v[2 + s], k);
            b.result = at(r.v[5], k);
            b.count = r.v[0].length;
            update(step, b, stream);
          }
      },
      what);
}

}  // namespace mpsnn
