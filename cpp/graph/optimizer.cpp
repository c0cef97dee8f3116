#include "graph/optimizer.h"

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
struct Span {
  const char* first;
  const char* last;
  bool overlaps(const Span& o) const { return first < o.last && o.first < last; }
  bool same(const Span& o) const { return first == o.first && last == o.last; }
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
    const double t = double(++time_step_);
    const double lr_t = double(s.desc.learning_rate) * std::sqrt(1.0 - std::pow(double(beta2), t)) /
                        (1.0 - std::pow(double(beta1), t));
    s.learning_rate = float(lr_t);
  }
  return s;
}

void Optimizer::encode_vectors(const std::shared_ptr<CommandBuffer>& cb, const VectorRef& gradient,
                               const VectorRef& values, const VectorRef* state0, const VectorRef* state1,
                               const VectorRef* state2, const VectorRef& result, const char* what) {
  const std::string ctx = std::string("[") + rule_name(rule_) + "." + what + "]";
  MPSNN_CHECK(cb != nullptr, GraphError, ctx, " needs a command buffer");
  MPSNN_CHECK(!cb->committed(), GraphError, ctx,
              " the command buffer was already committed; encode into a new command buffer");
  MPSNN_CHECK(cb->device() == device_, GraphError, ctx, " the command buffer belongs to device '",
              cb->device()->name(), "'; this optimizer was made for '", device_->name(), "'");
  struct Named {
    const char* name;
    const VectorRef* v;
  };
  const char* state_names[3][3] = {{"input_momentum_vector", "", ""},
                                   {"input_sum_of_squares_vector", "", ""},
                                   {"input_momentum_vector", "input_velocity_vector", "maximum_velocity_vector"}};
  const char* const* names = state_names[int(rule_)];
  // Which state vectors the rule needs (graph.md §7.3-7.5).
  switch (rule_) {
    case OptimizerRule::sgd: break;  // momentum optional: plain SGD without it
    case OptimizerRule::rmsprop:
      MPSNN_CHECK(state0 != nullptr, GraphError, ctx, " needs input_sum_of_squares_vector");
      break;
    case OptimizerRule::adam:
      MPSNN_CHECK(state0 != nullptr && state1 != nullptr, GraphError, ctx,
                  " needs input_momentum_vector and input_velocity_vector");
      break;
  }
  std::vector<Named> all{{"input_gradient_vector", &gradient}, {"input_values_vector", &values}};
  if (state0) all.push_back({names[0], state0});
  if (state1) all.push_back({names[1], state1});
  if (state2) all.push_back({names[2], state2});
  all.push_back({"result_values_vector", &result});

  const int64_t length = values.length, vectors = values.vectors;
  std::vector<Span> spans;
  for (const Named& n : all) {
    const VectorRef& v = *n.v;
    MPSNN_CHECK(v.buffer != nullptr, GraphError, ctx, " ", n.name, " has no buffer");
    MPSNN_CHECK(v.data_type == DataType::float32, DTypeError, ctx, " ", n.name, " holds ", data_type_name(v.data_type),
                "; optimizers take float32 vectors");
    MPSNN_CHECK(v.buffer->device() == device_, GraphError, ctx, " ", n.name, " lives on device '",
                v.buffer->device()->name(), "'; expected '", device_->name(), "'");
    MPSNN_CHECK(v.length == length && v.vectors == vectors, ShapeError, ctx, " ", n.name, " has ", v.vectors,
                " vector(s) of length ", v.length, "; input_values_vector has ", vectors, " of length ", length,
                "; expected the same sizes");
    const int64_t row = v.length * int64_t(sizeof(float));
    MPSNN_CHECK(v.vectors == 1 || v.vector_bytes >= row, ShapeError, ctx, " ", n.name, " vector_bytes ",
                v.vector_bytes, " is less than one vector (", row, " bytes)");
    const int64_t end = v.offset + v.span();
    MPSNN_CHECK(v.offset >= 0 && end <= int64_t(v.buffer->length()), ShapeError, ctx, " ", n.name, " needs ", end,
                " bytes of its buffer; the buffer has ", v.buffer->length());
    const char* base = static_cast<const char*>(v.buffer->data()) + v.offset;
    spans.push_back(Span{base, base + v.span()});
  }
  // The result may be the values' own memory (an in-place update) but must not partly overlap
  // any other vector, and no two others may overlap: each element's update reads its inputs
  // before writing, so only exact aliasing of values and result is well defined.
  const size_t result_at = spans.size() - 1;
  for (size_t i = 0; i < spans.size(); ++i)
    for (size_t j = i + 1; j < spans.size(); ++j) {
      if (!spans[i].overlaps(spans[j])) continue;
      const bool in_place = i == 1 && j == result_at && spans[i].same(spans[j]) &&
                            values.vector_bytes == result.vector_bytes;
      MPSNN_CHECK(in_place, GraphError, ctx, " ", all[i].name, " and ", all[j].name,
                  " overlap; only result_values_vector may be input_values_vector itself");
    }

  const OptimizerStep step = next_step();
  OptimizerUpdateFn update = update_;
  std::vector<VectorRef> refs;
  for (const Named& n : all) refs.push_back(*n.v);
  const bool has[3] = {state0 != nullptr, state1 != nullptr, state2 != nullptr};
  for (const VectorRef& v : refs) cb->retain(v.buffer->storage());
  cb->encode(
      [step, update, refs, has](Stream& stream) {
        auto at = [](const VectorRef& v, int64_t k) {
          return reinterpret_cast<float*>(static_cast<char*>(v.buffer->data()) + v.offset + k * v.vector_bytes);
        };
        for (int64_t k = 0; k < refs[0].vectors; ++k) {
          OptimizerBuffers b;
          b.gradient = at(refs[0], k);
          b.values = at(refs[1], k);
          size_t next = 2;
          float** states[3] = {&b.state0, &b.state1, &b.state2};
          for (int s = 0; s < 3; ++s)
            if (has[s]) *states[s] = at(refs[next++], k);
          b.result = at(refs.back(), k);
          b.count = refs[0].length;
          update(step, b, stream);
        }
      },
      what);
}

}  // namespace mpsnn
