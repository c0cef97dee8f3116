#pragma once
// MTLBuffer: a length of device memory, allocated on first use (zero-filled) or wrapping
// foreign memory (a NumPy array) without copying. States hold their data in buffers.
#include <memory>
#include <mutex>
#include <string>

#include "core/device.h"

namespace mpsnn {

class Buffer {
 public:
  Buffer(DevicePtr device, size_t length);
  // Wraps `length` bytes at `data`, kept alive by `owner`.
  static std::shared_ptr<Buffer> wrap(DevicePtr device, void* data, size_t length, std::shared_ptr<void> owner);

  const DevicePtr& device() const { return device_; }
  size_t length() const { return length_; }
  bool allocated() const;
  // Makes `storage` (at least length() bytes) this buffer's memory unless the buffer has memory
  // already; false then. Lets a state made at encode time read memory chosen when its command
  // buffer runs, without a copy (the parameter snapshot of a training step).
  bool bind(std::shared_ptr<Storage> storage);
  // The memory (allocating it); keeps it alive independently of this object.
  std::shared_ptr<Storage> storage();
  void* data() { return storage()->data(); }
  // data() for the CPU: refuses device memory the host cannot address.
  void* contents(const char* what);
  std::string label;

 private:
  DevicePtr device_;
  size_t length_;
  mutable std::mutex mutex_;
  std::shared_ptr<Storage> storage_;
};

using BufferPtr = std::shared_ptr<Buffer>;

}  // namespace mpsnn
