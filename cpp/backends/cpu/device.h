#pragma once
// The CPU device: host memory, a host stream (oneDNN primitives run synchronously on the calling
// thread, so work is complete when it has been enqueued), float32 graphs.
#include <string>

#include "backends/cpu/isa.h"
#include "core/device.h"

namespace mpsnn::cpu {

class CpuDevice final : public Device {
 public:
  // The name says which ISA copy of our own kernels runs (isa.h).
  CpuDevice()
      : Device(std::string("mpsnn CPU (oneDNN; own kernels: ") + isa_kernels().name + ")", "cpu", 0) {}
  MemoryKind memory_kind() const override { return MemoryKind::host; }
  Allocator& allocator() override { return host_allocator(); }
  std::unique_ptr<Stream> make_stream() override { return std::make_unique<HostStream>(); }
  // float16 images are accepted at the boundaries; computation is float32 (README).
  ChannelFormat default_graph_format() const override { return ChannelFormat::float32; }
};

}  // namespace mpsnn::cpu
