#include "backends/cuda/libraries.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <vector>

#include "core/errors.h"

// The cuDNN frontend, built with NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING, resolves every cuDNN
// call through this handle, which the embedding program defines and fills.
namespace cudnn_frontend {
void* cudnn_dlhandle = nullptr;
}

namespace mpsnn::cuda {

namespace {

// site-packages/, from the location of the module this code is linked into
// (site-packages/mpsnn/_core*.so); empty when it cannot be told.
std::string site_packages() {
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&site_packages), &info) || !info.dli_fname) return {};
  std::string path = info.dli_fname;
  for (int up = 0; up < 2; ++up) {
    const size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return {};
    path.resize(slash);
  }
  return path;
}

// dlopen of the first candidate that loads; `tried` collects what failed and why.
void* open_first(const std::vector<std::string>& candidates, std::string& tried, std::string& opened) {
  for (const auto& c : candidates) {
    if (c.empty()) continue;
    dlerror();
    if (void* h = dlopen(c.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
      opened = c;
      return h;
    }
    const char* err = dlerror();
    tried += "\n  " + c + ": " + (err ? err : "not found");
  }
  return nullptr;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::mutex& dirs_mutex() {
  static std::mutex m;
  return m;
}
std::vector<std::string>& nvidia_dirs() {
  static std::vector<std::string> d;
  return d;
}

// Candidates for `relative` (e.g. "cudnn/lib/libcudnn.so.9") under site-packages/nvidia of this
// module's environment and of every folder set_library_dirs() was given.
std::vector<std::string> wheel_candidates(const std::string& site, const std::vector<std::string>& relatives) {
  std::vector<std::string> roots;
  if (!site.empty()) roots.push_back(site + "/nvidia");
  {
    std::lock_guard<std::mutex> lock(dirs_mutex());
    for (const auto& d : nvidia_dirs()) roots.push_back(d);
  }
  std::vector<std::string> out;
  for (const auto& r : roots)
    for (const auto& rel : relatives) out.push_back(r + "/" + rel);
  return out;
}

struct Loaded {
  std::string description;
};

const Loaded& load() {
  static std::once_flag once;
  static Loaded loaded;
  static std::string failure;
  std::call_once(once, [] {
    const std::string site = site_packages();
    // The shared runtime the frontend calls (memsets, CUDA graphs). Pointing the frontend at the
    // exact file also keeps it from warning when both CUDA 12 and 13 runtimes are present.
    if (env("CUDNN_FRONTEND_CUDART_LIB_NAME").empty()) {
      std::string tried, opened;
      auto candidates = wheel_candidates(site, {"cu13/lib/libcudart.so.13", "cuda_runtime/lib/libcudart.so.13"});
      candidates.push_back("/usr/local/cuda/lib64/libcudart.so.13");
      candidates.push_back("libcudart.so.13");
      if (open_first(candidates, tried, opened)) setenv("CUDNN_FRONTEND_CUDART_LIB_NAME", opened.c_str(), 0);
    }
    std::string tried, opened;
    std::vector<std::string> candidates{env("MPSNN_CUDNN_LIBRARY")};
    for (auto& c : wheel_candidates(site, {"cudnn/lib/libcudnn.so.9"})) candidates.push_back(std::move(c));
    candidates.push_back("libcudnn.so.9");
    void* h = open_first(candidates, tried, opened);
    if (!h) {
      failure = "[cuda] cuDNN 9 (libcudnn.so.9) was not found; install it with `pip install nvidia-cudnn-cu13` "
                "or set MPSNN_CUDNN_LIBRARY to its path. Tried:" + tried;
      return;
    }
    using GetVersion = size_t (*)();
    auto version = reinterpret_cast<GetVersion>(dlsym(h, "cudnnGetVersion"));
    const size_t v = version ? version() : 0;
    if (v < 90000) {
      failure = "[cuda] " + opened + " is cuDNN " + std::to_string(v) + "; the CUDA backend needs cuDNN 9 or newer";
      return;
    }
    cudnn_frontend::cudnn_dlhandle = h;
    loaded.description = "cuDNN " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
                         std::to_string(v % 100) + " (" + opened + ")";
  });
  MPSNN_CHECK(failure.empty(), UnsupportedError, failure);
  return loaded;
}

}  // namespace

void set_library_dirs(std::vector<std::string> dirs) {
  std::lock_guard<std::mutex> lock(dirs_mutex());
  nvidia_dirs() = std::move(dirs);
}

void ensure_cudnn() { load(); }
std::string cudnn_description() { return load().description; }

}  // namespace mpsnn::cuda
