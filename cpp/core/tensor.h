#pragma once
// TensorRef: the typed, device-neutral reference to a value that plans hand to kernels (an
// image, a state buffer such as pooling indices or a dropout mask, or a parameter). The memory
// may live on any device; only a backend that knows the device dereferences `data`.
// Non-image buffers use the same four dims: per-channel vectors are 1x1x1xC, OHWI weights
// O x KH x KW x I, masks the image's shape.
#include <cstddef>

#include "core/dtype.h"
#include "core/errors.h"
#include "core/tensor_view.h"

namespace mpsnn {

// Element type and dims of a value (a plan value, a state buffer). `role` names what a state
// buffer holds ("gradient_for_weights", "mean", ...: the typed accessors of the MPS state classes
// look buffers up by it); null for images and unnamed buffers. Not part of the value's identity.
struct TensorDesc {
  DType dtype = DType::f32;
  ImageShape shape;
  const char* role = nullptr;
  size_t bytes() const { return size_t(shape.numel()) * dtype_size(dtype); }
  bool operator==(const TensorDesc& o) const { return dtype == o.dtype && shape == o.shape; }
};

struct TensorRef {
  void* data = nullptr;
  DType dtype = DType::f32;
  ImageShape shape;
  int64_t pixel_stride = 0;  // elements between neighbouring pixels; shape.c when dense

  bool dense() const { return pixel_stride == shape.c; }
  size_t dense_bytes() const { return size_t(shape.numel()) * dtype_size(dtype); }
  TensorDesc desc() const { return {dtype, shape}; }
  template <typename T>
  T* as() const { return static_cast<T*>(data); }
  // The float32 view the CPU kernels compute on.
  TensorView f32() const {
    MPSNN_CHECK(dtype == DType::f32, DTypeError, "[kernel] expected a float32 value, got ", dtype_name(dtype));
    return TensorView{static_cast<float*>(data), shape, pixel_stride};
  }
};

inline TensorRef dense_ref(void* data, DType dtype, const ImageShape& s) { return {data, dtype, s, s.c}; }

}  // namespace mpsnn
