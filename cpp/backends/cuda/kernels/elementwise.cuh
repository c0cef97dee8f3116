#pragma once
// Device-side building blocks shared by the CUDA kernels: launch geometry, the per-element
// index of an N x H x W x C value with a pixel stride, loads and stores of activation values
// (float32, float16 or bfloat16; arithmetic is float32 either way), and the MPS neuron functions
// (nodes.md §6.2, the same formulas as the CPU backend's apply_neuron).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "backends/cuda/kernels/launch.h"
#include "core/errors.h"
#include "graph/attrs.h"

namespace mpsnn::cuda {

constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return unsigned(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

// Activation values: computed in float32, stored as the plan's activation dtype (float16 rounds
// to nearest even; values beyond float16's range become infinities, as in MPS's float16 images).
__device__ inline float load(const float* p, int64_t i) { return p[i]; }
__device__ inline float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ inline void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ inline void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }
__device__ inline float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ inline void store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

// Calls f(T{}) with T the element type of an activation dtype (float, __half or __nv_bfloat16): the host side
// of a kernel templated on its storage type.
template <typename F>
void with_activation_type(DType dtype, const std::string& context, F&& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::f16: f(__half{}); return;
    case DType::bf16: f(__nv_bfloat16{}); return;
    default:
      MPSNN_THROW(DTypeError, context, " CUDA kernels take float32, float16 or bfloat16 activations, got ",
                  dtype_name(dtype));
  }
}

// Element i of a pixels x channels walk, in a value whose pixels are `stride` elements apart.
__device__ inline int64_t strided(int64_t i, int64_t channels, int64_t stride) {
  return stride == channels ? i : (i / channels) * stride + i % channels;
}

__device__ inline float stable_sigmoid(float t) {
  if (t >= 0) return 1.0f / (1.0f + expf(-t));
  const float e = expf(t);
  return e / (1.0f + e);
}

// f(u) for channel k. NaN propagates as IEEE arithmetic does (no fminf/fmaxf, which drop NaN).
__device__ inline float neuron_value(const DeviceNeuron& n, float u, int64_t k) {
  const float a = n.a, b = n.b, c = n.c;
  switch (NeuronType(n.type)) {
    case NeuronType::none: return u;
    case NeuronType::relu: return u >= 0 ? u : a * u;
    case NeuronType::linear: return a * u + b;
    case NeuronType::sigmoid: return stable_sigmoid(u);
    case NeuronType::hard_sigmoid: {
      const float t = a * u + b;
      return t != t ? t : (t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t));
    }
    case NeuronType::tanh: return a * tanhf(b * u);
    case NeuronType::absolute: return fabsf(u);
    case NeuronType::soft_plus: {
      const float t = b * u;
      return a * ((t < 0.0f ? 0.0f : t) + log1pf(expf(-fabsf(t))));
    }
    case NeuronType::soft_sign: return u / (1.0f + fabsf(u));
    case NeuronType::elu: return u >= 0 ? u : a * (expf(u) - 1.0f);
    case NeuronType::prelu: {
      const float s = n.slope_data[n.num_slopes == 1 ? 0 : k];
      return u >= 0.0f ? u : s * u;
    }
    case NeuronType::relu_n: {
      const float r = u >= 0 ? u : a * u;
      return r != r ? r : (r < b ? r : b);
    }
    case NeuronType::power: return powf(a * u + b, c);
    case NeuronType::exponential: return c == -1.0f ? expf(a * u + b) : expf((a * u + b) * logf(c));
    case NeuronType::logarithm: return c == -1.0f ? logf(a * u + b) : logf(a * u + b) / logf(c);
    default: return u;
  }
}

}  // namespace mpsnn::cuda
