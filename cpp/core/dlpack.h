#pragma once
// DLPack (the array-exchange ABI of https://dmlc.github.io/dlpack, version 1.x and the older
// unversioned form) for images in device memory: zero-copy import of a producer's tensor as an
// MPSImage and export of an image to a consumer, with the stream handshake of the Python
// protocol (__dlpack__(stream=...)). The structs below are the ABI's, declared here from the
// specification; the bindings only move PyCapsules. Host tensors go through NumPy's own DLPack
// support in the bindings (bindings/image.cpp), which this file does not replace.
#include <cstdint>
#include <memory>

#include "core/image.h"

namespace mpsnn::dlpack {

enum DeviceType : int32_t { kCPU = 1, kCUDA = 2, kCUDAHost = 3, kCUDAManaged = 13 };
enum TypeCode : uint8_t { kInt = 0, kUInt = 1, kFloat = 2, kBfloat = 4 };

struct Device {
  int32_t device_type;
  int32_t device_id;
};
struct DataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};
struct Tensor {
  void* data;
  Device device;
  int32_t ndim;
  DataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null: C-contiguous
  uint64_t byte_offset;
};
// The unversioned form (capsule name "dltensor").
struct ManagedTensor {
  Tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);
};
struct PackVersion {
  uint32_t major;
  uint32_t minor;
};
constexpr uint64_t kFlagReadOnly = 1, kFlagIsCopied = 2;
// The versioned form (capsule name "dltensor_versioned").
struct ManagedTensorVersioned {
  PackVersion version;
  void* manager_ctx;
  void (*deleter)(ManagedTensorVersioned* self);
  uint64_t flags;
  Tensor dl_tensor;
};

// The stream handle to pass as __dlpack__(stream=...) when importing into `device` (-1: none).
int64_t import_stream(mpsnn::Device& device);

// Wraps the producer's tensor (a ManagedTensor, or a ManagedTensorVersioned when `versioned`),
// which the caller has taken from its capsule, as an image of `device` without copying; from then
// on the image owns it and calls its deleter when the memory is no longer used. Waits for the
// stream handed to the producer first (import_stream), so every stream of the device may read it.
// A tensor that cannot be wrapped (dtype, rank, strides, device, version) throws a typed error
// naming `what`; the tensor is deleted then too.
ImagePtr import_tensor(void* managed, bool versioned, const DevicePtr& device, const char* what);

// A ManagedTensor(Versioned) of the image's (N, H, W, C) memory that keeps the image alive until
// its deleter runs. `stream` is the consumer's __dlpack__ stream argument: pending encoded work
// writing the image is ordered before it (an event on our queue's stream that the consumer's
// stream waits for), -1 skips that, and the memory is released to this device only after the
// work enqueued on that stream by then has finished.
void* export_image(const ImagePtr& image, bool versioned, int64_t stream, const char* what);

// The (device_type, device_id) of an image's memory.
std::pair<int, int64_t> device_of(const Image& image);

}  // namespace mpsnn::dlpack
