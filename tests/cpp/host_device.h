#pragma once
// A host device for the C++ tests that build the core alone (no backend library): host memory
// and a host stream, as the CPU backend's device, without its kernels.
#include <memory>

#include "core/device.h"

namespace mpsnn::test {

class HostDevice final : public Device {
 public:
  HostDevice() : Device("test host device", "cpu", 0) {}
  MemoryKind memory_kind() const override { return MemoryKind::host; }
  Allocator& allocator() override { return host_allocator(); }
  std::unique_ptr<Stream> make_stream() override { return std::make_unique<HostStream>(); }
  ChannelFormat default_graph_format() const override { return ChannelFormat::float32; }
};

}  // namespace mpsnn::test
