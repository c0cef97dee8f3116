#include "core/state.h"

#include <cstring>

#include "core/command.h"
#include "core/errors.h"

namespace mpsnn {

Buffer::Buffer(DevicePtr device, size_t length) : device_(std::move(device)), length_(length) {
  MPSNN_CHECK(device_ != nullptr, ShapeError, "[MTLBuffer] device is None");
}

std::shared_ptr<Buffer> Buffer::wrap(DevicePtr device, void* data, size_t length, std::shared_ptr<void> owner) {
  auto b = std::make_shared<Buffer>(std::move(device), length);
  b->storage_ = Storage::borrow(data, length, std::move(owner), b->device_->memory_kind());
  return b;
}

bool Buffer::allocated() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return storage_ != nullptr;
}

bool Buffer::bind(std::shared_ptr<Storage> storage) {
  MPSNN_CHECK(storage != nullptr && storage->bytes() >= length_, ShapeError, "[MTLBuffer] internal error: bound ",
              storage ? storage->bytes() : 0, " bytes to a buffer of ", length_);
  std::lock_guard<std::mutex> lock(mutex_);
  if (storage_) return false;
  storage_ = std::move(storage);
  return true;
}

std::shared_ptr<Storage> Buffer::storage() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!storage_) storage_ = device_->allocator().allocate(length_, true);
  return storage_;
}

void* Buffer::contents(const char* what) {
  MPSNN_CHECK(device_->host_accessible(), UnsupportedError, "[MTLBuffer.", what, "] the buffer lives in ",
              memory_kind_name(device_->memory_kind()), " memory of device '", device_->name(),
              "', which the CPU cannot address");
  return data();
}

// ---------------------------------------------------------------------------------------------
State::State(DevicePtr device, std::vector<size_t> sizes, StateClass cls)
    : class_(cls), device_(std::move(device)), sizes_(std::move(sizes)), buffers_(sizes_.size()) {
  MPSNN_CHECK(device_ != nullptr, GraphError, "[MPSState] device is None");
}

State::State(const std::shared_ptr<CommandBuffer>& cb, std::vector<size_t> sizes, StateClass cls)
    : class_(cls), sizes_(std::move(sizes)), buffers_(sizes_.size()), read_count_(1) {
  MPSNN_CHECK(cb != nullptr, GraphError, "[MPSState.temporary_state] command_buffer is None");
  device_ = cb->device();
  command_buffer_ = cb.get();
}

State::State(const DevicePtr& device, const std::shared_ptr<CommandBuffer>& cb, std::vector<size_t> sizes,
             StateClass cls)
    : class_(cls), device_(cb ? cb->device() : device), command_buffer_(cb.get()), sizes_(std::move(sizes)),
      buffers_(sizes_.size()), read_count_(cb ? 1 : 0) {
  MPSNN_CHECK(device_ != nullptr, GraphError, "[MPSState] device is None");
}

State::State(std::vector<BufferPtr> resources, StateClass cls) : class_(cls), buffers_(std::move(resources)) {
  MPSNN_CHECK(!buffers_.empty(), GraphError, "[MPSState] resources is empty");
  for (size_t i = 0; i < buffers_.size(); ++i) {
    MPSNN_CHECK(buffers_[i] != nullptr, GraphError, "[MPSState] resource ", i, " is None");
    MPSNN_CHECK(!device_ || buffers_[i]->device() == device_, GraphError, "[MPSState] resource ", i,
                " belongs to another device than resource 0");
    device_ = buffers_[i]->device();
    sizes_.push_back(buffers_[i]->length());
  }
}

void State::check_index(int index) const {
  MPSNN_CHECK(index >= 0 && index < int(sizes_.size()), GraphError, "[MPSState] resource index ", index,
              " is outside [0, ", sizes_.size(), ")");
}

size_t State::buffer_size(int index) const {
  check_index(index);
  return sizes_[size_t(index)];
}

BufferPtr State::resource(int index, bool allocate) {
  check_index(index);
  check_usable("resource");
  std::lock_guard<std::mutex> lock(mutex_);
  BufferPtr& b = buffers_[size_t(index)];
  if (!b && allocate) b = std::make_shared<Buffer>(device_, sizes_[size_t(index)]);
  if (b && allocate) b->storage();
  return b;
}

BufferPtr State::lazy_resource(int index) {
  check_index(index);
  check_usable("resource");
  std::lock_guard<std::mutex> lock(mutex_);
  BufferPtr& b = buffers_[size_t(index)];
  if (!b) b = std::make_shared<Buffer>(device_, sizes_[size_t(index)]);
  return b;
}

size_t State::resource_size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t total = 0;
  for (const auto& b : buffers_)
    if (b && b->allocated()) total += b->length();
  return total;
}

int State::find_buffer(const char* role) const {
  for (size_t i = 0; i < layout_.size(); ++i)
    if (layout_[i].role && std::strcmp(layout_[i].role, role) == 0) return int(i);
  return -1;
}

int State::read_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return read_count_;
}

void State::set_read_count(int count) {
  std::lock_guard<std::mutex> lock(mutex_);
  MPSNN_CHECK(!released_, TemporaryImageError,
              "[MPSState] read_count cannot be changed after it reached 0 (the memory was released)");
  MPSNN_CHECK(count >= 0, TemporaryImageError, "[MPSState] read_count ", count, " is negative");
  read_count_ = count;
  if (count == 0 && command_buffer_) {
    buffers_.assign(buffers_.size(), nullptr);
    released_ = true;
  }
}

void State::consume_read(int amount, const char* what) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!command_buffer_) return;  // persistent states have no read count to honour
  MPSNN_CHECK(read_count_ >= amount, TemporaryImageError, "[", what, "] temporary state has read_count ",
              read_count_, "; this encode reads it ", amount, " time(s). Raise read_count before encoding");
  read_count_ -= amount;
  if (read_count_ == 0) {  // in-flight work holds its own references to the memory
    buffers_.assign(buffers_.size(), nullptr);
    released_ = true;
  }
}

void State::check_usable(const char* what) const {
  std::lock_guard<std::mutex> lock(mutex_);
  MPSNN_CHECK(!released_, TemporaryImageError, "[MPSState.", what,
              "] the temporary state's read_count reached 0 and its memory was released");
}

void State::check_command_buffer(const CommandBuffer* cb, const char* what) const {
  MPSNN_CHECK(!command_buffer_ || cb == command_buffer_, TemporaryImageError, "[", what,
              "] temporary state belongs to another command buffer; temporary states are valid only on the "
              "command buffer they were created for");
}

namespace {
std::vector<BufferPtr> pair_buffers(BufferPtr first, BufferPtr second) {
  std::vector<BufferPtr> out{std::move(first)};
  if (second) out.push_back(std::move(second));
  return out;
}
std::vector<size_t> pair_sizes(size_t first, size_t second) {
  std::vector<size_t> out{first};
  if (second) out.push_back(second);
  return out;
}
}  // namespace

ParameterPairState::ParameterPairState(StateClass cls, BufferPtr first, int64_t first_offset, BufferPtr second,
                                       int64_t second_offset)
    : State(pair_buffers(std::move(first), std::move(second)), cls) {
  offsets_[0] = first_offset;
  offsets_[1] = second_offset;
  for (int i = 0; i < resource_count(); ++i)
    MPSNN_CHECK(offsets_[i] >= 0 && size_t(offsets_[i]) <= buffer_size(i) && offsets_[i] % 4 == 0, ShapeError,
                "[MPSState] buffer ", i, " offset ", offsets_[i], " is outside its ", buffer_size(i),
                " bytes or not a multiple of 4 (float32 elements)");
}

ParameterPairState::ParameterPairState(StateClass cls, const DevicePtr& device,
                                       const std::shared_ptr<CommandBuffer>& command_buffer, size_t first_bytes,
                                       size_t second_bytes)
    : State(device, command_buffer, pair_sizes(first_bytes, second_bytes), cls) {}

int64_t ParameterPairState::first_count() const { return (int64_t(buffer_size(0)) - offsets_[0]) / 4; }
int64_t ParameterPairState::second_count() const {
  return resource_count() > 1 ? (int64_t(buffer_size(1)) - offsets_[1]) / 4 : 0;
}

namespace {
template <typename T>
StatePtr make_as(StateClass cls, const DevicePtr& device, const std::shared_ptr<CommandBuffer>& cb,
                 std::vector<size_t> sizes) {
  if (cb) return std::make_shared<T>(cb, std::move(sizes), cls);
  return std::make_shared<T>(device, std::move(sizes), cls);
}
}  // namespace

StatePtr make_state(StateClass cls, const DevicePtr& device, const std::shared_ptr<CommandBuffer>& cb,
                    std::vector<size_t> sizes) {
  switch (cls) {
    case StateClass::gradient: return make_as<GradientState>(cls, device, cb, std::move(sizes));
    case StateClass::convolution_gradient: return make_as<ConvolutionGradientState>(cls, device, cb, std::move(sizes));
    // graph.md §5.2: a dropout gradient state is never temporary.
    case StateClass::dropout_gradient: return std::make_shared<DropoutGradientState>(device, std::move(sizes), cls);
    case StateClass::binary_gradient: return make_as<BinaryGradientState>(cls, device, cb, std::move(sizes));
    case StateClass::arithmetic_gradient: return make_as<ArithmeticGradientState>(cls, device, cb, std::move(sizes));
    case StateClass::multiary_gradient: return make_as<MultiaryGradientState>(cls, device, cb, std::move(sizes));
    case StateClass::batch_normalization: return make_as<BatchNormalizationState>(cls, device, cb, std::move(sizes));
    case StateClass::instance_normalization_gradient:
      return make_as<InstanceNormalizationGradientState>(cls, device, cb, std::move(sizes));
    case StateClass::plain:
    case StateClass::loss_labels:
    case StateClass::convolution_weights_and_biases:
    case StateClass::normalization_gamma_and_beta:
    case StateClass::normalization_mean_and_variance: break;  // made from labels data (core/loss_labels.h), never by a graph
  }
  return make_as<State>(cls, device, cb, std::move(sizes));
}

}  // namespace mpsnn
