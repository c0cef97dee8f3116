#pragma once
// What the C++ tests that build the core alone (no backend library) share: a host device (host
// memory and a host stream, as the CPU backend's device, without its kernels) and check().
#include <cstdio>
#include <memory>

#include "core/device.h"

namespace mpsnn::test {

inline int failures = 0;  // checks that failed; the test's main returns non-zero when any did
inline void check(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED %s\n", what);
    ++failures;
  }
}

class HostDevice final : public Device {
 public:
  HostDevice() : Device("test host device", "cpu", 0) {}
  MemoryKind memory_kind() const override { return MemoryKind::host; }
  Allocator& allocator() override { return host_allocator(); }
  std::unique_ptr<Stream> make_stream() override { return std::make_unique<HostStream>(); }
  ChannelFormat default_graph_format() const override { return ChannelFormat::float32; }
};

}  // namespace mpsnn::test
