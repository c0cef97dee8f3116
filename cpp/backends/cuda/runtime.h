#pragma once
// CUDA runtime calls with typed errors: every failure names the call site's context and the
// runtime's error text; running out of device memory is an OutOfMemoryError-style BackendError
// whose message says how much was asked for.
#include <cuda_runtime_api.h>

#include "core/errors.h"

namespace mpsnn::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t e, const char* call, const std::string& context);

// Makes `index` the calling thread's current device (cheap when it already is).
void set_device(int index);

}  // namespace mpsnn::cuda

#define MPSNN_CUDA_CHECK(expr, ...)                                                                   \
  do {                                                                                               \
    const cudaError_t mpsnn_e_ = (expr);                                                             \
    if (mpsnn_e_ != cudaSuccess)                                                                     \
      ::mpsnn::cuda::throw_cuda_error(mpsnn_e_, #expr, ::mpsnn::detail::concat(__VA_ARGS__));         \
  } while (0)
