#pragma once
// Optimizers (graph.md §7): MPSNNOptimizerDescriptor's values, the three update rules (SGD with
// classic or Nesterov momentum, RMSProp, Adam with optional AMSGrad) and their encode forms
// (§7.6): vectors, convolution states (weights and biases) and normalization states (gamma and
// beta). One encode call is one task on the command buffer, updating one or two vectors with one
// step (Adam's time step advances once per call): the gradient pre-processing of §7.2, then the
// rule, element by element, run by the device's backend (KernelRegistry::optimizer_update) on the
// command buffer's stream. Values are float32 (§7.6: "all buffers are float32").
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/command.h"
#include "core/device.h"
#include "core/state.h"
#include "graph/data_source.h"

namespace mpsnn {

class KernelRegistry;

// MPSNNRegularizationType (raw values as MPS).
enum class RegularizationType : int { none = 0, l1 = 1, l2 = 2 };

struct OptimizerDescriptor {
  float learning_rate = 0.001f;
  float gradient_rescale = 1.0f;
  bool apply_gradient_clipping = false;
  // Undocumented defaults in MPS; project decision (graph.md §7.1): no clipping bound.
  float gradient_clip_max = std::numeric_limits<float>::infinity();
  float gradient_clip_min = -std::numeric_limits<float>::infinity();
  RegularizationType regularization_type = RegularizationType::none;
  float regularization_scale = 0.0f;
};

enum class OptimizerRule { sgd, rmsprop, adam };

// Everything one update needs, fixed when it is encoded (Adam's time step included).
struct OptimizerStep {
  OptimizerRule rule = OptimizerRule::sgd;
  OptimizerDescriptor desc;
  float learning_rate = 0.001f;  // SGD/RMSProp: desc's; Adam: lr_t of this time step (§7.5)
  float momentum_scale = 0.0f;   // SGD
  bool nesterov = false;         // SGD
  float decay = 0.9f;            // RMSProp
  float epsilon = 1e-8f;         // RMSProp, Adam
  float beta1 = 0.9f, beta2 = 0.999f;  // Adam
  int64_t time_step = 0;         // Adam: t of this step (backends that compute lr_t themselves, Metal)
};

// The memory of one update, `count` float32 elements each. `values` and `result` may be the
// same memory (graph.md §7.6 project decision); the state vectors are updated in place and are
// null when not given (SGD without momentum, Adam without AMSGrad's maximum velocity).
struct OptimizerBuffers {
  const float* gradient = nullptr;
  const float* values = nullptr;
  float* result = nullptr;
  float* state0 = nullptr;  // SGD momentum, RMSProp sum of squares, Adam momentum (m)
  float* state1 = nullptr;  // Adam velocity (v)
  float* state2 = nullptr;  // Adam maximum velocity (u), AMSGrad
  int64_t count = 0;
};

// The backend's element loop; runs on `stream` (the command buffer's).
using OptimizerUpdateFn = void (*)(const OptimizerStep& step, const OptimizerBuffers& buffers, Stream& stream);

// A vector over an MTLBuffer (MPSVector): `vectors` vectors of `length` elements of `data_type`,
// `vector_bytes` apart, starting `offset` bytes into the buffer. Optimizers take float32 only.
struct VectorRef {
  BufferPtr buffer;
  int64_t length = 0, vectors = 1, vector_bytes = 0, offset = 0;
  DataType data_type = DataType::float32;

  // Bytes from the first element to one past the last (the last vector is not padded).
  static int64_t span_of(int64_t length, int64_t vectors, int64_t vector_bytes, DataType type) {
    return (vectors - 1) * vector_bytes + length * int64_t(data_type_size(type));
  }
  int64_t span() const { return span_of(length, vectors, vector_bytes, data_type); }
};

// One vector of an update with the name errors use ("input_momentum_vectors[1]").
struct NamedVector {
  std::string name;
  VectorRef vector;
};
// The vectors one element loop updates; states[k] empty where not given (OptimizerBuffers order).
struct OptimizerUpdate {
  NamedVector gradient, values;
  std::optional<NamedVector> states[3];
  NamedVector result;
};

// The state vector lists of the convolution and normalization forms (index 0 weights / gamma,
// index 1 biases / beta), in OptimizerBuffers order; an empty list is not given.
struct StateVectorLists {
  std::vector<VectorRef> lists[3];
};

// An optimizer kernel (MPSNNOptimizer and its subclasses). The hyper-parameters are set when it
// is made, except the learning rate (set_learning_rate), apply_gradient_clipping and Adam's
// time step, which are read when an update is encoded.
class Optimizer {
 public:
  Optimizer(DevicePtr device, const KernelRegistry* registry, OptimizerRule rule, OptimizerDescriptor desc);

  const DevicePtr& device() const { return device_; }
  OptimizerRule rule() const { return rule_; }
  std::string name() const;
  OptimizerDescriptor descriptor() const;
  void set_learning_rate(float lr);
  void set_apply_gradient_clipping(bool on);

  float momentum_scale = 0.0f;
  bool nesterov = false;
  float decay = 0.9f;
  float epsilon = 1e-8f;
  float beta1 = 0.9f, beta2 = 0.999f;
  int64_t time_step() const { return time_step_.load(); }
  void set_time_step(int64_t t) { time_step_.store(t); }

  // The vector encode form: result = update(values, gradient) with the state vectors the rule
  // uses (`states` in the order of OptimizerBuffers: state0, state1, state2; null = not given).
  // Checks lengths, devices and sizes now (typed errors naming `what`); the arithmetic runs when
  // the command buffer does.
  void encode_vectors(const std::shared_ptr<CommandBuffer>& cb, const VectorRef& gradient, const VectorRef& values,
                      const VectorRef* state0, const VectorRef* state1, const VectorRef* state2,
                      const VectorRef& result, const char* what);
  // The convolution form: gradients from the gradient state's gradient_for_weights/_biases, values
  // from `source` (an MPSCNNConvolutionWeightsAndBiasesState), results into `result` (the same
  // class; may be `source` itself). The lists' length (1 or 2) says whether the biases are updated;
  // with no list (SGD without momentum) the biases are updated when all three states have them.
  void encode_convolution(const std::shared_ptr<CommandBuffer>& cb, State& gradient_state,
                          ParameterPairState& source, const StateVectorLists& lists, ParameterPairState& result,
                          const char* what);
  // The batch-normalization form: gradients from `gradient_state`'s gradient_for_gamma/_beta, values
  // from `source`'s gamma/beta (both MPSCNNBatchNormalizationState, possibly the same object; an
  // instance-normalization gradient state is accepted too), results into an
  // MPSCNNNormalizationGammaAndBetaState.
  void encode_normalization(const std::shared_ptr<CommandBuffer>& cb, State& gradient_state, State& source,
                            const StateVectorLists& lists, ParameterPairState& result, const char* what);
  // MPSKernel copy (copyWithZone:device:): takes the settings and time step of `other` (an
  // optimizer of the same rule, possibly on another device).
  void copy_settings_from(const Optimizer& other);

 private:
  // Checks every vector of every update (typed errors naming `what` and the vector), fixes one
  // step and encodes one task updating them all.
  void encode_updates(const std::shared_ptr<CommandBuffer>& cb, std::vector<OptimizerUpdate> updates,
                      const char* what);
  void check_lists(const StateVectorLists& lists, size_t& count, const std::string& ctx,
                   const char* const list_names[3]) const;

  // Fixes the step (advancing Adam's time step once per encode call).
  OptimizerStep next_step();

  DevicePtr device_;
  OptimizerUpdateFn update_ = nullptr;
  OptimizerRule rule_;
  mutable std::mutex mutex_;
  OptimizerDescriptor desc_;
  std::atomic<int64_t> time_step_{0};
};

}  // namespace mpsnn
