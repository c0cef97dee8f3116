// Neuron nodes and the elementwise tails of fused kernels on CUDA: our own kernels (cuDNN's
// pointwise operations exist only inside cuDNN graphs; a standalone neuron is one memory-bound
// pass either way), with every MPS neuron function of nodes.md §6.2 (elementwise.cuh).
#include "backends/cuda/device.h"
#include "backends/cuda/kernels/elementwise.cuh"
#include "backends/cuda/register.h"
#include "backends/cuda/runtime.h"

namespace mpsnn::cuda {

namespace {

template <typename T>
__global__ void neuron_kernel(DeviceNeuron n, const T* src, int64_t src_stride, T* dst, int64_t dst_stride,
                              int64_t total, int64_t channels) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    store(dst, strided(i, channels, dst_stride), neuron_value(n, load(src, strided(i, channels, src_stride)), i % channels));
}

template <typename T>
__global__ void clamp_kernel(float lo, float hi, T* x, int64_t stride, int64_t total, int64_t channels) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = strided(i, channels, stride);
    const float v = load(x, k);
    if (v == v) store(x, k, v < lo ? lo : (v > hi ? hi : v));
  }
}

// Binary arithmetic (nodes.md §8): d = clamp(op(sa * A, sb * B) + bias, lo, hi) with MPS's
// per-axis operand strides (0 broadcasts index 0 along that axis; an operand of batch 1
// broadcasts over the batch). NaN passes the clamp.
template <typename T>
struct Operand {
  const T* data;
  int64_t n, h, w, stride;  // its shape and pixel stride
  int tc, ty, tx;
};

template <typename T>
__device__ inline float operand_at(const Operand<T>& o, int64_t n, int64_t y, int64_t x, int64_t c) {
  return load(o.data,
              ((o.n == 1 ? 0 : n) * o.h + (o.ty ? y : 0)) * o.w * o.stride + (o.tx ? x : 0) * o.stride + (o.tc ? c : 0));
}

template <typename T>
__global__ void arithmetic_kernel(ArithmeticOp op, Operand<T> a, Operand<T> b, T* dst, int64_t dps, ImageShape d, float sa,
                                  float sb, float bias, float lo, float hi) {
  const int64_t total = d.n * d.h * d.w * d.c;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % d.c, pix = e / d.c;
    const int64_t x = pix % d.w, y = (pix / d.w) % d.h, n = pix / (d.w * d.h);
    const float av = sa * operand_at(a, n, y, x, c), bv = sb * operand_at(b, n, y, x, c);
    float r = op == ArithmeticOp::add ? av + bv : op == ArithmeticOp::subtract ? av - bv
              : op == ArithmeticOp::multiply ? av * bv : av / bv;
    r = r + bias;
    r = r < lo ? lo : r;
    r = r > hi ? hi : r;
    store(dst, pix * dps + c, r);
  }
}

class ArithmeticKernel final : public Kernel {
 public:
  explicit ArithmeticKernel(const KernelSpec& spec) : a_(spec.attrs_as<ArithmeticAttrs>()), context_(spec.context) {
    in_place_ = spec.input(0) == spec.output() && a_.primary_strides == std::array<int, 3>{1, 1, 1};
  }
  // In place on the primary source when each output element reads only its own element of it.
  int in_place_input() const override { return in_place_ ? 0 : -1; }
  void run(const KernelArgs& args, KernelState*) const override {
    const TensorRef& A = args.inputs[0];
    const TensorRef& B = args.inputs[1];
    const TensorRef& D = args.outputs[0];
    with_activation_type(D.dtype, context_, [&](auto tag) {
      using T = decltype(tag);
      auto operand = [](const TensorRef& t, const std::array<int, 3>& s) {
        return Operand<T>{t.as<T>(), t.shape.n, t.shape.h, t.shape.w, t.pixel_stride, s[0], s[1], s[2]};
      };
      arithmetic_kernel<<<blocks_for(D.shape.numel()), kThreads, 0, stream_of(args.stream).stream()>>>(
          a_.op, operand(A, a_.primary_strides), operand(B, a_.secondary_strides), D.as<T>(), D.pixel_stride,
          D.shape, a_.primary_scale, a_.secondary_scale, a_.bias, a_.minimum_value, a_.maximum_value);
    });
    MPSNN_CUDA_CHECK(cudaGetLastError(), context_);
  }

 private:
  ArithmeticAttrs a_;
  std::string context_;
  bool in_place_ = false;
};

template <typename T>
__global__ void epilogue_kernel(const float* bias, Epilogue ops, const T* z, int64_t zps, T* y, int64_t yps,
                                int64_t total, int64_t channels) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % channels;
    const int64_t at = strided(i, channels, yps);
    float v = load(y, at) + bias[c];
    for (int k = 0; k < ops.count; ++k)
      v = ops.is_sum[k] ? v + load(z, strided(i, channels, zps)) : neuron_value(ops.neuron[k], v, c);
    store(y, at, v);
  }
}

// One thread per destination pixel and group of N channels: one store of N halves (V: 16 or 8 bytes).
template <int N, typename V>
__global__ void pad_channels_kernel(const __half* src, int64_t src_h, int64_t src_w, int64_t sps, int64_t y0,
                                    int64_t x0, int64_t c0, int64_t c, V* dst, int64_t pixels, int64_t h,
                                    int64_t w, int64_t groups) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pixels * groups;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = i % groups, pix = i / groups;
    const int64_t x = pix % w, y = (pix / w) % h, n = pix / (w * h);
    const __half* p = src + ((n * src_h + y + y0) * src_w + x + x0) * sps + c0;
    __half v[N];
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const int64_t ch = g * N + k;
      v[k] = ch < c ? p[ch] : __float2half_rn(0.0f);
    }
    V packed;
    memcpy(&packed, v, sizeof(packed));
    dst[i] = packed;
  }
}

class NeuronKernel final : public Kernel {
 public:
  NeuronKernel(const KernelSpec& spec, Device& device)
      : neuron_(prepare_neuron(spec.attrs_as<NeuronAttrs>().neuron, device)), context_(spec.context) {}
  int in_place_input() const override { return 0; }
  void run(const KernelArgs& a, KernelState*) const override {
    launch_neuron(neuron_.neuron, a.inputs[0], a.outputs[0], stream_of(a.stream).stream(), context_);
  }

 private:
  PreparedNeuron neuron_;
  std::string context_;
};

}  // namespace

PreparedNeuron prepare_neuron(const NeuronDescriptor& d, Device& device) {
  PreparedNeuron p;
  p.neuron.type = int(d.type);
  p.neuron.a = d.a, p.neuron.b = d.b, p.neuron.c = d.c;
  if (d.type == NeuronType::prelu) {
    p.slopes = device.allocator().allocate(d.data.size() * sizeof(float), false);
    device.copy_blocking(p.slopes->data(), d.data.data(), d.data.size() * sizeof(float));
    p.neuron.slope_data = static_cast<const float*>(p.slopes->data());
    p.neuron.num_slopes = int64_t(d.data.size());
  }
  return p;
}

void launch_neuron(const DeviceNeuron& n, const TensorRef& src, const TensorRef& dst, cudaStream_t stream,
                   const std::string& context) {
  const int64_t total = dst.shape.numel();
  with_activation_type(dst.dtype, context, [&](auto tag) {
    using T = decltype(tag);
    neuron_kernel<<<blocks_for(total), kThreads, 0, stream>>>(n, src.as<T>(), src.pixel_stride, dst.as<T>(),
                                                              dst.pixel_stride, total, dst.shape.c);
  });
  MPSNN_CUDA_CHECK(cudaGetLastError(), context, " neuron");
}

void launch_clamp(float lo, float hi, const TensorRef& x, cudaStream_t stream, const std::string& context) {
  const int64_t total = x.shape.numel();
  with_activation_type(x.dtype, context, [&](auto tag) {
    using T = decltype(tag);
    clamp_kernel<<<blocks_for(total), kThreads, 0, stream>>>(lo, hi, x.as<T>(), x.pixel_stride, total, x.shape.c);
  });
  MPSNN_CUDA_CHECK(cudaGetLastError(), context, " clamp");
}

void launch_epilogue(const float* bias, const Epilogue& ops, const TensorRef* addend, const TensorRef& out,
                     cudaStream_t stream, const std::string& context) {
  const int64_t total = out.shape.numel();
  with_activation_type(out.dtype, context, [&](auto tag) {
    using T = decltype(tag);
    epilogue_kernel<<<blocks_for(total), kThreads, 0, stream>>>(bias, ops, addend ? addend->as<T>() : nullptr,
                                                                addend ? addend->pixel_stride : 0, out.as<T>(),
                                                                out.pixel_stride, total, out.shape.c);
  });
  MPSNN_CUDA_CHECK(cudaGetLastError(), context, " epilogue");
}

void launch_pad_channels(const void* src, int64_t n, int64_t src_h, int64_t src_w, int64_t sps, int64_t y0, int64_t x0,
                         int64_t c0, int64_t c, void* dst, int64_t h, int64_t w, int64_t cpad, cudaStream_t stream,
                         const std::string& context) {
  const int64_t pixels = n * h * w;
  const __half* s = static_cast<const __half*>(src);
  if (cpad % 8 == 0)
    pad_channels_kernel<8><<<blocks_for(pixels * (cpad / 8)), kThreads, 0, stream>>>(
        s, src_h, src_w, sps, y0, x0, c0, c, static_cast<uint4*>(dst), pixels, h, w, cpad / 8);
  else
    pad_channels_kernel<4><<<blocks_for(pixels * (cpad / 4)), kThreads, 0, stream>>>(
        s, src_h, src_w, sps, y0, x0, c0, c, static_cast<uint2*>(dst), pixels, h, w, cpad / 4);
  MPSNN_CUDA_CHECK(cudaGetLastError(), context, " channel padding");
}

PreparedPostOp prepare_post_op(const PostOp& op, Device& device) {
  PreparedPostOp p;
  p.op = op;
  if (op.kind == PostOp::Kind::neuron) p.neuron = prepare_neuron(op.neuron, device);
  return p;
}

void apply_post_op(const PreparedPostOp& p, const TensorRef& out, cudaStream_t stream, const std::string& context) {
  switch (p.op.kind) {
    case PostOp::Kind::neuron: launch_neuron(p.neuron.neuron, out, out, stream, context); return;
    case PostOp::Kind::clamp: launch_clamp(p.op.lo, p.op.hi, out, stream, context); return;
    case PostOp::Kind::sum:
      MPSNN_THROW(BackendError, context, " internal error: a residual sum left for after the kernel");
  }
}

std::unique_ptr<Kernel> make_arithmetic(const KernelSpec& spec, Device&) {
  return std::make_unique<ArithmeticKernel>(spec);
}

std::unique_ptr<Kernel> make_neuron(const KernelSpec& spec, Device& device) {
  return std::make_unique<NeuronKernel>(spec, device);
}

}  // namespace mpsnn::cuda
