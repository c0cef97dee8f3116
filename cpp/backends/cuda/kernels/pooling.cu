// Pooling on CUDA (max, dilated max, average): our own kernel, one thread per output element,
// over each window's taps with the MPS edge rules of nodes.md §1.4/§5.2 -- the same loop as the
// CPU backend's DirectPoolingKernel, which defines them. cuDNN's pooling (resample) has neither
// MPS's clamp edge mode nor its averaging divisors (zero_pad_size, excludeEdges), and pooling is
// memory-bound: a direct kernel is as fast as a library call here.
#include <cfloat>

#include "backends/cuda/device.h"
#include "backends/cuda/kernels/elementwise.cuh"
#include "backends/cuda/register.h"
#include "backends/cuda/runtime.h"

namespace mpsnn::cuda {

namespace {

struct Axis {
  int64_t kernel, stride, dilation, pad_before;
  int64_t count_before, count_after;  // the taps in [-before, size + after) count in averages
};

struct Taps {
  int64_t start, lo, hi;
};

// Taps k in [lo, hi) of output o land inside [0, size) (tap k reads start + k * dilation).
__device__ inline Taps in_image(const Axis& a, int64_t o, int64_t size) {
  const int64_t start = o * a.stride - a.pad_before;
  const int64_t lo = start >= 0 ? 0 : (-start + a.dilation - 1) / a.dilation;
  const int64_t last = size - 1 - start;
  int64_t hi = last < 0 ? 0 : (last / a.dilation + 1 < a.kernel ? last / a.dilation + 1 : a.kernel);
  return {start, lo, hi > lo ? hi : lo};
}

__device__ inline int64_t counted(const Axis& a, int64_t start, int64_t size) {
  int64_t k = 0;
  for (int64_t t = 0; t < a.kernel; ++t) {
    const int64_t p = start + t * a.dilation;
    k += p >= -a.count_before && p < size + a.count_after;
  }
  return k;
}

__device__ inline int64_t clamp_index(int64_t v, int64_t size) { return v < 0 ? 0 : (v >= size ? size - 1 : v); }

template <typename T>
__global__ void pooling_kernel(const T* src, int64_t sps, ImageShape s, T* dst, int64_t dps, ImageShape d,
                               Axis ay, Axis ax, bool is_max, bool zero_edge) {
  const int64_t total = d.n * d.h * d.w * d.c;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % d.c, pix = e / d.c;
    const int64_t j = pix % d.w, i = (pix / d.w) % d.h, n = pix / (d.w * d.h);
    const Taps rows = in_image(ay, i, s.h), cols = in_image(ax, j, s.w);
    const T* base = src + n * s.h * s.w * sps + c;
    float out;
    if (is_max) {
      // Clamp edges with no in-image tap replicate the nearest pixels; zero edges let the zeros
      // of out-of-image taps compete. NaN wins and stays.
      const bool empty = rows.hi == rows.lo || cols.hi == cols.lo;
      const bool replicate = empty && !zero_edge;
      const int64_t y0 = replicate ? 0 : rows.lo, y1 = replicate ? ay.kernel : rows.hi;
      const int64_t x0 = replicate ? 0 : cols.lo, x1 = replicate ? ax.kernel : cols.hi;
      const bool reads_zero = zero_edge && (rows.hi - rows.lo) * (cols.hi - cols.lo) < ay.kernel * ax.kernel;
      out = reads_zero ? 0.0f : -INFINITY;  // a window of -inf has maximum -inf
      for (int64_t ky = y0; ky < y1; ++ky) {
        const int64_t sy = clamp_index(rows.start + ky * ay.dilation, s.h);
        for (int64_t kx = x0; kx < x1; ++kx) {
          const float p = load(base, (sy * s.w + clamp_index(cols.start + kx * ax.dilation, s.w)) * sps);
          out = p > out || p != p ? p : out;
        }
      }
    } else {
      const int64_t count = counted(ay, rows.start, s.h) * counted(ax, cols.start, s.w);
      float sum = 0.0f;
      for (int64_t ky = rows.lo; ky < rows.hi; ++ky)
        for (int64_t kx = cols.lo; kx < cols.hi; ++kx)
          sum += load(base, ((rows.start + ky * ay.dilation) * s.w + cols.start + kx * ax.dilation) * sps);
      out = sum * (count > 0 ? 1.0f / float(count) : 0.0f);  // Y = 0 when no tap counts
    }
    store(dst, pix * dps + c, out);
  }
}

// The same, for float16 values whose channels come in groups of 8 with 16-byte aligned pixels:
// one thread per output pixel and group, one 16-byte load per tap (8 channels), the arithmetic in
// float32 per channel exactly as above.
__global__ void pooling_kernel_h8(const uint4* src, int64_t sps8, ImageShape s, uint4* dst, int64_t dps8, ImageShape d,
                                  Axis ay, Axis ax, bool is_max, bool zero_edge) {
  const int64_t groups = d.c / 8;
  const int64_t total = d.n * d.h * d.w * groups;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = e % groups, pix = e / groups;
    const int64_t j = pix % d.w, i = (pix / d.w) % d.h, n = pix / (d.w * d.h);
    const Taps rows = in_image(ay, i, s.h), cols = in_image(ax, j, s.w);
    const uint4* base = src + n * s.h * s.w * sps8 + g;
    float out[8];
    auto load8 = [&](int64_t y, int64_t x, float* v) {
      const uint4 raw = base[(y * s.w + x) * sps8];
      const __half* h = reinterpret_cast<const __half*>(&raw);
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] = __half2float(h[k]);
    };
    if (is_max) {
      const bool empty = rows.hi == rows.lo || cols.hi == cols.lo;
      const bool replicate = empty && !zero_edge;
      const int64_t y0 = replicate ? 0 : rows.lo, y1 = replicate ? ay.kernel : rows.hi;
      const int64_t x0 = replicate ? 0 : cols.lo, x1 = replicate ? ax.kernel : cols.hi;
      const bool reads_zero = zero_edge && (rows.hi - rows.lo) * (cols.hi - cols.lo) < ay.kernel * ax.kernel;
#pragma unroll
      for (int k = 0; k < 8; ++k) out[k] = reads_zero ? 0.0f : -INFINITY;
      for (int64_t ky = y0; ky < y1; ++ky) {
        const int64_t sy = clamp_index(rows.start + ky * ay.dilation, s.h);
        for (int64_t kx = x0; kx < x1; ++kx) {
          float p[8];
          load8(sy, clamp_index(cols.start + kx * ax.dilation, s.w), p);
#pragma unroll
          for (int k = 0; k < 8; ++k) out[k] = p[k] > out[k] || p[k] != p[k] ? p[k] : out[k];
        }
      }
    } else {
      const int64_t count = counted(ay, rows.start, s.h) * counted(ax, cols.start, s.w);
#pragma unroll
      for (int k = 0; k < 8; ++k) out[k] = 0.0f;
      for (int64_t ky = rows.lo; ky < rows.hi; ++ky)
        for (int64_t kx = cols.lo; kx < cols.hi; ++kx) {
          float p[8];
          load8(rows.start + ky * ay.dilation, cols.start + kx * ax.dilation, p);
#pragma unroll
          for (int k = 0; k < 8; ++k) out[k] += p[k];
        }
      const float scale = count > 0 ? 1.0f / float(count) : 0.0f;
#pragma unroll
      for (int k = 0; k < 8; ++k) out[k] *= scale;
    }
    __half h[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) h[k] = __float2half_rn(out[k]);
    uint4 packed;
    memcpy(&packed, h, sizeof(packed));
    dst[pix * dps8 + g] = packed;
  }
}

class PoolingKernel final : public Kernel {
 public:
  explicit PoolingKernel(const KernelSpec& spec) : context_(spec.context) {
    const auto& a = spec.attrs_as<PoolingAttrs>();
    MPSNN_CHECK(a.mode == PoolingMode::max || a.mode == PoolingMode::dilated_max || a.mode == PoolingMode::average,
                UnsupportedError, context_, " this pooling mode does not run on the CUDA backend yet");
    MPSNN_CHECK(spec.outputs.size() == 1, UnsupportedError, context_,
                " max pooling with a consumed gradient state (indices) does not run on the CUDA backend yet");
    is_max_ = a.mode != PoolingMode::average;
    zero_edge_ = spec.geom.edge_mode == EdgeMode::zero;
    const WindowAxis& y = spec.geom.y;
    const WindowAxis& x = spec.geom.x;
    ay_ = Axis{y.kernel, y.stride, y.dilation, y.pad_before, 0, 0};
    ax_ = Axis{x.kernel, x.stride, x.dilation, x.pad_before, 0, 0};
    // The divisor counts the taps inside [-before, S + after) per axis: the whole window for
    // zero edges, the padded area with excludeEdges, the image plus zero_pad_size for clamp.
    if (spec.geom.exclude_edges) {
      ay_.count_before = y.pad_before, ay_.count_after = y.pad_after;
      ax_.count_before = x.pad_before, ax_.count_after = x.pad_after;
    } else if (zero_edge_) {
      ay_.count_before = ay_.count_after = ax_.count_before = ax_.count_after = INT64_MAX / 4;
    } else {
      ay_.count_before = ay_.count_after = a.zero_pad_size_y;
      ax_.count_before = ax_.count_after = a.zero_pad_size_x;
    }
  }
  void run(const KernelArgs& a, KernelState*) const override {
    const TensorRef& src = a.inputs[0];
    const TensorRef& dst = a.outputs[0];
    auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
    if (dst.dtype == DType::f16 && src.dtype == DType::f16 && dst.shape.c % 8 == 0 && src.pixel_stride % 8 == 0 &&
        dst.pixel_stride % 8 == 0 && aligned16(src.data) && aligned16(dst.data)) {
      const int64_t total = dst.shape.numel() / 8;
      pooling_kernel_h8<<<blocks_for(total), kThreads, 0, stream_of(a.stream).stream()>>>(
          static_cast<const uint4*>(src.data), src.pixel_stride / 8, src.shape, static_cast<uint4*>(dst.data),
          dst.pixel_stride / 8, dst.shape, ay_, ax_, is_max_, zero_edge_);
      MPSNN_CUDA_CHECK(cudaGetLastError(), context_);
      return;
    }
    with_activation_type(dst.dtype, context_, [&](auto tag) {
      using T = decltype(tag);
      pooling_kernel<<<blocks_for(dst.shape.numel()), kThreads, 0, stream_of(a.stream).stream()>>>(
          src.as<T>(), src.pixel_stride, src.shape, dst.as<T>(), dst.pixel_stride, dst.shape, ay_, ax_, is_max_,
          zero_edge_);
    });
    MPSNN_CUDA_CHECK(cudaGetLastError(), context_);
  }

 private:
  std::string context_;
  Axis ay_{}, ax_{};
  bool is_max_ = true, zero_edge_ = false;
};

// Softmax over the feature channels of each pixel (nodes.md): y = exp(x - max) / sum, log
// softmax x - max - log(sum). One thread per pixel: channel counts of classifier heads are small.
template <typename T>
__global__ void softmax_kernel(const T* src, int64_t sps, T* dst, int64_t dps, int64_t pixels, int64_t c,
                               bool log_softmax) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < pixels; p += int64_t(gridDim.x) * blockDim.x) {
    const T* x = src + p * sps;
    T* y = dst + p * dps;
    float m = -INFINITY;
    for (int64_t k = 0; k < c; ++k) {
      const float v = load(x, k);
      m = v > m || v != v ? v : m;
    }
    float sum = 0.0f;
    for (int64_t k = 0; k < c; ++k) sum += expf(load(x, k) - m);
    if (log_softmax) {
      const float l = logf(sum);
      for (int64_t k = 0; k < c; ++k) store(y, k, load(x, k) - m - l);
    } else {
      const float inv = 1.0f / sum;
      for (int64_t k = 0; k < c; ++k) store(y, k, expf(load(x, k) - m) * inv);
    }
  }
}

class SoftMaxKernel final : public Kernel {
 public:
  explicit SoftMaxKernel(const KernelSpec& spec) : context_(spec.context), log_(spec.attrs_as<SoftMaxAttrs>().log) {}
  int in_place_input() const override { return 0; }
  void run(const KernelArgs& a, KernelState*) const override {
    const TensorRef& src = a.inputs[0];
    const TensorRef& dst = a.outputs[0];
    const int64_t pixels = dst.shape.n * dst.shape.h * dst.shape.w;
    with_activation_type(dst.dtype, context_, [&](auto tag) {
      using T = decltype(tag);
      softmax_kernel<<<blocks_for(pixels), kThreads, 0, stream_of(a.stream).stream()>>>(
          src.as<T>(), src.pixel_stride, dst.as<T>(), dst.pixel_stride, pixels, dst.shape.c, log_);
    });
    MPSNN_CUDA_CHECK(cudaGetLastError(), context_);
  }

 private:
  std::string context_;
  bool log_;
};

}  // namespace

std::unique_ptr<Kernel> make_pooling(const KernelSpec& spec, Device&) { return std::make_unique<PoolingKernel>(spec); }
std::unique_ptr<Kernel> make_softmax(const KernelSpec& spec, Device&) { return std::make_unique<SoftMaxKernel>(spec); }

}  // namespace mpsnn::cuda
