#pragma once
// Host-side entry points of the elementwise CUDA kernels (elementwise.cu) that other kernels
// reuse: a neuron or a clamp applied to a value, as the tail of a fused convolution whose
// post-ops cuDNN cannot take.
#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "core/device.h"
#include "core/tensor.h"
#include "graph/kernel.h"

namespace mpsnn::cuda {

// A neuron as the device sees it; PReLU slopes live in device memory owned by `slopes`.
struct DeviceNeuron {
  int type = 0;  // NeuronType
  float a = 0, b = 0, c = 0;
  const float* slope_data = nullptr;
  int64_t num_slopes = 0;
};
struct PreparedNeuron {
  DeviceNeuron neuron;
  std::shared_ptr<Storage> slopes;
};
PreparedNeuron prepare_neuron(const NeuronDescriptor& n, Device& device);

// dst = f(src) (in place when they are the same memory).
void launch_neuron(const DeviceNeuron& n, const TensorRef& src, const TensorRef& dst, cudaStream_t stream,
                   const std::string& context);
// x = min(max(x, lo), hi), NaN kept.
void launch_clamp(float lo, float hi, const TensorRef& x, cudaStream_t stream, const std::string& context);

// y = ops(y + bias[c]) in one pass: the fused post-ops of a convolution whose cuDNN graph could
// not take them, in order; a sum adds the addend's element (PReLU is never fused).
struct Epilogue {
  static constexpr int kMaxOps = 4;
  int count = 0;
  bool is_sum[kMaxOps] = {};
  DeviceNeuron neuron[kMaxOps];
};
void launch_epilogue(const float* bias, const Epilogue& ops, const TensorRef* addend, const TensorRef& out,
                     cudaStream_t stream, const std::string& context);

// dst, a dense float16 N x h x w x cpad value, = the window of the float16 value at `src` (pixels
// `sps` elements apart, src_h x src_w pixels, n images): rows [y0, y0 + h), columns [x0, x0 + w),
// channels [c0, c0 + c), and zeros in channels [c, cpad) (cpad 4 or a multiple of 8; dst 16-byte
// aligned). The source of a convolution whose channel count Tensor Core engines cannot take,
// padded for them.
void launch_pad_channels(const void* src, int64_t n, int64_t src_h, int64_t src_w, int64_t sps, int64_t y0, int64_t x0,
                         int64_t c0, int64_t c, void* dst, int64_t h, int64_t w, int64_t cpad, cudaStream_t stream,
                         const std::string& context);

// A fused post-op run after the main computation, in place on `out`.
struct PreparedPostOp {
  PostOp op;
  PreparedNeuron neuron;
};
PreparedPostOp prepare_post_op(const PostOp& op, Device& device);
void apply_post_op(const PreparedPostOp& op, const TensorRef& out, cudaStream_t stream, const std::string& context);

}  // namespace mpsnn::cuda
