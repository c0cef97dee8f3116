#pragma once
// The only place that knows which backends this build has (STYLE.md §1). Each backend gives a
// kernel registry and its devices; one canonical device object exists per (backend, index).
#include <string>
#include <vector>

#include "core/device.h"
#include "graph/kernel.h"

namespace mpsnn {

// Kernel registry of a backend by name ("cpu", later "cuda", "metal"), or null if not built.
const KernelRegistry* kernel_registry(const std::string& backend);
std::vector<std::string> available_backends();
// MTLCopyAllDevices(): every device of every backend of this build, in backend order.
std::vector<DevicePtr> all_devices();
// MTLCreateSystemDefaultDevice(): MPSNN_DEVICE ("cpu", "cuda:1", ...) if set, else the first
// device of the first backend that has one (the GPU once GPU backends exist).
DevicePtr system_default_device();
// The device named "backend" or "backend:index" (index 0 when omitted).
DevicePtr make_device(const std::string& name);
// The device whose memory is DLPack's (device_type, device_id) (Device::dlpack_device), or null.
DevicePtr device_for_dlpack(int device_type, int64_t device_id);
// Folders where backends look for vendor libraries they open at run time (site-packages/nvidia
// folders for CUDA); nothing is opened here.
void set_vendor_library_dirs(const std::vector<std::string>& dirs);

}  // namespace mpsnn
