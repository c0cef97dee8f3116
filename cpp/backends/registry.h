#pragma once
// The only place that knows which backends this build has (STYLE.md §1).
#include <string>
#include <vector>

#include "core/device.h"
#include "graph/kernel.h"

namespace mpsnn {

// Kernel registry of a backend by name ("cpu", later "cuda", "metal"), or null if not built.
const KernelRegistry* kernel_registry(const std::string& backend);
std::vector<std::string> available_backends();
// MTLCreateSystemDefaultDevice(): the first available backend (the CPU unless configured
// through the MPSNN_DEVICE environment variable).
DevicePtr system_default_device();
DevicePtr make_device(const std::string& name);

}  // namespace mpsnn
