#pragma once
// A compute device (MTLDevice in the Python API). Which backend executes its work is a name
// resolved by backends/registry.cpp; core code never knows which backends exist.
#include <memory>
#include <string>

namespace mpsnn {

class Device {
 public:
  Device(std::string name, std::string backend) : name_(std::move(name)), backend_(std::move(backend)) {}
  const std::string& name() const { return name_; }
  const std::string& backend() const { return backend_; }

 private:
  std::string name_;
  std::string backend_;
};

using DevicePtr = std::shared_ptr<Device>;

}  // namespace mpsnn
