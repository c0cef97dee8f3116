// Internal steps on CUDA (our own kernels: cuDNN has no operation for either): Convert (a caller
// image of any storage format and pixel stride <-> a dense activation value) and Fill (the poison
// test aid). Conversions round as the CPU backend does (format.cpp): float16 and bfloat16 round to nearest even,
// unorm clamps to [0, 1] with NaN -> 0 and rounds half away from zero.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backends/cuda/device.h"
#include "backends/cuda/kernels/elementwise.cuh"
#include "backends/cuda/register.h"
#include "backends/cuda/runtime.h"

namespace mpsnn::cuda {

namespace {

__device__ inline float load_as_float(ChannelFormat f, const void* p, int64_t i) {
  switch (f) {
    case ChannelFormat::float16: return __half2float(static_cast<const __half*>(p)[i]);
    case ChannelFormat::bfloat16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case ChannelFormat::unorm8: return float(static_cast<const uint8_t*>(p)[i]) * (1.0f / 255.0f);
    case ChannelFormat::unorm16: return float(static_cast<const uint16_t*>(p)[i]) * (1.0f / 65535.0f);
    default: return static_cast<const float*>(p)[i];
  }
}

__device__ inline void store_from_float(ChannelFormat f, void* p, int64_t i, float v) {
  switch (f) {
    case ChannelFormat::float16: static_cast<__half*>(p)[i] = __float2half_rn(v); return;
    case ChannelFormat::bfloat16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); return;
    case ChannelFormat::unorm8:
      static_cast<uint8_t*>(p)[i] = !(v > 0.0f) ? 0 : uint8_t(lroundf(fminf(v, 1.0f) * 255.0f));
      return;
    case ChannelFormat::unorm16:
      static_cast<uint16_t*>(p)[i] = !(v > 0.0f) ? 0 : uint16_t(lroundf(fminf(v, 1.0f) * 65535.0f));
      return;
    default: static_cast<float*>(p)[i] = v;
  }
}

__global__ void convert_kernel(ChannelFormat from, const void* src, int64_t src_stride, ChannelFormat to, void* dst,
                               int64_t dst_stride, int64_t total, int64_t channels) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    store_from_float(to, dst, strided(i, channels, dst_stride),
                     load_as_float(from, src, strided(i, channels, src_stride)));
}

__global__ void fill_kernel(unsigned char* dst, int64_t pixels, int64_t row_bytes, int64_t pixel_bytes, uint32_t pattern) {
  const int64_t total = pixels * row_bytes;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / row_bytes, b = i % row_bytes;
    dst[p * pixel_bytes + b] = (unsigned char)(pattern >> (8 * (b % 4)));
  }
}

class ConvertKernel final : public Kernel {
 public:
  explicit ConvertKernel(const ConvertAttrs& a) : from_(a.from), to_(a.to) {}
  void run(const KernelArgs& a, KernelState*) const override {
    const TensorRef& src = a.inputs[0];
    const TensorRef& dst = a.outputs[0];
    if (src.data == dst.data) return;
    const ImageShape& s = src.shape;
    const int64_t total = s.numel();
    cudaStream_t stream = stream_of(a.stream).stream();
    convert_kernel<<<blocks_for(total), kThreads, 0, stream>>>(from_, src.data, src.pixel_stride, to_, dst.data,
                                                               dst.pixel_stride, total, s.c);
    MPSNN_CUDA_CHECK(cudaGetLastError(), "[convert]");
  }

 private:
  ChannelFormat from_, to_;
};

class FillKernel final : public Kernel {
 public:
  explicit FillKernel(uint32_t pattern) : pattern_(pattern) {}
  void run(const KernelArgs& a, KernelState*) const override {
    const TensorRef& dst = a.outputs[0];
    const ImageShape& s = dst.shape;
    const int64_t e = int64_t(dtype_size(dst.dtype));
    const int64_t pixels = s.n * s.h * s.w;
    cudaStream_t stream = stream_of(a.stream).stream();
    fill_kernel<<<blocks_for(pixels * s.c * e), kThreads, 0, stream>>>(static_cast<unsigned char*>(dst.data), pixels,
                                                                       s.c * e, dst.pixel_stride * e, pattern_);
    MPSNN_CUDA_CHECK(cudaGetLastError(), "[fill]");
  }

 private:
  uint32_t pattern_;
};

}  // namespace

std::unique_ptr<Kernel> make_convert(const KernelSpec& spec, Device&) {
  return std::make_unique<ConvertKernel>(spec.attrs_as<ConvertAttrs>());
}
std::unique_ptr<Kernel> make_fill(const KernelSpec& spec, Device&) {
  return std::make_unique<FillKernel>(spec.attrs_as<FillAttrs>().pattern);
}

}  // namespace mpsnn::cuda
