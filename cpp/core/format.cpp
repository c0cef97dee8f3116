#include "core/format.h"

#include <algorithm>
#include <cmath>

namespace mpsnn {

const char* format_name(ChannelFormat f) {
  switch (f) {
    case ChannelFormat::none: return "none";
    case ChannelFormat::unorm8: return "unorm8";
    case ChannelFormat::unorm16: return "unorm16";
    case ChannelFormat::float16: return "float16";
    case ChannelFormat::float32: return "float32";
    case ChannelFormat::bfloat16: return "bfloat16";
  }
  return "invalid";
}

void convert_to_float(ChannelFormat from, const void* src, float* dst, size_t count) {
  switch (from) {
    case ChannelFormat::float32:
      if (src != dst) std::memcpy(dst, src, count * 4);
      return;
    case ChannelFormat::float16: {
      auto s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = half_to_float(s[i]);
      return;
    }
    case ChannelFormat::bfloat16: {
      auto s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = bfloat16_to_float(s[i]);
      return;
    }
    case ChannelFormat::unorm8: {
      auto s = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = float(s[i]) * (1.0f / 255.0f);
      return;
    }
    case ChannelFormat::unorm16: {
      auto s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = float(s[i]) * (1.0f / 65535.0f);
      return;
    }
    default: return;
  }
}

namespace {
template <typename T>
T to_unorm(float v, float scale) {
  if (!(v > 0.0f)) return 0;  // negative and NaN map to 0
  return T(std::lround(std::min(v, 1.0f) * scale));
}
}  // namespace

void convert_from_float(ChannelFormat to, const float* src, void* dst, size_t count) {
  switch (to) {
    case ChannelFormat::float32:
      if (src != dst) std::memcpy(dst, src, count * 4);
      return;
    case ChannelFormat::float16: {
      auto d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < count; ++i) d[i] = float_to_half(src[i]);
      return;
    }
    case ChannelFormat::bfloat16: {
      auto d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < count; ++i) d[i] = float_to_bfloat16(src[i]);
      return;
    }
    case ChannelFormat::unorm8: {
      auto d = static_cast<uint8_t*>(dst);
      for (size_t i = 0; i < count; ++i) d[i] = to_unorm<uint8_t>(src[i], 255.0f);
      return;
    }
    case ChannelFormat::unorm16: {
      auto d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < count; ++i) d[i] = to_unorm<uint16_t>(src[i], 65535.0f);
      return;
    }
    default: return;
  }
}

}  // namespace mpsnn
