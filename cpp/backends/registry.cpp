#include "backends/registry.h"

#include <cstdlib>
#include <memory>
#include <mutex>

#include "core/errors.h"
#ifdef MPSNN_WITH_CPU
#include "backends/cpu/register.h"
#endif

namespace mpsnn {

namespace {
struct Registries {
  std::vector<std::unique_ptr<KernelRegistry>> all;
  Registries() {
#ifdef MPSNN_WITH_CPU
    auto cpu = std::make_unique<KernelRegistry>("cpu");
    cpu::register_cpu_kernels(*cpu);
    all.push_back(std::move(cpu));
#endif
  }
};

const Registries& registries() {
  static const Registries r;
  return r;
}
}  // namespace

const KernelRegistry* kernel_registry(const std::string& backend) {
  for (const auto& r : registries().all)
    if (r->backend() == backend) return r.get();
  return nullptr;
}

std::vector<std::string> available_backends() {
  std::vector<std::string> out;
  for (const auto& r : registries().all) out.push_back(r->backend());
  return out;
}

DevicePtr make_device(const std::string& backend) {
  MPSNN_CHECK(kernel_registry(backend) != nullptr, UnsupportedError, "[MTLDevice] backend '", backend,
              "' is not part of this build; available: ", [] {
                std::string s;
                for (const auto& b : available_backends()) s += (s.empty() ? "" : ", ") + b;
                return s;
              }());
  return std::make_shared<Device>(backend == "cpu" ? "mpsnn CPU (oneDNN)" : "mpsnn " + backend, backend);
}

DevicePtr system_default_device() {
  static std::once_flag once;
  static DevicePtr device;
  std::call_once(once, [] {
    const char* env = std::getenv("MPSNN_DEVICE");
    device = make_device(env && *env ? env : available_backends().at(0));
  });
  return device;
}

}  // namespace mpsnn
