#pragma once
// Typed errors of the C++ core. Each maps to one Python exception class (bindings/errors.cpp);
// messages start with the op and node label, then say what was found and what was expected.
#include <sstream>
#include <stdexcept>
#include <string>

namespace mpsnn {

// Bad shapes, channel counts, sizes or attributes (Python: mpsnn.ShapeError, a ValueError).
struct ShapeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// Wrong element type or memory layout (Python: mpsnn.DTypeError, a TypeError).
struct DTypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// Well-formed request this device cannot run (Python: mpsnn.UnsupportedError, NotImplementedError).
struct UnsupportedError : std::logic_error {
  using std::logic_error::logic_error;
};
// Failure reported by oneDNN / cuDNN / Metal (Python: mpsnn.BackendError, a RuntimeError).
struct BackendError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Graph construction or encode validation: wrong list lengths, unknown handles, unreachable
// results, foreign devices (Python: mpsnn.MPSGraphError, a ValueError).
struct GraphError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// Temporary image / state misuse: read count exhausted, CPU access, other command buffer
// (Python: mpsnn.MPSTemporaryImageError, a RuntimeError).
struct TemporaryImageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Bytes that are not a valid serialized graph or node (truncated, corrupted, another format or
// version): names the section, field and byte offset (Python: mpsnn.SerializationError, a ValueError).
struct SerializationError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace mpsnn

// MPSNN_CHECK(cond, ShapeError, "[conv 'x'] found ", a, ", expected ", b)
#define MPSNN_CHECK(cond, ErrorType, ...)                           \
  do {                                                              \
    if (!(cond)) throw ::mpsnn::ErrorType(::mpsnn::detail::concat(__VA_ARGS__)); \
  } while (0)

#define MPSNN_THROW(ErrorType, ...) throw ::mpsnn::ErrorType(::mpsnn::detail::concat(__VA_ARGS__))
