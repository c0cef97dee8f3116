#pragma once
// MPSState (graph.md §5.1): buffers that travel beside images (pooling indices, dropout masks,
// batch statistics, weight gradients). A temporary state belongs to one command buffer and is
// usable while its read count is above zero, with the same misuse rules as MPSTemporaryImage; a
// persistent state lives on its device until released. Buffers are allocated when first used.
// States made by a graph know what each buffer holds (element type and dims, `layout`).
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "core/tensor.h"

namespace mpsnn {

class CommandBuffer;
class Image;

// What made a graph-made state, as the graph layer describes it (e.g. the forward convolution whose
// geometry a convolution gradient state records); opaque to the core.
class StateOrigin {
 public:
  virtual ~StateOrigin() = default;
};

// The MPS state class a state object is (Python classes mirror it).
enum class StateClass {
  plain, gradient, binary_gradient, multiary_gradient, convolution_gradient, batch_normalization,
  instance_normalization_gradient, loss_labels, dropout_gradient, arithmetic_gradient,
  convolution_weights_and_biases, normalization_gamma_and_beta, normalization_mean_and_variance
};

class State {
 public:
  // Persistent, deferred allocation (MPSState(device, buffer_size=...) / resource_list).
  State(DevicePtr device, std::vector<size_t> buffer_sizes, StateClass cls = StateClass::plain);
  // Temporary on `command_buffer` (temporary_state(command_buffer, buffer_size=...)).
  State(const std::shared_ptr<CommandBuffer>& command_buffer, std::vector<size_t> buffer_sizes,
        StateClass cls = StateClass::plain);
  // Temporary on `command_buffer` when it is given, else persistent on `device`.
  State(const DevicePtr& device, const std::shared_ptr<CommandBuffer>& command_buffer, std::vector<size_t> buffer_sizes,
        StateClass cls);
  // Over existing buffers (MPSState(resource=...) / (resources=[...])); persistent.
  explicit State(std::vector<BufferPtr> resources, StateClass cls = StateClass::plain);
  virtual ~State() = default;

  StateClass state_class() const { return class_; }
  const DevicePtr& device() const { return device_; }
  bool is_temporary() const { return command_buffer_ != nullptr; }
  int resource_count() const { return int(sizes_.size()); }
  size_t buffer_size(int index) const;
  // The buffer at `index`; with `allocate` false, null when it has no memory yet.
  BufferPtr resource(int index, bool allocate);
  // The buffer object at `index`, made without memory when absent: its memory comes on first use
  // of data(), or from Buffer::bind (work encoded now that reads memory chosen when it runs).
  BufferPtr lazy_resource(int index);
  size_t resource_size() const;  // bytes of allocated buffers

  // Layouts of graph-made states (empty otherwise).
  const std::vector<TensorDesc>& layout() const { return layout_; }
  void set_layout(std::vector<TensorDesc> layout) { layout_ = std::move(layout); }
  // The index of the buffer whose layout role is `role`, or -1 (graph-made states only).
  int find_buffer(const char* role) const;

  int read_count() const;
  void set_read_count(int count);
  // Called by each encode that reads this state; a temporary state frees its memory at zero.
  void consume_read(int amount, const char* what);
  void check_usable(const char* what) const;
  void check_command_buffer(const CommandBuffer* cb, const char* what) const;

  // The images a graph binds when this state is one of its source states (a state no node of the
  // graph produces): those its consuming node reads, and those it writes. Loss labels: labels
  // [and weights] in, the loss image out (core/loss_labels.h). Other states bind none.
  virtual std::vector<std::shared_ptr<Image>> bound_inputs() const { return {}; }
  virtual std::vector<std::shared_ptr<Image>> bound_outputs() const { return {}; }

  std::string label;
  // Set by the graph that made the state (null otherwise).
  std::shared_ptr<const StateOrigin> origin;

 private:
  void check_index(int index) const;

  StateClass class_;
  DevicePtr device_;
  const CommandBuffer* command_buffer_ = nullptr;  // identity only
  std::vector<size_t> sizes_;
  std::vector<TensorDesc> layout_;
  mutable std::mutex mutex_;
  std::vector<BufferPtr> buffers_;
  int read_count_ = 0;
  bool released_ = false;
};

using StatePtr = std::shared_ptr<State>;

// The MPS state classes graphs deliver. Their typed accessors (bindings/states.cpp) find the
// buffers by layout role; a state made without them (e.g. a forward node's state, before any
// gradient node filled one) answers None there.
class GradientState : public State {
 public:
  using State::State;
};
// Made by convolution gradients: "gradient_for_weights" (OHWI float32, like the data source's
// weights, summed over the batch) and "gradient_for_biases" (float32 x Cout).
class ConvolutionGradientState : public GradientState {
 public:
  using GradientState::GradientState;
};
// Made by batch normalization (the statistics it used: "mean", "variance") and by its gradient
// (also "gamma", "beta", "gradient_for_gamma", "gradient_for_beta").
class BatchNormalizationState : public GradientState {
 public:
  using GradientState::GradientState;
};
// Made by instance normalization gradients: "gamma", "beta", "gradient_for_gamma",
// "gradient_for_beta" (the per-image parts summed over the batch).
class InstanceNormalizationGradientState : public GradientState {
 public:
  using GradientState::GradientState;
};
// MPSCNNDropoutGradientState: buffer 0 is the keep mask (uint8, 1 = kept), one entry per mask
// element (the image's shape with 1 on every axis whose mask stride is 0).
class DropoutGradientState : public GradientState {
 public:
  using GradientState::GradientState;
};
class BinaryGradientState : public State {
 public:
  using State::State;
};
// MPSCNNArithmeticGradientState: buffer 0 is the clamp mask [lo < r < hi] (uint8 per result element).
class ArithmeticGradientState : public BinaryGradientState {
 public:
  using BinaryGradientState::BinaryGradientState;
};
class MultiaryGradientState : public State {
 public:
  using State::State;
};

// Parameter states (graph.md §5.2): what data sources and optimizers hand to a graph. Plain
// states over two buffers (the second may be absent), each with a byte offset into its buffer.
// MPSCNNConvolutionWeightsAndBiasesState: weights (float32 OHWI) and optional biases (float32 x Cout);
// MPSCNNNormalizationGammaAndBetaState: gamma and beta; MPSCNNNormalizationMeanAndVarianceState:
// mean and variance (float32 x channels each).
class ParameterPairState : public State {
 public:
  // Over caller buffers; `second` may be null (a convolution without biases).
  ParameterPairState(StateClass cls, BufferPtr first, int64_t first_offset, BufferPtr second, int64_t second_offset);
  // New zero-filled buffers of `first_bytes` and `second_bytes` (0: no second buffer); temporary on
  // `command_buffer` when it is given.
  ParameterPairState(StateClass cls, const DevicePtr& device, const std::shared_ptr<CommandBuffer>& command_buffer,
                     size_t first_bytes, size_t second_bytes);
  BufferPtr first() { return resource(0, true); }
  BufferPtr second() { return resource_count() > 1 ? resource(1, true) : nullptr; }
  // Part j (0 first, 1 second; null when absent) without giving it memory (State::lazy_resource).
  BufferPtr lazy_part(size_t j) { return j < size_t(resource_count()) ? lazy_resource(int(j)) : nullptr; }
  int64_t first_offset() const { return offsets_[0]; }
  int64_t second_offset() const { return offsets_[1]; }
  // float32 elements of each buffer after its offset.
  int64_t first_count() const;
  int64_t second_count() const;

 private:
  int64_t offsets_[2] = {0, 0};
};
using ParameterPairStatePtr = std::shared_ptr<ParameterPairState>;
// The three classes (one Python class each).
class WeightsAndBiasesState : public ParameterPairState {
 public:
  template <typename... A>
  explicit WeightsAndBiasesState(A&&... a)
      : ParameterPairState(StateClass::convolution_weights_and_biases, std::forward<A>(a)...) {}
};
class GammaAndBetaState : public ParameterPairState {
 public:
  template <typename... A>
  explicit GammaAndBetaState(A&&... a) : ParameterPairState(StateClass::normalization_gamma_and_beta, std::forward<A>(a)...) {}
};
class MeanAndVarianceState : public ParameterPairState {
 public:
  template <typename... A>
  explicit MeanAndVarianceState(A&&... a)
      : ParameterPairState(StateClass::normalization_mean_and_variance, std::forward<A>(a)...) {}
};

// A state of class `cls`: persistent on `device`, or temporary on `command_buffer` when given.
StatePtr make_state(StateClass cls, const DevicePtr& device, const std::shared_ptr<CommandBuffer>& command_buffer,
                    std::vector<size_t> buffer_sizes);

}  // namespace mpsnn
