#include "backends/registry.h"

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

#include "core/errors.h"
#ifdef MPSNN_WITH_CPU
#include "backends/cpu/register.h"
#endif
#ifdef MPSNN_WITH_METAL
#include "backends/metal/device.h"
#include "backends/metal/register.h"
#endif
#ifdef MPSNN_WITH_CUDA
#include "backends/cuda/libraries.h"
#include "backends/cuda/register.h"
#endif

namespace mpsnn {

namespace {
struct Backend {
  std::unique_ptr<KernelRegistry> registry;
  int (*device_count)() = nullptr;
  DevicePtr (*make_device)(int index) = nullptr;
  std::string (*unavailable_reason)() = nullptr;  // why device_count() is 0
};

struct Backends {
  std::vector<Backend> all;
  // GPU backends first: MTLCreateSystemDefaultDevice() is the first device found (MPS: the GPU).
  Backends() {
#ifdef MPSNN_WITH_METAL
    // macOS: the Metal device is MTLCreateSystemDefaultDevice(), as in MPS.
    Backend metal{std::make_unique<KernelRegistry>("metal"), metal::device_count, metal::make_device,
                  metal::unavailable_reason};
    metal::register_metal_kernels(*metal.registry);
    all.push_back(std::move(metal));
#endif
#ifdef MPSNN_WITH_CUDA
    Backend gpu{std::make_unique<KernelRegistry>("cuda"), cuda::device_count, cuda::make_device,
                cuda::unavailable_reason};
    cuda::register_cuda_kernels(*gpu.registry);
    all.push_back(std::move(gpu));
#endif
#ifdef MPSNN_WITH_CPU
    Backend cpu{std::make_unique<KernelRegistry>("cpu"), cpu::device_count, cpu::make_device};
    cpu::register_cpu_kernels(*cpu.registry);
    all.push_back(std::move(cpu));
#endif
  }
};

const Backends& backends() {
  static const Backends b;
  return b;
}

const Backend* find_backend(const std::string& name) {
  for (const auto& b : backends().all)
    if (b.registry->backend() == name) return &b;
  return nullptr;
}

std::string backend_list() {
  std::string s;
  for (const auto& b : available_backends()) s += (s.empty() ? "" : ", ") + b;
  return s;
}
}  // namespace

const KernelRegistry* kernel_registry(const std::string& backend) {
  const Backend* b = find_backend(backend);
  return b ? b->registry.get() : nullptr;
}

std::vector<std::string> available_backends() {
  std::vector<std::string> out;
  for (const auto& b : backends().all) out.push_back(b.registry->backend());
  return out;
}

DevicePtr make_device(const std::string& name) {
  const size_t colon = name.find(':');
  const std::string backend = name.substr(0, colon);
  int index = 0;
  if (colon != std::string::npos) {
    const std::string digits = name.substr(colon + 1);
    char* end = nullptr;
    const long v = std::strtol(digits.c_str(), &end, 10);
    MPSNN_CHECK(!digits.empty() && end && *end == '\0' && v >= 0, ShapeError, "[MTLDevice] '", name,
                "' is not a device name; expected 'backend' or 'backend:index', e.g. 'cpu' or 'cuda:1'");
    index = int(v);
  }
  const Backend* b = find_backend(backend);
  MPSNN_CHECK(b != nullptr, UnsupportedError, "[MTLDevice] backend '", backend,
              "' is not part of this build; available: ", backend_list());
  const int count = b->device_count();
  const std::string why = count == 0 && b->unavailable_reason ? " (" + b->unavailable_reason() + ")" : "";
  MPSNN_CHECK(index < count, UnsupportedError, "[MTLDevice] backend '", backend, "' has ", count, " device(s)", why,
              "; index ", index, " does not exist");
  // One canonical object per (backend, index): images and graphs compare devices by identity.
  static std::mutex mutex;
  static std::map<std::pair<std::string, int>, DevicePtr> devices;
  std::lock_guard<std::mutex> lock(mutex);
  DevicePtr& d = devices[{backend, index}];
  if (!d) d = b->make_device(index);
  return d;
}

DevicePtr device_for_dlpack(int device_type, int64_t device_id) {
  for (const DevicePtr& d : all_devices())
    if (d->dlpack_device() == std::make_pair(device_type, device_id)) return d;
  return nullptr;
}

std::vector<DevicePtr> all_devices() {
  std::vector<DevicePtr> out;
  for (const auto& b : backends().all)
    for (int i = 0; i < b.device_count(); ++i) out.push_back(make_device(b.registry->backend() + ":" + std::to_string(i)));
  return out;
}

void set_vendor_library_dirs(const std::vector<std::string>& dirs) {
#ifdef MPSNN_WITH_CUDA
  cuda::set_library_dirs(dirs);
#else
  (void)dirs;
#endif
}

DevicePtr system_default_device() {
  static std::once_flag once;
  static DevicePtr device;
  std::call_once(once, [] {
    const char* env = std::getenv("MPSNN_DEVICE");
    if (env && *env) {
      device = make_device(env);
      return;
    }
    const auto all = all_devices();
    MPSNN_CHECK(!all.empty(), UnsupportedError, "[MTLCreateSystemDefaultDevice] this build has no device");
    device = all.front();
  });
  return device;
}

}  // namespace mpsnn
