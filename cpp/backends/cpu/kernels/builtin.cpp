// Kernels of the internal steps the compiler inserts: Convert (a caller image of any storage
// format and pixel stride <-> a dense float32 value) and Fill (the poison test aid).
#include <cstring>

#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/register.h"

namespace MPSNN_ISA_NAMESPACE {

namespace {

class ConvertKernel final : public Kernel {
 public:
  explicit ConvertKernel(const ConvertAttrs& a) : from_(a.from), to_(a.to) {}
  void run(const KernelArgs& a, KernelState*) const override {
    const TensorRef& src = a.inputs[0];
    const TensorRef& dst = a.outputs[0];
    if (src.data == dst.data) return;  // an output bound to the value it copies
    const ImageShape& s = src.shape;
    const int64_t pixels = s.n * s.h * s.w, c = s.c;
    const size_t es = dtype_size(src.dtype), ed = dtype_size(dst.dtype);
    const auto* in = static_cast<const char*>(src.data);
    auto* out = static_cast<char*>(dst.data);
    auto convert = [&](const char* x, char* y, size_t count) {
      if (from_ == ChannelFormat::float32) convert_from_float(to_, reinterpret_cast<const float*>(x), y, count);
      else convert_to_float(from_, x, reinterpret_cast<float*>(y), count);
    };
    if (src.dense() && dst.dense()) {
      convert(in, out, size_t(pixels * c));
      return;
    }
#pragma omp parallel for if (pixels * c > 65536)
    for (int64_t p = 0; p < pixels; ++p)
      convert(in + size_t(p * src.pixel_stride) * es, out + size_t(p * dst.pixel_stride) * ed, size_t(c));
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
    const size_t e = dtype_size(dst.dtype);
    const int64_t pixels = s.n * s.h * s.w;
    const size_t row = size_t(s.c) * e;
    auto* base = static_cast<unsigned char*>(dst.data);
    if (dst.dense() && (size_t(pixels) * row) % 4 == 0) {  // whole words (the arena, dense images)
      const size_t words = size_t(pixels) * row / 4;
      for (size_t w = 0; w < words; ++w) std::memcpy(base + 4 * w, &pattern_, 4);
      return;
    }
    unsigned char bytes[4];
    std::memcpy(bytes, &pattern_, 4);
    // Pixel by pixel: a channel slice of a wider image keeps the other channels.
    for (int64_t p = 0; p < pixels; ++p) {
      unsigned char* px = base + size_t(p * dst.pixel_stride) * e;
      for (size_t b = 0; b < row; ++b) px[b] = bytes[b % 4];
    }
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

}  // namespace MPSNN_ISA_NAMESPACE
