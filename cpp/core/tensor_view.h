#pragma once
// Non-owning views of NHWC float32 image data, the currency of every CPU kernel.
#include <cstdint>
#include <initializer_list>

namespace mpsnn {

// Largest byte count of one image, tensor or buffer (2^52 bytes, 4 PiB). Sizes beyond it are
// errors (ShapeError) instead of 64-bit overflow; a sum of many such sizes still fits in 64 bits.
constexpr int64_t kMaxBytes = int64_t(1) << 52;

// a * b * ... * element_bytes for positive factors, or -1 when the product exceeds kMaxBytes
// (computed without overflowing).
inline int64_t checked_bytes(std::initializer_list<int64_t> factors, int64_t element_bytes) {
  int64_t total = element_bytes;
  for (int64_t f : factors) {
    if (f <= 0) return f == 0 ? 0 : -1;
    if (total > kMaxBytes / f) return -1;
    total *= f;
  }
  return total;
}

struct ImageShape {
  int64_t n = 1, h = 1, w = 1, c = 1;
  int64_t numel() const { return n * h * w * c; }
  // numel() * element_bytes, or -1 when it exceeds kMaxBytes (see checked_bytes).
  int64_t checked_bytes(int64_t element_bytes) const { return mpsnn::checked_bytes({n, h, w, c}, element_bytes); }
  bool operator==(const ImageShape& o) const {
    return n == o.n && h == o.h && w == o.w && c == o.c;
  }
  bool operator!=(const ImageShape& o) const { return !(*this == o); }
};

// `pixel_stride` is the distance in elements between two neighbouring pixels; it is
// `shape.c` for dense data and larger for a channel slice of a wider image.
struct TensorView {
  float* data = nullptr;
  ImageShape shape;
  int64_t pixel_stride = 0;

  int64_t row_stride() const { return shape.w * pixel_stride; }
  int64_t image_stride() const { return shape.h * shape.w * pixel_stride; }
  bool dense() const { return pixel_stride == shape.c; }
  float* pixel(int64_t n, int64_t y, int64_t x) const {
    return data + n * image_stride() + y * row_stride() + x * pixel_stride;
  }
};

inline TensorView dense_view(float* data, const ImageShape& s) { return {data, s, s.c}; }

// Geometry of a sliding window along one axis (nodes.md §1.1): output o reads source
// positions `o * stride - pad_before + k * dilation` for k < kernel.
struct WindowAxis {
  int64_t kernel = 1, stride = 1, dilation = 1, pad_before = 0, pad_after = 0;
  int64_t extent() const { return (kernel - 1) * dilation + 1; }
};

// One axis of a window as vendor libraries (oneDNN, cuDNN) take it: they need pad_before >= 0,
// so pixels a negative pad skips are cropped from the source instead, and a negative pad_after
// is raised to the smallest value that keeps the result size of their rule
// result = (source + pad_l + pad_r - extent) / stride + 1.
struct LibraryAxis {
  int64_t crop_before = 0;  // source pixels skipped at the start
  int64_t source = 0;       // source extent the library sees
  int64_t pad_l = 0, pad_r = 0;
};
inline LibraryAxis library_axis(int64_t source, int64_t result, const WindowAxis& w) {
  LibraryAxis a;
  const int64_t ke = w.extent();
  a.crop_before = w.pad_before < 0 ? -w.pad_before : 0;
  a.pad_l = w.pad_before > 0 ? w.pad_before : 0;
  a.source = source - a.crop_before;
  int64_t pr = (result - 1) * w.stride + ke - a.source - a.pad_l;
  if (pr < 0 && pr > -w.stride) pr = 0;  // the floor division of the size rule absorbs it
  if (pr < 0) {
    a.source += pr;  // crop the end
    pr = 0;
  }
  a.pad_r = pr;
  return a;
}

}  // namespace mpsnn
